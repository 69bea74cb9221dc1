import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// JSONL trajectories to a dataset: memory-mapped inputs, tokenization on every core, lines kept in input
/// order, shards written as they fill, resumable after an interruption, splittable into parts.
public struct IngestJob {
    /// Input JSONL files.
    public var inputs: [String]
    /// Output dataset directory.
    public var output: String
    /// Shared tokenizer tables.
    public var vocab: IngestVocabulary
    /// Tokenization options.
    public var options: IngestOptions
    /// Block compression.
    public var compression: Compression = .zstd(level: 3)
    /// Tokens per shard.
    public var shardTokens: UInt64 = 64 << 20
    /// Worker threads.
    public var threads: Int = 2
    /// This run's part (index, count): it takes the non-blank lines whose running index modulo count is index.
    public var part: (index: Int, count: Int) = (0, 1)
    /// Lines per unit of parallel work.
    public var batchLines = 512

    /// A job over `inputs` into `output`.
    public init(inputs: [String], output: String, vocab: IngestVocabulary, options: IngestOptions) {
        self.inputs = inputs
        self.output = output
        self.vocab = vocab
        self.options = options
    }

    /// Manifest file this run keeps: `manifest.json`, or `manifest.part-I-of-N.json` for a part.
    public var manifestName: String {
        part.count == 1 ? Manifest.fileName : "manifest.part-\(part.index)-of-\(part.count).json"
    }

    var shardPrefix: String { part.count == 1 ? "shard" : "part-\(part.index)-of-\(part.count).shard" }
    var rejectsName: String { part.count == 1 ? "rejects.jsonl" : "rejects.part-\(part.index)-of-\(part.count).jsonl" }

    /// Everything a resumed run must agree on with the run it continues.
    var identity: [String: String] {
        var p = options.properties
        p["ingest.inputs"] = inputs.map { path -> String in
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            return "\(path) (\(size ?? -1) bytes)"
        }.joined(separator: "; ")
        p["ingest.part"] = "\(part.index)/\(part.count)"
        p["ingest.tokenizer"] = vocab.tokenizer.path
        return p
    }

    /// Deletes what this job (or part) wrote to `output` before: its manifest, shards and rejects.
    public func removeOutput() {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        for f in items where f == manifestName || f == rejectsName || f.hasPrefix(shardPrefix + "-") {
            unlink(output + "/" + f)
        }
    }

    /// Refuses, once and with the way out, a file that holds one JSON array of objects (the official ALFWorld
    /// data's form) instead of one object per line: line by line, every line of it would be rejected alone.
    static func refuseJSONArray(_ bytes: UnsafeRawBufferPointer, path: String) throws {
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1, column = 1
        while i < bytes.count, [0x20, 0x09, 0x0D, 0x0A].contains(bytes[i]) {
            if bytes[i] == 0x0A {
                line += 1
                column = 1
            } else {
                column += 1
            }
            i += 1
        }
        guard i < bytes.count, bytes[i] == UInt8(ascii: "[") else { return }
        throw IngestError(
            location: "\(path):\(line):\(column)",
            reason:
                "this file is a JSON array, not JSON Lines (one object per line); convert it first, e.g. `jq -c '.[]' \(path) > lines.jsonl`"
        )
    }

    /// Runs the job; an interrupted earlier run with the same inputs and options is continued.
    public func run(progress: (IngestProgress) -> Void = { _ in }) throws -> IngestSummary {
        let files = try inputs.map { try MappedFile(path: $0) }
        for (path, f) in zip(inputs, files) { try Self.refuseJSONArray(f.bytes, path: path) }
        for f in files { f.adviseSequential() }
        let totalBytes = files.reduce(0) { $0 + $1.bytes.count }
        let tokenizerInfo = TokenizerInfo(
            fingerprint: String(vocab.tokenizer.fingerprint, radix: 16), source: vocab.tokenizer.path)

        // Resume state: (file, byte offset, line number) after the last line covered by a committed shard.
        var state = ResumeState()
        var resumed = false
        let writer: DatasetWriter
        let manifestPath = output + "/" + manifestName
        if FileManager.default.fileExists(atPath: manifestPath) {
            let m = try Manifest.read(directory: output, fileName: manifestName)
            if m.complete {
                throw FormatError(
                    .invalidArgument, path: manifestPath,
                    "dataset is already complete; choose another --out or pass --overwrite")
            }
            for (k, v) in identity where m.properties[k] != v {
                throw FormatError(
                    .invalidArgument, path: manifestPath,
                    "an interrupted ingest with different settings is here (\(k): '\(m.properties[k] ?? "none")' vs '\(v)'); pass --overwrite to start again"
                )
            }
            guard m.tokenizer == tokenizerInfo else {
                throw FormatError(
                    .invalidArgument, path: manifestPath,
                    "the interrupted ingest used another tokenizer; pass --overwrite")
            }
            state = ResumeState(m.properties)
            writer = try DatasetWriter(
                resuming: m, directory: output, shardTokens: shardTokens,
                manifestName: manifestName, shardPrefix: shardPrefix)
            resumed = true
        } else {
            var props = identity
            props["ingest.resume"] = ResumeState().encoded
            writer = try DatasetWriter(
                directory: output,
                options: ShardOptions(vocabSize: vocab.tokenizer.vocabSize, compression: compression),
                shardTokens: shardTokens, tokenizer: tokenizerInfo, properties: props,
                manifestName: manifestName, shardPrefix: shardPrefix)
        }
        let rejects = try RejectsFile(path: output + "/" + rejectsName, keep: resumed ? state.rejectsBytes : 0)

        // What the manifest records when a shard closes: the position after the last appended record.
        let committed = Mutex(state)
        writer.onShardClose = {
            var s = committed.withLock { $0 }
            s.rejectsBytes = try rejects.sync()
            return s.properties
        }

        var current = state
        var lines = LineCursor(files: files, start: state)
        var partIndex = state.partCounter
        /// The next batch of lines in input order (only this thread reads lines), or nil at the end.
        func nextBatch() -> [LineRef]? {
            var batch: [LineRef] = []
            while batch.count < batchLines, var l = lines.next() {
                if !l.blank {
                    l.ordinal = partIndex
                    partIndex += 1
                    if l.ordinal % part.count != part.index { continue }
                }
                batch.append(l)
            }
            return batch.isEmpty ? nil : batch
        }

        // Workers tokenize batches while this thread writes finished ones in input order, so shard writing
        // (block compression included) runs beside tokenization instead of between windows of it.
        let pipeline = LinePipeline(
            files: files, depth: max(1, threads) * 4,
            processors: (0..<max(1, threads)).map {
                [delimiters = SingleByteDelimiters(vocab, options.stepDelimiters)] _ in
                LineProcessor(vocab: vocab, options: options, delimiters: delimiters)
            })
        defer { pipeline.finish() }
        var pending: [[LineRef]] = []  // submitted, not yet written, in order
        while pending.count < pipeline.depth, let b = nextBatch() {
            pipeline.submit(b)
            pending.append(b)
        }
        var head = 0
        while head < pending.count {
            let batch = pending[head]
            let done = pipeline.take()
            pending[head] = []
            head += 1
            if let b = nextBatch() {
                pipeline.submit(b)
                pending.append(b)
            }
            if head >= 64 {
                pending.removeFirst(head)
                head = 0
            }
            // Consecutive trajectories from one input go to the writer as one run; a rejected line or the
            // next input ends a run. `runState` is the state before the run's first line.
            var runLine = 0, runRecord = 0, record = 0, runState = current
            func flushRun(through endLine: Int) throws {
                guard record > runRecord else { return }
                let records = done.records
                try writer.append(records, runRecord..<record, source: inputs[batch[runLine].file]) { last in
                    // The shard closing after trajectory `last` records the state right after its line.
                    var s = runState, r = runRecord
                    for k in runLine..<endLine {
                        s.advance(
                            past: batch[k], done.outcomes[k],
                            truncated: { records.flags[r] & TrajectoryFlags.truncated.rawValue != 0 })
                        if case .record = done.outcomes[k] {
                            if r == last { break }
                            r += 1
                        }
                    }
                    committed.withLock { $0 = s }
                }
                runRecord = record
            }
            for (k, l) in batch.enumerated() {
                let outcome = done.outcomes[k]
                if case .failure(let e) = outcome {
                    try flushRun(through: k)
                    current.advance(past: l, outcome, truncated: { false })
                    let where_ = "\(inputs[l.file]):\(l.number):\(e.column)"
                    if options.onInvalid == .fail {
                        rejects.abandon()
                        throw IngestError(location: where_, reason: e.reason)
                    }
                    committed.withLock { $0 = current }
                    try l.withBytes(files) { try rejects.append(line: $0, location: where_, reason: e.reason) }
                    runLine = k + 1
                    runState = current
                    continue
                }
                if k > runLine, l.file != batch[runLine].file {
                    try flushRun(through: k)
                    runLine = k
                    runState = current
                }
                current.advance(
                    past: l, outcome,
                    truncated: { done.records.flags[record] & TrajectoryFlags.truncated.rawValue != 0 })
                if case .record = outcome { record += 1 }
            }
            try flushRun(through: batch.count)
            progress(
                IngestProgress(
                    bytesDone: batch.last.map { lines.bytesConsumed(upTo: $0) } ?? lines.bytesConsumed,
                    bytesTotal: totalBytes, linesRead: current.linesRead,
                    written: current.written, rejected: current.rejected))
            pipeline.recycle(done)
        }
        committed.withLock { $0 = current }
        for (k, v) in current.properties { writer.setProperty(k, v) }
        writer.setProperty("ingest.lines_read", String(current.linesRead))
        writer.setProperty("ingest.trajectories", String(current.written))
        writer.setProperty("ingest.rejected", String(current.rejected))
        writer.setProperty("ingest.truncated", String(current.truncated))
        writer.setProperty("ingest.blank_lines", String(current.blank))
        let manifest = try writer.finish()
        return IngestSummary(
            manifest: manifest, linesRead: current.linesRead, written: current.written,
            rejected: current.rejected, truncated: current.truncated, blank: current.blank, resumed: resumed)
    }
}

extension IngestJob {
    /// Combines the finished parts `manifest.part-I-of-N.json` of `directory` into its `manifest.json`.
    public static func mergeParts(directory: String, count: Int) throws -> Manifest {
        var parts: [Manifest] = []
        for i in 0..<count {
            let name = "manifest.part-\(i)-of-\(count).json"
            let m = try Manifest.read(directory: directory, fileName: name)
            guard m.complete else {
                throw FormatError(.manifest, path: directory + "/" + name, "part \(i) has not finished")
            }
            parts.append(m)
        }
        guard var merged = parts.first else {
            throw FormatError(.invalidArgument, path: directory, "no parts to merge")
        }
        let sameKeys = merged.properties.keys.filter {
            $0.hasPrefix("ingest.") && !["ingest.part", "ingest.resume"].contains($0) && !isCount($0)
        }
        for (i, m) in parts.enumerated().dropFirst() {
            guard m.vocabSize == merged.vocabSize, m.tokenizer == merged.tokenizer,
                m.tokenColumns == merged.tokenColumns
            else {
                throw FormatError(.manifest, path: directory, "part \(i) used another tokenizer or columns than part 0")
            }
            for k in sameKeys where m.properties[k] != merged.properties[k] {
                throw FormatError(.manifest, path: directory, "part \(i) differs from part 0 in \(k)")
            }
            merged.shards += m.shards
            merged.counts.trajectories += m.counts.trajectories
            merged.counts.steps += m.counts.steps
            merged.counts.tokens += m.counts.tokens
            if let st = m.stats { merged.stats?.add(st) } else { merged.stats = nil }
        }
        for k in ["ingest.lines_read", "ingest.trajectories", "ingest.rejected", "ingest.truncated"] {
            merged.properties[k] = String(parts.reduce(0) { $0 + (Int($1.properties[k] ?? "") ?? 0) })
        }
        merged.properties["ingest.part"] = "merged \(count) parts"
        merged.properties["ingest.resume"] = nil
        merged.properties["ingest.blank_lines"] = parts.first?.properties["ingest.blank_lines"]
        try merged.validate(path: directory + "/" + Manifest.fileName)
        try merged.write(directory: directory)
        return merged
    }

    private static func isCount(_ k: String) -> Bool {
        ["ingest.lines_read", "ingest.trajectories", "ingest.rejected", "ingest.truncated", "ingest.blank_lines"]
            .contains(k)
    }
}
