import COpenBLAS

/// Forward of a linear layer `y = x W^T + b` with W stored [out, in] (nn.Linear layout).
///
/// Shapes: x [rows, inDim] (row stride ldx), W [outDim, inDim], bias [outDim] or nil, y [rows, outDim]
/// (row stride ldy). With `accumulate` the result is added to y (residual connections). Every linear layer of the model goes through this function and `linearBackward`, so an
/// adapter (LoRA) can wrap both in one place.
public func linearForward(x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int,
                          rows: Int, inDim: Int, outDim: Int, accumulate: Bool = false) {
    guard rows > 0 else { return }
    if rows <= smallBatchLinearMaxRows {
        // decoding: stream W once (sgemm would pack all of W first; gemv reads it once per row)
        smallBatchLinear(x: x, ldx: ldx, weight: weight, bias: bias, y: y, ldy: ldy, rows: rows, inDim: inDim,
                         outDim: outDim, accumulate: accumulate)
        return
    }
    var beta: Float = accumulate ? 1 : 0
    if let bias {
        for r in 0..<rows {
            if accumulate { addInPlace(bias, y + r * ldy, outDim) } else { (y + r * ldy).update(from: bias, count: outDim) }
        }
        beta = 1
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outDim), Int32(inDim),
                1, x, Int32(ldx), weight, Int32(inDim), beta, y, Int32(ldy))
}

/// Backward of `linearForward`: accumulates dW += dy^T x and db += colsum(dy); writes or adds dx = dy W.
///
/// Shapes: dy [rows, outDim] (stride ldy), x [rows, inDim] (stride ldx), W/dW [outDim, inDim], db [outDim],
/// dx [rows, inDim] (stride lddx). `accumulateDX` adds into dx instead of overwriting it.
public func linearBackward(dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, ldx: Int,
                           weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, lddx: Int,
                           accumulateDX: Bool, dWeight: UnsafeMutablePointer<Float>,
                           dBias: UnsafeMutablePointer<Float>?, rows: Int, inDim: Int, outDim: Int) {
    guard rows > 0 else { return }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outDim), Int32(inDim), Int32(rows),
                1, dy, Int32(ldy), x, Int32(ldx), 1, dWeight, Int32(inDim))
    if let dBias {
        for r in 0..<rows { addInPlace(dy + r * ldy, dBias, outDim) }
    }
    if let dx {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(inDim), Int32(outDim),
                    1, dy, Int32(ldy), weight, Int32(inDim), accumulateDX ? 1 : 0, dx, Int32(lddx))
    }
}
