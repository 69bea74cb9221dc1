import Checkpoint

/// What a model keeps of its forward's activations for the backward.
public enum ActivationMode: Sendable {
    /// Every block's activations (the fastest backward).
    case kept
    /// Each block's input only; the backward recomputes the block's other activations (activation checkpointing).
    case recomputed
    /// Nothing: a model that never runs a backward (a frozen reference, a scorer).
    case forwardOnly
}

/// Where every activation of a `TransformerModel` lives in its one activation buffer: float offsets, fixed at
/// init for batches of up to N = `maxTokens` positions (like llm.c's `ActivationTensors`, as offsets into one
/// allocation instead of pointers). Shapes use d = hidden size, qkvW = (heads + 2 kvHeads) headDim,
/// attW = heads headDim, upW = intermediate size (GPT-2) or twice it (gate | up, Llama / Qwen2), ffn =
/// intermediate size. Rows are positions of the packed batch; "gathered" rows are the target positions only.
struct ActivationLayout {
    /// One transformer block's forward activations (kept for its backward).
    struct Block {
        /// Residual stream entering the block [N, d].
        var resIn = 0
        /// Residual stream after attention [N, d].
        var mid = 0
        /// First norm's output [N, d], its mean [N] (LayerNorm only) and reciprocal std [N].
        var n1 = 0, n1Mean = 0, n1Rstd = 0
        /// Fused q | k | v projections, RoPE applied in place [N, qkvW].
        var qkv = 0
        /// Attention output before the output projection [N, attW].
        var att = 0
        /// Softmax log-sum-exp per head and row [heads, N], for the attention backward.
        var lse = 0
        /// Second norm's output [N, d], mean [N] and reciprocal std [N].
        var n2 = 0, n2Mean = 0, n2Rstd = 0
        /// MLP input projection(s) [N, upW].
        var up = 0
        /// MLP activation (GELU, or SiLU(gate) * up) [N, ffn].
        var act = 0
    }

    /// Per-block activations, one per layer (under `recompute` all but `resIn` shared by every block).
    var blocks: [Block] = []
    /// Whether blocks share their activations (recomputed in the backward), keeping only their inputs.
    let recompute: Bool
    /// A model that never runs a backward: every block shares one set of activations, its input included, and
    /// there is no backward scratch.
    let forwardOnly: Bool
    /// Residual stream after the last block [N, d].
    var resFinal = 0
    /// Final norm's output [N, d] (the hidden states heads read), its mean [N] and reciprocal std [N].
    var nf = 0, nfMean = 0, nfRstd = 0
    /// Final hidden states of the target rows, gathered contiguously for the LM head [N, d].
    var gathered = 0
    /// Per target row: log-prob of the target [N], log-sum-exp [N], d loss / d log-prob [N], KL to the reference
    /// [N] and d loss / d KL [N].
    var logpG = 0, lseG = 0, dlogpG = 0, klG = 0, dklG = 0
    /// Backward scratch, reused by every block: d residual [N, d], d norm output [N, d], d qkv [N, qkvW],
    /// d attention output [N, attW], d up [N, upW], d activation [N, ffn], d final norm [N, d], d gathered [N, d].
    var dRes = 0, dNorm = 0, dQKV = 0, dAtt = 0, dUp = 0, dAct = 0, dNF = 0, dGathered = 0
    /// Attention score scratch: two slots of `attSlotFloats` = [maxSeq, maxSeq] per compute thread.
    var attScratch = 0, attSlotFloats = 0
    /// LM head scratch (logit chunks, with the reference's) [`lmHeadScratchCount`].
    var headScratch = 0
    /// Floats of the model's own activation buffer.
    var total = 0
    /// Floats of the workspace: what no pass needs after it ends (backward scratch, LM head and attention scratch,
    /// and under `recompute` the shared block), which models that run one after another may share. Its offsets
    /// count from the workspace's start until `rebaseWorkspace` makes them count from the activation buffer's.
    var workspaceTotal = 0

    /// The layout for `config` with `maxTokens` positions, sequences of up to `maxSeq`, attention scratch for
    /// `threads` compute threads and an LM head working in chunks of `headChunkRows` rows; with `recompute`, one
    /// block's activations serve every block.
    /// `forwardOnly` lays out a model that never runs a backward.
    init(
        config: ModelConfig, maxTokens: Int, maxSeq: Int, threads: Int, headChunkRows: Int, recompute: Bool,
        forwardOnly: Bool = false
    ) {
        self.recompute = recompute || forwardOnly
        self.forwardOnly = forwardOnly
        let N = maxTokens, d = config.hiddenSize
        var total = 0, workspace = 0
        func take(_ count: Int, workspace transient: Bool = false) -> Int {
            if transient {
                defer { workspace += count }
                return workspace
            }
            defer { total += count }
            return total
        }
        // under recompute one block's activations serve every block: they live in the workspace
        let shared = recompute || forwardOnly
        let qkvW = (config.heads + 2 * config.kvHeads) * config.headDim
        let attW = config.heads * config.headDim
        let upW = config.family == .gpt2 ? config.intermediateSize : 2 * config.intermediateSize
        let ffn = config.intermediateSize
        for l in 0..<config.layers {
            if forwardOnly, l > 0 {
                // a block's input is dead once its attention residual is formed: the next input may overwrite it
                blocks.append(blocks[0])
                continue
            }
            if recompute, l > 0 {
                var b = blocks[0]
                b.resIn = take(N * d)
                blocks.append(b)
                continue
            }
            var b = Block()
            b.resIn = take(N * d, workspace: forwardOnly)
            b.mid = take(N * d, workspace: shared)
            b.n1 = take(N * d, workspace: shared)
            b.n1Mean = take(N, workspace: shared)
            b.n1Rstd = take(N, workspace: shared)
            b.qkv = take(N * qkvW, workspace: shared)
            b.att = take(N * attW, workspace: shared)
            b.lse = take(config.heads * N, workspace: shared)
            b.n2 = take(N * d, workspace: shared)
            b.n2Mean = take(N, workspace: shared)
            b.n2Rstd = take(N, workspace: shared)
            b.up = take(N * upW, workspace: shared)
            b.act = take(N * ffn, workspace: shared)
            blocks.append(b)
        }
        resFinal = take(N * d)
        nf = take(N * d)
        nfMean = take(N)
        nfRstd = take(N)
        gathered = take(N * d)
        logpG = take(N)
        lseG = take(N)
        dlogpG = take(N)
        klG = take(N)
        dklG = take(N)
        let back = forwardOnly ? 0 : 1
        dRes = take(back * N * d, workspace: true)
        dNorm = take(back * N * d, workspace: true)
        dQKV = take(back * N * qkvW, workspace: true)
        dAtt = take(back * N * attW, workspace: true)
        dUp = take(back * N * upW, workspace: true)
        dAct = take(back * N * ffn, workspace: true)
        dNF = take(back * N * d, workspace: true)
        dGathered = take(back * N * d, workspace: true)
        // one pair of [maxSeq, maxSeq] score buffers per compute thread (attention runs heads in parallel)
        attSlotFloats = maxSeq * maxSeq * max(1, threads)
        attScratch = take(2 * attSlotFloats, workspace: true)
        headScratch = take(
            lmHeadScratchCount(vocab: config.vocabSize, chunkRows: headChunkRows, withReference: true), workspace: true)
        self.total = total
        workspaceTotal = workspace
    }

    /// Makes the workspace's offsets count from the activation buffer's start, the workspace starting `delta`
    /// floats after it (negative: before), so every activation is the buffer's pointer plus an offset.
    mutating func rebaseWorkspace(by delta: Int) {
        let shared = recompute
        for l in blocks.indices {
            if forwardOnly { blocks[l].resIn += delta }
            guard shared else { continue }
            blocks[l].mid += delta
            blocks[l].n1 += delta
            blocks[l].n1Mean += delta
            blocks[l].n1Rstd += delta
            blocks[l].qkv += delta
            blocks[l].att += delta
            blocks[l].lse += delta
            blocks[l].n2 += delta
            blocks[l].n2Mean += delta
            blocks[l].n2Rstd += delta
            blocks[l].up += delta
            blocks[l].act += delta
        }
        dRes += delta
        dNorm += delta
        dQKV += delta
        dAtt += delta
        dUp += delta
        dAct += delta
        dNF += delta
        dGathered += delta
        attScratch += delta
        headScratch += delta
    }
}
