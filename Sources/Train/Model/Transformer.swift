import Checkpoint
import Foundation
import Support

/// A decoder-only transformer (GPT-2, Llama, Qwen2) with fused, chunked log-prob head and optional scalar
/// value head, training on packed batches.
///
/// Parameters and gradients are one flat buffer each (same layout); all activations live in one buffer sized
/// for `maxTokens` positions, allocated here once, so a training step allocates nothing.
public final class TransformerModel {
    /// Architecture.
    public let config: ModelConfig
    /// Names and offsets of every tensor (shared by parameters and gradients).
    public let layout: ParameterLayout
    /// All parameters.
    public let parameters: FlatBuffer
    /// All gradients (accumulated by every backward until `zeroGradients`).
    public private(set) var gradients: FlatBuffer
    /// Most positions one batch may hold.
    public let maxTokens: Int
    /// Rows of logits the LM head materializes at once.
    public let headChunkRows: Int
    /// Packed linear weights that decoders of this model read by default (a GGUF's own blocks, or a rounded
    /// copy; see `PackedWeights`). Set by inference loaders on models that are not trained afterwards: a
    /// training step does not update them.
    public var decodingWeights: PackedWeights?
    /// Whole-batch softmax kept from forward to backward (nil when over the memory limit): [maxTokens, vocab],
    /// a per-row scale [maxTokens] and the backward's scaled hidden rows [maxTokens, d].
    /// Allocated by the first forward that uses it (a forward against a KL reference never does).
    private var logitCache: FlatBuffer?
    /// Floats of the logit cache when it fits `logitCacheBytes`, else 0.
    private let logitCacheFloats: Int
    private var logitCacheValid = false

    /// All activations, one allocation; `at` says where each tensor starts (the workspace's too, as offsets from
    /// this buffer's start).
    private let acts: FlatBuffer
    private let at: ActivationLayout
    /// Scratch no pass needs after it ends, possibly shared with models that run one after another.
    private let workspace: ModelWorkspace
    private let maxSeq: Int
    private let ints: UnsafeMutablePointer<Int32>
    let rope: RoPETable?
    private var n = 0, seqCount = 0, targetRows = 0
    private enum Pass { case none, logProbs, values }
    private var lastPass = Pass.none
    private weak var klReference: TransformerModel?

    private var tokensP: UnsafeMutablePointer<Int32> { ints }
    private var positionsP: UnsafeMutablePointer<Int32> { ints + maxTokens }
    private var seqStartsP: UnsafeMutablePointer<Int32> { ints + 2 * maxTokens }
    private var targetsP: UnsafeMutablePointer<Int32> { ints + 3 * maxTokens + 1 }
    private var rowIndexP: UnsafeMutablePointer<Int32> { ints + 4 * maxTokens + 1 }

    /// The frozen base's block matrices kept packed (bf16, Q8_0, a GGUF's own blocks; `setBaseWeights`) when the
    /// layout is `packedBlockMatrices`: the parameter buffer then holds only the other tensors, and the linear
    /// layers dequantize a chunk of rows at a time into `packedScratch` for their products.
    public private(set) var baseWeights: PackedWeights?
    private var packedScratch: PackedGEMMScratch?

    /// LoRA adapters every linear layer's forward and backward adds (`attach`).
    public private(set) var adapters: LoRAAdapters?
    /// Whether the backward computes the linear layers' weight and bias gradients (false: a frozen base under
    /// LoRA adapters; dx still flows).
    public var trainsBase = true

    /// The linear layers' number format (`setPrecision`).
    public private(set) var precision = Precision.fp32
    /// bf16: the parameters rounded [layout.total] (redone when `parameters.version` moves past `lowVersion`) and
    /// scratch for a layer's rounded inputs [maxTokens * widest in + out].
    private var lowWeights: UnsafeMutablePointer<BF16Bits>?
    private var lowScratch: UnsafeMutablePointer<BF16Bits>?
    private var lowScratchCount = 0
    /// Rows the scratch holds at least (decoders reserve their pass size, which can exceed `maxTokens`).
    private var lowScratchRows = 0
    private var lowVersion = UInt64.max
    /// bf16 with a logit cache: the forward's e rounded [maxTokens, vocab], for the LM head's backward.
    private var lowLogits: UnsafeMutablePointer<BF16Bits>?

    private var qkvWidth: Int { (config.heads + 2 * config.kvHeads) * config.headDim }
    private var attWidth: Int { config.heads * config.headDim }
    private var upWidth: Int { config.family == .gpt2 ? config.intermediateSize : 2 * config.intermediateSize }

    /// Allocates parameters (zero), gradients and activations for batches of up to `maxTokens` positions.
    /// `headChunkRows` defaults to ~16M logits per chunk: small chunks make the LM head's dW update re-read
    /// the whole [vocab, d] gradient once per chunk (measured: the dominant cost at 64 rows for GPT-2).
    /// When [maxTokens, vocab] floats fit in `logitCacheBytes`, the forward keeps the softmax for the backward,
    /// which then skips recomputing the logits (a third of the LM head's matmul work); 0 disables it.
    /// With `sharing`, the model reads that model's parameters (and packed base) as its own, left as they are: a
    /// frozen reference over a LoRA policy's base costs no weight memory; without `gradients` it holds no gradient
    /// buffer and refuses a backward. With `.recomputed` activations only each block's input is kept from the
    /// forward, the block's other activations recomputed in the backward (one buffer serves every block); a
    /// `.forwardOnly` model (a frozen reference) keeps one block's activations and refuses a backward. With
    /// `workspace`, the model's scratch (backward buffers, LM head and attention scratch, the recomputed block) is
    /// that model's: models whose passes never interleave (reference, policy, value of one step) share it.
    /// `packedBase` lays the blocks' matrices out for `setBaseWeights` (a frozen base: no base gradients).
    public init(
        config: ModelConfig, maxTokens: Int, valueHead: Bool = false, headChunkRows: Int? = nil,
        logitCacheBytes: Int = 1 << 30, packedBase: Bool = false, sharing other: TransformerModel? = nil,
        gradients withGradients: Bool = true, activations: ActivationMode = .kept,
        workspace workspaceOwner: TransformerModel? = nil
    ) throws {
        try config.validate()
        guard maxTokens > 0 else { throw TrainError.shape("maxTokens must be positive") }
        self.config = config
        self.maxTokens = maxTokens
        self.headChunkRows = max(
            1, headChunkRows ?? min(maxTokens, max(16, min(512, (1 << 24) / max(1, config.vocabSize)) / 16 * 16)))
        let packed = packedBase || other?.layout.packedBlockMatrices == true
        layout = ParameterLayout(config: config, valueHead: valueHead, packedBlockMatrices: packed)
        if let other {
            guard other.config == config, other.parameters.count == layout.residentTotal else {
                throw TrainError.shape(
                    "shared parameters hold \(other.parameters.count) floats of a \(other.config.family.rawValue) model, this model needs \(layout.residentTotal)"
                )
            }
        }
        parameters = other?.parameters ?? FlatBuffer(count: layout.residentTotal)
        gradients = FlatBuffer(count: withGradients && !packed ? layout.total : 0)
        trainsBase = !packed
        maxSeq = min(maxTokens, config.maxPositions)
        let N = maxTokens, d = config.hiddenSize
        var at = ActivationLayout(
            config: config, maxTokens: N, maxSeq: maxSeq, threads: ComputePool.shared.threads,
            headChunkRows: self.headChunkRows, recompute: activations == .recomputed,
            forwardOnly: activations == .forwardOnly)
        acts = FlatBuffer(count: at.total)
        if let shared = workspaceOwner?.workspace, shared.buffer.count >= at.workspaceTotal {
            shared.users += 1
            workspace = shared
        } else {
            workspace = ModelWorkspace(count: at.workspaceTotal)
        }
        at.rebaseWorkspace(by: acts.pointer.distance(to: workspace.buffer.pointer))
        self.at = at
        let cacheFloats = maxTokens * (config.vocabSize + 1 + d)
        logitCacheFloats = cacheFloats * 4 <= logitCacheBytes ? cacheFloats : 0
        ints = .allocate(capacity: 5 * N + 1)
        ints.initialize(repeating: 0, count: 5 * N + 1)
        rope =
            config.family == .gpt2
            ? nil
            : RoPETable(
                headDim: config.headDim, maxPositions: config.maxPositions, theta: config.ropeTheta,
                scaling: config.ropeScaling)
        if other == nil { initializeNorms() }
        if let base = other?.baseWeights { try setBaseWeights(base) }
    }

    /// Gives a `packedBase` model its blocks' matrices (every one must be packed; made by `PackedWeights` for this
    /// layout); decoders read them too unless given other weights. Wide passes dequantize about `chunkFloats`
    /// weights at a time.
    public func setBaseWeights(_ weights: PackedWeights, chunkFloats: Int = PackedGEMMScratch.defaultChunkFloats)
        throws
    {
        guard layout.packedBlockMatrices, weights.parameterCount == layout.total else {
            throw TrainError.shape("packed base weights need a model built with packedBase and the same layout")
        }
        let matrices = linearWeights().filter { layout.isPacked($0.offset) }
        if let missing = matrices.first(where: { weights.matrix(at: $0.offset) == nil }),
            let name = layout.specs.first(where: { $0.offset == missing.offset })?.name
        {
            throw TrainError.shape("\(name) is not among the packed base weights (\(weights.summary))")
        }
        baseWeights = weights
        packedScratch = PackedGEMMScratch(matrices: matrices.map { ($0.outDim, $0.inDim) }, chunkFloats: chunkFloats)
        if decodingWeights == nil { decodingWeights = weights }
    }

    deinit {
        ints.deallocate()
        lowWeights?.deallocate()
        lowScratch?.deallocate()
        lowLogits?.deallocate()
    }

    /// Runs the linear layers' products in `precision` from now on; bf16 allocates its copies of the weights and
    /// activations here, once. Throws when this CPU has no native bf16.
    public func setPrecision(_ precision: Precision) throws {
        try precision.checkSupported()
        self.precision = precision
        guard precision == .bf16, lowWeights == nil else { return }
        lowWeights = .allocate(capacity: max(1, parameters.count))
        reserveLowScratch(rows: max(maxTokens, lowScratchRows))
        if logitCache != nil { lowLogits = .allocate(capacity: maxTokens * config.vocabSize) }  // else with the cache
        lowVersion = .max
    }

    /// The workspace's identity and size (models sharing one report the same).
    public var workspaceBytes: (id: ObjectIdentifier, bytes: Int) {
        (ObjectIdentifier(workspace), 4 * workspace.buffer.count)
    }

    /// Bytes this model holds beyond its parameters (its workspace aside: `workspaceBytes`): gradients, and
    /// activations with every scratch (the logit cache as planned: the first forward that uses it allocates it;
    /// bf16 copies; adapters' buffers counted separately by `LoRAAdapters.bytes`).
    public var bufferBytes: (gradients: Int, activations: Int) {
        let low =
            (lowWeights == nil ? 0 : parameters.count) + lowScratchCount
            + (precision == .bf16 && logitCacheFloats > 0 ? maxTokens * config.vocabSize : 0)
        return (
            4 * gradients.count, 4 * (acts.count + logitCacheFloats) + 2 * low + (packedScratch?.bytes ?? 0)
        )
    }

    /// Frees the gradient buffer of a frozen base (LoRA: every gradient then goes to the adapters); a backward
    /// needing a base gradient is refused from then on.
    public func dropBaseGradients() {
        trainsBase = false
        gradients = FlatBuffer(count: 0)
    }

    /// Adds `adapters` (made for this model) to every linear layer they target; nil removes them.
    public func attach(_ adapters: LoRAAdapters?) throws {
        if let adapters {
            guard adapters.modelParameters == layout.total else {
                throw TrainError.shape(
                    "LoRA adapters made for a model of \(adapters.modelParameters) parameters, not \(layout.total)")
            }
            adapters.reserveRows(lowScratchRows)
        }
        self.adapters = adapters
    }

    /// Makes a bf16 model's rounding scratch (and the adapters' scratch) hold passes of `rows` rows (a decoder's
    /// pass size; once, at its creation). Remembered for a later `setPrecision(.bf16)` or `attach`.
    func reserveLowScratch(rows: Int) {
        lowScratchRows = max(lowScratchRows, rows)
        adapters?.reserveRows(rows)
        guard lowWeights != nil else { return }
        let d = config.hiddenSize
        let widest = max(d + qkvWidth, attWidth + d, d + upWidth, config.intermediateSize + d)
        guard lowScratchRows * widest > lowScratchCount else { return }
        lowScratch?.deallocate()
        lowScratchCount = lowScratchRows * widest
        lowScratch = .allocate(capacity: max(1, lowScratchCount))
    }

    /// One optimizer update of the parameters from the gradients; a bf16 model's rounded weights are written in
    /// the same pass (when they were current before it), so the next forward need not round them again.
    public func update(_ optimizer: AdamW, lr: Float, gradientScale: Float = 1) {
        let keep = precision == .bf16 && lowWeights != nil && lowVersion == parameters.version
        optimizer.update(
            parameters: parameters, gradients: gradients, lr: lr, gradientScale: gradientScale,
            rounded: keep ? lowWeights : nil)
        if keep { lowVersion = parameters.version }
    }

    /// The logit cache, allocated on first use (nil when it does not fit its limit).
    private func currentLogitCache() -> FlatBuffer? {
        guard logitCache == nil, logitCacheFloats > 0 else { return logitCache }
        logitCache = FlatBuffer(count: logitCacheFloats)
        if precision == .bf16 { lowLogits = .allocate(capacity: maxTokens * config.vocabSize) }
        return logitCache
    }

    /// The LM head's bf16 operands (nil in fp32 or without a logit cache: the chunked head stays f32).
    private func bf16Head() -> BF16Head? {
        guard let logits = lowLogits, let scratch = lowScratch, let weights = roundedWeights() else { return nil }
        return BF16Head(weight: weights + layout.lmHead, scratch: scratch, cache: logits)
    }

    /// The bf16 operands of the linear layer whose weight starts at `w` (nil in fp32, or for a pass wider than the
    /// scratch: a forward rounds x, a backward dy and x); the rounded weights are brought up to date first.
    private func bf16Operands(_ w: Int, rows: Int, inDim: Int, outDim: Int, backward: Bool) -> BF16Linear? {
        guard let weights = roundedWeights(), let scratch = lowScratch,
            rows * (backward ? inDim + outDim : inDim) <= lowScratchCount
        else { return nil }
        return BF16Linear(weight: weights + w, scratch: scratch, secondOffset: rows * outDim)
    }

    /// In bf16, room for `count` rounded activations (a packed base's x or dy); nil in fp32 or when too small.
    private func bf16ActivationScratch(_ count: Int) -> UnsafeMutablePointer<BF16Bits>? {
        guard precision == .bf16, let scratch = lowScratch, count <= lowScratchCount else { return nil }
        return scratch
    }

    /// In bf16, the parameters rounded, brought up to date first; nil in fp32.
    private func roundedWeights() -> UnsafeMutablePointer<BF16Bits>? {
        guard precision == .bf16, let weights = lowWeights else { return nil }
        if lowVersion != parameters.version {
            roundToBF16(parameters.pointer, weights, parameters.count)
            lowVersion = parameters.version
        }
        return weights
    }

    private func initializeNorms() {
        let p = parameters.pointer, d = config.hiddenSize
        for b in layout.blocks {
            (p + b.norm1W).update(repeating: 1, count: d)
            (p + b.norm2W).update(repeating: 1, count: d)
        }
        (p + layout.finalNormW).update(repeating: 1, count: d)
    }

    /// GPT-2-style seeded initialization for training from scratch: N(0, 0.02) matrices, output projections
    /// scaled by 1/sqrt(2 layers), zero biases, unit norms, zero value head (so V = 0 at step 0).
    public func initializeRandomly(seed: UInt64, std: Double = 0.02) {
        var rng = SplitMix64(seed: seed)
        let p = parameters.pointer
        parameters.zero()
        for s in layout.specs where s.shape.count >= 2 && s.offset != layout.valueHead && !layout.isPacked(s.offset) {
            let sd = initialStd(of: s, std: std)
            for i in 0..<s.count { p[s.offset + i] = Float(rng.nextGaussian() * sd) }
        }
        initializeNorms()
    }

    /// The standard deviation a fresh matrix `spec` is drawn with: `std`, scaled by 1 / sqrt(2 layers) for the
    /// blocks' output projections (attention out, MLP down), which add into the residual stream.
    public func initialStd(of spec: TensorSpec, std: Double = 0.02) -> Double {
        let residual = layout.blocks.contains { $0.oW == spec.offset || $0.downW == spec.offset }
        return residual ? std / (2 * Double(config.layers)).squareRoot() : std
    }

    /// Sets all gradients to zero (start of an accumulation window).
    public func zeroGradients() {
        // a frozen base writes no gradient of its own, so there is nothing to clear
        if trainsBase && gradients.count > 0 { gradients.zero() }
        adapters?.zeroGradients()
    }

    /// Whether the model computes values: its own value head, or one its LoRA adapters carry.
    public var hasValueHead: Bool { layout.valueHead >= 0 || adapters?.valueHead != nil }

    /// Where the value head is read and its gradient written: the adapters' trained copy under LoRA, else the
    /// model's own parameters.
    var valueHeadWeights: (w: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>) {
        if let a = adapters, let off = a.valueHead { return (a.parameters.pointer + off, a.gradients.pointer + off) }
        return (parameters.pointer + layout.valueHead, gradients.pointer + layout.valueHead)
    }

    /// Parameter values of one named tensor.
    public func parameter(_ name: String) -> [Float]? {
        layout.spec(name).map { Array(UnsafeBufferPointer(start: parameters.pointer + $0.offset, count: $0.count)) }
    }

    /// Gradient of one named tensor.
    public func gradient(_ name: String) -> [Float]? {
        layout.spec(name).map { Array(UnsafeBufferPointer(start: gradients.pointer + $0.offset, count: $0.count)) }
    }

    /// Overwrites one named tensor (shape-checked).
    public func setParameter(_ name: String, _ values: [Float]) throws {
        guard let s = layout.spec(name) else { throw TrainError.shape("no parameter named \(name)") }
        guard s.count == values.count else { throw TrainError.shape("\(name): \(values.count) values for \(s.shape)") }
        try parameters.copyIn(values, at: s.offset)
    }

    // MARK: - Public passes

    /// Log-prob of each position's target token (0 where the target is -1); logProbs is resized to batch.count.
    public func forward(_ batch: PackedBatch, logProbs: inout [Float]) throws {
        try forwardLogProbs(batch, logProbs: &logProbs, reference: nil)
    }

    /// `forward` plus the exact full-vocabulary KL(pi_self || pi_reference) at every position with a target
    /// (0 elsewhere). `reference` must have just run `forward` on the same batch and must not run again
    /// before this model's `backward(dLogProbs:dKL:)`: its final hidden states supply the reference logits,
    /// chunk by chunk, so no [tokens x vocab] array is ever formed.
    public func forward(
        _ batch: PackedBatch, logProbs: inout [Float], klAgainst reference: TransformerModel,
        kl: inout [Float]
    ) throws {
        guard reference !== self else { throw TrainError.state("KL reference must be a different model instance") }
        guard reference.config.vocabSize == config.vocabSize else {
            throw TrainError.shape("reference vocabulary differs")
        }
        try forwardLogProbs(batch, logProbs: &logProbs, reference: reference)
        let a = acts.pointer
        resizeReusingStorage(&kl, to: n)
        kl.withUnsafeMutableBufferPointer { out in
            out.update(repeating: 0)
            for j in 0..<targetRows { out[Int(rowIndexP[j])] = a[at.klG + j] }
        }
    }

    private func checkReference(_ r: TransformerModel) throws {
        guard r.lastPass == .logProbs, r.n == n, r.targetRows == targetRows,
            (0..<n).allSatisfy({ r.tokensP[$0] == tokensP[$0] }),
            (0..<targetRows).allSatisfy({ r.rowIndexP[$0] == rowIndexP[$0] && r.targetsP[$0] == targetsP[$0] })
        else {
            throw TrainError.state("KL reference has not just run forward on the same batch")
        }
    }

    /// Reference logits for gathered target rows, read from the reference model's last forward. The closure
    /// is made once per (buffers, shape): a closure context is a heap allocation, and steps allocate nothing.
    private func referenceProvider(_ r: TransformerModel) -> ReferenceLogitsProvider {
        let h = r.acts.pointer + r.at.gathered, w = r.parameters.pointer + r.layout.lmHead
        let d = r.config.hiddenSize, v = r.config.vocabSize
        if let c = providerCache, c.h == h, c.w == w, c.d == d, c.v == v { return c.provider }
        let provider: ReferenceLogitsProvider = { first, count, into in chunkLogits(h + first * d, w, count, d, v, into)
        }
        providerCache = (h, w, d, v, provider)
        return provider
    }
    private var providerCache:
        (
            h: UnsafeMutablePointer<Float>, w: UnsafeMutablePointer<Float>, d: Int, v: Int,
            provider: ReferenceLogitsProvider
        )?

    private func forwardLogProbs(_ batch: PackedBatch, logProbs: inout [Float], reference: TransformerModel?) throws {
        try prepare(batch)
        runBackbone()
        let a = acts.pointer, d = config.hiddenSize
        var k = 0
        for i in 0..<n where batch.targets[i] >= 0 {
            rowIndexP[k] = Int32(i)
            targetsP[k] = batch.targets[i]
            (a + at.gathered + k * d).update(from: a + at.nf + i * d, count: d)
            k += 1
        }
        targetRows = k
        if let reference { try checkReference(reference) }
        klReference = reference
        if reference == nil, let cache = currentLogitCache() {
            lmHeadForwardCached(
                hidden: a + at.gathered, weight: parameters.pointer + layout.lmHead, targets: targetsP,
                logProbs: a + at.logpG, lse: a + at.lseG, scale: cache.pointer + maxTokens * config.vocabSize,
                rows: k, dim: d, vocab: config.vocabSize, cache: cache.pointer, bf16: bf16Head())
            logitCacheValid = true
        } else {
            lmHeadForward(
                hidden: a + at.gathered, weight: parameters.pointer + layout.lmHead, targets: targetsP,
                logProbs: a + at.logpG, lse: a + at.lseG, rows: k, dim: d, vocab: config.vocabSize,
                chunkRows: headChunkRows, scratch: a + at.headScratch,
                reference: reference.map(referenceProvider), kl: a + at.klG)
            logitCacheValid = false
        }
        resizeReusingStorage(&logProbs, to: n)
        logProbs.withUnsafeMutableBufferPointer { out in
            out.update(repeating: 0)
            for j in 0..<k { out[Int(rowIndexP[j])] = a[at.logpG + j] }
        }
        lastPass = .logProbs
    }

    /// Backward of the last `forward` from d(loss)/d(logProb) per position; accumulates into `gradients`.
    public func backward(dLogProbs: [Float]) throws {
        try backwardLogProbs(dLogProbs: dLogProbs, dKL: nil)
    }

    /// Backward of the last `forward(_:logProbs:klAgainst:kl:)` from d(loss)/d(logProb) and d(loss)/d(KL)
    /// per position (the reference is frozen: it receives no gradient).
    public func backward(dLogProbs: [Float], dKL: [Float]) throws {
        guard let r = klReference else {
            throw TrainError.state("backward(dLogProbs:dKL:) needs a forward with klAgainst")
        }
        try checkReference(r)
        try backwardLogProbs(dLogProbs: dLogProbs, dKL: dKL)
    }

    private func backwardLogProbs(dLogProbs: [Float], dKL: [Float]?) throws {
        guard lastPass == .logProbs else { throw TrainError.state("backward(dLogProbs:) needs a preceding forward") }
        guard !at.forwardOnly else { throw TrainError.state("this model was built for forward passes only") }
        guard gradients.count == layout.total || !trainsBase else {
            throw TrainError.state("this model holds no gradients")
        }
        guard dLogProbs.count == n else {
            throw TrainError.shape("dLogProbs has \(dLogProbs.count) values for \(n) positions")
        }
        if let dKL, dKL.count != n { throw TrainError.shape("dKL has \(dKL.count) values for \(n) positions") }
        let a = acts.pointer, g = gradients.pointer, d = config.hiddenSize
        for j in 0..<targetRows {
            a[at.dlogpG + j] = dLogProbs[Int(rowIndexP[j])]
            a[at.dklG + j] = dKL?[Int(rowIndexP[j])] ?? 0
        }
        let ref = dKL != nil ? klReference : nil
        if let cache = logitCache, logitCacheValid, ref == nil {
            let v = config.vocabSize
            lmHeadBackwardCached(
                hidden: a + at.gathered, weight: parameters.pointer + layout.lmHead, targets: targetsP,
                scale: cache.pointer + maxTokens * v, dLogProbs: a + at.dlogpG, dHidden: a + at.dGathered,
                dWeight: trainsBase ? g + layout.lmHead : nil, rows: targetRows, dim: d, vocab: v, cache: cache.pointer,
                scaledHidden: cache.pointer + maxTokens * (v + 1), bf16: bf16Head())
        } else {
            lmHeadBackward(
                hidden: a + at.gathered, weight: parameters.pointer + layout.lmHead, targets: targetsP,
                lse: a + at.lseG, dLogProbs: a + at.dlogpG, dHidden: a + at.dGathered,
                dWeight: trainsBase ? g + layout.lmHead : nil,
                rows: targetRows, dim: d, vocab: config.vocabSize, chunkRows: headChunkRows,
                scratch: a + at.headScratch, reference: ref.map { referenceProvider($0) }, kl: a + at.klG,
                dKL: a + at.dklG)
        }
        zeroFill(a + at.dNF, n * d)
        for j in 0..<targetRows { addInPlace(a + at.dGathered + j * d, a + at.dNF + Int(rowIndexP[j]) * d, d) }
        runBackboneBackward()
    }

    /// Value head output V(s_i) = h_i . w_v at every position (read from the final hidden state).
    public func forwardValues(_ batch: PackedBatch, values: inout [Float]) throws {
        guard hasValueHead else { throw TrainError.state("model was built without a value head") }
        try prepare(batch)
        runBackbone()
        let a = acts.pointer, d = config.hiddenSize, w = valueHeadWeights.w
        resizeReusingStorage(&values, to: n)
        values.withUnsafeMutableBufferPointer { out in
            for i in 0..<n { out[i] = dot(a + at.nf + i * d, w, d) }
        }
        lastPass = .values
    }

    /// Backward of the last `forwardValues` from d(loss)/dV per position; accumulates into `gradients`.
    public func backwardValues(dValues: [Float]) throws {
        guard lastPass == .values else { throw TrainError.state("backwardValues needs a preceding forwardValues") }
        guard !at.forwardOnly else { throw TrainError.state("this model was built for forward passes only") }
        guard gradients.count == layout.total || (!trainsBase && adapters?.valueHead != nil) else {
            throw TrainError.state("this model holds no gradients")
        }
        guard dValues.count == n else {
            throw TrainError.shape("dValues has \(dValues.count) values for \(n) positions")
        }
        let a = acts.pointer, d = config.hiddenSize
        let (w, dw) = valueHeadWeights
        for i in 0..<n {
            let dv = dValues[i]
            axpy(dv, a + at.nf + i * d, dw, d)
            let row = a + at.dNF + i * d
            zeroFill(row, d)
            axpy(dv, w, row, d)
        }
        runBackboneBackward()
    }

    /// Final (post-norm) hidden states of the last pass, [positions, hiddenSize] row-major.
    public func finalHiddenStates() -> [Float] {
        Array(UnsafeBufferPointer(start: acts.pointer + at.nf, count: n * config.hiddenSize))
    }

    // MARK: - Internals

    private func prepare(_ batch: PackedBatch) throws {
        let count = batch.tokens.count
        guard count > 0, count <= maxTokens else {
            throw TrainError.shape("batch of \(count) positions; model holds 1...\(maxTokens)")
        }
        guard batch.targets.count == count else {
            throw TrainError.shape("targets has \(batch.targets.count) entries for \(count) tokens")
        }
        guard batch.sequenceLengths.reduce(0, +) == count, batch.sequenceLengths.allSatisfy({ $0 > 0 }) else {
            throw TrainError.shape("sequence lengths \(batch.sequenceLengths) do not partition \(count) tokens")
        }
        let V = Int32(config.vocabSize)
        for i in 0..<count {
            let t = batch.tokens[i], y = batch.targets[i]
            guard t >= 0, t < V else { throw TrainError.shape("token \(t) at \(i) outside vocabulary \(V)") }
            guard y >= -1, y < V else { throw TrainError.shape("target \(y) at \(i) outside vocabulary \(V)") }
            tokensP[i] = t
        }
        var start = 0
        seqStartsP[0] = 0
        for (s, len) in batch.sequenceLengths.enumerated() {
            guard len <= maxSeq else { throw TrainError.shape("sequence \(s) has \(len) tokens; limit \(maxSeq)") }
            for p in 0..<len { positionsP[start + p] = Int32(p) }
            start += len
            seqStartsP[s + 1] = Int32(start)
        }
        n = count
        seqCount = batch.sequenceLengths.count
        lastPass = .none
    }

    private func norm(_ x: Int, _ w: Int, _ b: Int, _ y: Int, _ mean: Int, _ rstd: Int) {
        let a = acts.pointer, p = parameters.pointer, d = config.hiddenSize
        if config.family == .gpt2 {
            layerNormForward(
                x: a + x, weight: p + w, bias: p + b, y: a + y, mean: a + mean, rstd: a + rstd,
                rows: n, dim: d, eps: config.normEps)
        } else {
            rmsNormForward(x: a + x, weight: p + w, y: a + y, rstd: a + rstd, rows: n, dim: d, eps: config.normEps)
        }
    }

    private func normBackward(_ dy: Int, _ x: Int, _ w: Int, _ b: Int, _ mean: Int, _ rstd: Int, _ dx: Int) {
        let a = acts.pointer, p = parameters.pointer, g = gradients.pointer, d = config.hiddenSize
        if config.family == .gpt2 {
            layerNormBackward(
                dy: a + dy, x: a + x, weight: p + w, mean: a + mean, rstd: a + rstd, dx: a + dx,
                dWeight: trainsBase ? g + w : nil, dBias: trainsBase ? g + b : nil, rows: n, dim: d)
        } else {
            rmsNormBackward(
                dy: a + dy, x: a + x, weight: p + w, rstd: a + rstd, dx: a + dx, dWeight: trainsBase ? g + w : nil,
                rows: n, dim: d)
        }
    }

    private func linear(_ x: Int, _ w: Int, _ b: Int, _ y: Int, inDim: Int, outDim: Int, accumulate: Bool = false) {
        let a = acts.pointer
        linear(
            x: a + x, weight: w, bias: b, y: a + y, rows: n, inDim: inDim, outDim: outDim, accumulate: accumulate,
            keepAdapterInputs: true)
    }

    /// The single entry point of every linear layer's forward, training and decoding (adapters hook in here).
    /// `weight` and `bias` are offsets into `parameters` (bias -1: none); x [rows, inDim], y [rows, outDim].
    /// With `packed` (decoding), passes of few rows read the layer's packed copy when it has one.
    /// LoRA adapters add their part after the base product (keeping x A^T for the backward with
    /// `keepAdapterInputs`, in a training forward).
    func linear(
        x: UnsafePointer<Float>, weight w: Int, bias b: Int, y: UnsafeMutablePointer<Float>, rows: Int,
        inDim: Int, outDim: Int, accumulate: Bool = false, packed: PackedLinearContext? = nil,
        keepAdapterInputs: Bool = false
    ) {
        baseLinear(
            x: x, weight: w, bias: b, y: y, rows: rows, inDim: inDim, outDim: outDim, accumulate: accumulate,
            packed: packed)
        adapters?.forward(x: x, ldx: inDim, weight: w, y: y, ldy: outDim, rows: rows, keep: keepAdapterInputs)
    }

    private func baseLinear(
        x: UnsafePointer<Float>, weight w: Int, bias b: Int, y: UnsafeMutablePointer<Float>, rows: Int,
        inDim: Int, outDim: Int, accumulate: Bool, packed: PackedLinearContext?
    ) {
        let p = parameters.pointer
        if let packed, rows > 0, rows <= (precision == .bf16 ? bf16PackedMaxRows : smallBatchLinearMaxRows),
            let m = packed.weights.matrix(at: w),
            m.inDim == inDim, m.outDim == outDim
        {
            packedSmallBatchLinear(
                x: x, ldx: inDim, weights: packed.weights, matrix: m, bias: b >= 0 ? p + b : nil,
                y: y, ldy: outDim, rows: rows, accumulate: accumulate, scratch: packed.scratch,
                scratchSlots: packed.slots)
            return
        }
        if let base = baseWeights, let m = base.matrix(at: w), let scratch = packedScratch {
            packedLinearForward(
                x: x, ldx: inDim, weights: base, matrix: m, bias: b >= 0 ? p + b : nil, y: y, ldy: outDim,
                rows: rows, accumulate: accumulate, scratch: scratch, bf16: bf16ActivationScratch(rows * inDim))
            return
        }
        linearForward(
            x: x, ldx: inDim, weight: p + w, bias: b >= 0 ? p + b : nil, y: y, ldy: outDim,
            rows: rows, inDim: inDim, outDim: outDim, accumulate: accumulate,
            bf16: bf16Operands(w, rows: rows, inDim: inDim, outDim: outDim, backward: false))
    }

    /// The single entry point of every linear layer's backward (adapters hook in here).
    private func linearBack(_ dy: Int, _ x: Int, _ w: Int, _ b: Int, _ dx: Int, inDim: Int, outDim: Int) {
        let a = acts.pointer, p = parameters.pointer, g = gradients.pointer
        if let base = baseWeights, let m = base.matrix(at: w), let scratch = packedScratch {
            // a packed base is frozen: only dx flows (and the adapters' gradients below)
            packedLinearBackward(
                dy: a + dy, ldy: outDim, weights: base, matrix: m, dx: a + dx, lddx: inDim, rows: n,
                scratch: scratch, bf16: bf16ActivationScratch(n * outDim))
        } else {
            linearBackward(
                dy: a + dy, ldy: outDim, x: a + x, ldx: inDim, weight: p + w, dx: a + dx, lddx: inDim,
                accumulateDX: false, dWeight: trainsBase ? g + w : nil, dBias: trainsBase && b >= 0 ? g + b : nil,
                rows: n, inDim: inDim, outDim: outDim,
                bf16: bf16Operands(w, rows: n, inDim: inDim, outDim: outDim, backward: true))
        }
        adapters?.backward(
            dy: a + dy, ldy: outDim, x: a + x, ldx: inDim, weight: w, dx: a + dx, lddx: inDim, rows: n)
    }

    private func runBackbone() {
        let a = acts.pointer, p = parameters.pointer, c = config, d = c.hiddenSize
        let first = at.blocks.first?.resIn ?? at.resFinal
        embeddingForward(
            tokens: tokensP, table: p + layout.embed, positions: c.family == .gpt2 ? positionsP : nil,
            posTable: c.family == .gpt2 ? p + layout.positions : nil, out: a + first, rows: n, dim: d)
        for l in layout.blocks.indices { blockForward(l, writeNext: true) }
        norm(at.resFinal, layout.finalNormW, layout.finalNormB, at.nf, at.nfMean, at.nfRstd)
    }

    /// Block `l`'s forward from its input `resIn`, keeping its activations; with `writeNext`, the next block's
    /// input (or the final residual) too. A backward under `recompute` reruns it without `writeNext`: the
    /// recomputed activations equal the forward's, and the residual after the block is not needed again.
    private func blockForward(_ l: Int, writeNext: Bool) {
        let a = acts.pointer, c = config, d = c.hiddenSize
        let o = layout.blocks[l], b = at.blocks[l]
        norm(b.resIn, o.norm1W, o.norm1B, b.n1, b.n1Mean, b.n1Rstd)
        linear(b.n1, o.qkvW, o.qkvB, b.qkv, inDim: d, outDim: qkvWidth)
        applyRoPE(b.qkv, inverse: false)
        let kvOff = c.kvHeads * c.headDim
        attentionForward(
            q: a + b.qkv, ldq: qkvWidth, k: a + b.qkv + attWidth, ldk: qkvWidth,
            v: a + b.qkv + attWidth + kvOff, ldv: qkvWidth, out: a + b.att, ldo: attWidth,
            lse: a + b.lse, rows: n, seqStarts: seqStartsP, seqCount: seqCount, heads: c.heads,
            kvHeads: c.kvHeads, headDim: c.headDim, scratch: a + at.attScratch, scratchCount: at.attSlotFloats)
        (a + b.mid).update(from: a + b.resIn, count: n * d)
        linear(b.att, o.oW, o.oB, b.mid, inDim: attWidth, outDim: d, accumulate: true)
        norm(b.mid, o.norm2W, o.norm2B, b.n2, b.n2Mean, b.n2Rstd)
        linear(b.n2, o.upW, o.upB, b.up, inDim: d, outDim: upWidth)
        if c.family == .gpt2 {
            geluForward(x: a + b.up, out: a + b.act, count: n * c.intermediateSize)
        } else {
            swiGLUForward(gateUp: a + b.up, out: a + b.act, rows: n, dim: c.intermediateSize)
        }
        guard writeNext else { return }
        let next = l + 1 < at.blocks.count ? at.blocks[l + 1].resIn : at.resFinal
        (a + next).update(from: a + b.mid, count: n * d)
        linear(b.act, o.downW, o.downB, next, inDim: c.intermediateSize, outDim: d, accumulate: true)
    }

    /// Rotates the q and k columns of the fused [n, qkvWidth] activation at `offset` (the inverse rotation turns
    /// their gradients back); nothing for GPT-2.
    private func applyRoPE(_ offset: Int, inverse: Bool) {
        guard let rope else { return }
        let a = acts.pointer, c = config
        rope.cos.withUnsafeBufferPointer { cs in
            rope.sin.withUnsafeBufferPointer { sn in
                ropeApply(
                    x: a + offset, ld: qkvWidth, rows: n, heads: c.heads, headDim: c.headDim,
                    positions: positionsP, cos: cs.baseAddress!, sin: sn.baseAddress!, inverse: inverse)
                ropeApply(
                    x: a + offset + attWidth, ld: qkvWidth, rows: n, heads: c.kvHeads, headDim: c.headDim,
                    positions: positionsP, cos: cs.baseAddress!, sin: sn.baseAddress!, inverse: inverse)
            }
        }
    }

    /// Backpropagates d(final hidden) held in at.dNF through the blocks and embeddings.
    private func runBackboneBackward() {
        let a = acts.pointer, g = gradients.pointer, c = config, d = c.hiddenSize
        zeroFill(a + at.dRes, n * d)
        normBackward(at.dNF, at.resFinal, layout.finalNormW, layout.finalNormB, at.nfMean, at.nfRstd, at.dRes)
        for l in stride(from: layout.blocks.count - 1, through: 0, by: -1) {
            let o = layout.blocks[l], b = at.blocks[l]
            // the shared activations hold the last block's after a forward; earlier blocks are recomputed
            // (with a shared workspace another model's pass may have overwritten the last block's since)
            if at.recompute && (l + 1 < layout.blocks.count || workspace.users > 1) {
                blockForward(l, writeNext: false)
            }
            linearBack(at.dRes, b.act, o.downW, o.downB, at.dAct, inDim: c.intermediateSize, outDim: d)
            if c.family == .gpt2 {
                geluBackward(x: a + b.up, dOut: a + at.dAct, dx: a + at.dUp, count: n * c.intermediateSize)
            } else {
                swiGLUBackward(
                    gateUp: a + b.up, dOut: a + at.dAct, dGateUp: a + at.dUp, rows: n, dim: c.intermediateSize)
            }
            linearBack(at.dUp, b.n2, o.upW, o.upB, at.dNorm, inDim: d, outDim: upWidth)
            normBackward(at.dNorm, b.mid, o.norm2W, o.norm2B, b.n2Mean, b.n2Rstd, at.dRes)
            linearBack(at.dRes, b.att, o.oW, o.oB, at.dAtt, inDim: attWidth, outDim: d)
            let kvOff = c.kvHeads * c.headDim
            attentionBackward(
                dOut: a + at.dAtt, q: a + b.qkv, ldq: qkvWidth, k: a + b.qkv + attWidth, ldk: qkvWidth,
                v: a + b.qkv + attWidth + kvOff, ldv: qkvWidth, out: a + b.att, ldo: attWidth,
                lse: a + b.lse, dq: a + at.dQKV, lddq: qkvWidth, dk: a + at.dQKV + attWidth, lddk: qkvWidth,
                dv: a + at.dQKV + attWidth + kvOff, lddv: qkvWidth, rows: n, seqStarts: seqStartsP,
                seqCount: seqCount, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                scratch: a + at.attScratch, scratch2: a + at.attScratch + at.attSlotFloats,
                scratchCount: at.attSlotFloats)
            applyRoPE(at.dQKV, inverse: true)
            linearBack(at.dQKV, b.n1, o.qkvW, o.qkvB, at.dNorm, inDim: d, outDim: qkvWidth)
            normBackward(at.dNorm, b.resIn, o.norm1W, o.norm1B, b.n1Mean, b.n1Rstd, at.dRes)
        }
        guard trainsBase else { return }  // a frozen base: nothing below the first layer needs a gradient
        embeddingBackward(
            tokens: tokensP, positions: c.family == .gpt2 ? positionsP : nil, dOut: a + at.dRes,
            dTable: g + layout.embed, dPosTable: c.family == .gpt2 ? g + layout.positions : nil,
            rows: n, dim: d)
    }
}

/// A model's workspace buffer and how many models use it.
final class ModelWorkspace {
    /// The floats.
    let buffer: FlatBuffer
    /// Models reading and writing it.
    var users = 1

    init(count: Int) { buffer = FlatBuffer(count: count) }
}
