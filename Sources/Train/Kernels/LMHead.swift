import Foundation

/// Fills reference logits (or reference log-probs: any per-row shift cancels) for rows
/// firstRow ..< firstRow + rowCount into a [rowCount, vocab] buffer, for the exact KL term.
public typealias ReferenceLogitsProvider = (_ firstRow: Int, _ rowCount: Int, _ into: UnsafeMutablePointer<Float>) ->
    Void

/// log-sum-exp of a row of n >= 1 values.
@inline(__always) func logSumExp(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    let m = maxOf(p, n)
    return m + Foundation.log(sumExpShift(p, n, m))
}

/// Exact KL(p || q) of one row, p = softmax(z), q = softmax(r), given both rows' log-sum-exp.
@inline(__always) func klRow(
    _ z: UnsafePointer<Float>, _ lseP: Float, _ r: UnsafePointer<Float>, _ lseQ: Float,
    _ n: Int
) -> Float {
    var acc = F16x()
    var i = 0
    let lp16 = F16x(repeating: lseP), lq16 = F16x(repeating: lseQ)
    while i + 16 <= n {
        let lp = load16(z + i) - lp16, lq = load16(r + i) - lq16
        acc.addProduct(simdExp(lp), lp - lq)
        i += 16
    }
    var s = acc.sum()
    while i < n {
        let lp = z[i] - lseP
        s += scalarExp(lp) * (lp - (r[i] - lseQ))
        i += 1
    }
    return s
}

/// Exact per-row KL(softmax(z) || softmax(r)) over the full vocabulary.
///
/// Shapes: z, r [rows, vocab] (policy and reference logits), kl [rows].
public func klDivergenceForward(
    z: UnsafePointer<Float>, r: UnsafePointer<Float>, kl: UnsafeMutablePointer<Float>,
    rows: Int, vocab: Int
) {
    for i in 0..<rows {
        let zr = z + i * vocab, rr = r + i * vocab
        kl[i] = klRow(zr, logSumExp(zr, vocab), rr, logSumExp(rr, vocab), vocab)
    }
}

/// Gradient of the per-row KL with respect to the policy logits: dz_v += dkl * p_v (log p_v - log q_v - KL).
///
/// Shapes: z, r, dz [rows, vocab]; dkl [rows].
public func klDivergenceBackward(
    z: UnsafePointer<Float>, r: UnsafePointer<Float>, dkl: UnsafePointer<Float>,
    dz: UnsafeMutablePointer<Float>, rows: Int, vocab: Int
) {
    for i in 0..<rows {
        let zr = z + i * vocab, rr = r + i * vocab
        let lseP = logSumExp(zr, vocab), lseQ = logSumExp(rr, vocab)
        let kl = klRow(zr, lseP, rr, lseQ, vocab)
        klGradAccumulate(zr, lseP, rr, lseQ, kl, dkl[i], dz + i * vocab, vocab, overwrite: false)
    }
}

/// dz_v (+)= g * p_v (log p_v - log q_v - kl) for one row.
@inline(__always) func klGradAccumulate(
    _ z: UnsafePointer<Float>, _ lseP: Float, _ r: UnsafePointer<Float>,
    _ lseQ: Float, _ kl: Float, _ g: Float, _ dz: UnsafeMutablePointer<Float>,
    _ n: Int, overwrite: Bool
) {
    var i = 0
    let lp16 = F16x(repeating: lseP), lq16 = F16x(repeating: lseQ), k16 = F16x(repeating: kl)
    let g16 = F16x(repeating: g)
    while i + 16 <= n {
        let lp = load16(z + i) - lp16, lq = load16(r + i) - lq16
        let d = g16 * simdExp(lp) * (lp - lq - k16)
        store16(overwrite ? d : load16(dz + i) + d, dz + i)
        i += 16
    }
    while i < n {
        let lp = z[i] - lseP, lq = r[i] - lseQ
        let d = g * scalarExp(lp) * (lp - lq - kl)
        dz[i] = overwrite ? d : dz[i] + d
        i += 1
    }
}

/// Logits of one chunk: z = h W^T. Shapes: h [n, dim], W [vocab, dim], z [n, vocab].
@inline(__always) func chunkLogits(
    _ h: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ n: Int, _ dim: Int,
    _ vocab: Int, _ z: UnsafeMutablePointer<Float>
) {
    sgemm(false, true, n, vocab, dim, 1, h, dim, w, dim, 0, z, vocab)
}

/// Scratch the fused LM head needs: logits (and reference logits) for one chunk of rows.
public func lmHeadScratchCount(vocab: Int, chunkRows: Int, withReference: Bool) -> Int {
    vocab * chunkRows * (withReference ? 2 : 1)
}

/// Fused, row-chunked LM head + log-softmax: logProbs[i] = log softmax(hidden_i W^T)[targets[i]], never
/// materializing more than [chunkRows, vocab] logits. With `reference`, also the exact KL(p || q) per row.
///
/// Shapes: hidden [rows, dim], weight [vocab, dim], targets [rows] (valid ids), logProbs, lse, kl [rows],
/// scratch [lmHeadScratchCount(...)].
public func lmHeadForward(
    hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    logProbs: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
    rows: Int, dim: Int, vocab: Int, chunkRows: Int, scratch: UnsafeMutablePointer<Float>,
    reference: ReferenceLogitsProvider? = nil, kl: UnsafeMutablePointer<Float>? = nil
) {
    var c0 = 0
    while c0 < rows {
        let n = min(chunkRows, rows - c0)
        chunkLogits(hidden + c0 * dim, weight, n, dim, vocab, scratch)
        let ref = scratch + chunkRows * vocab
        if let reference { reference(c0, n, ref) }
        let args = HeadRowArgs(
            z: scratch, ref: reference != nil ? ref : nil, targets: targets + c0, lse: lse + c0,
            logProbs: logProbs + c0, kl: kl.map { $0 + c0 }, dLogProbs: nil, dKL: nil, vocab: vocab, v0: 0)
        ComputePool.shared.parallelFor(n, args) { raw, lo, hi in
            let a = raw.load(as: HeadRowArgs.self)
            let vocab = a.vocab
            for i in lo..<hi {
                let z = a.z + i * vocab
                let l = logSumExp(z, vocab)
                a.lse[i] = l
                a.logProbs![i] = z[Int(a.targets[i])] - l
                if let ref = a.ref, let kl = a.kl {
                    let rr = ref + i * vocab
                    kl[i] = klRow(z, l, rr, logSumExp(rr, vocab), vocab)
                }
            }
        }
        c0 += n
    }
}

/// Backward of `lmHeadForward` from per-row dlogp (and dkl when a reference is given): writes dHidden and
/// accumulates dWeight. Logits are recomputed per chunk rather than stored.
///
/// Shapes: as the forward; dLogProbs, dKL [rows]; dHidden [rows, dim]; dWeight [vocab, dim] (nil: a frozen head).
public func lmHeadBackward(
    hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    lse: UnsafePointer<Float>, dLogProbs: UnsafePointer<Float>,
    dHidden: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?,
    rows: Int, dim: Int, vocab: Int, chunkRows: Int, scratch: UnsafeMutablePointer<Float>,
    reference: ReferenceLogitsProvider? = nil, kl: UnsafePointer<Float>? = nil,
    dKL: UnsafePointer<Float>? = nil
) {
    let useKL = reference != nil && kl != nil && dKL != nil
    // Without KL, block over the vocabulary instead of rows when the scratch holds all rows for >= 256
    // vocabulary entries: each block of dW is then written once, instead of the whole [vocab, dim]
    // gradient being re-read and re-written once per row chunk (GB of traffic per step for 150k vocabularies).
    let block = chunkRows * vocab / max(rows, 1)
    if !useKL && rows > 0 && block >= min(vocab, 256) {
        lmHeadBackwardVocabBlocked(
            hidden: hidden, weight: weight, targets: targets, lse: lse, dLogProbs: dLogProbs,
            dHidden: dHidden, dWeight: dWeight, rows: rows, dim: dim, vocab: vocab,
            block: min(block, vocab), scratch: scratch)
        return
    }
    var c0 = 0
    while c0 < rows {
        let n = min(chunkRows, rows - c0)
        chunkLogits(hidden + c0 * dim, weight, n, dim, vocab, scratch)
        let ref = scratch + chunkRows * vocab
        if useKL, let reference { reference(c0, n, ref) }
        let args = HeadRowArgs(
            z: scratch, ref: useKL ? ref : nil, targets: targets + c0, lse: UnsafeMutablePointer(mutating: lse + c0),
            logProbs: nil, kl: kl.map { UnsafeMutablePointer(mutating: $0 + c0) }, dLogProbs: dLogProbs + c0,
            dKL: dKL.map { $0 + c0 }, vocab: vocab, v0: 0)
        ComputePool.shared.parallelFor(n, args) { raw, lo, hi in
            let a = raw.load(as: HeadRowArgs.self)
            let vocab = a.vocab, lse = a.lse, targets = a.targets, dLogProbs = a.dLogProbs!, useKL = a.ref != nil
            for i in lo..<hi {
                let row = i
                let z = a.z + i * vocab
                let g = dLogProbs[row]
                if let ref = a.ref, let kl = a.kl, let dKL = a.dKL {
                    // KL gradient needs the logits themselves, so form it before z is overwritten
                    let rr = ref + i * vocab
                    let lseQ = logSumExp(rr, vocab)
                    let lz = lse[row]
                    // ref row becomes the KL gradient; then z becomes the total gradient
                    klGradAccumulate(z, lz, rr, lseQ, kl[row], dKL[row], rr, vocab, overwrite: true)
                }
                // dz = g * (onehot - p)
                var j = 0
                let l16 = F16x(repeating: lse[row]), mg = F16x(repeating: -g)
                while j + 16 <= vocab {
                    store16(mg * simdExp(load16(z + j) - l16), z + j)
                    j += 16
                }
                while j < vocab {
                    z[j] = -g * scalarExp(z[j] - lse[row])
                    j += 1
                }
                z[Int(targets[row])] += g
                if let ref = a.ref, useKL { addInPlace(ref + i * vocab, z, vocab) }
            }
        }
        sgemm(false, false, n, dim, vocab, 1, scratch, vocab, weight, dim, 0, dHidden + c0 * dim, dim)
        if let dWeight { sgemm(true, false, vocab, dim, n, 1, scratch, vocab, hidden + c0 * dim, dim, 1, dWeight, dim) }
        c0 += n
    }
}

/// `lmHeadBackward` without KL, blocked over vocabulary columns: for each block, z = h W_b^T for all rows,
/// dz = g (onehot - p) using the forward's log-sum-exp, dh += dz W_b, dW_b += dz^T h.
///
/// Shapes: hidden, dHidden [rows, dim]; weight, dWeight [vocab, dim]; targets, lse, dLogProbs [rows];
/// scratch [rows * block].
func lmHeadBackwardVocabBlocked(
    hidden: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    targets: UnsafePointer<Int32>, lse: UnsafePointer<Float>,
    dLogProbs: UnsafePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>?, rows: Int, dim: Int, vocab: Int, block: Int,
    scratch: UnsafeMutablePointer<Float>
) {
    var v0 = 0
    while v0 < vocab {
        let vb = min(block, vocab - v0)
        sgemm(false, true, rows, vb, dim, 1, hidden, dim, weight + v0 * dim, dim, 0, scratch, vb)
        let args = HeadRowArgs(
            z: scratch, ref: nil, targets: targets, lse: UnsafeMutablePointer(mutating: lse), logProbs: nil,
            kl: nil, dLogProbs: dLogProbs, dKL: nil, vocab: vb, v0: v0)
        ComputePool.shared.parallelFor(rows, minPerThread: 4, args) { raw, lo, hi in
            let a = raw.load(as: HeadRowArgs.self)
            let vb = a.vocab, v0 = a.v0, targets = a.targets
            for r in lo..<hi {
                let z = a.z + r * vb, g = a.dLogProbs![r], l = a.lse[r]
                var j = 0
                let l16 = F16x(repeating: l), mg = F16x(repeating: -g)
                while j + 16 <= vb {
                    store16(mg * simdExp(load16(z + j) - l16), z + j)
                    j += 16
                }
                while j < vb {
                    z[j] = -g * scalarExp(z[j] - l)
                    j += 1
                }
                let t = Int(targets[r]) - v0
                if t >= 0 && t < vb { z[t] += g }
            }
        }
        sgemm(false, false, rows, dim, vb, 1, scratch, vb, weight + v0 * dim, dim, v0 == 0 ? 0 : 1, dHidden, dim)
        if let dWeight { sgemm(true, false, vb, dim, rows, 1, scratch, vb, hidden, dim, 1, dWeight + v0 * dim, dim) }
        v0 += vb
    }
}

/// Operands of the LM head's per-row passes, for the pool: rows of logits `z` (and reference logits), with the
/// row-indexed arrays already offset to the chunk's first row; `v0` is the first column of a vocabulary block.
private struct HeadRowArgs {
    let z: UnsafeMutablePointer<Float>, ref: UnsafeMutablePointer<Float>?
    let targets: UnsafePointer<Int32>, lse: UnsafeMutablePointer<Float>, logProbs: UnsafeMutablePointer<Float>?
    let kl: UnsafeMutablePointer<Float>?, dLogProbs: UnsafePointer<Float>?, dKL: UnsafePointer<Float>?
    let vocab: Int, v0: Int
}
