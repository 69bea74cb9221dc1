import Checkpoint
import Foundation
import Support
import Tokenizers
import Train

/// Where a model's weights come from.
public enum ModelSource: Sendable, Equatable {
    /// A Hugging Face style directory: config.json + model.safetensors (or a sharded index).
    case directory(String)
    /// A Llama-family .gguf file (weights dequantized to f32).
    case gguf(String)
    /// A seeded random initialization of `config` (GPT-2 style; see `TransformerModel.initializeRandomly`).
    case random(ModelConfig, seed: UInt64)

    /// A directory or a GGUF file, decided by `GGUFFile.isGGUF(path:)`.
    public init(path: String) {
        self = GGUFFile.isGGUF(path: path) ? .gguf(path) : .directory(path)
    }

    /// `ModelSource(path:)` for a path that must exist: a missing one is a clear error instead of a failure
    /// later, deep in a loader.
    public init(existing path: String) throws(ModelError) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ModelError("no such file or directory: \(path)")
        }
        self = isDir.boolValue ? .directory(path) : ModelSource(path: path)
    }

    /// A seeded random initialization of the architecture in an HF `config.json`.
    public static func random(configFile: String, seed: UInt64) throws -> ModelSource {
        let data: Data
        do { data = try readFile(configFile) } catch { throw ModelError(error.description) }
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
            return ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]
                .compactMap { f in
                    FileManager.default.contents(atPath: p + "/" + f).map { (f, Array($0)) }
                }
        case .gguf(let p):
            guard let g = try? GGUFFile(path: p), let v = try? BPEVocabulary(gguf: g),
                let json = try? v.tokenizerJSON(),
                let config = try? v.tokenizerConfigJSON(maxLength: (try? g.modelConfig().maxPositions) ?? 8192)
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
            do { data = try readFile(path) } catch { throw ModelError(error.description) }
            return try ModelConfig.parse(json: data, source: path)
        case .gguf(let p): return try GGUFFile(path: p).modelConfig()
        case .random(let c, _): return c
        }
    }

    /// The f32 model for batches of `maxTokens` positions, with a zero-initialized value head when asked.
    func loadF32(maxTokens: Int, valueHead: Bool, activations: ActivationMode) throws -> TransformerModel {
        switch self {
        case .directory(let p):
            return try ModelCheckpoint.load(
                directory: p, maxTokens: maxTokens, valueHead: valueHead, activations: activations)
        case .gguf(let p):
            return try GGUFFile(path: p).loadModel(maxTokens: maxTokens, valueHead: valueHead, activations: activations)
        case .random(let c, let seed):
            let m = try TransformerModel(
                config: c, maxTokens: maxTokens, valueHead: valueHead, activations: activations)
            m.initializeRandomly(seed: seed)
            return m
        }
    }

    /// The tokenizer this model's files describe, or `override` (a tokenizer.json, or a GGUF whose metadata
    /// describes one) when given: a directory's tokenizer.json, else a GGUF's own. Random models have none.
    public func tokenizer(override: String? = nil) throws -> Tokenizer {
        if let override { return try Tokenizer.load(path: override) }
        switch self {
        case .directory(let p):
            let t = p + "/tokenizer.json"
            guard FileManager.default.fileExists(atPath: t) else {
                throw ModelError("\(p) has no tokenizer.json: pass --tokenizer")
            }
            return try Tokenizer.load(path: t)
        case .gguf(let p): return try GGUFTokenizer.load(try GGUFFile(path: p))
        case .random: throw ModelError("\(description) has no tokenizer: pass --tokenizer")
        }
    }

    /// The Jinja chat template the model's files carry (tokenizer_config.json's `chat_template`, or GGUF
    /// `tokenizer.chat_template`), if any.
    public func chatTemplateSource() throws -> String? {
        switch self {
        case .directory(let p):
            let configPath = p + "/tokenizer_config.json"
            guard let d = FileManager.default.contents(atPath: configPath) else { return nil }
            do { return try StrictJSON.parse(d, file: configPath)["chat_template"]?.string } catch {
                throw ModelError(error.description)
            }
        case .gguf(let p):
            return Self.chatTemplateSource(try GGUFFile(path: p))
        case .random: return nil
        }
    }

    /// A GGUF's `tokenizer.chat_template`.
    static func chatTemplateSource(_ g: GGUFFile) -> String? {
        if case .string(let s)? = g.metadata["tokenizer.chat_template"] { return s }
        return nil
    }
}
