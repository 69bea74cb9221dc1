import Foundation
import Support

/// Architecture families the trainer implements.
public enum ModelFamily: String, Sendable, Codable {
    /// GPT2LMHeadModel: learned positions, LayerNorm, tanh-GELU MLP, fused Conv1D qkv.
    case gpt2
    /// LlamaForCausalLM: RoPE, RMSNorm, SwiGLU, grouped-query attention.
    case llama
    /// Qwen2ForCausalLM: Llama with q/k/v biases.
    case qwen2
}

/// Errors from reading a model configuration; one line naming the file and the field.
public struct ModelConfigError: Error, CustomStringConvertible {
    /// What went wrong, naming the file or key.
    public let description: String

    /// An error with this message.
    public init(description: String) { self.description = description }
}

/// Hyper-parameters of a decoder-only transformer, read from / written to HF `config.json`.
public struct ModelConfig: Sendable, Equatable {
    /// Architecture family.
    public var family: ModelFamily
    /// Vocabulary size (rows of the embedding).
    public var vocabSize: Int
    /// Model width d.
    public var hiddenSize: Int
    /// Number of transformer blocks.
    public var layers: Int
    /// Query heads.
    public var heads: Int
    /// Key/value heads (== heads without GQA).
    public var kvHeads: Int
    /// Per-head width.
    public var headDim: Int
    /// MLP hidden width.
    public var intermediateSize: Int
    /// Longest supported position (table size).
    public var maxPositions: Int
    /// Norm epsilon.
    public var normEps: Float
    /// RoPE base (Llama/Qwen2).
    public var ropeTheta: Double
    /// RoPE frequency rescaling.
    public var ropeScaling: RoPEScaling
    /// LM head shares the embedding matrix.
    public var tieWordEmbeddings: Bool
    /// Biases on q, k, v projections.
    public var qkvBias: Bool
    /// Bias on the attention output projection.
    public var outputBias: Bool
    /// Biases on the MLP projections.
    public var mlpBias: Bool

    /// A configuration with the family's usual defaults filled in.
    public init(
        family: ModelFamily, vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int? = nil,
        headDim: Int? = nil, intermediateSize: Int? = nil, maxPositions: Int = 1024, normEps: Float? = nil,
        ropeTheta: Double = 10000, ropeScaling: RoPEScaling = .none, tieWordEmbeddings: Bool? = nil,
        qkvBias: Bool? = nil, outputBias: Bool? = nil, mlpBias: Bool? = nil
    ) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.headDim = headDim ?? hiddenSize / max(heads, 1)
        self.intermediateSize = intermediateSize ?? 4 * hiddenSize
        self.maxPositions = maxPositions
        self.normEps = normEps ?? (family == .qwen2 ? 1e-6 : 1e-5)
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings ?? (family == .gpt2)
        let gpt = family == .gpt2
        self.qkvBias = qkvBias ?? (gpt || family == .qwen2)
        self.outputBias = outputBias ?? gpt
        self.mlpBias = mlpBias ?? gpt
    }

    /// The hyper-parameters `validate` checks, so each file format can name them its own way.
    public enum Field: Sendable, CaseIterable {
        case vocabSize, hiddenSize, layers, heads, kvHeads, headDim, intermediateSize, maxPositions, normEps, ropeTheta
        case ropeScalingFactor, ropeLowFreqFactor, ropeHighFreqFactor, ropeOriginalMaxPositions, tieWordEmbeddings

        /// The name of this field in an HF config.json of `family`.
        public func configName(_ family: ModelFamily) -> String {
            let gpt = family == .gpt2
            switch self {
            case .vocabSize: return "vocab_size"
            case .hiddenSize: return gpt ? "n_embd" : "hidden_size"
            case .layers: return gpt ? "n_layer" : "num_hidden_layers"
            case .heads: return gpt ? "n_head" : "num_attention_heads"
            case .kvHeads: return "num_key_value_heads"
            case .headDim: return "head_dim"
            case .intermediateSize: return gpt ? "n_inner" : "intermediate_size"
            case .maxPositions: return gpt ? "n_positions" : "max_position_embeddings"
            case .normEps: return gpt ? "layer_norm_epsilon" : "rms_norm_eps"
            case .ropeTheta: return "rope_theta"
            case .ropeScalingFactor: return "rope_scaling.factor"
            case .ropeLowFreqFactor: return "rope_scaling.low_freq_factor"
            case .ropeHighFreqFactor: return "rope_scaling.high_freq_factor"
            case .ropeOriginalMaxPositions: return "rope_scaling.original_max_position_embeddings"
            case .tieWordEmbeddings: return "tie_word_embeddings"
            }
        }
    }

    /// A value refused by `validate`: which field and why.
    public struct Invalid: Error, Sendable {
        /// The field.
        public let field: Field
        /// What is wrong with it (with the value).
        public let reason: String
    }

    /// Checks the invariants the kernels rely on: sizes positive and consistent, epsilon and RoPE parameters
    /// positive and finite (a NaN here would surface as a non-finite loss or unwritable JSON much later).
    public func check() throws(Invalid) {
        func fail(_ f: Field, _ s: String) -> Invalid { Invalid(field: f, reason: s) }
        for (f, v) in [
            (Field.vocabSize, vocabSize), (.hiddenSize, hiddenSize), (.layers, layers), (.heads, heads),
            (.kvHeads, kvHeads), (.headDim, headDim), (.intermediateSize, intermediateSize),
            (.maxPositions, maxPositions),
        ] {
            if v <= 0 || v > 1 << 24 { throw fail(f, "must be an integer in 1...\(1 << 24), got \(v)") }
        }
        if heads % kvHeads != 0 {
            throw fail(.kvHeads, "\(kvHeads) key/value heads do not divide the \(heads) attention heads")
        }
        if family != .gpt2 && headDim % 2 != 0 { throw fail(.headDim, "must be even for RoPE, got \(headDim)") }
        if family == .gpt2 && heads * headDim != hiddenSize {
            throw fail(.heads, "\(heads) heads do not divide the width \(hiddenSize)")
        }
        if family == .gpt2 && kvHeads != heads { throw fail(.kvHeads, "GPT-2 has no grouped-query attention") }
        if family == .gpt2 && !tieWordEmbeddings { throw fail(.tieWordEmbeddings, "GPT-2 ties lm_head to wte") }
        if !(normEps.isFinite && normEps > 0) {
            throw fail(.normEps, "must be a positive finite number, got \(formatNumber(Double(normEps)))")
        }
        guard family != .gpt2 else { return }
        if !(ropeTheta.isFinite && ropeTheta > 0) {
            throw fail(.ropeTheta, "must be a positive finite number, got \(formatNumber(ropeTheta))")
        }
        func positive(_ f: Field, _ x: Double) throws(Invalid) {
            if !(x.isFinite && x > 0) { throw fail(f, "must be a positive finite number, got \(formatNumber(x))") }
        }
        switch ropeScaling {
        case .none: break
        case .linear(let f): try positive(.ropeScalingFactor, f)
        case let .llama3(f, lo, hi, orig):
            try positive(.ropeScalingFactor, f)
            try positive(.ropeLowFreqFactor, lo)
            try positive(.ropeHighFreqFactor, hi)
            if hi <= lo {
                throw fail(
                    .ropeHighFreqFactor, "must be above low_freq_factor \(formatNumber(lo)), got \(formatNumber(hi))")
            }
            if orig <= 0 || orig > 1 << 24 {
                throw fail(.ropeOriginalMaxPositions, "must be an integer in 1...\(1 << 24), got \(orig)")
            }
        }
    }

    /// `check()` with the fields named as in an HF config.json.
    public func validate() throws {
        do { try check() } catch {
            throw ModelConfigError(
                description: "invalid model config: field \"\(error.field.configName(family))\": \(error.reason)")
        }
    }

    /// Parses an HF `config.json` (GPT-2, Llama or Qwen2): syntax errors give their position, structure and value
    /// errors the field, each naming `source`.
    public static func parse(json data: Data, source: String = "config.json") throws -> ModelConfig {
        let cfg: ModelConfig
        do {
            cfg = try StrictJSON.decode(ModelConfig.self, from: data, file: source)
        } catch let e as JSONSyntaxError {
            throw ModelConfigError(description: e.description)
        } catch let e as JSONFieldError {
            throw ModelConfigError(description: e.description)
        } catch let e as FieldProblem {
            throw ModelConfigError(description: JSONFieldError(file: source, field: e.field, e.reason).description)
        }
        return cfg
    }

    /// Serializes to an HF-compatible `config.json`; `extra` integer keys (for example bos_token_id) are added.
    public func jsonData(extra: [String: Int] = [:]) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(ConfigFile(config: self, extra: extra))
    }
}

/// A field of config.json with a bad value (thrown while decoding, named with the file by `parse`).
struct FieldProblem: Error {
    let field: String
    let reason: String
}

/// A number for messages: integers without a fraction, everything else as Swift prints it (nan, inf).
func formatNumber(_ x: Double) -> String {
    if x.isFinite && x == x.rounded() && abs(x) < 1e15 { return String(Int64(x)) }
    return "\(x)"
}

/// config.json as written: the configuration plus extra integer keys.
private struct ConfigFile: Encodable {
    let config: ModelConfig
    let extra: [String: Int]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func encode(to encoder: any Encoder) throws {
        try config.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        for (k, v) in extra { try c.encode(v, forKey: Key(stringValue: k)) }
    }
}

extension ModelConfig: Codable {
    /// HF config.json names (GPT-2 and Llama/Qwen2 spell the same sizes differently).
    enum CodingKeys: String, CodingKey {
        case modelType = "model_type", architectures, vocabSize = "vocab_size", torchDtype = "torch_dtype"
        // GPT-2
        case nEmbd = "n_embd", nLayer = "n_layer", nHead = "n_head", nInner = "n_inner", nPositions = "n_positions"
        case nCtx = "n_ctx", layerNormEpsilon = "layer_norm_epsilon", activationFunction = "activation_function"
        // Llama / Qwen2
        case hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers", numAttentionHeads =
            "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", intermediateSize = "intermediate_size"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling", ropeParameters = "rope_parameters", hiddenAct = "hidden_act"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias", tieWordEmbeddings = "tie_word_embeddings"
    }

    /// HF `rope_scaling` (transformers < 5) or `rope_parameters` (>= 5, with the theta inside).
    struct RoPEParameters: Codable {
        var ropeType: String?, type: String?, factor: Double?, lowFreqFactor: Double?, highFreqFactor: Double?
        var originalMaxPositionEmbeddings: Int?, ropeTheta: Double?

        enum CodingKeys: String, CodingKey {
            case ropeType = "rope_type", type, factor, lowFreqFactor = "low_freq_factor", highFreqFactor =
                "high_freq_factor"
            case originalMaxPositionEmbeddings = "original_max_position_embeddings", ropeTheta = "rope_theta"
        }
    }

    /// Reads an HF config.json; values are checked here so a bad one is reported with its field's name.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? ""
        let archs = try c.decodeIfPresent([String].self, forKey: .architectures) ?? []
        let family: ModelFamily
        if modelType == "gpt2" || archs.contains("GPT2LMHeadModel") {
            family = .gpt2
        } else if modelType == "qwen2" || archs.contains("Qwen2ForCausalLM") {
            family = .qwen2
        } else if modelType == "llama" || archs.contains("LlamaForCausalLM") {
            family = .llama
        } else {
            throw FieldProblem(
                field: "model_type", reason: "unsupported model type \"\(modelType)\" (gpt2, llama, qwen2)")
        }
        func need(_ k: CodingKeys) throws -> Int {
            guard let v = try c.decodeIfPresent(Int.self, forKey: k) else {
                throw FieldProblem(field: k.rawValue, reason: "missing")
            }
            return v
        }
        /// A positive finite number that stays positive and finite as a Float when `float`.
        func positive(_ k: CodingKeys, _ v: Double?, float: Bool = false) throws -> Double? {
            guard let v else { return nil }
            guard v.isFinite, v > 0, !float || (Float(v).isFinite && Float(v) > 0) else {
                throw FieldProblem(
                    field: k.rawValue, reason: "must be a positive finite number, got \(formatNumber(v))")
            }
            return v
        }
        var cfg: ModelConfig
        if family == .gpt2 {
            let width = try need(.nEmbd), heads = try need(.nHead)
            if let act = try c.decodeIfPresent(String.self, forKey: .activationFunction), act != "gelu_new",
                act != "gelu_pytorch_tanh"
            {
                throw FieldProblem(field: "activation_function", reason: "\"\(act)\" is not supported (gelu_new)")
            }
            let eps = try positive(
                .layerNormEpsilon, c.decodeIfPresent(Double.self, forKey: .layerNormEpsilon), float: true)
            cfg = ModelConfig(
                family: .gpt2, vocabSize: try need(.vocabSize), hiddenSize: width,
                layers: try need(.nLayer), heads: heads,
                intermediateSize: try c.decodeIfPresent(Int.self, forKey: .nInner) ?? 4 * width,
                maxPositions: try need(.nPositions), normEps: Float(eps ?? 1e-5))
        } else {
            if let act = try c.decodeIfPresent(String.self, forKey: .hiddenAct), act != "silu" {
                throw FieldProblem(field: "hidden_act", reason: "\"\(act)\" is not supported (silu)")
            }
            let width = try need(.hiddenSize), heads = try need(.numAttentionHeads)
            let headDim = try c.decodeIfPresent(Int.self, forKey: .headDim)
            if headDim == nil && heads > 0 && width % heads != 0 {
                throw FieldProblem(
                    field: "num_attention_heads",
                    reason: "\(heads) heads do not divide hidden_size \(width) (and no head_dim is given)")
            }
            let params = try c.decodeIfPresent(RoPEParameters.self, forKey: .ropeParameters)
            let scalingKey = try c.decodeIfPresent(RoPEParameters.self, forKey: .ropeScaling)
            var scaling = RoPEScaling.none
            if let rs = scalingKey ?? params {
                let section = scalingKey != nil ? "rope_scaling" : "rope_parameters"
                let type = rs.ropeType ?? rs.type ?? "default"
                switch type {
                case "default": break
                case "linear": scaling = .linear(factor: rs.factor ?? 1)
                case "llama3":
                    scaling = .llama3(
                        factor: rs.factor ?? 1, lowFreqFactor: rs.lowFreqFactor ?? 1,
                        highFreqFactor: rs.highFreqFactor ?? 4,
                        originalMaxPositions: rs.originalMaxPositionEmbeddings ?? 8192)
                default:
                    throw FieldProblem(
                        field: section + ".rope_type", reason: "\"\(type)\" is not supported (default, linear, llama3)")
                }
            }
            let theta = try positive(
                .ropeTheta, c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? params?.ropeTheta)
            let eps = try positive(.rmsNormEps, c.decodeIfPresent(Double.self, forKey: .rmsNormEps), float: true)
            let attnBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias)
            cfg = ModelConfig(
                family: family, vocabSize: try need(.vocabSize), hiddenSize: width,
                layers: try need(.numHiddenLayers), heads: heads,
                kvHeads: try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? heads,
                headDim: headDim ?? (heads > 0 ? width / heads : 0),
                intermediateSize: try need(.intermediateSize),
                maxPositions: try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048,
                normEps: Float(eps ?? (family == .qwen2 ? 1e-6 : 1e-5)),
                ropeTheta: theta ?? 10000, ropeScaling: scaling,
                tieWordEmbeddings: try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false,
                qkvBias: family == .qwen2 ? true : (attnBias ?? false),
                outputBias: family == .qwen2 ? false : (attnBias ?? false),
                mlpBias: try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false)
        }
        do { try cfg.check() } catch { throw FieldProblem(field: error.field.configName(family), reason: error.reason) }
        self = cfg
    }

    /// Writes the HF config.json keys of this family.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode("float32", forKey: .torchDtype)
        switch family {
        case .gpt2:
            try c.encode("gpt2", forKey: .modelType)
            try c.encode(["GPT2LMHeadModel"], forKey: .architectures)
            try c.encode(hiddenSize, forKey: .nEmbd)
            try c.encode(layers, forKey: .nLayer)
            try c.encode(heads, forKey: .nHead)
            try c.encode(maxPositions, forKey: .nPositions)
            try c.encode(maxPositions, forKey: .nCtx)
            try c.encode(intermediateSize, forKey: .nInner)
            try c.encode(shortestDouble(normEps), forKey: .layerNormEpsilon)
            try c.encode("gelu_new", forKey: .activationFunction)
            try c.encode(true, forKey: .tieWordEmbeddings)
        case .llama, .qwen2:
            try c.encode(family == .llama ? "llama" : "qwen2", forKey: .modelType)
            try c.encode([family == .llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"], forKey: .architectures)
            try c.encode(hiddenSize, forKey: .hiddenSize)
            try c.encode(layers, forKey: .numHiddenLayers)
            try c.encode(heads, forKey: .numAttentionHeads)
            try c.encode(kvHeads, forKey: .numKeyValueHeads)
            try c.encode(headDim, forKey: .headDim)
            try c.encode(intermediateSize, forKey: .intermediateSize)
            try c.encode(maxPositions, forKey: .maxPositionEmbeddings)
            try c.encode(shortestDouble(normEps), forKey: .rmsNormEps)
            try c.encode(ropeTheta, forKey: .ropeTheta)
            try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
            try c.encode("silu", forKey: .hiddenAct)
            if family == .llama {
                try c.encode(qkvBias, forKey: .attentionBias)
                try c.encode(mlpBias, forKey: .mlpBias)
            }
            switch ropeScaling {
            case .none: break
            case .linear(let f):
                try c.encode(RoPEParameters(ropeType: "linear", factor: f), forKey: .ropeScaling)
            case let .llama3(f, lo, hi, orig):
                try c.encode(
                    RoPEParameters(
                        ropeType: "llama3", factor: f, lowFreqFactor: lo, highFreqFactor: hi,
                        originalMaxPositionEmbeddings: orig), forKey: .ropeScaling)
            }
        }
    }
}

/// How rotary frequencies are rescaled for long contexts (HF `rope_scaling`).
public enum RoPEScaling: Sendable, Equatable {
    /// Plain `theta^(-2i/hd)` frequencies.
    case none
    /// Positions divided by `factor` (HF "linear").
    case linear(factor: Double)
    /// Llama 3.1 band-wise rescaling (HF "llama3").
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
}
