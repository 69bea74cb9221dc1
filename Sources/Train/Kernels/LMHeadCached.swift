import COpenBLAS
import Foundation

/// LM head + log-softmax over all rows at once, keeping e_ij = exp(z_ij - max_i) and s_i = 1 / sum_j e_ij for
/// `lmHeadBackwardCached`, so the backward needs no second logits matmul (a third of the head's work).
///
/// Shapes: hidden [rows, dim], weight [vocab, dim], targets [rows] (valid ids); logProbs, lse, scale [rows];
/// cache [rows, vocab].
public func lmHeadForwardCached(hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                                logProbs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                                scale: UnsafeMutablePointer<Float>, rows: Int, dim: Int, vocab: Int,
                                cache: UnsafeMutablePointer<Float>) {
    guard rows > 0 else { return }
    chunkLogits(hidden, weight, rows, dim, vocab, cache)
    for i in 0..<rows {
        let z = cache + i * vocab
        let m = maxOf(z, vocab)
        let zt = z[Int(targets[i])]
        let sum = expShiftInPlace(z, vocab, m)
        let l = m + Foundation.log(sum)
        lse[i] = l
        logProbs[i] = zt - l
        scale[i] = 1 / sum
    }
}

/// Backward of `lmHeadForwardCached` from per-row dlogp: dz = g (onehot - p) formed in place in `cache` (which
/// it consumes), then dHidden = dz W (overwritten) and dWeight += dz^T hidden.
///
/// Shapes: as the forward; dLogProbs [rows]; dHidden [rows, dim]; dWeight [vocab, dim].
public func lmHeadBackwardCached(hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                                 scale: UnsafePointer<Float>, dLogProbs: UnsafePointer<Float>,
                                 dHidden: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                 rows: Int, dim: Int, vocab: Int, cache: UnsafeMutablePointer<Float>) {
    guard rows > 0 else { return }
    for i in 0..<rows {
        let z = cache + i * vocab, g = dLogProbs[i]
        let f = -g * scale[i]
        let fv = F16x(repeating: f)
        var j = 0
        while j + 16 <= vocab { store16(fv * load16(z + j), z + j); j += 16 }
        while j < vocab { z[j] *= f; j += 1 }
        z[Int(targets[i])] += g
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(dim), Int32(vocab),
                1, cache, Int32(vocab), weight, Int32(dim), 0, dHidden, Int32(dim))
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(vocab), Int32(dim), Int32(rows),
                1, cache, Int32(vocab), hidden, Int32(dim), 1, dWeight, Int32(dim))
}
