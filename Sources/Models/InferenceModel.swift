import Checkpoint
import Foundation
import Support
import Tokenizers
import Train

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
    /// `valueHead` the checkpoint must hold `value_head.weight`. `decodeWeights` picks what decoding reads;
    /// `precision` bf16 runs passes wider than `bf16PackedMaxRows` (prompts, beams) as bf16 products.
    /// With `adapter`, a PEFT LoRA adapter directory is attached unmerged (every pass adds its update).
    public static func load(
        path: String, tokenizer: String? = nil, valueHead: Bool = false,
        decodeWeights: DecodeWeights = .auto, precision: Precision = .fp32, adapter: String? = nil
    ) throws -> InferenceModel {
        try precision.checkSupported()
        var (m, gguf) = try loadF32(
            path: path, tokenizer: tokenizer, valueHead: valueHead, headFromAdapter: adapter != nil)
        if let adapter { try m.model.attach(try PEFTAdapter.load(directory: adapter, for: m.model)) }
        try m.model.setPrecision(precision)
        m.decodeWeights = try decodeWeights.apply(to: m.model, gguf: gguf)
        if let a = m.model.adapters {
            m.decodeWeights +=
                "; LoRA adapter \(adapter ?? "") (rank \(a.config.rank), \(a.adapters.count) tensors, f32)"
        }
        if precision == .bf16 {
            m.decodeWeights +=
                "; passes over \(bf16PackedMaxRows) rows in bf16 (oneDNN \(BF16GEMM.shared?.isa ?? "-"))"
        }
        return m
    }

    /// The model with f32 weights, and the GGUF file it came from (nil for a checkpoint directory). With
    /// `headFromAdapter` a value model's head comes from its LoRA adapter, so the base need not hold one.
    private static func loadF32(
        path: String, tokenizer: String?, valueHead: Bool, headFromAdapter: Bool = false
    ) throws -> (InferenceModel, GGUFFile?) {
        let source = try ModelSource(existing: path)
        let model: TransformerModel
        let template: String?
        var gguf: GGUFFile?
        switch source {
        case .directory(let p):
            if valueHead && !headFromAdapter {
                guard try SafeTensorsCollection(directory: p).find("value_head.weight") != nil else {
                    throw ModelError("\(p): no value_head.weight: not a value model")
                }
            }
            model = try source.load(maxTokens: 1, valueHead: valueHead)
            template = try source.chatTemplateSource()
        case .gguf(let p):
            guard !valueHead || headFromAdapter else {
                throw ModelError("\(p): a value model is a checkpoint directory with value_head.weight")
            }
            // Opened once: the weights, the template, the tokenizer and the packed decoding weights all read it.
            let g = try GGUFFile(path: p)
            gguf = g
            model = try g.loadLlamaModel(maxTokens: 1, valueHead: valueHead)
            template = ModelSource.chatTemplateSource(g)
            if tokenizer == nil {
                return (
                    InferenceModel(
                        model: model, tokenizer: try GGUFTokenizer.load(g), chatTemplateSource: template, path: path), g
                )
            }
        case .random: preconditionFailure("ModelSource(existing:) never makes a random source")
        }
        let tok = try source.tokenizer(override: tokenizer)
        guard tok.vocabSize <= model.config.vocabSize else {
            throw ModelError(
                "tokenizer \(tok.path) has \(tok.vocabSize) tokens, more than the model's \(model.config.vocabSize)")
        }
        return (InferenceModel(model: model, tokenizer: tok, chatTemplateSource: template, path: path), gguf)
    }

    /// The tokenizer `load(path:tokenizer:)` would use, without loading the weights: `tokenizer`, else the
    /// directory's tokenizer.json, else (GGUF) the one its metadata describes.
    public static func loadTokenizer(modelPath path: String, tokenizer: String? = nil) throws -> Tokenizer {
        if let tokenizer { return try Tokenizer.load(path: tokenizer) }
        return try ModelSource(existing: path).tokenizer()
    }

    /// The chat template for a command-line choice: chatml, none, or auto (ChatML when the model's
    /// template is ChatML).
    public func chatTemplate(_ choice: String) throws -> ChatTemplate {
        switch choice {
        case "none": return .none
        case "chatml":
            if case .chatML(let s) = ChatTemplate.detect(fromJinja: chatTemplateSource) {
                return .chatML(defaultSystem: s)
            }
            return .chatML(defaultSystem: nil)
        case "auto": return ChatTemplate.detect(fromJinja: chatTemplateSource)
        default: throw ModelError("--chat-template takes chatml, none or auto, not \"\(choice)\"")
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
