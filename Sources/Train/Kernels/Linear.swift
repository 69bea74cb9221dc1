/// Forward of a linear layer `y = x W^T + b` with W stored [out, in] (nn.Linear layout).
///
/// Shapes: x [rows, inDim] (row stride ldx), W [outDim, inDim], bias [outDim] or nil, y [rows, outDim]
/// (row stride ldy). With `accumulate` the result is added to y (residual connections). Every linear layer of the model goes through this function and `linearBackward`, so an
/// adapter (LoRA) can wrap both in one place.
public func linearForward(
    x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int,
    rows: Int, inDim: Int, outDim: Int, accumulate: Bool = false
) {
    guard rows > 0 else { return }
    if rows <= smallBatchLinearMaxRows {
        // decoding: stream W once (sgemm would pack all of W first; gemv reads it once per row)
        smallBatchLinear(
            x: x, ldx: ldx, weight: weight, bias: bias, y: y, ldy: ldy, rows: rows, inDim: inDim,
            outDim: outDim, accumulate: accumulate)
        return
    }
    var beta: Float = accumulate ? 1 : 0
    if let bias {
        let args = BiasArgs(dy: bias, ldy: 0, out: y, ldo: ldy, dim: outDim, rows: 0, accumulate: accumulate)
        ComputePool.shared.parallelFor(rows, minPerThread: 64, args) { raw, lo, hi in
            let a = raw.load(as: BiasArgs.self)
            for r in lo..<hi {
                if a.accumulate {
                    addInPlace(a.dy, a.out + r * a.ldo, a.dim)
                } else {
                    (a.out + r * a.ldo).update(from: a.dy, count: a.dim)
                }
            }
        }
        beta = 1
    }
    sgemm(false, true, rows, outDim, inDim, 1, x, ldx, weight, inDim, beta, y, ldy)
}

/// Backward of `linearForward`: accumulates dW += dy^T x and db += colsum(dy); writes or adds dx = dy W.
///
/// Shapes: dy [rows, outDim] (stride ldy), x [rows, inDim] (stride ldx), W/dW [outDim, inDim], db [outDim],
/// dx [rows, inDim] (stride lddx). `accumulateDX` adds into dx instead of overwriting it.
public func linearBackward(
    dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, ldx: Int,
    weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, lddx: Int,
    accumulateDX: Bool, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, rows: Int, inDim: Int, outDim: Int
) {
    guard rows > 0 else { return }
    sgemm(true, false, outDim, inDim, rows, 1, dy, ldy, x, ldx, 1, dWeight, inDim)
    if let dBias {
        // column sums, split by columns so threads never share an output
        let args = BiasArgs(dy: dy, ldy: ldy, out: dBias, ldo: 0, dim: outDim, rows: rows, accumulate: true)
        ComputePool.shared.parallelFor(outDim, grain: 16, minPerThread: rows >= 64 ? 16 : outDim, args) { raw, lo, hi in
            let a = raw.load(as: BiasArgs.self)
            for r in 0..<a.rows { addInPlace(a.dy + r * a.ldy + lo, a.out + lo, hi - lo) }
        }
    }
    if let dx {
        sgemm(false, false, rows, inDim, outDim, 1, dy, ldy, weight, inDim, accumulateDX ? 1 : 0, dx, lddx)
    }
}

/// Operands of the bias passes, for the pool: forward copies (or, accumulating, adds) `dy` (the bias) into
/// each output row; backward sums `rows` rows of dy into `out` (the bias gradient).
private struct BiasArgs {
    let dy: UnsafePointer<Float>, ldy: Int
    let out: UnsafeMutablePointer<Float>, ldo: Int
    let dim: Int, rows: Int, accumulate: Bool
}
