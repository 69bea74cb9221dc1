import CDecodeKernels

/// bfloat16 as stored: the upper 16 bits of an IEEE f32 (8-bit exponent, 7-bit mantissa).
public typealias BF16Bits = UInt16

/// Rounds f32 to bf16, to nearest with ties to even (what PyTorch's `.to(torch.bfloat16)` and the CPUs'
/// `vcvtneps2bf16` do); a NaN stays a (quiet) NaN with its sign, infinities stay infinite.
///
/// Shapes: src [n] f32, dst [n] bf16. Split over the compute pool when large (it runs once per step over every
/// weight).
public func roundToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<BF16Bits>, _ n: Int) {
    guard n > 0 else { return }
    if n < 1 << 16 {
        oreo_round_bf16(src, dst, n)
        return
    }
    let args = ConvertArgs(src: UnsafeRawPointer(src), dst: UnsafeMutableRawPointer(dst))
    ComputePool.shared.parallelFor(n, grain: 4096, minPerThread: 1 << 15, args) { raw, lo, hi in
        let a = raw.load(as: ConvertArgs.self)
        oreo_round_bf16(
            a.src.assumingMemoryBound(to: Float.self) + lo, a.dst.assumingMemoryBound(to: BF16Bits.self) + lo,
            hi - lo)
    }
}

/// Widens bf16 to f32 (exact).
///
/// Shapes: src [n] bf16, dst [n] f32.
public func widenBF16(_ src: UnsafePointer<BF16Bits>, _ dst: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        let h = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<UInt16>.self)
        let u = SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16
        UnsafeMutableRawPointer(dst + i).storeBytes(
            of: unsafeBitCast(u, to: SIMD16<Float>.self), as: SIMD16<Float>.self)
        i += 16
    }
    while i < n {
        dst[i] = Float(bitPattern: UInt32(src[i]) << 16)
        i += 1
    }
}

/// One value rounded as `roundToBF16` does.
@inline(__always)
public func bf16(_ x: Float) -> BF16Bits {
    let u = x.bitPattern
    if u & 0x7FFF_FFFF > 0x7F80_0000 { return BF16Bits(truncatingIfNeeded: (u >> 16) | 0x40) }
    return BF16Bits(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}

private struct ConvertArgs {
    let src: UnsafeRawPointer
    let dst: UnsafeMutableRawPointer
}
