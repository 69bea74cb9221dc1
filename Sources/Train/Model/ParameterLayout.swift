import Checkpoint

/// One named tensor inside the flat parameter (and gradient) buffer.
public struct TensorSpec: Sendable, Equatable {
    /// Hugging Face name (GPT-2 names carry the `transformer.` prefix).
    public let name: String
    /// Shape as stored here; linear weights are always [out, in].
    public let shape: [Int]
    /// First element in the flat buffer.
    public let offset: Int
    /// Element count.
    public var count: Int { shape.reduce(1, *) }
    /// Stored transposed in HF files (GPT-2 Conv1D weights are [in, out] there).
    public let transposedInFile: Bool
    /// Receives decoupled weight decay (matrices; not norms or biases).
    public var decays: Bool { shape.count >= 2 }
}

/// Offsets of one block's tensors in the flat buffer (-1 when absent).
public struct LayerOffsets: Sendable {
    /// First norm weight / bias.
    public var norm1W = -1, norm1B = -1
    /// Fused q|k|v weight [(h + 2 kvh) * hd, d] and bias.
    public var qkvW = -1, qkvB = -1
    /// Attention output projection.
    public var oW = -1, oB = -1
    /// Second norm.
    public var norm2W = -1, norm2B = -1
    /// MLP input projection: c_fc [F, d] or fused gate|up [2F, d].
    public var upW = -1, upB = -1
    /// MLP output projection [d, F].
    public var downW = -1, downB = -1
}

/// The order and names of every parameter of a model; gradients share it exactly.
///
/// Tensors that one fused matmul reads (q, k, v; gate, up) are laid out adjacently, so the model runs one
/// linear over them while checkpoints still see HF's separate names.
public struct ParameterLayout: Sendable {
    /// All tensors in buffer order.
    public private(set) var specs: [TensorSpec] = []
    /// Index of each name in `specs`.
    public private(set) var index: [String: Int] = [:]
    /// Total float count.
    public private(set) var total = 0
    /// Per-block offsets.
    public private(set) var blocks: [LayerOffsets] = []
    /// Token embedding [V, d].
    public private(set) var embed = 0
    /// Learned positions [P, d] (GPT-2) or -1.
    public private(set) var positions = -1
    /// Final norm weight / bias (-1 when absent).
    public private(set) var finalNormW = 0, finalNormB = -1
    /// LM head weight [V, d] (== embed when tied).
    public private(set) var lmHead = 0
    /// Value head weight [1, d] or -1.
    public private(set) var valueHead = -1
    /// Floats before the blocks' weight matrices in a layout built with `packedBlockMatrices` (they come last,
    /// so a model whose matrices live packed elsewhere allocates only these); `total` otherwise.
    public private(set) var residentTotal = 0
    /// Whether the blocks' weight matrices come after every other tensor (see `residentTotal`).
    public let packedBlockMatrices: Bool
    /// Block matrices waiting for their offsets (packed layouts add them last): layer, field, name, shape, transposed.
    private var pending: [(layer: Int, field: MatrixField?, name: String, shape: [Int], t: Bool)] = []

    /// The `LayerOffsets` field a block matrix's offset goes to (nil for k, v and up: they follow q and gate).
    private enum MatrixField { case qkv, o, up, down }

    private mutating func add(_ name: String, _ shape: [Int], transposed: Bool = false) -> Int {
        let s = TensorSpec(name: name, shape: shape, offset: total, transposedInFile: transposed)
        index[name] = specs.count
        specs.append(s)
        total += s.count
        return s.offset
    }

    /// Adds one of block `layer`'s weight matrices, or defers it to the end of a packed layout (its offset then
    /// reaches `field` of the block later; -1 is returned meanwhile).
    private mutating func matrix(
        _ layer: Int, _ field: MatrixField?, _ name: String, _ shape: [Int],
        transposed: Bool = false
    ) -> Int {
        guard packedBlockMatrices else { return add(name, shape, transposed: transposed) }
        pending.append((layer, field, name, shape, transposed))
        return -1
    }

    /// The spec named `name`, if any.
    public func spec(_ name: String) -> TensorSpec? { index[name].map { specs[$0] } }

    /// Builds the layout for `config`, with a scalar value head when `valueHead`; with `packedBlockMatrices` the
    /// blocks' weight matrices come last (in the same order among themselves).
    public init(config c: ModelConfig, valueHead: Bool, packedBlockMatrices: Bool = false) {
        self.packedBlockMatrices = packedBlockMatrices
        let d = c.hiddenSize, hd = c.headDim, f = c.intermediateSize
        switch c.family {
        case .gpt2:
            embed = add("transformer.wte.weight", [c.vocabSize, d])
            positions = add("transformer.wpe.weight", [c.maxPositions, d])
            for i in 0..<c.layers {
                let p = "transformer.h.\(i)."
                var o = LayerOffsets()
                o.norm1W = add(p + "ln_1.weight", [d])
                o.norm1B = add(p + "ln_1.bias", [d])
                o.qkvW = matrix(i, .qkv, p + "attn.c_attn.weight", [3 * d, d], transposed: true)
                o.qkvB = add(p + "attn.c_attn.bias", [3 * d])
                o.oW = matrix(i, .o, p + "attn.c_proj.weight", [d, d], transposed: true)
                o.oB = add(p + "attn.c_proj.bias", [d])
                o.norm2W = add(p + "ln_2.weight", [d])
                o.norm2B = add(p + "ln_2.bias", [d])
                o.upW = matrix(i, .up, p + "mlp.c_fc.weight", [f, d], transposed: true)
                o.upB = add(p + "mlp.c_fc.bias", [f])
                o.downW = matrix(i, .down, p + "mlp.c_proj.weight", [d, f], transposed: true)
                o.downB = add(p + "mlp.c_proj.bias", [d])
                blocks.append(o)
            }
            finalNormW = add("transformer.ln_f.weight", [d])
            finalNormB = add("transformer.ln_f.bias", [d])
            lmHead = embed
        case .llama, .qwen2:
            embed = add("model.embed_tokens.weight", [c.vocabSize, d])
            for i in 0..<c.layers {
                let p = "model.layers.\(i)."
                var o = LayerOffsets()
                o.norm1W = add(p + "input_layernorm.weight", [d])
                o.qkvW = matrix(i, .qkv, p + "self_attn.q_proj.weight", [c.heads * hd, d])
                _ = matrix(i, nil, p + "self_attn.k_proj.weight", [c.kvHeads * hd, d])
                _ = matrix(i, nil, p + "self_attn.v_proj.weight", [c.kvHeads * hd, d])
                if c.qkvBias {
                    o.qkvB = add(p + "self_attn.q_proj.bias", [c.heads * hd])
                    _ = add(p + "self_attn.k_proj.bias", [c.kvHeads * hd])
                    _ = add(p + "self_attn.v_proj.bias", [c.kvHeads * hd])
                }
                o.oW = matrix(i, .o, p + "self_attn.o_proj.weight", [d, c.heads * hd])
                if c.outputBias { o.oB = add(p + "self_attn.o_proj.bias", [d]) }
                o.norm2W = add(p + "post_attention_layernorm.weight", [d])
                o.upW = matrix(i, .up, p + "mlp.gate_proj.weight", [f, d])
                _ = matrix(i, nil, p + "mlp.up_proj.weight", [f, d])
                if c.mlpBias {
                    o.upB = add(p + "mlp.gate_proj.bias", [f])
                    _ = add(p + "mlp.up_proj.bias", [f])
                }
                o.downW = matrix(i, .down, p + "mlp.down_proj.weight", [d, f])
                if c.mlpBias { o.downB = add(p + "mlp.down_proj.bias", [d]) }
                blocks.append(o)
            }
            finalNormW = add("model.norm.weight", [d])
            lmHead = c.tieWordEmbeddings ? embed : add("lm_head.weight", [c.vocabSize, d])
        }
        if valueHead { self.valueHead = add("value_head.weight", [1, d]) }
        residentTotal = total
        for m in pending {
            let offset = add(m.name, m.shape, transposed: m.t)
            switch m.field {
            case .qkv: blocks[m.layer].qkvW = offset
            case .o: blocks[m.layer].oW = offset
            case .up: blocks[m.layer].upW = offset
            case .down: blocks[m.layer].downW = offset
            case nil: break
            }
        }
        pending = []
    }

    /// Whether the tensor starting at `offset` is one of the blocks' weight matrices of a packed layout (held
    /// outside the model's parameter buffer).
    public func isPacked(_ offset: Int) -> Bool { packedBlockMatrices && offset >= residentTotal }
}
