import Foundation

/// LM head + log-softmax over all rows at once, keeping e_ij = exp(z_ij - max_i) and s_i = 1 / sum_j e_ij for
/// `lmHeadBackwardCached`, so the backward needs no second logits matmul (a third of the head's work) and no
/// pass over the [rows, vocab] softmax of its own.
///
/// Shapes: hidden [rows, dim], weight [vocab, dim], targets [rows] (valid ids); logProbs, lse, scale [rows];
/// cache [rows, vocab]. With `bf16` the logits' product reads hidden and the weight in bf16, and each row of e
/// is also kept rounded to bf16 (`bf16.cache`, [rows, vocab]) for the backward's two products; the softmax
/// itself is f32.
public func lmHeadForwardCached(
    hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    logProbs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
    scale: UnsafeMutablePointer<Float>, rows: Int, dim: Int, vocab: Int,
    cache: UnsafeMutablePointer<Float>, bf16: BF16Head? = nil
) {
    guard rows > 0 else { return }
    if let bf16 {
        roundToBF16(hidden, bf16.scratch, rows * dim)
        bf16gemm(false, true, rows, vocab, dim, bf16.scratch, dim, bf16.weight, dim, accumulate: false, cache, vocab)
    } else {
        chunkLogits(hidden, weight, rows, dim, vocab, cache)
    }
    let args = CachedHeadArgs(
        cache: cache, targets: targets, logProbs: logProbs, lse: lse, scale: scale, vocab: vocab,
        rounded: bf16?.cache)
    ComputePool.shared.parallelFor(rows, args) { raw, lo, hi in
        let a = raw.load(as: CachedHeadArgs.self)
        for i in lo..<hi {
            let z = a.cache + i * a.vocab
            let m = maxOf(z, a.vocab)
            let zt = z[Int(a.targets[i])]
            let sum = expShiftInPlace(z, a.vocab, m)
            let l = m + Foundation.log(sum)
            a.lse[i] = l
            a.logProbs[i] = zt - l
            a.scale[i] = 1 / sum
            if let r = a.rounded { roundToBF16(z, r + i * a.vocab, a.vocab) }
        }
    }
}

/// The LM head's operands in bf16: the weight rounded [vocab, dim], scratch for rounded rows [rows, dim], and
/// the rounded copy of the forward's e [rows, vocab].
public struct BF16Head {
    /// The weight rounded to bf16.
    public let weight: UnsafePointer<BF16Bits>
    /// Room for [rows, dim] rounded values.
    public let scratch: UnsafeMutablePointer<BF16Bits>
    /// e rounded, written by the forward and read by the backward.
    public let cache: UnsafeMutablePointer<BF16Bits>

    /// Operands over these buffers.
    public init(
        weight: UnsafePointer<BF16Bits>, scratch: UnsafeMutablePointer<BF16Bits>, cache: UnsafeMutablePointer<BF16Bits>
    ) {
        self.weight = weight
        self.scratch = scratch
        self.cache = cache
    }
}

/// Backward of `lmHeadForwardCached` from per-row dlogp, leaving the cache intact. With dz_i = g_i (onehot_i -
/// s_i e_i), the row factors f_i = -g_i s_i move onto the small operands: dHidden = diag(f) (E W) + g_i W[t_i]
/// and dWeight += E^T (diag(f) hidden) + rows g_i hidden_i at t_i, so the [rows, vocab] cache is only read
/// by the two matmuls.
///
/// Shapes: as the forward; dLogProbs [rows]; dHidden [rows, dim]; dWeight [vocab, dim] (nil: a frozen head);
/// scaledHidden [rows, dim] scratch. With `bf16` (the forward's), both products read the rounded e, the rounded weight and the scaled
/// hidden rows rounded; the onehot part and the row factors stay f32.
public func lmHeadBackwardCached(
    hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    scale: UnsafePointer<Float>, dLogProbs: UnsafePointer<Float>,
    dHidden: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
    rows: Int, dim: Int, vocab: Int, cache: UnsafePointer<Float>,
    scaledHidden: UnsafeMutablePointer<Float>, bf16: BF16Head? = nil
) {
    guard rows > 0 else { return }
    if let bf16 {
        bf16gemm(false, false, rows, dim, vocab, bf16.cache, vocab, bf16.weight, dim, accumulate: false, dHidden, dim)
    } else {
        sgemm(false, false, rows, dim, vocab, 1, cache, vocab, weight, dim, 0, dHidden, dim)
    }
    let args = CachedBackArgs(
        hidden: hidden, weight: weight, targets: targets, scale: scale, dLogProbs: dLogProbs,
        dHidden: dHidden, scaledHidden: scaledHidden, dim: dim)
    ComputePool.shared.parallelFor(rows, minPerThread: 64, args) { raw, lo, hi in
        let a = raw.load(as: CachedBackArgs.self)
        let dim = a.dim
        for i in lo..<hi {
            let g = a.dLogProbs[i], f = -g * a.scale[i]
            let dh = a.dHidden + i * dim, hs = a.scaledHidden + i * dim, h = a.hidden + i * dim
            let w = a.weight + Int(a.targets[i]) * dim
            let fv = F16x(repeating: f), gv = F16x(repeating: g)
            var j = 0
            while j + 16 <= dim {
                store16(fv * load16(dh + j) + gv * load16(w + j), dh + j)
                store16(fv * load16(h + j), hs + j)
                j += 16
            }
            while j < dim {
                dh[j] = f * dh[j] + g * w[j]
                hs[j] = f * h[j]
                j += 1
            }
        }
    }
    guard let dWeight else { return }  // a frozen head (LoRA): dHidden is all that is needed
    if let bf16 {
        roundToBF16(scaledHidden, bf16.scratch, rows * dim)
        bf16gemm(true, false, vocab, dim, rows, bf16.cache, vocab, bf16.scratch, dim, accumulate: true, dWeight, dim)
    } else {
        sgemm(true, false, vocab, dim, rows, 1, cache, vocab, scaledHidden, dim, 1, dWeight, dim)
    }
    // the onehot part, on one thread: rows with the same target add into the same dWeight row
    for i in 0..<rows { axpy(dLogProbs[i], hidden + i * dim, dWeight + Int(targets[i]) * dim, dim) }
}

/// Operands of the cached backward's per-row pass, for the pool.
private struct CachedBackArgs {
    let hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>
    let scale: UnsafePointer<Float>, dLogProbs: UnsafePointer<Float>
    let dHidden: UnsafeMutablePointer<Float>, scaledHidden: UnsafeMutablePointer<Float>, dim: Int
}

/// Operands of the cached forward's per-row pass, for the pool.
private struct CachedHeadArgs {
    let cache: UnsafeMutablePointer<Float>, targets: UnsafePointer<Int32>
    let logProbs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>, scale: UnsafeMutablePointer<Float>
    let vocab: Int
    let rounded: UnsafeMutablePointer<BF16Bits>?
}
