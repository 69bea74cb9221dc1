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
    let args = CachedHeadArgs(cache: cache, targets: targets, logProbs: logProbs, lse: lse, scale: scale,
                              dLogProbs: nil, vocab: vocab)
    ComputePool.shared.parallelFor(rows, args) { raw, lo, hi in
        let a = raw.load(as: CachedHeadArgs.self)
        for i in lo..<hi {
            let z = a.cache + i * a.vocab
            let m = maxOf(z, a.vocab)
            let zt = z[Int(a.targets[i])]
            let sum = expShiftInPlace(z, a.vocab, m)
            let l = m + Foundation.log(sum)
            a.lse![i] = l
            a.logProbs![i] = zt - l
            a.scale[i] = 1 / sum
        }
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
    let args = CachedHeadArgs(cache: cache, targets: targets, logProbs: nil, lse: nil,
                              scale: UnsafeMutablePointer(mutating: scale), dLogProbs: dLogProbs, vocab: vocab)
    ComputePool.shared.parallelFor(rows, args) { raw, lo, hi in
        let a = raw.load(as: CachedHeadArgs.self)
        let vocab = a.vocab
        for i in lo..<hi {
            let z = a.cache + i * vocab, g = a.dLogProbs![i]
            let f = -g * a.scale[i]
            let fv = F16x(repeating: f)
            var j = 0
            while j + 16 <= vocab { store16(fv * load16(z + j), z + j); j += 16 }
            while j < vocab { z[j] *= f; j += 1 }
            z[Int(a.targets[i])] += g
        }
    }
    sgemm(false, false, rows, dim, vocab, 1, cache, vocab, weight, dim, 0, dHidden, dim)
    sgemm(true, false, vocab, dim, rows, 1, cache, vocab, hidden, dim, 1, dWeight, dim)
}

/// Operands of the cached head's per-row passes, for the pool.
private struct CachedHeadArgs {
    let cache: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>
    let logProbs: UnsafeMutablePointer<Float>?, lse: UnsafeMutablePointer<Float>?, scale: UnsafeMutablePointer<Float>
    let dLogProbs: UnsafePointer<Float>?, vocab: Int
}
