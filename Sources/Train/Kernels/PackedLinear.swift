import CDecodeKernels
import Checkpoint

/// Storage formats of packed weight rows: halves, and ggml's 32-weight blocks.
public enum PackedFormat: String, Sendable, CaseIterable {
    /// IEEE half per weight.
    case f16
    /// bfloat16 per weight (the top half of an f32).
    case bf16
    /// 32 weights = f16 scale d + 32 int8 q; w = d * q.
    case q8_0
    /// 32 weights = f16 scale d + 16 bytes of nibbles; w = d * (q - 8); low nibbles are weights 0-15.
    case q4_0
    /// 32 weights = f16 scale d + f16 min m + 16 bytes of nibbles; w = d * q + m.
    case q4_1

    /// Weights per block.
    public var blockElements: Int { self == .f16 || self == .bf16 ? 1 : 32 }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f16, .bf16: return 2
        case .q8_0: return 34
        case .q4_0: return 18
        case .q4_1: return 20
        }
    }

    /// Bytes of one row of `n` weights (n a multiple of `blockElements`).
    public func rowBytes(_ n: Int) -> Int { n / blockElements * blockBytes }
}

/// Writes the `n` weights of one packed row as Float, with exactly the values `GGUFFile.floats` gives for the
/// same blocks (same operations in the same order, no fused multiply-add), so a decoder reading packed rows
/// computes what it would from the dequantized f32 model. The loops are plain so LLVM vectorizes them.
///
/// Shapes: src holds `format.rowBytes(n)` bytes; dst [n].
@inline(__always) func dequantizeRow(
    _ format: PackedFormat, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ n: Int
) {
    @inline(__always) func half(_ p: UnsafeRawPointer) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
    }
    switch format {
    case .f16:
        let h = src.assumingMemoryBound(to: UInt16.self)
        for i in 0..<n { dst[i] = Float(Float16(bitPattern: h[i])) }
    case .bf16:
        let h = src.assumingMemoryBound(to: UInt16.self)
        for i in 0..<n { dst[i] = Float(bitPattern: UInt32(h[i]) << 16) }
    case .q8_0:
        for b in 0..<(n / 32) {
            let blk = src + b * 34, o = dst + b * 32
            let d = half(blk)
            let q = (blk + 2).assumingMemoryBound(to: Int8.self)
            for i in 0..<32 { o[i] = d * Float(q[i]) }
        }
    case .q4_0:
        for b in 0..<(n / 32) {
            let blk = src + b * 18, o = dst + b * 32
            let d = half(blk)
            let q = (blk + 2).assumingMemoryBound(to: UInt8.self)
            for i in 0..<16 {
                o[i] = d * Float(Int32(q[i] & 0xF) - 8)
                o[16 + i] = d * Float(Int32(q[i] >> 4) - 8)
            }
        }
    case .q4_1:
        for b in 0..<(n / 32) {
            let blk = src + b * 20, o = dst + b * 32
            let d = half(blk), m = half(blk + 2)
            let q = (blk + 4).assumingMemoryBound(to: UInt8.self)
            for i in 0..<16 {
                o[i] = d * Float(q[i] & 0xF) + m
                o[16 + i] = d * Float(q[i] >> 4) + m
            }
        }
    }
}

/// Rows a packed linear dequantizes at a time into its scratch (4 rows of W x inDim floats stay in L1).
public let packedRowsPerGroup = 4

/// Groups ahead a packed linear prefetches (tuned on SmolLM2's shapes with `Bench decode`).
nonisolated(unsafe) public var packedPrefetchDistance = 4

/// `y = x W^T + b` for a few rows (decoding) with W packed: each group of 4 rows of W is dequantized into a
/// thread's scratch and multiplied with all `rows` vectors by the f32 kernel of `smallBatchLinear`. Decoding
/// is bound by streaming W from memory, so reading 4-8x fewer bytes is the speed-up; the arithmetic is the
/// f32 path's, so results equal `smallBatchLinear` on the dequantized weights bit for bit.
///
/// Shapes: x [rows, matrix.inDim] (stride ldx), W [matrix.outDim, matrix.inDim] packed, bias [outDim] or nil,
/// y [rows, outDim] (stride ldy); scratch [scratchSlots, 4, inDim]. With `accumulate` the result is added to y.
public func packedSmallBatchLinear(
    x: UnsafePointer<Float>, ldx: Int, weights: PackedWeights, matrix: PackedMatrix,
    bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int,
    accumulate: Bool, scratch: UnsafeMutablePointer<Float>, scratchSlots: Int
) {
    let groups = (matrix.outDim + packedRowsPerGroup - 1) / packedRowsPerGroup
    let threads = max(1, min(smallBatchLinearThreads, scratchSlots, ComputePool.shared.threads, matrix.outDim / 64))
    let args = PackedArgs(
        storage: UnsafeRawPointer(weights.storage), matrix: matrix, x: x, ldx: ldx, bias: bias, y: y,
        ldy: ldy, rows: rows, accumulate: accumulate, scratch: scratch, slots: threads,
        groups: groups, chunks: threads == 1 ? 1 : 4 * threads)
    // chunks are claimed, so a thread the OS runs late just takes fewer; at most one thread per scratch slot
    ComputePool.shared.run(args, limit: threads) { raw, t, n in
        let a = raw.load(as: PackedArgs.self)
        ComputePool.shared.claim(a.chunks, inline: n == 1) { c in
            packedGroups(a, t, ComputePool.share(a.groups, c, a.chunks, grain: 1))
        }
    }
}

/// Groups `range` of a packed linear (rows 4g ..< 4g + 4 of W each) on scratch slot `slot`.
@inline(__always) private func packedGroups(_ a: PackedArgs, _ slot: Int, _ range: Range<Int>) {
    let inDim = a.matrix.inDim, outDim = a.matrix.outDim, segments = a.matrix.segments
    let buffer = a.scratch + slot * packedRowsPerGroup * inDim
    var segment = 0
    for g in range {
        let o = g * packedRowsPerGroup, n = min(packedRowsPerGroup, outDim - o)
        if a.rows == 1, n == 4, blockDotRows4(a, o, &segment) { continue }
        for j in 0..<n {
            let r = o + j
            while r >= segments[segment].firstRow + segments[segment].rows { segment += 1 }
            let s = segments[segment], rowBytes = s.format.rowBytes(inDim)
            let src = a.storage + s.byteOffset + (r - s.firstRow) * rowBytes
            prefetchAhead(src, rowBytes: rowBytes, rows: 1)
            dequantizeRow(s.format, src, buffer + j * inDim, inDim)
        }
        let p = SharedPointers(x: a.x, w: UnsafePointer(buffer), bias: a.bias.map { $0 + o }, y: a.y + o)
        smallBatchLinearRows(p, a.ldx, a.ldy, a.rows, inDim, 0, n, a.accumulate)
    }
}

/// Batch-1 rows o ..< o + 4 of a Q4_0 / Q4_1 / Q8_0 matrix straight from their blocks (4-bit weights by a
/// register table lookup per block) instead of dequantizing into scratch, when the CPU path is compiled in and
/// the four rows share a segment; the same values as the scratch path, bit for bit. Returns whether it did.
@inline(__always) private func blockDotRows4(_ a: PackedArgs, _ o: Int, _ segment: inout Int) -> Bool {
    let segments = a.matrix.segments, inDim = a.matrix.inDim
    while o >= segments[segment].firstRow + segments[segment].rows { segment += 1 }
    let s = segments[segment]
    let code: Int32
    switch s.format {
    case .q4_0: code = 0
    case .q4_1: code = 1
    case .q8_0: code = 2
    default: return false
    }
    guard o + 4 <= s.firstRow + s.rows else { return false }
    let rowBytes = s.format.rowBytes(inDim)
    let src = a.storage + s.byteOffset + (o - s.firstRow) * rowBytes
    prefetchAhead(src, rowBytes: rowBytes, rows: 4)
    var out: (Float, Float, Float, Float) = (0, 0, 0, 0)
    return withUnsafeMutablePointer(to: &out) { p in
        p.withMemoryRebound(to: Float.self, capacity: 4) { r in
            guard
                oreo_block_dot_rows4(
                    src.assumingMemoryBound(to: UInt8.self), rowBytes, Int32(inDim / 32), code,
                    a.x, r) == 1
            else { return false }
            // as `smallBatchLinearRows` stores a row: bias, then overwrite or accumulate
            for j in 0..<4 {
                var v = r[j]
                if let bias = a.bias { v += bias[o + j] }
                if a.accumulate { a.y[o + j] += v } else { a.y[o + j] = v }
            }
            return true
        }
    }
}

/// Prefetches `rows` rows starting at `src`, `packedPrefetchDistance` groups ahead (the stream is contiguous
/// within a segment; a prefetch past its end is harmless).
@inline(__always) private func prefetchAhead(_ src: UnsafeRawPointer, rowBytes: Int, rows: Int) {
    let ahead = src + packedPrefetchDistance * packedRowsPerGroup * rowBytes
    var line = 0
    while line < rows * rowBytes {
        oreo_prefetch(ahead + line)
        line += 64
    }
}

/// The operands of one packed linear call, read by every pool thread (each writes its own rows of y and
/// its own scratch slot).
private struct PackedArgs {
    let storage: UnsafeRawPointer, matrix: PackedMatrix
    let x: UnsafePointer<Float>, ldx: Int, bias: UnsafePointer<Float>?
    let y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, accumulate: Bool
    let scratch: UnsafeMutablePointer<Float>, slots: Int
    let groups: Int, chunks: Int
}
