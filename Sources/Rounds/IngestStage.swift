import Format
import Ingest

/// The ingest stage of a round: JSONL trajectories into a dataset of shards.
public enum IngestStage {
    /// Ingests `inputs` into `dataset`: a complete dataset made with the same tokenizer is kept as it is, an
    /// interrupted one is continued, one of another tokenizer is redone. Returns the manifest and whether
    /// the dataset was already complete.
    public static func run(
        _ inputs: [String], into dataset: String, vocab: IngestVocabulary, options: IngestOptions,
        threads: Int, progress: (IngestProgress) -> Void = { _ in }
    ) throws -> (manifest: Manifest, reused: Bool) {
        let existing = try? Manifest.read(directory: dataset)
        if let m = existing, m.complete, m.tokenizer?.fingerprint == String(vocab.tokenizer.fingerprint, radix: 16) {
            return (m, true)
        }
        var job = IngestJob(inputs: inputs, output: dataset, vocab: vocab, options: options)
        job.threads = threads
        if existing?.complete == true { job.removeOutput() }
        return (try job.run(progress: progress).manifest, false)
    }
}
