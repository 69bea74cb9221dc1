/// Forward of a linear layer `y = x W^T + b` with W stored [out, in] (nn.Linear layout).
///
/// Shapes: x [rows, inDim] (row stride ldx), W [outDim, inDim], bias [outDim] or nil, y [rows, outDim]
/// (row stride ldy). With `accumulate` the result is added to y (residual connections). Every linear layer of
/// the model goes through this function and `linearBackward`, so an adapter (LoRA) or a precision can wrap both in
/// one place. With `bf16`, x is rounded to bf16 and multiplied by the layer's rounded weight (f32 accumulation,
/// f32 y); the bias stays f32. Without `bf16`, passes of few rows (decoding) run the streaming small-batch kernel.
public func linearForward(
    x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int,
    rows: Int, inDim: Int, outDim: Int, accumulate: Bool = false, bf16: BF16Linear? = nil
) {
    guard rows > 0 else { return }
    if bf16 == nil, rows <= smallBatchLinearMaxRows {
        // decoding: stream W once (sgemm would pack all of W first; gemv reads it once per row)
        smallBatchLinear(
            x: x, ldx: ldx, weight: weight, bias: bias, y: y, ldy: ldy, rows: rows, inDim: inDim,
            outDim: outDim, accumulate: accumulate)
        return
    }
    var beta: Float = accumulate ? 1 : 0
    if let bias {
        writeBiasRows(bias, y: y, ldy: ldy, rows: rows, outDim: outDim, accumulate: accumulate)
        beta = 1
    }
    if let bf16 {
        roundRowsToBF16(x, ldx, bf16.scratch, rows: rows, cols: inDim)
        bf16gemm(
            false, true, rows, outDim, inDim, bf16.scratch, inDim, bf16.weight, inDim, accumulate: beta == 1, y, ldy)
        return
    }
    sgemm(false, true, rows, outDim, inDim, 1, x, ldx, weight, inDim, beta, y, ldy)
}

/// Writes (or, accumulating, adds) the bias into every row of y, so the product that follows accumulates.
///
/// Shapes: bias [outDim], y [rows, outDim] (stride ldy).
func writeBiasRows(
    _ bias: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, outDim: Int, accumulate: Bool
) {
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
}

/// A linear layer's operands in bf16 (`Precision.bf16`).
public struct BF16Linear {
    /// The weight rounded to bf16: [outDim, inDim].
    public let weight: UnsafePointer<BF16Bits>
    /// Room for the rounded activations: forward x [rows, inDim]; backward dy [rows, outDim] then x [rows, inDim].
    public let scratch: UnsafeMutablePointer<BF16Bits>
    /// Where backward's rounded x starts in `scratch` (at least rows * outDim).
    public let secondOffset: Int

    /// Operands over `weight` and `scratch`.
    public init(weight: UnsafePointer<BF16Bits>, scratch: UnsafeMutablePointer<BF16Bits>, secondOffset: Int) {
        self.weight = weight
        self.scratch = scratch
        self.secondOffset = secondOffset
    }
}

/// Rounds a strided f32 matrix to a packed bf16 one.
///
/// Shapes: src [rows, cols] (row stride ld), dst [rows, cols].
public func roundRowsToBF16(
    _ src: UnsafePointer<Float>, _ ld: Int, _ dst: UnsafeMutablePointer<BF16Bits>, rows: Int, cols: Int
) {
    if ld == cols {
        roundToBF16(src, dst, rows * cols)
    } else {
        for r in 0..<rows { roundToBF16(src + r * ld, dst + r * cols, cols) }
    }
}

/// Backward of `linearForward`: accumulates dW += dy^T x (unless dWeight is nil: a frozen weight) and
/// db += colsum(dy); writes or adds dx = dy W.
///
/// Shapes: dy [rows, outDim] (stride ldy), x [rows, inDim] (stride ldx), W/dW [outDim, inDim], db [outDim],
/// dx [rows, inDim] (stride lddx). `accumulateDX` adds into dx instead of overwriting it. With `bf16`, dy and x
/// are rounded to bf16 for both products (f32 accumulation into the f32 dW and dx); db sums the f32 dy.
public func linearBackward(
    dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, ldx: Int,
    weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>?, lddx: Int,
    accumulateDX: Bool, dWeight: UnsafeMutablePointer<Float>?,
    dBias: UnsafeMutablePointer<Float>?, rows: Int, inDim: Int, outDim: Int, bf16: BF16Linear? = nil
) {
    guard rows > 0 else { return }
    if let bf16 {
        let dy16 = bf16.scratch, x16 = bf16.scratch + bf16.secondOffset
        roundRowsToBF16(dy, ldy, dy16, rows: rows, cols: outDim)
        if let dWeight {
            roundRowsToBF16(x, ldx, x16, rows: rows, cols: inDim)
            bf16gemm(true, false, outDim, inDim, rows, dy16, outDim, x16, inDim, accumulate: true, dWeight, inDim)
        }
        if let dx {
            bf16gemm(
                false, false, rows, inDim, outDim, dy16, outDim, bf16.weight, inDim, accumulate: accumulateDX, dx, lddx)
        }
    } else {
        if let dWeight { sgemm(true, false, outDim, inDim, rows, 1, dy, ldy, x, ldx, 1, dWeight, inDim) }
        if let dx {
            sgemm(false, false, rows, inDim, outDim, 1, dy, ldy, weight, inDim, accumulateDX ? 1 : 0, dx, lddx)
        }
    }
    if let dBias {
        // column sums, split by columns so threads never share an output
        let args = BiasArgs(dy: dy, ldy: ldy, out: dBias, ldo: 0, dim: outDim, rows: rows, accumulate: true)
        ComputePool.shared.parallelFor(outDim, grain: 16, minPerThread: rows >= 64 ? 16 : outDim, args) { raw, lo, hi in
            let a = raw.load(as: BiasArgs.self)
            for r in 0..<a.rows { addInPlace(a.dy + r * a.ldy + lo, a.out + lo, hi - lo) }
        }
    }
}

/// Operands of the bias passes, for the pool: forward copies (or, accumulating, adds) `dy` (the bias) into
/// each output row; backward sums `rows` rows of dy into `out` (the bias gradient).
private struct BiasArgs {
    let dy: UnsafePointer<Float>, ldy: Int
    let out: UnsafeMutablePointer<Float>, ldo: Int
    let dim: Int, rows: Int, accumulate: Bool
}
