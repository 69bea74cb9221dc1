import Checkpoint
import Foundation

/// The operands of one layer's decoding attention, read by every pool thread (each writes its own units'
/// heads of `att` and uses its own scratch).
private struct DecoderAttentionArgs {
    let qkv: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>
    let cache: UnsafePointer<Float>, pageTable: UnsafePointer<Int32>, scratch: UnsafeMutablePointer<Float>
    let sequences: UnsafePointer<Int>, units: Int, threads: Int
    let heads: Int, kvHeads: Int, headDim: Int, qkvWidth: Int, attWidth: Int
    let pagesPerSequence: Int, pageStride: Int, pageSize: Int, scratchSize: Int
}

/// Units `range` (unit u: row u / kvHeads, kv head u % kvHeads) of a layer's attention on thread `t`'s scratch.
private func attentionUnits(_ a: DecoderAttentionArgs, _ t: Int, _ range: Range<Int>) {
    for u in range {
        let r = u / a.kvHeads, kvh = u % a.kvHeads
        pagedAttentionRow(
            q: a.qkv + r * a.qkvWidth, out: a.att + r * a.attWidth, length: Int(a.positions[r]) + 1,
            pages: a.pageTable + a.sequences[r] * a.pagesPerSequence, cache: a.cache, pageStride: a.pageStride,
            pageSize: a.pageSize, heads: a.heads, kvHeads: a.kvHeads, headDim: a.headDim,
            scratch: a.scratch + t * a.scratchSize, kvHeadRange: kvh..<(kvh + 1))
    }
}

/// KV-cached incremental decoding of a `TransformerModel` for a batch of sequences of different lengths.
///
/// Each sequence slot's keys and values live in fixed-size pages of one pool allocated here once. `fork`
/// makes a slot share another's pages (reference counted); a shared page is copied only when one of its
/// holders writes into it, so beam-search candidates keep one copy of their common prefix. `extend` appends
/// tokens to any set of slots in one pass (prefill and one-token steps alike) and returns logits or values.
public final class IncrementalDecoder {
    /// The model decoded (its parameters are read, never written).
    public let model: TransformerModel
    /// Number of sequence slots.
    public let maxSequences: Int
    /// Most positions one slot may hold (at most the model's `maxPositions`).
    public let maxLength: Int
    /// Positions per cache page.
    public let pageSize: Int
    /// Pages in the pool (shared by all slots).
    public let pageCount: Int
    /// Most new tokens one internal pass processes (longer extends run in several passes).
    public let maxRows: Int
    /// Attention work (cached positions read x heads) per extra thread before a pass splits it over threads
    /// (a pool dispatch costs about as much as 4096 position-heads).
    nonisolated(unsafe) public static var parallelAttentionWork = 4096

    private let pool: FlatBuffer
    private let pageStride: Int, layerStride: Int
    private var refCounts: [Int32]
    private var freePages: [Int32]
    private let pagesPerSequence: Int
    private let pageTable: UnsafeMutablePointer<Int32>
    private var lengths: [Int]
    private var heldPages: [Int]

    private let acts: FlatBuffer
    /// Packed linear weights read by passes of few rows, if any.
    public let weights: PackedWeights?
    private let packedSlots: Int
    private var packedScratchOff = 0
    private var packed: PackedLinearContext? {
        weights.map { PackedLinearContext(weights: $0, scratch: acts.pointer + packedScratchOff, slots: packedSlots) }
    }
    private var xOff = 0, nOff = 0, qkvOff = 0, attOff = 0, upOff = 0, actOff = 0, meanOff = 0, rstdOff = 0
    private var gatherOff = 0, scoreOff = 0
    private let rowInts: UnsafeMutablePointer<Int32>
    private let attentionThreads = max(1, min(8, ComputePool.shared.threads))
    private var rowSequence: [Int]
    private var rowIsOutput: [Bool]

    private var c: ModelConfig { model.config }
    private var qkvWidth: Int { (c.heads + 2 * c.kvHeads) * c.headDim }
    private var attWidth: Int { c.heads * c.headDim }
    private var kvWidth: Int { c.kvHeads * c.headDim }
    private var upWidth: Int { c.family == .gpt2 ? c.intermediateSize : 2 * c.intermediateSize }

    /// A decoder with `maxSequences` slots of up to `maxLength` positions and a pool of `cacheTokens`
    /// positions (default: every slot full, no sharing needed). Beam search can give far fewer cache tokens
    /// than slots x length, since forked slots share their prefix pages.
    ///
    /// With `weights` (packed for this model; default: the model's `decodingWeights`), passes of up to
    /// `smallBatchLinearMaxRows` rows (`bf16PackedMaxRows` for a bf16 model) read the packed linear weights instead
    /// of the f32 parameters; a bf16 model's wider passes run oneDNN's bf16 matmul on its rounded weights.
    public convenience init(
        model: TransformerModel, maxSequences: Int, maxLength: Int, cacheTokens: Int? = nil,
        pageSize: Int = 16, maxRows: Int = 256
    ) throws {
        try self.init(
            model: model, maxSequences: maxSequences, maxLength: maxLength, cacheTokens: cacheTokens,
            pageSize: pageSize, maxRows: maxRows, weights: model.decodingWeights)
    }

    /// A decoder like `init(model:maxSequences:maxLength:cacheTokens:pageSize:maxRows:)` reading `weights`
    /// (nil: the f32 parameters, whatever the model's `decodingWeights`).
    public init(
        model: TransformerModel, maxSequences: Int, maxLength: Int, cacheTokens: Int? = nil,
        pageSize: Int = 16, maxRows: Int = 256, weights: PackedWeights?
    ) throws {
        let cfg = model.config
        guard maxSequences > 0, maxLength > 0, pageSize > 0, maxRows > 0 else {
            throw TrainError.shape("decoder sizes must be positive")
        }
        if let weights, weights.parameterCount != model.layout.total {
            throw TrainError.shape(
                "packed weights were made for a model of \(weights.parameterCount) parameters, not \(model.layout.total)"
            )
        }
        self.model = model
        self.weights = weights
        model.reserveLowScratch(rows: maxRows)
        self.maxSequences = maxSequences
        self.maxLength = min(maxLength, cfg.maxPositions)
        self.pageSize = pageSize
        self.maxRows = maxRows
        pagesPerSequence = (self.maxLength + pageSize - 1) / pageSize
        let tokens = cacheTokens ?? maxSequences * pagesPerSequence * pageSize
        pageCount = max(1, (tokens + pageSize - 1) / pageSize)
        let kvW = cfg.kvHeads * cfg.headDim
        layerStride = 2 * kvW * pageSize
        pageStride = cfg.layers * layerStride
        pool = FlatBuffer(count: pageCount * pageStride)
        refCounts = [Int32](repeating: 0, count: pageCount)
        freePages = (0..<Int32(pageCount)).reversed()
        pageTable = .allocate(capacity: maxSequences * pagesPerSequence)
        pageTable.initialize(repeating: 0, count: maxSequences * pagesPerSequence)
        lengths = [Int](repeating: 0, count: maxSequences)
        heldPages = lengths

        let R = maxRows, d = cfg.hiddenSize
        var total = 0
        func take(_ n: Int) -> Int {
            defer { total += n }
            return total
        }
        let upW = cfg.family == .gpt2 ? cfg.intermediateSize : 2 * cfg.intermediateSize
        xOff = take(R * d)
        nOff = take(R * d)
        qkvOff = take(R * (cfg.heads + 2 * cfg.kvHeads) * cfg.headDim)
        attOff = take(R * cfg.heads * cfg.headDim)
        upOff = take(R * upW)
        actOff = take(R * cfg.intermediateSize)
        meanOff = take(R)
        rstdOff = take(R)
        gatherOff = take(R * d)
        scoreOff = take(attentionThreads * self.maxLength * (cfg.heads / cfg.kvHeads))
        packedSlots = max(1, smallBatchLinearThreads, ComputePool.shared.threads)
        packedScratchOff = take(
            weights == nil
                ? 0 : packedSlots * packedRowsPerGroup * max(d, cfg.intermediateSize, cfg.heads * cfg.headDim))
        acts = FlatBuffer(count: total)
        rowInts = .allocate(capacity: 2 * R)
        rowInts.initialize(repeating: 0, count: 2 * R)
        rowSequence = [Int](repeating: 0, count: R)
        rowIsOutput = [Bool](repeating: false, count: R)
    }

    deinit {
        pageTable.deallocate()
        rowInts.deallocate()
    }

    /// Positions held by slot `sequence`.
    public func length(_ sequence: Int) -> Int { lengths[sequence] }

    /// Pages not held by any slot.
    public var freePageCount: Int { freePages.count }

    /// Empties slot `sequence` (its pages return to the pool once no other slot shares them).
    public func release(_ sequence: Int) {
        guard sequence >= 0, sequence < maxSequences else { return }
        let t = pageTable + sequence * pagesPerSequence
        for i in 0..<heldPages[sequence] {
            let p = Int(t[i])
            refCounts[p] -= 1
            if refCounts[p] == 0 { freePages.append(Int32(p)) }
        }
        heldPages[sequence] = 0
        lengths[sequence] = 0
    }

    /// Empties every slot.
    public func releaseAll() { for s in 0..<maxSequences { release(s) } }

    /// Makes slot `destination` a copy of slot `source` (sharing its pages; no cache data is copied now).
    public func fork(_ source: Int, into destination: Int) throws {
        guard (0..<maxSequences).contains(source), (0..<maxSequences).contains(destination) else {
            throw TrainError.shape("fork \(source) -> \(destination): slots are 0..<\(maxSequences)")
        }
        if source == destination { return }
        release(destination)
        let s = pageTable + source * pagesPerSequence, d = pageTable + destination * pagesPerSequence
        for i in 0..<heldPages[source] {
            d[i] = s[i]
            refCounts[Int(s[i])] += 1
        }
        heldPages[destination] = heldPages[source]
        lengths[destination] = lengths[source]
    }

    /// Appends `tokens[i]` to slot `sequences[i]` and writes the logits after each slot's last new token,
    /// [sequences.count, vocab] (or after every new token, [total new tokens, vocab], with `allPositions`).
    public func extend(_ sequences: [Int], _ tokens: [[Int32]], logits: inout [Float], allPositions: Bool = false)
        throws
    {
        try run(sequences, tokens, output: .logits, allPositions: allPositions, into: &logits)
    }

    /// Appends tokens like `extend(_:_:logits:)` and writes the value head's V at each slot's last new token
    /// (or at every new token with `allPositions`): V of the state that ends with that token.
    public func extend(_ sequences: [Int], _ tokens: [[Int32]], values: inout [Float], allPositions: Bool = false)
        throws
    {
        guard model.hasValueHead else { throw TrainError.state("model was built without a value head") }
        try run(sequences, tokens, output: .values, allPositions: allPositions, into: &values)
    }

    /// Appends tokens without computing any output (prefill whose last logits are not needed).
    public func extend(_ sequences: [Int], _ tokens: [[Int32]]) throws {
        var none: [Float] = []
        try run(sequences, tokens, output: .none, allPositions: false, into: &none)
    }

    private enum Output { case logits, values, none }

    private func run(
        _ sequences: [Int], _ tokens: [[Int32]], output: Output, allPositions: Bool,
        into result: inout [Float]
    ) throws {
        guard sequences.count == tokens.count else {
            throw TrainError.shape("\(sequences.count) sequences but \(tokens.count) token lists")
        }
        var seen = Set<Int>()
        let V = Int32(c.vocabSize)
        var totalRows = 0
        for (i, s) in sequences.enumerated() {
            guard s >= 0, s < maxSequences else { throw TrainError.shape("slot \(s) outside 0..<\(maxSequences)") }
            guard seen.insert(s).inserted else { throw TrainError.shape("slot \(s) listed twice") }
            guard !tokens[i].isEmpty else { throw TrainError.shape("no tokens for slot \(s)") }
            guard lengths[s] + tokens[i].count <= maxLength else {
                throw TrainError.shape(
                    "slot \(s): \(lengths[s]) + \(tokens[i].count) positions exceed the limit \(maxLength)")
            }
            for t in tokens[i] where t < 0 || t >= V { throw TrainError.shape("token \(t) outside vocabulary \(V)") }
            totalRows += tokens[i].count
        }
        let width = output == .logits ? c.vocabSize : 1
        let outputs = output == .none ? 0 : (allPositions ? totalRows : sequences.count)
        if result.count != outputs * width { result = [Float](repeating: 0, count: outputs * width) }
        try reservePages(sequences, tokens)

        // Passes of up to maxRows rows, slot by slot; a pass's outputs are contiguous in `result`.
        let start = sequences.map { lengths[$0] }
        var seqIndex = 0, tokenIndex = 0, nextOutput = 0
        let a = acts.pointer, d = c.hiddenSize
        try result.withUnsafeMutableBufferPointer { out in
            while seqIndex < sequences.count {
                var rows = 0
                while rows < maxRows && seqIndex < sequences.count {
                    let s = sequences[seqIndex], toks = tokens[seqIndex]
                    let take = min(maxRows - rows, toks.count - tokenIndex)
                    for j in 0..<take {
                        rowInts[rows + j] = toks[tokenIndex + j]
                        rowInts[maxRows + rows + j] = Int32(start[seqIndex] + tokenIndex + j)
                        rowSequence[rows + j] = s
                        rowIsOutput[rows + j] = output != .none && (allPositions || tokenIndex + j + 1 == toks.count)
                    }
                    rows += take
                    tokenIndex += take
                    if tokenIndex == toks.count {
                        seqIndex += 1
                        tokenIndex = 0
                    }
                }
                try forwardPass(rows: rows)
                for r in 0..<rows { lengths[rowSequence[r]] = Int(rowInts[maxRows + r]) + 1 }
                var k = 0
                for r in 0..<rows where rowIsOutput[r] {
                    (a + gatherOff + k * d).update(from: a + nOff + r * d, count: d)
                    k += 1
                }
                guard k > 0 else { continue }
                let dst = out.baseAddress! + nextOutput * width
                switch output {
                case .logits:
                    model.linear(
                        x: a + gatherOff, weight: model.layout.lmHead, bias: -1, y: dst, rows: k, inDim: d,
                        outDim: c.vocabSize, packed: packed)
                case .values:
                    // a LoRA value network's head is its adapters' (the base's slot, if any, stays untrained)
                    let w = model.valueHeadWeights.w
                    for i in 0..<k { dst[i] = dot(a + gatherOff + i * d, w, d) }
                case .none: break
                }
                nextOutput += k
            }
        }
    }

    /// Gives every slot the pages its new positions need, copying shared pages it will write into.
    private func reservePages(_ sequences: [Int], _ tokens: [[Int32]]) throws {
        var needed = 0
        for (i, s) in sequences.enumerated() {
            let first = lengths[s] / pageSize, last = (lengths[s] + tokens[i].count - 1) / pageSize
            for p in first...last {
                if p >= heldPages[s] || refCounts[Int(pageTable[s * pagesPerSequence + p])] > 1 { needed += 1 }
            }
        }
        guard needed <= freePages.count else {
            throw TrainError.state("KV cache full: \(needed) pages needed, \(freePages.count) free of \(pageCount)")
        }
        let base = pool.pointer
        for (i, s) in sequences.enumerated() {
            let t = pageTable + s * pagesPerSequence
            let first = lengths[s] / pageSize, last = (lengths[s] + tokens[i].count - 1) / pageSize
            for p in first...last {
                if p < heldPages[s] {
                    let old = Int(t[p])
                    guard refCounts[old] > 1 else { continue }
                    let fresh = Int(freePages.removeLast())
                    (base + fresh * pageStride).update(from: base + old * pageStride, count: pageStride)
                    refCounts[old] -= 1
                    refCounts[fresh] = 1
                    t[p] = Int32(fresh)
                } else {
                    let fresh = freePages.removeLast()
                    refCounts[Int(fresh)] = 1
                    t[p] = fresh
                    heldPages[s] = p + 1
                }
            }
        }
    }

    /// Every row's attention over its slot's cache. The work is cut into (row, kv head) units, split over the
    /// compute pool when it is large enough (a single decoding row too: its kv heads go to different threads),
    /// each thread with its own score scratch; every unit is computed the same way either way.
    private func attention(
        rows n: Int, qkv: UnsafeMutablePointer<Float>, att: UnsafeMutablePointer<Float>,
        positions: UnsafePointer<Int32>, layerBase: UnsafeMutablePointer<Float>
    ) {
        var work = 0
        for r in 0..<n { work += Int(positions[r]) + 1 }
        let units = n * c.kvHeads
        let threads = min(
            attentionThreads, ComputePool.shared.threads, units,
            max(1, work * c.heads / max(1, Self.parallelAttentionWork)))
        rowSequence.withUnsafeBufferPointer { seqs in
            let args = DecoderAttentionArgs(
                qkv: qkv, att: att, positions: positions, cache: UnsafePointer(layerBase),
                pageTable: UnsafePointer(pageTable), scratch: acts.pointer + scoreOff,
                sequences: seqs.baseAddress!, units: units, threads: threads,
                heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim, qkvWidth: qkvWidth,
                attWidth: attWidth, pagesPerSequence: pagesPerSequence, pageStride: pageStride,
                pageSize: pageSize, scratchSize: maxLength * (c.heads / c.kvHeads))
            // contiguous shares: a thread's units are mostly one row's kv heads
            ComputePool.shared.run(args, limit: threads) { raw, t, n in
                let a = raw.load(as: DecoderAttentionArgs.self)
                attentionUnits(a, t, ComputePool.share(a.units, t, n, grain: 1))
            }
        }
    }
    private func norm(_ x: UnsafeMutablePointer<Float>, _ w: Int, _ b: Int, _ y: UnsafeMutablePointer<Float>, rows: Int)
    {
        let a = acts.pointer, p = model.parameters.pointer
        if c.family == .gpt2 {
            layerNormForward(
                x: x, weight: p + w, bias: p + b, y: y, mean: a + meanOff, rstd: a + rstdOff,
                rows: rows, dim: c.hiddenSize, eps: c.normEps)
        } else {
            rmsNormForward(x: x, weight: p + w, y: y, rstd: a + rstdOff, rows: rows, dim: c.hiddenSize, eps: c.normEps)
        }
    }

    /// One pass over `rows` staged rows (tokens, positions, slots); leaves final-normed hidden states at nOff.
    private func forwardPass(rows n: Int) throws {
        let a = acts.pointer, p = model.parameters.pointer, L = model.layout, d = c.hiddenSize
        let tokens = UnsafePointer(rowInts), positions = UnsafePointer(rowInts + maxRows)
        let x = a + xOff, h = a + nOff, qkv = a + qkvOff, att = a + attOff, packed = self.packed
        embeddingForward(
            tokens: tokens, table: p + L.embed, positions: c.family == .gpt2 ? positions : nil,
            posTable: c.family == .gpt2 ? p + L.positions : nil, out: x, rows: n, dim: d)
        let hd = c.headDim, kvW = kvWidth, P = pageSize
        for (l, o) in L.blocks.enumerated() {
            norm(x, o.norm1W, o.norm1B, h, rows: n)
            model.linear(
                x: h, weight: o.qkvW, bias: o.qkvB, y: qkv, rows: n, inDim: d, outDim: qkvWidth, packed: packed)
            if let rope = model.rope {
                rope.cos.withUnsafeBufferPointer { cs in
                    rope.sin.withUnsafeBufferPointer { sn in
                        ropeApply(
                            x: qkv, ld: qkvWidth, rows: n, heads: c.heads, headDim: hd, positions: positions,
                            cos: cs.baseAddress!, sin: sn.baseAddress!, inverse: false)
                        ropeApply(
                            x: qkv + attWidth, ld: qkvWidth, rows: n, heads: c.kvHeads, headDim: hd,
                            positions: positions, cos: cs.baseAddress!, sin: sn.baseAddress!, inverse: false)
                    }
                }
            }
            let layerBase = pool.pointer + l * layerStride
            for r in 0..<n {
                let s = rowSequence[r], pos = Int(positions[r])
                let page = layerBase + Int(pageTable[s * pagesPerSequence + pos / P]) * pageStride
                let off = pos % P
                for kvh in 0..<c.kvHeads {
                    (page + (kvh * P + off) * hd).update(from: qkv + r * qkvWidth + attWidth + kvh * hd, count: hd)
                    (page + kvW * P + (kvh * P + off) * hd).update(
                        from: qkv + r * qkvWidth + attWidth + kvW + kvh * hd, count: hd)
                }
            }
            attention(rows: n, qkv: qkv, att: att, positions: positions, layerBase: layerBase)
            model.linear(
                x: att, weight: o.oW, bias: o.oB, y: x, rows: n, inDim: attWidth, outDim: d, accumulate: true,
                packed: packed)
            norm(x, o.norm2W, o.norm2B, h, rows: n)
            model.linear(
                x: h, weight: o.upW, bias: o.upB, y: a + upOff, rows: n, inDim: d, outDim: upWidth, packed: packed)
            if c.family == .gpt2 {
                geluForward(x: a + upOff, out: a + actOff, count: n * c.intermediateSize)
            } else {
                swiGLUForward(gateUp: a + upOff, out: a + actOff, rows: n, dim: c.intermediateSize)
            }
            model.linear(
                x: a + actOff, weight: o.downW, bias: o.downB, y: x, rows: n, inDim: c.intermediateSize,
                outDim: d, accumulate: true, packed: packed)
        }
        norm(x, L.finalNormW, L.finalNormB, h, rows: n)
    }
}
