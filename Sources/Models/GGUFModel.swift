import Checkpoint
import Train

extension GGUFFile {
    /// Builds a trainable Llama model from a GGUF (kept for callers that expect that family).
    public func loadLlamaModel(maxTokens: Int, valueHead: Bool = false) throws -> TransformerModel {
        try loadModel(maxTokens: maxTokens, valueHead: valueHead)
    }

    /// Builds a trainable model (llama, qwen2 or gpt2 architecture) from this file: weights dequantized to F32,
    /// llama.cpp's q/k row permutation undone where its converter applied it. Every tensor of the file must be
    /// used (a GPT-2 `output.weight` only as an exact copy of the tied embedding).
    public func loadModel(maxTokens: Int, valueHead: Bool = false, activations: ActivationMode = .kept) throws
        -> TransformerModel
    {
        let model = try TransformerModel(
            config: try modelConfig(), maxTokens: maxTokens, valueHead: valueHead, activations: activations)
        _ = try load(into: model, packing: .f32)
        return model
    }

    /// Reads every tensor of `model` (built for this file's architecture) from this file: into its parameters,
    /// or, for the blocks' matrices of a packed layout, as pieces of its packed base (`base`: the file's own
    /// blocks, or the dequantized values rounded to bf16 / Q8_0), read when the pieces are packed.
    func load(into model: TransformerModel, packing base: BaseWeights) throws -> [PackedWeights.Piece] {
        let cfg = model.config
        var used: Set<String> = cfg.ropeScaling.isLlama3 ? ["rope_freqs.weight"] : []
        var pieces: [PackedWeights.Piece] = []
        for s in model.layout.specs where s.offset != model.layout.valueHead {
            guard let g = Self.ggufName(s.name, family: cfg.family), let t = info(g) else {
                throw GGUFError.tensor(
                    file: path, name: s.name,
                    why: "missing (GGUF name \(Self.ggufName(s.name, family: cfg.family) ?? "?"))")
            }
            guard Array(t.ne.reversed()) == s.shape else {
                throw GGUFError.tensor(
                    file: path, name: g, why: "shape \(Array(t.ne.reversed())), model expects \(s.shape)")
            }
            used.insert(g)
            if model.layout.isPacked(s.offset) {
                if let format = base.format {
                    pieces.append(
                        PackedWeights.Piece(spec: s, format: format) { dst in
                            let v = try self.modelFloats(g, s, cfg)
                            try v.withUnsafeBufferPointer {
                                try PackedWeights.pack($0, as: format, name: s.name, into: dst)
                            }
                        })
                } else if let piece = ownBlocks(s, cfg) {
                    pieces.append(piece)
                } else {
                    throw GGUFError.tensor(
                        file: path, name: g,
                        why:
                            "is stored as \(GGMLType(rawValue: t.type).map { "\($0)" } ?? "type \(t.type)"), not in blocks a packed base reads; use --base-weights bf16 or q8_0"
                    )
                }
                continue
            }
            try model.parameters.copyIn(try modelFloats(g, s, cfg), at: s.offset)
        }
        if cfg.family == .gpt2, info("output.weight") != nil {
            guard try floats("output.weight") == floats("token_embd.weight") else {
                throw GGUFError.tensor(
                    file: path, name: "output.weight", why: "differs from token_embd.weight; GPT-2 ties its head")
            }
            used.insert("output.weight")
        }
        if let extra = tensors.first(where: { !used.contains($0.name) }) {
            throw GGUFError.tensor(
                file: path, name: extra.name, why: "unexpected tensor for a \(cfg.family.ggufArchitecture) model")
        }
        return pieces
    }

    /// Tensor `g` dequantized to f32 in the model's layout of `s` (llama.cpp's q/k row permutation undone).
    private func modelFloats(_ g: String, _ s: TensorSpec, _ cfg: ModelConfig) throws -> [Float] {
        let v = try floats(g)
        guard cfg.family.ggufPermutesRotary, let heads = rotaryHeads(s.name, cfg) else { return v }
        return Self.unpermuteRotary(
            v, heads: heads, rowsPerHead: cfg.headDim, cols: s.shape.count == 2 ? s.shape[1] : 1)
    }
}

extension GGUFFile {
    /// The file's own blocks of every linear weight of `model` (built from this file by `loadModel`), rows in
    /// the model's order (llama.cpp's q/k permutation undone row by row), for `IncrementalDecoder` to read
    /// instead of the dequantized f32 weights: same values, 4-8x fewer bytes per token. Tensors stored as F32
    /// (and layers with one) stay f32.
    public func packedWeights(for model: TransformerModel) throws -> PackedWeights {
        let cfg = model.config
        var pieces: [PackedWeights.Piece] = []
        var seen = Set<Int>()
        for (offset, outDim, inDim) in model.linearWeights() {
            for s in model.layout.specs
            where s.offset >= offset && s.offset < offset + outDim * inDim && s.shape.count == 2 {
                guard seen.insert(s.offset).inserted, let piece = ownBlocks(s, cfg) else { continue }
                pieces.append(piece)
            }
        }
        return try PackedWeights(model: model, pieces: pieces)
    }
}

extension GGUFFile {
    /// A piece of packed weights holding tensor `s` as this file stores it (rows in the model's order), or nil
    /// when the file has no such tensor in a packed format (F32, a different shape).
    func ownBlocks(_ s: TensorSpec, _ cfg: ModelConfig) -> PackedWeights.Piece? {
        guard let g = Self.ggufName(s.name, family: cfg.family), let t = info(g),
            let type = GGMLType(rawValue: t.type), let format = PackedFormat(type),
            Array(t.ne.reversed()) == s.shape
        else { return nil }
        let rows = s.shape[0], rowBytes = format.rowBytes(s.shape[1])
        let heads = cfg.family.ggufPermutesRotary ? rotaryHeads(s.name, cfg) : nil
        let hd = cfg.headDim
        return PackedWeights.Piece(spec: s, format: format) { dst in
            try self.withStoredBytes(of: g) { src in
                guard src.count == rows * rowBytes else {
                    throw GGUFError.tensor(
                        file: self.path, name: g, why: "\(src.count) bytes, expected \(rows * rowBytes)")
                }
                for r in 0..<rows {
                    // HF row h*hd + i*hd/2 + j is GGUF row h*hd + 2j + i (see unpermuteRotary)
                    var from = r
                    if heads != nil {
                        let h = r / hd, i = (r % hd) / (hd / 2), j = r % (hd / 2)
                        from = h * hd + 2 * j + i
                    }
                    (dst + r * rowBytes).copyMemory(from: src.baseAddress! + from * rowBytes, byteCount: rowBytes)
                }
            }
        }
    }
}

extension PackedFormat {
    /// The packed format of a ggml tensor type (nil for F32: it stays f32).
    public init?(_ type: GGMLType) {
        switch type {
        case .f32: return nil
        case .f16: self = .f16
        case .q8_0: self = .q8_0
        case .q4_0: self = .q4_0
        case .q4_1: self = .q4_1
        }
    }
}

/// Query or key head count of a q/k projection weight or bias (the rows llama.cpp permutes), else nil.
func rotaryHeads(_ name: String, _ c: ModelConfig) -> Int? {
    if name.hasSuffix("q_proj.weight") || name.hasSuffix("q_proj.bias") { return c.heads }
    if name.hasSuffix("k_proj.weight") || name.hasSuffix("k_proj.bias") { return c.kvHeads }
    return nil
}

extension RoPEScaling {
    /// Llama 3.1 band-wise scaling (stored in GGUF as the rope_freqs tensor).
    public var isLlama3: Bool {
        if case .llama3 = self { return true }
        return false
    }
}
