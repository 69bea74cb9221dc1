import Checkpoint
import Format
import Foundation
import Ingest
import Train

/// A prompt wrapper: ChatML (`<|im_start|>role\n...<|im_end|>\n`) or the raw text.
public enum ChatTemplate: Equatable, Sendable {
    /// The prompt as is.
    case none
    /// ChatML with the template's default system message (used when the caller gives none), if it has one.
    case chatML(defaultSystem: String?)

    /// ChatML when a model's Jinja template (GGUF `tokenizer.chat_template`, tokenizer_config.json
    /// `chat_template`) uses `<|im_start|>` / `<|im_end|>`, with the default system message it inserts; else
    /// none. The template is recognized, not executed.
    public static func detect(fromJinja source: String?) -> ChatTemplate {
        guard let s = source, s.contains("<|im_start|>"), s.contains("<|im_end|>") else { return .none }
        // The default system message is a literal '<|im_start|>system\n...<|im_end|>' in the template, with
        // a real newline (SmolLM2) or a Jinja "\n" escape (Qwen2).
        // Templates with tools also splice messages[0] after a system opener: take the first literal one.
        for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            var from = s.startIndex
            while let r = s.range(of: opener, range: from..<s.endIndex), let end = s[r.upperBound...].range(of: "<|im_end|>") {
                let text = String(s[r.upperBound..<end.lowerBound])
                if !text.contains("{{") && !text.contains("{%") && !text.contains("'") && !text.contains("\"") {
                    return .chatML(defaultSystem: text.replacingOccurrences(of: "\\n", with: "\n"))
                }
                from = r.upperBound
            }
        }
        return .chatML(defaultSystem: nil)
    }

    /// The text a model sees for a single user turn, ending where the assistant's answer starts.
    public func render(_ prompt: String, system: String? = nil) -> String {
        switch self {
        case .none: return prompt
        case .chatML(let def):
            var s = ""
            if let sys = system ?? def { s += "<|im_start|>system\n\(sys)<|im_end|>\n" }
            return s + "<|im_start|>user\n\(prompt)<|im_end|>\n<|im_start|>assistant\n"
        }
    }
}

/// Which weights decoding reads (`TransformerModel.decodingWeights`).
public enum DecodeWeights: String, CaseIterable, Sendable {
    /// A GGUF's own blocks (exactly the values of its dequantized f32 weights, 4-8x fewer bytes per token);
    /// f32 for a checkpoint directory.
    case auto
    /// The f32 parameters.
    case f32
    /// The f32 weights rounded to bfloat16 (lossy).
    case bf16
    /// The f32 weights rounded to IEEE half (lossy).
    case f16
    /// The f32 weights quantized to ggml's Q8_0 (lossy).
    case q8_0

    /// Packs (or not) `model`, loaded from `gguf` when that is set, and says what it chose.
    func apply(to model: TransformerModel, gguf: GGUFFile?) throws -> String {
        switch (self, gguf) {
        case (.f32, _), (.auto, nil):
            model.decodingWeights = nil
            return "f32"
        case (.auto, let gguf?):
            model.decodingWeights = try gguf.packedWeights(for: model)
        case (.bf16, _), (.f16, _), (.q8_0, _):
            model.decodingWeights = try PackedWeights(quantizing: model, to: PackedFormat(rawValue: rawValue)!)
        }
        let w = model.decodingWeights!
        return "\(w.summary) (\(w.matrixCount) of \(model.linearWeights().count) linear layers, \(w.byteCount / 1_000_000) MB)"
    }
}

/// A model loaded for inference: weights, tokenizer and the chat template its files describe.
public struct InferenceModel {
    /// The transformer (activation buffers sized for one position: decoding uses its own).
    public let model: TransformerModel
    /// Its tokenizer.
    public let tokenizer: Tokenizer
    /// The Jinja chat template from the model files, if any.
    public let chatTemplateSource: String?
    /// Where it was loaded from.
    public let path: String
    /// The weights its decoders read, in words ("f32", or the packed formats and size).
    public private(set) var decodeWeights = "f32"

    /// A model already in memory (in-process callers: a model just trained, and its tokenizer).
    public init(model: TransformerModel, tokenizer: Tokenizer, chatTemplateSource: String? = nil, path: String = "") {
        self.model = model
        self.tokenizer = tokenizer
        self.chatTemplateSource = chatTemplateSource
        self.path = path
    }

    /// Loads a GGUF file (Llama family) or an HF directory (config.json + safetensors). The tokenizer is
    /// `tokenizer` (a tokenizer.json, or a .gguf whose metadata describes one), else the directory's
    /// tokenizer.json, else (GGUF) the one its metadata describes. With
    /// `valueHead` the checkpoint must hold `value_head.weight`. `decodeWeights` picks what decoding reads.
    public static func load(path: String, tokenizer: String? = nil, valueHead: Bool = false,
                            decodeWeights: DecodeWeights = .auto) throws -> InferenceModel {
        var (m, gguf) = try loadF32(path: path, tokenizer: tokenizer, valueHead: valueHead)
        m.decodeWeights = try decodeWeights.apply(to: m.model, gguf: gguf)
        return m
    }

    /// The model with f32 weights, and the GGUF file it came from (nil for a checkpoint directory).
    private static func loadF32(path: String, tokenizer: String?, valueHead: Bool) throws -> (InferenceModel, GGUFFile?) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw InferError.invalid("\(path): no such model file or directory")
        }
        let model: TransformerModel
        var template: String?
        var tokenizerPath = tokenizer
        var gguf: GGUFFile?
        if isDir.boolValue {
            if valueHead {
                let files = try SafeTensorsCollection(directory: path)
                guard files.find("value_head.weight") != nil else {
                    throw InferError.invalid("\(path): no value_head.weight: not a value model")
                }
            }
            model = try ModelCheckpoint.load(directory: path, maxTokens: 1, valueHead: valueHead)
            if tokenizerPath == nil {
                let t = path + "/tokenizer.json"
                guard FileManager.default.fileExists(atPath: t) else {
                    throw InferError.invalid("\(path) has no tokenizer.json: pass --tokenizer")
                }
                tokenizerPath = t
            }
            let configPath = path + "/tokenizer_config.json"
            if let d = FileManager.default.contents(atPath: configPath) {
                do { template = try StrictJSON.parse(d, file: configPath)["chat_template"]?.string } catch {
                    throw InferError.invalid(error.description)
                }
            }
        } else {
            guard !valueHead else { throw InferError.invalid("\(path): a value model is a checkpoint directory with value_head.weight") }
            let g = try GGUFFile(path: path)
            gguf = g
            model = try g.loadLlamaModel(maxTokens: 1)
            if case .string(let s)? = g.metadata["tokenizer.chat_template"] { template = s }
            if tokenizerPath == nil {
                let tok = try GGUFTokenizer.load(g)
                return (InferenceModel(model: model, tokenizer: tok, chatTemplateSource: template, path: path), g)
            }
        }
        // A .gguf as tokenizer: the one its metadata describes (a model trained from a GGUF keeps its tokenizer there).
        let tok = tokenizerPath!.lowercased().hasSuffix(".gguf") ? try GGUFTokenizer.load(try GGUFFile(path: tokenizerPath!))
            : try Tokenizer.load(path: tokenizerPath!)
        guard tok.vocabSize <= model.config.vocabSize else {
            throw InferError.invalid("tokenizer \(tokenizerPath!) has \(tok.vocabSize) tokens, more than the model's \(model.config.vocabSize)")
        }
        return (InferenceModel(model: model, tokenizer: tok, chatTemplateSource: template, path: path), gguf)
    }

    /// The tokenizer `load(path:tokenizer:)` would use, without loading the weights: `tokenizer`, else the
    /// directory's tokenizer.json, else (GGUF) the one its metadata describes.
    public static func loadTokenizer(modelPath path: String, tokenizer: String? = nil) throws -> Tokenizer {
        if let tokenizer { return try Tokenizer.load(path: tokenizer) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw InferError.invalid("\(path): no such model file or directory")
        }
        if isDir.boolValue {
            let t = path + "/tokenizer.json"
            guard FileManager.default.fileExists(atPath: t) else { throw InferError.invalid("\(path) has no tokenizer.json: pass --tokenizer") }
            return try Tokenizer.load(path: t)
        }
        return try GGUFTokenizer.load(try GGUFFile(path: path))
    }

    /// The chat template for a command-line choice: chatml, none, or auto (ChatML when the model's
    /// template is ChatML).
    public func chatTemplate(_ choice: String) throws -> ChatTemplate {
        switch choice {
        case "none": return .none
        case "chatml":
            if case .chatML(let s) = ChatTemplate.detect(fromJinja: chatTemplateSource) { return .chatML(defaultSystem: s) }
            return .chatML(defaultSystem: nil)
        case "auto": return ChatTemplate.detect(fromJinja: chatTemplateSource)
        default: throw InferError.invalid("--chat-template takes chatml, none or auto, not \"\(choice)\"")
        }
    }

    /// Token ids that end a response: the tokenizer's EOS and the ChatML / GPT-2 end markers it has.
    public var stopTokens: Set<Int32> {
        var s = Set<Int32>()
        if let e = tokenizer.eosId { s.insert(Int32(e)) }
        for marker in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"] {
            let ids = tokenizer.encode(marker)
            if ids.count == 1, tokenizer.isSpecial(ids[0]) { s.insert(Int32(ids[0])) }
        }
        return s
    }

    /// Prompt ids for `text` under `template`: special tokens in the rendered text are control tokens (as HF
    /// encodes a chat-templated string); without a template the tokenizer's BOS/template prefix comes first
    /// (as `oreo ingest` does), never its suffix.
    public func encodePrompt(_ text: String, template: ChatTemplate) -> [Int32] {
        let ids = tokenizer.encode(template.render(text), options: EncodeOptions(recognizeSpecialTokens: true))
        return ((template == .none ? tokenizer.templateIds.prefix : []) + ids).map { Int32($0) }
    }
}

/// The tokenizer a GGUF file's metadata describes, rebuilt as tokenizer.json (`BPEVocabulary`, the same code
/// `oreo convert` uses), so a GGUF model needs no separate tokenizer file.
public enum GGUFTokenizer {
    /// tokenizer.json and tokenizer_config.json (BOS, EOS, chat template) for `file`'s tokenizer.
    public static func files(_ file: GGUFFile) throws -> (tokenizer: Data, config: Data) {
        let v = try BPEVocabulary(gguf: file)
        var context = 8192
        if let arch = file.string("general.architecture"), let n = file.metadata[arch + ".context_length"]?.int, n > 0 { context = n }
        return (try v.tokenizerJSON(), try v.tokenizerConfigJSON(maxLength: context))
    }

    /// Loads the tokenizer of `file` (written to a private temporary directory, read back, removed).
    public static func load(_ file: GGUFFile) throws -> Tokenizer {
        let (json, config) = try files(file)
        let dir = NSTemporaryDirectory() + "oreo-gguf-tokenizer-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try json.write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try config.write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        return try Tokenizer.load(path: dir + "/tokenizer.json")
    }
}
