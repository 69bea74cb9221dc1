import Foundation

/// How oreo's model families appear in GGUF files: architecture names, metadata keys and tensor names, as
/// llama.cpp's converter writes them and its loader reads them.
extension ModelFamily {
    /// `general.architecture` of this family.
    public var ggufArchitecture: String {
        switch self {
        case .llama: return "llama"
        case .qwen2: return "qwen2"
        case .gpt2: return "gpt2"
        }
    }

    /// Whether llama.cpp's converter permutes this family's q/k rows (pairs adjacent for its "normal" RoPE).
    /// Qwen2 runs llama.cpp's NeoX RoPE, which is HF's rotate_half, so its rows are left alone.
    public var ggufPermutesRotary: Bool { self == .llama }
}

/// Per-frequency divisors llama.cpp applies for Llama 3.1 RoPE scaling (the `rope_freqs.weight` tensor its
/// converter writes), computed as that converter does.
public func llama3RopeFactors(
    headDim: Int, theta: Double, factor: Double, lowFreqFactor: Double,
    highFreqFactor: Double, originalMaxPositions: Int
) -> [Float] {
    let lowWavelen = Double(originalMaxPositions) / lowFreqFactor
    let highWavelen = Double(originalMaxPositions) / highFreqFactor
    return (0..<(headDim / 2)).map { i in
        let freq = Double(Float(1 / pow(theta, Double(2 * i) / Double(headDim))))
        let wavelen = 2 * Double.pi / freq
        if wavelen < highWavelen { return 1 }
        if wavelen > lowWavelen { return Float(factor) }
        let smooth = (Double(originalMaxPositions) / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
        return Float(1 / ((1 - smooth) / factor + smooth))
    }
}

/// The shortest decimal that reads back as the same Float (GGUF stores f32; config.json wants 1e-05, not
/// 9.999999747378752e-06).
func shortestDouble(_ x: Float) -> Double { Double(x.description) ?? Double(x) }

extension ModelConfig {
    /// The metadata llama.cpp needs to run this model (architecture, sizes, heads, RoPE, norm epsilon,
    /// context length), plus `general.name` and `general.file_type`.
    public func ggufMetadata(name: String, fileType: UInt32) -> [(String, GGUFMetadataValue)] {
        let a = family.ggufArchitecture
        var m: [(String, GGUFMetadataValue)] = [
            ("general.architecture", .string(a)), ("general.name", .string(name)),
            ("general.file_type", .uint32(fileType)),
        ]
        if fileType == 7 { m.append(("general.quantization_version", .uint32(2))) }
        func u(_ k: String, _ v: Int) { m.append((a + "." + k, .uint32(UInt32(v)))) }
        u("context_length", maxPositions)
        u("embedding_length", hiddenSize)
        u("feed_forward_length", intermediateSize)
        u("block_count", layers)
        u("attention.head_count", heads)
        if family == .gpt2 {
            m.append((a + ".attention.layer_norm_epsilon", .float32(normEps)))
            return m
        }
        u("attention.head_count_kv", kvHeads)
        m.append((a + ".rope.freq_base", .float32(Float(ropeTheta))))
        m.append((a + ".attention.layer_norm_rms_epsilon", .float32(normEps)))
        u("rope.dimension_count", headDim)
        if headDim * heads != hiddenSize {
            u("attention.key_length", headDim)
            u("attention.value_length", headDim)
        }
        u("vocab_size", vocabSize)
        switch ropeScaling {
        case .none: break
        case .linear(let f):
            m.append((a + ".rope.scaling.type", .string("linear")))
            m.append((a + ".rope.scaling.factor", .float32(Float(f))))
        case let .llama3(f, lo, hi, orig):
            // llama.cpp reads the factors from the rope_freqs tensor; the parameters let a reader rebuild the
            // HF rope_scaling exactly.
            m.append((a + ".rope.scaling.type", .string("llama3")))
            m.append((a + ".rope.scaling.factor", .float32(Float(f))))
            u("rope.scaling.original_context_length", orig)
            m.append(("oreo.rope.scaling.low_freq_factor", .float32(Float(lo))))
            m.append(("oreo.rope.scaling.high_freq_factor", .float32(Float(hi))))
        }
        return m
    }
}

extension GGUFFile {
    /// A string metadata value.
    public func string(_ key: String) -> String? {
        if case .string(let s)? = metadata[key] { return s }
        return nil
    }

    /// The model configuration this file's metadata describes (llama, qwen2 or gpt2 architectures); every value
    /// is checked, and a bad one is named by its metadata key.
    public func modelConfig() throws -> ModelConfig {
        let arch = string("general.architecture") ?? ""
        let family: ModelFamily
        switch arch {
        case "llama": family = .llama
        case "qwen2": family = .qwen2
        case "gpt2": family = .gpt2
        default:
            throw GGUFError.metadata(
                file: path, key: "general.architecture", why: "\"\(arch)\" is not supported (llama, qwen2, gpt2)")
        }
        func key(_ k: String) -> String { arch + "." + k }
        func bad(_ k: String, _ why: String) -> GGUFError { .metadata(file: path, key: k, why: why) }
        /// An integer value, nil when absent; present with another type is an error.
        func int(_ k: String) throws -> Int? {
            guard let v = metadata[k] else { return nil }
            guard let i = v.int else { throw bad(k, "expected an integer, got \(v.summary)") }
            return i
        }
        func need(_ k: String) throws -> Int {
            guard let v = try int(key(k)) else { throw bad(key(k), "missing") }
            return v
        }
        /// A float value (stored as f32, so read back as its shortest decimal), nil when absent.
        func float(_ k: String) throws -> Double? {
            guard let v = metadata[k] else { return nil }
            guard let d = v.double else { throw bad(k, "expected a number, got \(v.summary)") }
            return shortestDouble(Float(d))
        }
        let d = try need("embedding_length"), heads = try need("attention.head_count")
        var vocab = try int(key("vocab_size"))
        if vocab == nil, let e = info("token_embd.weight"), e.ne.count == 2 { vocab = e.ne[1] }
        if vocab == nil, case .array(let toks)? = metadata["tokenizer.ggml.tokens"] { vocab = toks.count }
        guard let vocab else { throw GGUFError.invalid(file: path, why: "cannot determine the vocabulary size") }
        let cfg: ModelConfig
        if family == .gpt2 {
            cfg = ModelConfig(
                family: .gpt2, vocabSize: vocab, hiddenSize: d, layers: try need("block_count"), heads: heads,
                intermediateSize: try need("feed_forward_length"),
                maxPositions: try need("context_length"),
                normEps: try float(key("attention.layer_norm_epsilon")).map { Float($0) } ?? 1e-5)
        } else {
            var scaling = RoPEScaling.none
            let factorKey = key("rope.scaling.factor"), origKey = key("rope.scaling.original_context_length")
            let loKey = "oreo.rope.scaling.low_freq_factor", hiKey = "oreo.rope.scaling.high_freq_factor"
            switch string(key("rope.scaling.type")) {
            case nil, "none"?: break
            case "linear"?:
                guard let f = try float(factorKey) else {
                    throw bad(factorKey, "missing (linear RoPE scaling needs it)")
                }
                scaling = .linear(factor: f)
            case "llama3"?:
                guard let f = try float(factorKey), let orig = try int(origKey), let lo = try float(loKey),
                    let hi = try float(hiKey)
                else {
                    throw bad(
                        key("rope.scaling.type"),
                        "llama3 RoPE scaling without its factor, original context and band parameters")
                }
                scaling = .llama3(factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: orig)
            case let other?:
                throw bad(key("rope.scaling.type"), "\"\(other)\" is not supported (none, linear, llama3)")
            }
            let headDim = try int(key("attention.key_length")) ?? int(key("rope.dimension_count")) ?? d / max(heads, 1)
            cfg = ModelConfig(
                family: family, vocabSize: vocab, hiddenSize: d, layers: try need("block_count"), heads: heads,
                kvHeads: try int(key("attention.head_count_kv")) ?? heads, headDim: headDim,
                intermediateSize: try need("feed_forward_length"),
                maxPositions: try int(key("context_length")) ?? 2048,
                normEps: try float(key("attention.layer_norm_rms_epsilon")).map { Float($0) } ?? 1e-5,
                ropeTheta: try float(key("rope.freq_base")) ?? 10000,
                ropeScaling: scaling,
                tieWordEmbeddings: info("output.weight") == nil,
                qkvBias: info("blk.0.attn_q.bias") != nil, outputBias: info("blk.0.attn_output.bias") != nil,
                mlpBias: info("blk.0.ffn_up.bias") != nil)
        }
        do { try cfg.check() } catch {
            let name: String
            switch error.field {
            case .vocabSize: name = metadata[key("vocab_size")] != nil ? key("vocab_size") : "token_embd.weight"
            case .hiddenSize: name = key("embedding_length")
            case .layers: name = key("block_count")
            case .heads: name = key("attention.head_count")
            case .kvHeads: name = key("attention.head_count_kv")
            case .headDim:
                name =
                    metadata[key("attention.key_length")] != nil
                    ? key("attention.key_length") : key("rope.dimension_count")
            case .intermediateSize: name = key("feed_forward_length")
            case .maxPositions: name = key("context_length")
            case .normEps:
                name = key(family == .gpt2 ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon")
            case .ropeTheta: name = key("rope.freq_base")
            case .ropeScalingFactor: name = key("rope.scaling.factor")
            case .ropeLowFreqFactor: name = "oreo.rope.scaling.low_freq_factor"
            case .ropeHighFreqFactor: name = "oreo.rope.scaling.high_freq_factor"
            case .ropeOriginalMaxPositions: name = key("rope.scaling.original_context_length")
            case .tieWordEmbeddings: name = "output.weight"
            }
            throw bad(name, error.reason)
        }
        if case let .llama3(f, lo, hi, orig) = cfg.ropeScaling {
            let want = llama3RopeFactors(
                headDim: cfg.headDim, theta: cfg.ropeTheta, factor: f, lowFreqFactor: lo,
                highFreqFactor: hi, originalMaxPositions: orig)
            guard info("rope_freqs.weight") != nil else {
                throw GGUFError.invalid(file: path, why: "llama3 RoPE scaling without rope_freqs.weight")
            }
            let got = try floats("rope_freqs.weight")
            guard got.count == want.count, zip(got, want).allSatisfy({ abs($0 - $1) <= 1e-5 * abs($1) }) else {
                throw GGUFError.tensor(
                    file: path, name: "rope_freqs.weight",
                    why: "does not match the llama3 scaling parameters in the metadata")
            }
        } else if info("rope_freqs.weight") != nil {
            throw GGUFError.tensor(
                file: path, name: "rope_freqs.weight",
                why: "per-frequency RoPE factors without oreo's llama3 parameters are not supported")
        }
        return cfg
    }

    /// llama.cpp name of an HF Llama/Qwen2 parameter name, or nil when unknown.
    public static func ggufName(_ hf: String) -> String? { ggufName(hf, family: .llama) }

    /// llama.cpp name of the HF parameter `hf` of a `family` model (GPT-2 names with the `transformer.`
    /// prefix), or nil when the name has no GGUF counterpart.
    public static func ggufName(_ hf: String, family: ModelFamily) -> String? {
        if family == .gpt2 {
            let fixed = [
                "transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
                "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias",
            ]
            if let f = fixed[hf] { return f }
            let parts = hf.split(separator: ".")
            guard parts.count >= 5, parts[0] == "transformer", parts[1] == "h" else { return nil }
            let map = [
                "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
            ]
            let module = parts[3..<(parts.count - 1)].joined(separator: ".")
            guard let g = map[module], parts.last == "weight" || parts.last == "bias" else { return nil }
            return "blk.\(parts[2]).\(g).\(parts.last!)"
        }
        let fixed = [
            "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
            "lm_head.weight": "output.weight",
        ]
        if let f = fixed[hf] { return f }
        let parts = hf.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers" else { return nil }
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        let map = [
            "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
            "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
            "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
            "mlp.down_proj": "ffn_down",
        ]
        guard let g = map[module], parts.last == "weight" || parts.last == "bias" else { return nil }
        return "blk.\(parts[2]).\(g).\(parts.last!)"
    }
}
