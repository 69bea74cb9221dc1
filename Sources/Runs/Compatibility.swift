import Checkpoint
import Format
import Foundation
import Support

/// Checks that a dataset's token ids mean what the model thinks they mean.
public enum Compatibility {
    /// Refuses a dataset whose vocabulary does not fit the model, or whose recorded tokenizer fingerprint differs
    /// from the tokenizer.json beside the model. Returns notes on what could not be checked.
    public static func check(dataset: Dataset, model: ModelConfig, tokenizerDirectory: String?) throws -> [String] {
        let m = dataset.manifest
        guard m.vocabSize <= model.vocabSize else {
            throw DataError(
                "\(dataset.directory): token ids go up to \(m.vocabSize - 1) (vocabulary \(m.vocabSize)), the model has \(model.vocabSize) embeddings: this dataset was tokenized for another model"
            )
        }
        var notes: [String] = []
        guard let recorded = m.tokenizer else {
            notes.append(
                "dataset records no tokenizer; only the vocabulary size (\(m.vocabSize) <= \(model.vocabSize)) was checked"
            )
            return notes
        }
        let path = tokenizerDirectory.map { $0 + "/tokenizer.json" }
        guard let path, let data = FileManager.default.contents(atPath: path) else {
            notes.append(
                "model has no tokenizer.json beside it; the dataset's tokenizer (\(recorded.source), fingerprint \(recorded.fingerprint)) was not compared, only the vocabulary size"
            )
            return notes
        }
        let fp = data.withUnsafeBytes { FNV1a.fingerprint($0) }
        guard fp == recorded.fingerprint else {
            throw DataError(
                "\(dataset.directory) was tokenized with \(recorded.source) (fingerprint \(recorded.fingerprint)); the model's \(path) has fingerprint \(fp): re-ingest the data with the model's tokenizer"
            )
        }
        return notes
    }
}
