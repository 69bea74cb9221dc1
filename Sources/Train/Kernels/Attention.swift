import COpenBLAS
import Foundation

/// Causal grouped-query attention over a packed batch, forward.
///
/// Sequences are concatenated: sequence s covers rows seqStarts[s] ..< seqStarts[s+1] and attends only within
/// itself. Query head h reads kv head h / (heads / kvHeads). Probabilities are not stored: the backward
/// recomputes them from the saved per-row log-sum-exp, so memory is O(rows), not O(T^2). Rows go in blocks of
/// `attentionBlock`, each against only the keys at or before its last row (the causal triangle: ~60% of the
/// square's matmul work at 256 tokens). The (sequence, head) pairs are shared out over the compute pool, one
/// scratch slot of maxSeqLen^2 floats per thread.
///
/// Shapes: q [rows, ldq] (heads * headDim used), k [rows, ldk], v [rows, ldv] (kvHeads * headDim used),
/// out [rows, ldo] (heads * headDim), lse [heads, rows], seqStarts [seqCount + 1],
/// scratch [scratchCount] (nil count: one slot of maxSeqLen * maxSeqLen).
public func attentionForward(
    q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int,
    v: UnsafePointer<Float>, ldv: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
    lse: UnsafeMutablePointer<Float>, rows: Int, seqStarts: UnsafePointer<Int32>,
    seqCount: Int, heads: Int, kvHeads: Int, headDim: Int,
    scratch: UnsafeMutablePointer<Float>, scratchCount: Int? = nil
) {
    let slot = longestSequence(seqStarts, seqCount)
    let a = AttentionArgs(
        q: q, ldq: ldq, k: k, ldk: ldk, v: v, ldv: ldv, out: UnsafeMutablePointer(mutating: out), ldo: ldo,
        lse: lse, dOut: nil, dq: nil, lddq: 0, dk: nil, lddk: 0, dv: nil, lddv: 0, rows: rows,
        seqStarts: seqStarts, heads: heads, kvHeads: kvHeads, headDim: headDim, scratch: scratch,
        scratch2: nil, slot: slot * slot, units: seqCount * heads,
        slots: scratchCount.map { $0 / max(1, slot * slot) } ?? 1)
    forEachUnit(a) { raw, u, thread in
        let a = raw.load(as: AttentionArgs.self)
        let s = u / a.heads, h = u % a.heads, kvh = h / (a.heads / a.kvHeads), headDim = a.headDim
        let start = Int(a.seqStarts[s]), t = Int(a.seqStarts[s + 1]) - start
        if t <= 0 { return }
        let p = a.scratch + thread * a.slot
        let qh = a.q + start * a.ldq + h * headDim, kh = a.k + start * a.ldk + kvh * headDim
        let vh = a.v + start * a.ldv + kvh * headDim, oh = a.out + start * a.ldo + h * headDim
        let lseRow = a.lse + h * a.rows + start
        var i0 = 0
        while i0 < t {
            let i1 = min(t, i0 + attentionBlock), pb = p + i0 * t
            scaledScores(qh + i0 * a.ldq, a.ldq, kh, a.ldk, i1 - i0, i1, t, headDim, pb)
            for i in i0..<i1 {
                let row = p + i * t
                let n = i + 1
                let m = maxOf(row, n)
                let sum = expShiftInPlace(row, n, m)
                let inv = 1 / sum
                for j in 0..<n { row[j] *= inv }
                if n < i1 { zeroFill(row + n, i1 - n) }
                lseRow[i] = m + Foundation.log(sum)
            }
            // O[i0..<i1] = P[i0..<i1, 0..<i1] V[0..<i1]
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(i1 - i0), Int32(headDim), Int32(i1),
                1, pb, Int32(t), vh, Int32(a.ldv), 0, oh + i0 * a.ldo, Int32(a.ldo))
            i0 = i1
        }
    }
}

/// Everything one attention pass reads and writes, for the pool (the backward's fields are nil in the forward).
struct AttentionArgs {
    let q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int
    let out: UnsafeMutablePointer<Float>, ldo: Int, lse: UnsafeMutablePointer<Float>
    let dOut: UnsafePointer<Float>?, dq: UnsafeMutablePointer<Float>?, lddq: Int
    let dk: UnsafeMutablePointer<Float>?, lddk: Int, dv: UnsafeMutablePointer<Float>?, lddv: Int
    let rows: Int, seqStarts: UnsafePointer<Int32>, heads: Int, kvHeads: Int, headDim: Int
    let scratch: UnsafeMutablePointer<Float>, scratch2: UnsafeMutablePointer<Float>?
    /// Floats per thread in each scratch, units to run, scratch slots available.
    let slot: Int, units: Int, slots: Int
}

/// Length of the longest sequence of a packed batch.
@inline(__always) func longestSequence(_ seqStarts: UnsafePointer<Int32>, _ seqCount: Int) -> Int {
    var longest = 0
    for s in 0..<seqCount { longest = max(longest, Int(seqStarts[s + 1] - seqStarts[s])) }
    return longest
}

/// Runs body(&args, unit, thread) for unit in 0..<args.units on min(pool threads, slots) threads, which claim
/// units one at a time (so mixed sequence lengths and late threads balance); `thread` picks the scratch slot.
@inline(__always) func forEachUnit(_ args: AttentionArgs, _ body: @convention(c) (UnsafeRawPointer, Int, Int) -> Void) {
    let pool = ComputePool.shared
    withUnsafePointer(to: args) { ap in
        let raw = UnsafeRawPointer(ap)
        if pool.threads == 1 || args.slots < 2 || args.units < 2 {
            for u in 0..<args.units { body(raw, u, 0) }
            return
        }
        pool.run(UnitJob(body: body, args: raw)) { job, i, n in
            let j = job.load(as: UnitJob.self)
            let a = j.args.load(as: AttentionArgs.self)
            guard i < min(n, a.slots) else { return }
            ComputePool.shared.claim(a.units, inline: n == 1) { u in j.body(j.args, u, i) }
        }
    }
}

/// One attention pass's unit body and its arguments.
private struct UnitJob {
    let body: @convention(c) (UnsafeRawPointer, Int, Int) -> Void
    let args: UnsafeRawPointer
}
/// Query rows per causal block: small enough to skip most of the masked triangle, large enough for sgemm.
let attentionBlock = 64

/// S = Q K^T / sqrt(hd) for `m` query rows against the first `n` keys. Shapes: q [m, ldq], k [n, ldk],
/// s [m, lds].
@inline(__always) func scaledScores(
    _ q: UnsafePointer<Float>, _ ldq: Int, _ k: UnsafePointer<Float>, _ ldk: Int,
    _ m: Int, _ n: Int, _ lds: Int, _ headDim: Int, _ s: UnsafeMutablePointer<Float>
) {
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(headDim),
        1 / Float(headDim).squareRoot(), q, Int32(ldq), k, Int32(ldk), 0, s, Int32(lds))
}

/// Backward of `attentionForward`. Writes dq; dk and dv receive the sum over the query heads sharing each kv
/// head (they are zeroed here first, so dq, dk, dv may live in one interleaved buffer). The pool shares out
/// (sequence, kv head) pairs, so the query heads that accumulate into one kv head run on one thread.
///
/// Shapes: as the forward; dOut [rows, ldo]; dq [rows, lddq], dk [rows, lddk], dv [rows, lddv];
/// scratch and scratch2 [scratchCount] each (nil: one slot of maxSeqLen * maxSeqLen).
public func attentionBackward(
    dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, ldq: Int,
    k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int,
    out: UnsafePointer<Float>, ldo: Int, lse: UnsafePointer<Float>,
    dq: UnsafeMutablePointer<Float>, lddq: Int, dk: UnsafeMutablePointer<Float>, lddk: Int,
    dv: UnsafeMutablePointer<Float>, lddv: Int, rows: Int, seqStarts: UnsafePointer<Int32>,
    seqCount: Int, heads: Int, kvHeads: Int, headDim: Int,
    scratch: UnsafeMutablePointer<Float>, scratch2: UnsafeMutablePointer<Float>,
    scratchCount: Int? = nil
) {
    let slot = longestSequence(seqStarts, seqCount)
    let a = AttentionArgs(
        q: q, ldq: ldq, k: k, ldk: ldk, v: v, ldv: ldv, out: UnsafeMutablePointer(mutating: out), ldo: ldo,
        lse: UnsafeMutablePointer(mutating: lse), dOut: dOut, dq: dq, lddq: lddq, dk: dk, lddk: lddk,
        dv: dv, lddv: lddv, rows: rows, seqStarts: seqStarts, heads: heads, kvHeads: kvHeads,
        headDim: headDim, scratch: scratch, scratch2: scratch2, slot: slot * slot,
        units: seqCount * kvHeads, slots: scratchCount.map { $0 / max(1, slot * slot) } ?? 1)
    forEachUnit(a) { raw, u, thread in
        let a = raw.load(as: AttentionArgs.self)
        let headDim = a.headDim, group = a.heads / a.kvHeads, scale = 1 / Float(headDim).squareRoot()
        let q = a.q, k = a.k, v = a.v, out = UnsafePointer(a.out), lse = UnsafePointer(a.lse), dOut = a.dOut!
        let dq = a.dq!, dk = a.dk!, dv = a.dv!
        let ldq = a.ldq, ldk = a.ldk, ldv = a.ldv, ldo = a.ldo, lddq = a.lddq, lddk = a.lddk, lddv = a.lddv,
            rows = a.rows
        let s = u / a.kvHeads, kvh = u % a.kvHeads
        let start = Int(a.seqStarts[s]), t = Int(a.seqStarts[s + 1]) - start
        if t <= 0 { return }
        let kh = k + start * ldk + kvh * headDim
        let vh = v + start * ldv + kvh * headDim
        let dkh = dk + start * lddk + kvh * headDim, dvh = dv + start * lddv + kvh * headDim
        for r in 0..<t {
            zeroFill(dkh + r * lddk, headDim)
            zeroFill(dvh + r * lddv, headDim)
        }
        let p = a.scratch + thread * a.slot, dp = a.scratch2! + thread * a.slot
        for h in (kvh * group)..<((kvh + 1) * group) {
            let qh = q + start * ldq + h * headDim
            let oh = out + start * ldo + h * headDim
            let doh = dOut + start * ldo + h * headDim
            let dqh = dq + start * lddq + h * headDim
            let lseRow = lse + h * rows + start
            var i0 = 0
            while i0 < t {
                let i1 = min(t, i0 + attentionBlock), ib = i1 - i0
                let pb = p + i0 * t, dpb = dp + i0 * t
                scaledScores(qh + i0 * ldq, ldq, kh, ldk, ib, i1, t, headDim, pb)
                // dP = dO V^T  [ib, i1]
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasTrans, Int32(ib), Int32(i1), Int32(headDim),
                    1, doh + i0 * ldo, Int32(ldo), vh, Int32(ldv), 0, dpb, Int32(t))
                for i in i0..<i1 {
                    let pr = p + i * t, dpr = dp + i * t
                    let n = i + 1
                    _ = expShiftInPlace(pr, n, lseRow[i])
                    if n < i1 {
                        zeroFill(pr + n, i1 - n)
                        zeroFill(dpr + n, i1 - n)
                    }
                    // D_i = sum_j P_ij dP_ij = dO_i . O_i
                    let d = dot(doh + i * ldo, oh + i * ldo, headDim)
                    var j = 0
                    let dv16 = F16x(repeating: d)
                    while j + 16 <= n {
                        store16(load16(pr + j) * (load16(dpr + j) - dv16), dpr + j)
                        j += 16
                    }
                    while j < n {
                        dpr[j] = pr[j] * (dpr[j] - d)
                        j += 1
                    }
                }
                // dV[0..<i1] += P^T dO ; dQ[i0..<i1] = scale dS K ; dK[0..<i1] += scale dS^T Q
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(i1), Int32(headDim), Int32(ib),
                    1, pb, Int32(t), doh + i0 * ldo, Int32(ldo), 1, dvh, Int32(lddv))
                cblas_sgemm(
                    CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(ib), Int32(headDim), Int32(i1),
                    scale, dpb, Int32(t), kh, Int32(ldk), 0, dqh + i0 * lddq, Int32(lddq))
                cblas_sgemm(
                    CblasRowMajor, CblasTrans, CblasNoTrans, Int32(i1), Int32(headDim), Int32(ib),
                    scale, dpb, Int32(t), qh + i0 * ldq, Int32(ldq), 1, dkh, Int32(lddk))
                i0 = i1
            }
        }
    }
}
