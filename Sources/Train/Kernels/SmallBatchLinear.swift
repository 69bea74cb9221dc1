import Foundation

/// Raw pointers handed to worker threads (each writes a disjoint block of rows).
struct SharedPointers: @unchecked Sendable {
    let x: UnsafePointer<Float>, w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>
}

/// Most rows `smallBatchLinear` is meant for: above it, sgemm's packing cost is amortized and sgemm wins.
nonisolated(unsafe) public var smallBatchLinearMaxRows = 16

/// Most rows a bf16 model's decoding passes read its packed (bf16) weights for; wider passes go through oneDNN's
/// bf16 matmul. Measured (`Bench decode --kernel`, SmolLM2 shapes, 2 Zen 5 threads): the streaming kernel wins up
/// to 12 rows (8 rows: 11.8 vs 14.7 ms a step), oneDNN from 16 (16.8 vs 18.9 ms; 32 rows: 21.5 vs 31.3).
nonisolated(unsafe) public var bf16PackedMaxRows = 12

/// Threads `smallBatchLinear` splits W over (the machine's cores by default).
nonisolated(unsafe) public var smallBatchLinearThreads = ProcessInfo.processInfo.activeProcessorCount

/// `y = x W^T + b` for a few rows (decoding): every row of W is read once from memory and multiplied with
/// all `rows` vectors while it is in registers, 4 rows of W x 2 vectors at a time. Decoding is bound by the
/// bandwidth of streaming W; OpenBLAS' sgemm would first copy (pack) all of W on every call, and its gemv
/// reads W once per vector. Output rows are split over up to `smallBatchLinearThreads` threads of the compute pool.
///
/// Shapes: x [rows, inDim] (stride ldx), W [outDim, inDim], bias [outDim] or nil, y [rows, outDim] (stride ldy).
/// With `accumulate` the result is added to y.
public func smallBatchLinear(
    x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, inDim: Int, outDim: Int,
    accumulate: Bool
) {
    let threads = max(1, min(smallBatchLinearThreads, ComputePool.shared.threads, outDim / 64))
    let p = SharedPointers(x: x, w: weight, bias: bias, y: y)
    if threads == 1 {
        smallBatchLinearRows(p, ldx, ldy, rows, inDim, 0, outDim, accumulate)
        return
    }
    // blocks of 4 rows in chunks the pool's threads claim (a dispatch costs microseconds, not Dispatch's tens)
    let args = SmallBatchArgs(
        p: p, ldx: ldx, ldy: ldy, rows: rows, inDim: inDim, outDim: outDim, accumulate: accumulate,
        blocks: (outDim + 3) / 4, chunks: 4 * threads, threads: threads)
    ComputePool.shared.run(args) { raw, t, n in
        let a = raw.load(as: SmallBatchArgs.self)
        guard t < a.threads else { return }
        ComputePool.shared.claim(a.chunks, inline: n == 1) { c in
            let r = ComputePool.share(a.blocks, c, a.chunks, grain: 1)
            smallBatchLinearRows(
                a.p, a.ldx, a.ldy, a.rows, a.inDim, r.lowerBound * 4, min(a.outDim, r.upperBound * 4), a.accumulate)
        }
    }
}

/// The operands of one `smallBatchLinear` call, read by every pool thread.
private struct SmallBatchArgs {
    let p: SharedPointers, ldx: Int, ldy: Int, rows: Int, inDim: Int, outDim: Int, accumulate: Bool
    let blocks: Int, chunks: Int, threads: Int
}

/// Output rows o0 ..< o1 of `smallBatchLinear` (also run by `packedSmallBatchLinear` on rows it dequantized,
/// so both give bit-identical results for the same weight values).
@inline(__always) func smallBatchLinearRows(
    _ p: SharedPointers, _ ldx: Int, _ ldy: Int, _ rows: Int, _ inDim: Int,
    _ o0: Int, _ o1: Int, _ accumulate: Bool
) {
    let x = p.x, w = p.w, y = p.y
    let body = inDim / 16 * 16
    @inline(__always) func store(_ b: Int, _ o: Int, _ v: Float) {
        var r = v
        // scalar tail of the dot product
        for i in body..<inDim { r += x[b * ldx + i] * w[o * inDim + i] }
        if let bias = p.bias { r += bias[o] }
        if accumulate { y[b * ldy + o] += r } else { y[b * ldy + o] = r }
    }
    var o = o0
    while o + 4 <= o1 {
        let w0 = w + o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim
        var b = 0
        // Two rows at a time, with the single-row code's two accumulators per (row, output): even 16-wide
        // blocks into one, odd ones into the other (the order of the GGUF block kernels too). A row's outputs
        // then never depend on which other rows share the pass: batched sampling, and MPI ranks sampling
        // different shares of the prompts, give every sequence the same numbers.
        while b + 2 <= rows {
            let x0 = x + b * ldx, x1 = x0 + ldx
            var a00 = F16x(), a01 = F16x(), a10 = F16x(), a11 = F16x()
            var a20 = F16x(), a21 = F16x(), a30 = F16x(), a31 = F16x()
            var c00 = F16x(), c01 = F16x(), c10 = F16x(), c11 = F16x()
            var c20 = F16x(), c21 = F16x(), c30 = F16x(), c31 = F16x()
            var i = 0
            while i + 32 <= body {
                let v0 = load16(x0 + i), v1 = load16(x1 + i), u0 = load16(x0 + i + 16), u1 = load16(x1 + i + 16)
                let r0 = load16(w0 + i), s0 = load16(w0 + i + 16)
                a00.addProduct(r0, v0)
                a01.addProduct(r0, v1)
                c00.addProduct(s0, u0)
                c01.addProduct(s0, u1)
                let r1 = load16(w1 + i), s1 = load16(w1 + i + 16)
                a10.addProduct(r1, v0)
                a11.addProduct(r1, v1)
                c10.addProduct(s1, u0)
                c11.addProduct(s1, u1)
                let r2 = load16(w2 + i), s2 = load16(w2 + i + 16)
                a20.addProduct(r2, v0)
                a21.addProduct(r2, v1)
                c20.addProduct(s2, u0)
                c21.addProduct(s2, u1)
                let r3 = load16(w3 + i), s3 = load16(w3 + i + 16)
                a30.addProduct(r3, v0)
                a31.addProduct(r3, v1)
                c30.addProduct(s3, u0)
                c31.addProduct(s3, u1)
                i += 32
            }
            if i < body {
                let v0 = load16(x0 + i), v1 = load16(x1 + i)
                let r0 = load16(w0 + i), r1 = load16(w1 + i), r2 = load16(w2 + i), r3 = load16(w3 + i)
                a00.addProduct(r0, v0)
                a01.addProduct(r0, v1)
                a10.addProduct(r1, v0)
                a11.addProduct(r1, v1)
                a20.addProduct(r2, v0)
                a21.addProduct(r2, v1)
                a30.addProduct(r3, v0)
                a31.addProduct(r3, v1)
            }
            store(b, o, hsum(a00 + c00))
            store(b + 1, o, hsum(a01 + c01))
            store(b, o + 1, hsum(a10 + c10))
            store(b + 1, o + 1, hsum(a11 + c11))
            store(b, o + 2, hsum(a20 + c20))
            store(b + 1, o + 2, hsum(a21 + c21))
            store(b, o + 3, hsum(a30 + c30))
            store(b + 1, o + 3, hsum(a31 + c31))
            b += 2
        }
        while b < rows {
            // two accumulators per row: four FMA chains alone would wait on the FMA latency (batch-1 decoding)
            let x0 = x + b * ldx
            var a0 = F16x(), a1 = F16x(), a2 = F16x(), a3 = F16x()
            var c0 = F16x(), c1 = F16x(), c2 = F16x(), c3 = F16x()
            var i = 0
            while i + 32 <= body {
                let v = load16(x0 + i), u = load16(x0 + i + 16)
                a0.addProduct(load16(w0 + i), v)
                a1.addProduct(load16(w1 + i), v)
                a2.addProduct(load16(w2 + i), v)
                a3.addProduct(load16(w3 + i), v)
                c0.addProduct(load16(w0 + i + 16), u)
                c1.addProduct(load16(w1 + i + 16), u)
                c2.addProduct(load16(w2 + i + 16), u)
                c3.addProduct(load16(w3 + i + 16), u)
                i += 32
            }
            if i < body {
                let v = load16(x0 + i)
                a0.addProduct(load16(w0 + i), v)
                a1.addProduct(load16(w1 + i), v)
                a2.addProduct(load16(w2 + i), v)
                a3.addProduct(load16(w3 + i), v)
            }
            store(b, o, hsum(a0 + c0))
            store(b, o + 1, hsum(a1 + c1))
            store(b, o + 2, hsum(a2 + c2))
            store(b, o + 3, hsum(a3 + c3))
            b += 1
        }
        o += 4
    }
    while o < o1 {
        for b in 0..<rows { store(b, o, body > 0 ? dotBody(x + b * ldx, w + o * inDim, body) : 0) }
        o += 1
    }
}

/// Dot product of the first n (a multiple of 16) elements.
@inline(__always) private func dotBody(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    // even and odd 16-wide blocks in two accumulators, as every path of `smallBatchLinearRows`
    var acc = F16x(), odd = F16x()
    var i = 0
    while i + 32 <= n {
        acc.addProduct(load16(a + i), load16(b + i))
        odd.addProduct(load16(a + i + 16), load16(b + i + 16))
        i += 32
    }
    if i < n { acc.addProduct(load16(a + i), load16(b + i)) }
    return hsum(acc + odd)
}

/// Sum of the 16 lanes by halving (inlined; the generic `sum()` is an out-of-line call per use).
@inline(__always) func hsum(_ v: F16x) -> Float {
    let a = v.lowHalf + v.highHalf
    let b = a.lowHalf + a.highHalf
    let c = b.lowHalf + b.highHalf
    return c[0] + c[1]
}
