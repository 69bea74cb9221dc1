import Checkpoint
import Format
import Foundation
import Train

/// Where a model's weights come from.
public enum ModelSource: Sendable, Equatable {
    /// A Hugging Face style directory: config.json + model.safetensors (or a sharded index).
    case directory(String)
    /// A Llama-family .gguf file (weights dequantized to f32).
    case gguf(String)
    /// A seeded random initialization of `config` (GPT-2 style; see `TransformerModel.initializeRandomly`).
    case random(ModelConfig, seed: UInt64)

    /// A directory or a .gguf file, decided by the path.
    public init(path: String) {
        self = path.lowercased().hasSuffix(".gguf") ? .gguf(path) : .directory(path)
    }

    /// A seeded random initialization of the architecture in an HF `config.json`.
    public static func random(configFile: String, seed: UInt64) throws -> ModelSource {
        let data: Data
        do { data = try readFile(configFile) } catch { throw DataError(error.description) }
        return .random(try ModelConfig.parse(json: data, source: configFile), seed: seed)
    }

    /// For logs and the run record.
    public var description: String {
        switch self {
        case .directory(let p): return p
        case .gguf(let p): return p
        case .random(let c, let seed):
            return "random \(c.family.rawValue) d=\(c.hiddenSize) layers=\(c.layers) vocab=\(c.vocabSize) seed=\(seed)"
        }
    }

    /// The directory that may hold the model's tokenizer.json (nil for GGUF and random models).
    public var tokenizerDirectory: String? {
        if case .directory(let p) = self { return p }
        return nil
    }

    /// The tokenizer files a checkpoint trained from this model carries, so it loads on its own (`oreo eval`,
    /// HF `AutoTokenizer`): a directory's tokenizer files as they are, or tokenizer.json and
    /// tokenizer_config.json rebuilt from a GGUF's metadata. Empty when there is none (random models, a GGUF
    /// whose tokenizer has no exact tokenizer.json equivalent).
    public func tokenizerFiles() -> [(name: String, bytes: [UInt8])] {
        switch self {
        case .directory(let p):
            return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"].compactMap { f in
                FileManager.default.contents(atPath: p + "/" + f).map { (f, Array($0)) }
            }
        case .gguf(let p):
            guard let g = try? GGUFFile(path: p), let v = try? BPEVocabulary(gguf: g),
                  let json = try? v.tokenizerJSON(), let config = try? v.tokenizerConfigJSON(maxLength: (try? g.modelConfig().maxPositions) ?? 8192)
            else { return [] }
            return [("tokenizer.json", Array(json)), ("tokenizer_config.json", Array(config))]
        case .random: return []
        }
    }

    /// The architecture, without loading weights.
    public func config() throws -> ModelConfig {
        switch self {
        case .directory(let p):
            let path = p + "/config.json"
            let data: Data
            do { data = try readFile(path) } catch { throw DataError(error.description) }
            return try ModelConfig.parse(json: data, source: path)
        case .gguf(let p): return try GGUFFile(path: p).modelConfig()
        case .random(let c, _): return c
        }
    }

    /// Builds the model for batches of `maxTokens` positions, with a zero-initialized value head when asked.
    public func load(maxTokens: Int, valueHead: Bool = false) throws -> TransformerModel {
        switch self {
        case .directory(let p): return try ModelCheckpoint.load(directory: p, maxTokens: maxTokens, valueHead: valueHead)
        case .gguf(let p): return try GGUFFile(path: p).loadLlamaModel(maxTokens: maxTokens, valueHead: valueHead)
        case .random(let c, let seed):
            let m = try TransformerModel(config: c, maxTokens: maxTokens, valueHead: valueHead)
            m.initializeRandomly(seed: seed)
            return m
        }
    }
}

/// Checks that a dataset's token ids mean what the model thinks they mean.
public enum Compatibility {
    /// Refuses a dataset whose vocabulary does not fit the model, or whose recorded tokenizer fingerprint differs
    /// from the tokenizer.json beside the model. Returns notes on what could not be checked.
    public static func check(dataset: Dataset, model: ModelConfig, tokenizerDirectory: String?) throws -> [String] {
        let m = dataset.manifest
        guard m.vocabSize <= model.vocabSize else {
            throw DataError("\(dataset.directory): token ids go up to \(m.vocabSize - 1) (vocabulary \(m.vocabSize)), the model has \(model.vocabSize) embeddings: this dataset was tokenized for another model")
        }
        var notes: [String] = []
        guard let recorded = m.tokenizer else {
            notes.append("dataset records no tokenizer; only the vocabulary size (\(m.vocabSize) <= \(model.vocabSize)) was checked")
            return notes
        }
        let path = tokenizerDirectory.map { $0 + "/tokenizer.json" }
        guard let path, let data = FileManager.default.contents(atPath: path) else {
            notes.append("model has no tokenizer.json beside it; the dataset's tokenizer (\(recorded.source), fingerprint \(recorded.fingerprint)) was not compared, only the vocabulary size")
            return notes
        }
        let fp = data.withUnsafeBytes { FNV1a.fingerprint($0) }
        guard fp == recorded.fingerprint else {
            throw DataError("\(dataset.directory) was tokenized with \(recorded.source) (fingerprint \(recorded.fingerprint)); the model's \(path) has fingerprint \(fp): re-ingest the data with the model's tokenizer")
        }
        return notes
    }
}
