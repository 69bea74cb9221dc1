/// Whether element `index` of dropout mask `stream` under `key` is kept (probability 1 - p): a pure function, so
/// a backward or a recomputing forward regenerates the forward's mask without storing it.
@inline(__always) func dropoutKeeps(key: UInt64, stream: UInt64, index: Int, p: Float) -> Bool {
    // SplitMix64's finalizer over (key, stream, index): consecutive indices give independent bits
    var z = key &+ stream &* 0xD1B5_4A32_D192_ED03 &+ UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return Float(z >> 40) * 0x1p-24 >= p
}

/// Inverted dropout of a strided matrix: dst = src * mask / (1 - p), or dst += that with `accumulate` (the
/// backward applies the same mask to a gradient). Element (r, c) uses mask index r * cols + c of `stream`.
///
/// Shapes: src [rows, cols] (stride lds), dst [rows, cols] (stride ldd).
public func dropoutRows(
    _ src: UnsafePointer<Float>, lds: Int, _ dst: UnsafeMutablePointer<Float>, ldd: Int, rows: Int, cols: Int,
    key: UInt64, stream: UInt64, p: Float, accumulate: Bool
) {
    let args = DropoutArgs(
        src: src, lds: lds, dst: dst, ldd: ldd, cols: cols, key: key, stream: stream, p: p, accumulate: accumulate)
    ComputePool.shared.parallelFor(rows, minPerThread: 8, args) { raw, lo, hi in
        let a = raw.load(as: DropoutArgs.self)
        let scale = 1 / (1 - a.p)
        for r in lo..<hi {
            let s = a.src + r * a.lds, d = a.dst + r * a.ldd
            for c in 0..<a.cols {
                let v = dropoutKeeps(key: a.key, stream: a.stream, index: r * a.cols + c, p: a.p) ? s[c] * scale : 0
                if a.accumulate { d[c] += v } else { d[c] = v }
            }
        }
    }
}

private struct DropoutArgs {
    let src: UnsafePointer<Float>, lds: Int
    let dst: UnsafeMutablePointer<Float>, ldd: Int
    let cols: Int, key: UInt64, stream: UInt64, p: Float, accumulate: Bool
}
