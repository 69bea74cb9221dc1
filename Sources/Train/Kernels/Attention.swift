import COpenBLAS
import Foundation

/// Causal grouped-query attention over a packed batch, forward.
///
/// Sequences are concatenated: sequence s covers rows seqStarts[s] ..< seqStarts[s+1] and attends only within
/// itself. Query head h reads kv head h / (heads / kvHeads). Probabilities are not stored: the backward
/// recomputes them from the saved per-row log-sum-exp, so memory is O(rows), not O(T^2).
///
/// Shapes: q [rows, ldq] (heads * headDim used), k [rows, ldk], v [rows, ldv] (kvHeads * headDim used),
/// out [rows, ldo] (heads * headDim), lse [heads, rows], seqStarts [seqCount + 1],
/// scratch [maxSeqLen * maxSeqLen].
public func attentionForward(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldk: Int,
                             v: UnsafePointer<Float>, ldv: Int, out: UnsafeMutablePointer<Float>, ldo: Int,
                             lse: UnsafeMutablePointer<Float>, rows: Int, seqStarts: UnsafePointer<Int32>,
                             seqCount: Int, heads: Int, kvHeads: Int, headDim: Int,
                             scratch: UnsafeMutablePointer<Float>) {
    forEachSequenceHead(seqStarts, seqCount, heads, kvHeads) { start, t, h, kvh in
        let vh = v + start * ldv + kvh * headDim
        scaledScores(q + start * ldq + h * headDim, ldq, k + start * ldk + kvh * headDim, ldk, t, headDim, scratch)
        let lseRow = lse + h * rows + start
        for i in 0..<t {
            let row = scratch + i * t
            let n = i + 1
            let m = maxOf(row, n)
            let sum = expShiftInPlace(row, n, m)
            let inv = 1 / sum
            for j in 0..<n { row[j] *= inv }
            if n < t { zeroFill(row + n, t - n) }
            lseRow[i] = m + Foundation.log(sum)
        }
        // O = P V  [t, hd]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(t), Int32(headDim), Int32(t),
                    1, scratch, Int32(t), vh, Int32(ldv), 0, out + start * ldo + h * headDim, Int32(ldo))
    }
}

/// Calls body(start, length, head, kvHead) for every (sequence, query head) pair of a packed batch.
@inline(__always) func forEachSequenceHead(_ seqStarts: UnsafePointer<Int32>, _ seqCount: Int, _ heads: Int,
                                           _ kvHeads: Int, _ body: (Int, Int, Int, Int) -> Void) {
    let group = heads / kvHeads
    for s in 0..<seqCount {
        let start = Int(seqStarts[s]), t = Int(seqStarts[s + 1]) - start
        if t <= 0 { continue }
        for h in 0..<heads { body(start, t, h, h / group) }
    }
}

/// S = Q K^T / sqrt(hd) for one head of one sequence. Shapes: q [t, ldq], k [t, ldk], s [t, t].
@inline(__always) func scaledScores(_ q: UnsafePointer<Float>, _ ldq: Int, _ k: UnsafePointer<Float>, _ ldk: Int,
                                    _ t: Int, _ headDim: Int, _ s: UnsafeMutablePointer<Float>) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(t), Int32(t), Int32(headDim),
                1 / Float(headDim).squareRoot(), q, Int32(ldq), k, Int32(ldk), 0, s, Int32(t))
}

/// Backward of `attentionForward`. Writes dq; dk and dv receive the sum over the query heads sharing each kv
/// head (they are zeroed here first, so dq, dk, dv may live in one interleaved buffer).
///
/// Shapes: as the forward; dOut [rows, ldo]; dq [rows, lddq], dk [rows, lddk], dv [rows, lddv];
/// scratch and scratch2 [maxSeqLen * maxSeqLen] each.
public func attentionBackward(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, ldq: Int,
                              k: UnsafePointer<Float>, ldk: Int, v: UnsafePointer<Float>, ldv: Int,
                              out: UnsafePointer<Float>, ldo: Int, lse: UnsafePointer<Float>,
                              dq: UnsafeMutablePointer<Float>, lddq: Int, dk: UnsafeMutablePointer<Float>, lddk: Int,
                              dv: UnsafeMutablePointer<Float>, lddv: Int, rows: Int, seqStarts: UnsafePointer<Int32>,
                              seqCount: Int, heads: Int, kvHeads: Int, headDim: Int,
                              scratch: UnsafeMutablePointer<Float>, scratch2: UnsafeMutablePointer<Float>) {
    let scale = 1 / Float(headDim).squareRoot()
    let kvWidth = kvHeads * headDim
    for r in 0..<rows {
        zeroFill(dk + r * lddk, kvWidth)
        zeroFill(dv + r * lddv, kvWidth)
    }
    forEachSequenceHead(seqStarts, seqCount, heads, kvHeads) { start, t, h, kvh in
        let qh = q + start * ldq + h * headDim
        let kh = k + start * ldk + kvh * headDim
        let vh = v + start * ldv + kvh * headDim
        let oh = out + start * ldo + h * headDim
        let doh = dOut + start * ldo + h * headDim
        let lseRow = lse + h * rows + start
        let p = scratch, dp = scratch2
        scaledScores(qh, ldq, kh, ldk, t, headDim, p)
        // dP = dO V^T  [t, t]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(t), Int32(t), Int32(headDim),
                    1, doh, Int32(ldo), vh, Int32(ldv), 0, dp, Int32(t))
        for i in 0..<t {
            let pr = p + i * t, dpr = dp + i * t
            let n = i + 1
            _ = expShiftInPlace(pr, n, lseRow[i])
            if n < t { zeroFill(pr + n, t - n); zeroFill(dpr + n, t - n) }
            // D_i = sum_j P_ij dP_ij = dO_i . O_i
            let d = dot(doh + i * ldo, oh + i * ldo, headDim)
            var j = 0
            let dv16 = F16x(repeating: d)
            while j + 16 <= n { store16(load16(pr + j) * (load16(dpr + j) - dv16), dpr + j); j += 16 }
            while j < n { dpr[j] = pr[j] * (dpr[j] - d); j += 1 }
        }
        // dV += P^T dO ; dQ = scale dS K ; dK += scale dS^T Q
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(t), Int32(headDim), Int32(t),
                    1, p, Int32(t), doh, Int32(ldo), 1, dv + start * lddv + kvh * headDim, Int32(lddv))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(t), Int32(headDim), Int32(t),
                    scale, dp, Int32(t), kh, Int32(ldk), 0, dq + start * lddq + h * headDim, Int32(lddq))
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(t), Int32(headDim), Int32(t),
                    scale, dp, Int32(t), qh, Int32(ldq), 1, dk + start * lddk + kvh * headDim, Int32(lddk))
    }
}
