/// The scratch of a packed base's wide linear passes: one chunk of a matrix's rows dequantized to f32 (and, in
/// bf16, rounded), allocated once for the model's matrices.
public final class PackedGEMMScratch {
    /// Floats of dequantized rows one chunk may hold.
    let capacity: Int
    /// The chunk size aimed at, in floats.
    let chunkFloats: Int
    /// [capacity] f32 rows.
    let rows: UnsafeMutablePointer<Float>
    /// [capacity] the same rows in bf16.
    let low: UnsafeMutablePointer<BF16Bits>

    /// Floats a chunk holds by default: 4M (16 MB) keeps sgemm's panels wide (>= 364 rows of an 11008-wide
    /// matrix) while the base's full f32 copy, the thing a packed base avoids, is never made.
    public static let defaultChunkFloats = 1 << 22

    /// Scratch for chunks of about `chunkFloats` floats (at least 16 rows) of the given (outDim, inDim) matrices.
    init(matrices: [(outDim: Int, inDim: Int)], chunkFloats: Int = defaultChunkFloats) {
        self.chunkFloats = chunkFloats
        capacity = max(1, matrices.map { min($0.outDim * $0.inDim, chunkFloats + $0.inDim * 16) }.max() ?? 1)
        rows = .allocate(capacity: capacity)
        low = .allocate(capacity: capacity)
    }

    deinit {
        rows.deallocate()
        low.deallocate()
    }

    /// Bytes held.
    var bytes: Int { 6 * capacity }

    /// Rows of an [outDim, inDim] matrix per chunk (a multiple of 16, at least 16, at most outDim).
    func chunkRows(outDim: Int, inDim: Int) -> Int {
        min(outDim, max(16, min(capacity, chunkFloats) / inDim / 16 * 16))
    }
}

/// Dequantizes rows `first ..< first + count` of a packed matrix to f32 (split over the compute pool); with
/// `low`, rounds them to bf16 there as well.
///
/// Shapes: dst [count, matrix.inDim]; low [count, matrix.inDim].
func dequantizeRows(
    _ weights: PackedWeights, _ matrix: PackedMatrix, first: Int, count: Int, into dst: UnsafeMutablePointer<Float>,
    low: UnsafeMutablePointer<BF16Bits>?
) {
    let args = DequantArgs(
        storage: UnsafeRawPointer(weights.storage), matrix: matrix, first: first, dst: dst, low: low)
    ComputePool.shared.parallelFor(count, minPerThread: 8, args) { raw, lo, hi in
        let a = raw.load(as: DequantArgs.self)
        let inDim = a.matrix.inDim
        var segment = 0
        for j in lo..<hi {
            let r = a.first + j
            while r >= a.matrix.segments[segment].firstRow + a.matrix.segments[segment].rows { segment += 1 }
            let s = a.matrix.segments[segment], rowBytes = s.format.rowBytes(inDim)
            dequantizeRow(s.format, a.storage + s.byteOffset + (r - s.firstRow) * rowBytes, a.dst + j * inDim, inDim)
            if let low = a.low { roundToBF16(a.dst + j * inDim, low + j * inDim, inDim) }
        }
    }
}

private struct DequantArgs {
    let storage: UnsafeRawPointer, matrix: PackedMatrix, first: Int
    let dst: UnsafeMutablePointer<Float>, low: UnsafeMutablePointer<BF16Bits>?
}

/// `y = x W^T + b` for a wide pass (training, prompts) with W packed: W is dequantized a chunk of rows at a time
/// into `scratch` and multiplied by sgemm, or with `bf16` (room for x rounded) by the bf16 GEMM on the rounded
/// chunk. Dequantizing costs one pass over W per call, against 2 rows FLOPs per weight for the product.
///
/// Shapes: x [rows, inDim] (stride ldx), W [outDim, inDim] packed, bias [outDim] or nil, y [rows, outDim]
/// (stride ldy); bf16 [rows, inDim]. With `accumulate` the result is added to y.
public func packedLinearForward(
    x: UnsafePointer<Float>, ldx: Int, weights: PackedWeights, matrix: PackedMatrix, bias: UnsafePointer<Float>?,
    y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, accumulate: Bool, scratch: PackedGEMMScratch,
    bf16: UnsafeMutablePointer<BF16Bits>?
) {
    guard rows > 0 else { return }
    let inDim = matrix.inDim, outDim = matrix.outDim
    var add = accumulate
    if let bias {
        writeBiasRows(bias, y: y, ldy: ldy, rows: rows, outDim: outDim, accumulate: accumulate)
        add = true
    }
    if let bf16 { roundRowsToBF16(x, ldx, bf16, rows: rows, cols: inDim) }
    forEachChunk(weights, matrix, scratch, bf16: bf16 != nil) { o, c in
        if let bf16 {
            bf16gemm(false, true, rows, c, inDim, bf16, inDim, scratch.low, inDim, accumulate: add, y + o, ldy)
        } else {
            sgemm(false, true, rows, c, inDim, 1, x, ldx, scratch.rows, inDim, add ? 1 : 0, y + o, ldy)
        }
    }
}

/// Backward of `packedLinearForward` with respect to x only (a packed base is frozen): dx = dy W, W dequantized
/// a chunk of rows at a time, each chunk's product added to dx. With `bf16` (room for dy rounded) the products
/// run in bf16 with f32 accumulation.
///
/// Shapes: dy [rows, outDim] (stride ldy), W [outDim, inDim] packed, dx [rows, inDim] (stride lddx, overwritten);
/// bf16 [rows, outDim].
public func packedLinearBackward(
    dy: UnsafePointer<Float>, ldy: Int, weights: PackedWeights, matrix: PackedMatrix,
    dx: UnsafeMutablePointer<Float>, lddx: Int, rows: Int, scratch: PackedGEMMScratch,
    bf16: UnsafeMutablePointer<BF16Bits>?
) {
    guard rows > 0 else { return }
    let inDim = matrix.inDim, outDim = matrix.outDim
    if let bf16 { roundRowsToBF16(dy, ldy, bf16, rows: rows, cols: outDim) }
    forEachChunk(weights, matrix, scratch, bf16: bf16 != nil) { o, c in
        if let bf16 {
            bf16gemm(false, false, rows, inDim, c, bf16 + o, outDim, scratch.low, inDim, accumulate: o > 0, dx, lddx)
        } else {
            sgemm(false, false, rows, inDim, c, 1, dy + o, ldy, scratch.rows, inDim, o > 0 ? 1 : 0, dx, lddx)
        }
    }
}

/// Dequantizes the matrix into `scratch` a chunk of rows at a time (and rounds them to bf16 with `bf16`), calling
/// `body(first row, rows)` on each chunk.
@inline(__always) private func forEachChunk(
    _ weights: PackedWeights, _ matrix: PackedMatrix, _ scratch: PackedGEMMScratch, bf16: Bool,
    _ body: (Int, Int) -> Void
) {
    let chunk = scratch.chunkRows(outDim: matrix.outDim, inDim: matrix.inDim)
    var o = 0
    while o < matrix.outDim {
        let c = min(chunk, matrix.outDim - o)
        dequantizeRows(weights, matrix, first: o, count: c, into: scratch.rows, low: bf16 ? scratch.low : nil)
        body(o, c)
        o += c
    }
}
