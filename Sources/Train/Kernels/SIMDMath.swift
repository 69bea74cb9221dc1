// SIMD helpers shared by the kernels. Swift keeps IEEE order, so plain float reductions never vectorize:
// every reduction here uses explicit SIMD16 accumulators (docs/cpu-performance.md).

/// 16 float lanes: one AVX-512 register.
public typealias F16x = SIMD16<Float>

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> F16x {
    UnsafeRawPointer(p).loadUnaligned(as: F16x.self)
}

@inline(__always) func store16(_ v: F16x, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16x.self)
}

/// Vector exp (Cephes single-precision polynomial, ~1 ulp on [-87, 88]); inputs below -87 give ~0.
///
/// Rounding and the float->int step use the 1.5 * 2^23 "magic number": adding it rounds to the nearest
/// integer and leaves that integer in the low mantissa bits. The generic SIMD rounding and Int32
/// conversions compile to a per-lane library call (measured: 14% of a training step).
@inline(__always) func simdExp(_ x0: F16x) -> F16x {
    // pointwiseMin/Max rather than clamped(): the generic clamped() is not inlined (5% of a step)
    let x = pointwiseMax(pointwiseMin(x0, F16x(repeating: 88.37)), F16x(repeating: -87.33))
    let magic = F16x(repeating: 12582912)
    let t = x * 1.44269504088896341 + magic
    let n = t - magic
    var r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = F16x(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let y = p * (r * r) + r + 1
    // low 9 bits of t's pattern hold n (two's complement) + 0; n + 127 in 1...254 after the clamp
    let bits = (unsafeBitCast(t, to: SIMD16<UInt32>.self) &+ 127) &<< 23
    return y * unsafeBitCast(bits, to: F16x.self)
}

/// Scalar exp with the same polynomial as `simdExp`, so scalar tails match the vector body.
@inline(__always) func scalarExp(_ x: Float) -> Float { simdExp(F16x(repeating: x))[0] }

/// Largest of p[0..<n] (n >= 1).
@inline(__always) func maxOf(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var i = 0
    var m = -Float.infinity
    if n >= 16 {
        var acc = load16(p)
        i = 16
        while i + 16 <= n {
            acc = pointwiseMax(acc, load16(p + i))
            i += 16
        }
        m = acc.max()
    }
    while i < n {
        m = Swift.max(m, p[i])
        i += 1
    }
    return m
}

/// p[i] = exp(p[i] - shift) for i < n; returns the sum of the new values.
@inline(__always) func expShiftInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ shift: Float) -> Float {
    var acc = F16x()
    var i = 0
    let s = F16x(repeating: shift)
    while i + 16 <= n {
        let e = simdExp(load16(p + i) - s)
        store16(e, p + i)
        acc += e
        i += 16
    }
    var total = acc.sum()
    while i < n {
        let e = scalarExp(p[i] - shift)
        p[i] = e
        total += e
        i += 1
    }
    return total
}

/// Sum of exp(p[i] - shift) for i < n, without writing.
@inline(__always) func sumExpShift(_ p: UnsafePointer<Float>, _ n: Int, _ shift: Float) -> Float {
    var acc = F16x()
    var i = 0
    let s = F16x(repeating: shift)
    while i + 16 <= n {
        acc += simdExp(load16(p + i) - s)
        i += 16
    }
    var total = acc.sum()
    while i < n {
        total += scalarExp(p[i] - shift)
        i += 1
    }
    return total
}

/// Dot product of a[0..<n] and b[0..<n].
@inline(__always) func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F16x()
    var i = 0
    while i + 16 <= n {
        acc.addProduct(load16(a + i), load16(b + i))
        i += 16
    }
    var s = acc.sum()
    while i < n {
        s += a[i] * b[i]
        i += 1
    }
    return s
}

/// Sum of p[0..<n].
@inline(__always) func sumOf(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = F16x()
    var i = 0
    while i + 16 <= n {
        acc += load16(p + i)
        i += 16
    }
    var s = acc.sum()
    while i < n {
        s += p[i]
        i += 1
    }
    return s
}

/// y[i] += a * x[i] for i < n.
@inline(__always) func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    let av = F16x(repeating: a)
    while i + 16 <= n {
        var v = load16(y + i)
        v.addProduct(av, load16(x + i))
        store16(v, y + i)
        i += 16
    }
    while i < n {
        y[i] += a * x[i]
        i += 1
    }
}

/// y[i] += x[i] for i < n.
@inline(__always) func addInPlace(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(load16(y + i) + load16(x + i), y + i)
        i += 16
    }
    while i < n {
        y[i] += x[i]
        i += 1
    }
}

/// Sets p[0..<n] to zero.
@inline(__always) func zeroFill(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    p.update(repeating: 0, count: n)
}

/// Vector exp over a buffer: y[i] = exp(x[i]) (exposed for tests of the polynomial).
public func vectorExp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 16 <= n {
        store16(simdExp(load16(x + i)), y + i)
        i += 16
    }
    while i < n {
        y[i] = scalarExp(x[i])
        i += 1
    }
}
