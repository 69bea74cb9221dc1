import Foundation

/// Architecture families the trainer implements.
public enum ModelFamily: String, Sendable, Codable {
    /// GPT2LMHeadModel: learned positions, LayerNorm, tanh-GELU MLP, fused Conv1D qkv.
    case gpt2
    /// LlamaForCausalLM: RoPE, RMSNorm, SwiGLU, grouped-query attention.
    case llama
    /// Qwen2ForCausalLM: Llama with q/k/v biases.
    case qwen2
}

/// Errors from reading a model configuration.
public struct ModelConfigError: Error, CustomStringConvertible {
    /// What went wrong, naming the file or key.
    public let description: String
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
    public init(family: ModelFamily, vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int? = nil,
                headDim: Int? = nil, intermediateSize: Int? = nil, maxPositions: Int = 1024, normEps: Float? = nil,
                ropeTheta: Double = 10000, ropeScaling: RoPEScaling = .none, tieWordEmbeddings: Bool? = nil,
                qkvBias: Bool? = nil, outputBias: Bool? = nil, mlpBias: Bool? = nil) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.headDim = headDim ?? hiddenSize / heads
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

    /// Checks the invariants the kernels rely on.
    public func validate() throws {
        func fail(_ s: String) -> ModelConfigError { ModelConfigError(description: "invalid model config: \(s)") }
        for (n, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", layers),
                       ("num_attention_heads", heads), ("num_key_value_heads", kvHeads), ("head_dim", headDim),
                       ("intermediate_size", intermediateSize), ("max_position_embeddings", maxPositions)] {
            if v <= 0 || v > 1 << 24 { throw fail("\(n) = \(v) out of range") }
        }
        if heads % kvHeads != 0 { throw fail("num_attention_heads \(heads) not a multiple of kv heads \(kvHeads)") }
        if family != .gpt2 && headDim % 2 != 0 { throw fail("head_dim \(headDim) must be even for RoPE") }
        if family == .gpt2 && (heads * headDim != hiddenSize || kvHeads != heads) {
            throw fail("GPT-2 needs n_head * head_dim == n_embd and no GQA")
        }
        if family == .gpt2 && !tieWordEmbeddings { throw fail("GPT-2 ties lm_head to wte") }
    }

    /// Parses an HF `config.json` (GPT-2, Llama or Qwen2).
    public static func parse(json data: Data, source: String = "config.json") throws -> ModelConfig {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ModelConfigError(description: "\(source): not a JSON object")
        }
        func int(_ k: String) -> Int? { (obj[k] as? NSNumber)?.intValue }
        func dbl(_ k: String) -> Double? { (obj[k] as? NSNumber)?.doubleValue }
        func bool(_ k: String) -> Bool? { (obj[k] as? NSNumber)?.boolValue }
        func need(_ k: String) throws -> Int {
            guard let v = int(k) else { throw ModelConfigError(description: "\(source): missing integer \"\(k)\"") }
            return v
        }
        let modelType = (obj["model_type"] as? String) ?? ""
        let archs = (obj["architectures"] as? [String]) ?? []
        let family: ModelFamily
        if modelType == "gpt2" || archs.contains("GPT2LMHeadModel") { family = .gpt2 }
        else if modelType == "qwen2" || archs.contains("Qwen2ForCausalLM") { family = .qwen2 }
        else if modelType == "llama" || archs.contains("LlamaForCausalLM") { family = .llama }
        else { throw ModelConfigError(description: "\(source): unsupported model_type \"\(modelType)\"") }
        var cfg: ModelConfig
        if family == .gpt2 {
            let c = try need("n_embd")
            if let act = obj["activation_function"] as? String, act != "gelu_new", act != "gelu_pytorch_tanh" {
                throw ModelConfigError(description: "\(source): activation_function \"\(act)\" unsupported (need gelu_new)")
            }
            cfg = ModelConfig(family: .gpt2, vocabSize: try need("vocab_size"), hiddenSize: c,
                              layers: try need("n_layer"), heads: try need("n_head"),
                              intermediateSize: int("n_inner") ?? 4 * c, maxPositions: try need("n_positions"),
                              normEps: Float(dbl("layer_norm_epsilon") ?? 1e-5))
        } else {
            if let act = obj["hidden_act"] as? String, act != "silu" {
                throw ModelConfigError(description: "\(source): hidden_act \"\(act)\" unsupported (need silu)")
            }
            let d = try need("hidden_size"), h = try need("num_attention_heads")
            var scaling = RoPEScaling.none
            // transformers >= 5 writes `rope_parameters` (theta inside); older files `rope_theta` + `rope_scaling`
            let ropeParams = obj["rope_parameters"] as? [String: Any]
            let theta = dbl("rope_theta") ?? (ropeParams?["rope_theta"] as? NSNumber)?.doubleValue ?? 10000
            if let rs = (obj["rope_scaling"] as? [String: Any]) ?? ropeParams {
                let type = (rs["rope_type"] as? String) ?? (rs["type"] as? String) ?? "default"
                let factor = (rs["factor"] as? NSNumber)?.doubleValue ?? 1
                switch type {
                case "default": break
                case "linear": scaling = .linear(factor: factor)
                case "llama3":
                    scaling = .llama3(factor: factor,
                                      lowFreqFactor: (rs["low_freq_factor"] as? NSNumber)?.doubleValue ?? 1,
                                      highFreqFactor: (rs["high_freq_factor"] as? NSNumber)?.doubleValue ?? 4,
                                      originalMaxPositions: (rs["original_max_position_embeddings"] as? NSNumber)?.intValue ?? 8192)
                default: throw ModelConfigError(description: "\(source): rope_scaling type \"\(type)\" unsupported")
                }
            }
            let attnBias = bool("attention_bias")
            cfg = ModelConfig(family: family, vocabSize: try need("vocab_size"), hiddenSize: d,
                              layers: try need("num_hidden_layers"), heads: h,
                              kvHeads: int("num_key_value_heads") ?? h, headDim: int("head_dim") ?? d / h,
                              intermediateSize: try need("intermediate_size"),
                              maxPositions: int("max_position_embeddings") ?? 2048,
                              normEps: Float(dbl("rms_norm_eps") ?? (family == .qwen2 ? 1e-6 : 1e-5)),
                              ropeTheta: theta, ropeScaling: scaling,
                              tieWordEmbeddings: bool("tie_word_embeddings") ?? false,
                              qkvBias: family == .qwen2 ? true : (attnBias ?? false),
                              outputBias: family == .qwen2 ? false : (attnBias ?? false),
                              mlpBias: bool("mlp_bias") ?? false)
        }
        try cfg.validate()
        return cfg
    }

    /// Serializes to an HF-compatible `config.json`; `extra` keys (for example bos_token_id) are added as given.
    public func jsonData(extra: [String: Any] = [:]) throws -> Data {
        var o: [String: Any] = ["vocab_size": vocabSize, "torch_dtype": "float32"]
        o.merge(extra) { $1 }
        switch family {
        case .gpt2:
            o.merge(["model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": hiddenSize,
                     "n_layer": layers, "n_head": heads, "n_positions": maxPositions, "n_ctx": maxPositions,
                     "n_inner": intermediateSize, "layer_norm_epsilon": shortestDouble(normEps),
                     "activation_function": "gelu_new", "tie_word_embeddings": true]) { $1 }
        case .llama, .qwen2:
            o.merge(["model_type": family == .llama ? "llama" : "qwen2",
                     "architectures": [family == .llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"],
                     "hidden_size": hiddenSize, "num_hidden_layers": layers, "num_attention_heads": heads,
                     "num_key_value_heads": kvHeads, "head_dim": headDim, "intermediate_size": intermediateSize,
                     "max_position_embeddings": maxPositions, "rms_norm_eps": shortestDouble(normEps),
                     "rope_theta": ropeTheta, "tie_word_embeddings": tieWordEmbeddings, "hidden_act": "silu"]) { $1 }
            if family == .llama { o["attention_bias"] = qkvBias; o["mlp_bias"] = mlpBias }
            switch ropeScaling {
            case .none: break
            case .linear(let f): o["rope_scaling"] = ["rope_type": "linear", "factor": f]
            case let .llama3(f, lo, hi, orig):
                o["rope_scaling"] = ["rope_type": "llama3", "factor": f, "low_freq_factor": lo,
                                     "high_freq_factor": hi, "original_max_position_embeddings": orig]
            }
        }
        return try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])
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
