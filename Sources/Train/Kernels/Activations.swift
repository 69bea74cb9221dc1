import Foundation

/// Operands of an elementwise activation pass, for the pool (`b` unused where a kernel has one input).
private struct ActArgs {
    let a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
    let dim: Int
}

/// SwiGLU forward: out = silu(gate) * up, where each input row holds [gate | up] (HF gate_proj then up_proj).
///
/// Shapes: gateUp [rows, 2*dim], out [rows, dim].
public func swiGLUForward(gateUp: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, rows: Int, dim: Int) {
    let args = ActArgs(a: gateUp, b: gateUp, out: out, dim: dim)
    ComputePool.shared.parallelFor(rows, minPerThread: max(1, 4096 / max(dim, 1)), args) { raw, lo, hi in
        let args = raw.load(as: ActArgs.self)
        let gateUp = args.a, out = args.out, dim = args.dim
        for r in lo..<hi {
            let g = gateUp + r * 2 * dim, u = g + dim, o = out + r * dim
            var i = 0
            while i + 16 <= dim {
                let gv = load16(g + i)
                let sig = 1 / (1 + simdExp(-gv))
                store16(gv * sig * load16(u + i), o + i)
                i += 16
            }
            while i < dim {
                let sig = 1 / (1 + scalarExp(-g[i]))
                o[i] = g[i] * sig * u[i]
                i += 1
            }
        }
    }
}

/// SwiGLU backward: d gate = dOut * up * silu'(gate), d up = dOut * silu(gate) (overwrites dGateUp).
///
/// Shapes: gateUp, dGateUp [rows, 2*dim]; dOut [rows, dim].
public func swiGLUBackward(
    gateUp: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
    dGateUp: UnsafeMutablePointer<Float>, rows: Int, dim: Int
) {
    let args = ActArgs(a: gateUp, b: dOut, out: dGateUp, dim: dim)
    ComputePool.shared.parallelFor(rows, minPerThread: max(1, 4096 / max(dim, 1)), args) { raw, lo, hi in
        let args = raw.load(as: ActArgs.self)
        let gateUp = args.a, dOut = args.b, dGateUp = args.out, dim = args.dim
        for r in lo..<hi {
            let g = gateUp + r * 2 * dim, u = g + dim, d = dOut + r * dim
            let dg = dGateUp + r * 2 * dim, du = dg + dim
            var i = 0
            while i + 16 <= dim {
                let gv = load16(g + i), dv = load16(d + i)
                let sig = 1 / (1 + simdExp(-gv))
                let silu = gv * sig
                store16(dv * load16(u + i) * sig * (1 + gv * (1 - sig)), dg + i)
                store16(dv * silu, du + i)
                i += 16
            }
            while i < dim {
                let sig = 1 / (1 + scalarExp(-g[i]))
                dg[i] = d[i] * u[i] * sig * (1 + g[i] * (1 - sig))
                du[i] = d[i] * g[i] * sig
                i += 1
            }
        }
    }
}

/// tanh(x) through the vector exp: tanh(x) = 1 - 2 / (exp(2x) + 1), exact at the saturated ends.
@inline(__always) func simdTanh(_ x: F16x) -> F16x { 1 - 2 / (simdExp(2 * x) + 1) }

/// tanh-approximation GELU ("gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
///
/// Shapes: x, out [count] (any layout).
public func geluForward(x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int) {
    ComputePool.shared.parallelFor(count, grain: 16, minPerThread: 4096, ActArgs(a: x, b: x, out: out, dim: 0)) {
        raw, lo, hi in
        let a = raw.load(as: ActArgs.self)
        geluForwardRange(x: a.a + lo, out: a.out + lo, count: hi - lo)
    }
}

func geluForwardRange(x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, count: Int) {
    let c: Float = 0.7978845608028654
    var i = 0
    while i + 16 <= count {
        let v = load16(x + i)
        let t = simdTanh(c * (v + 0.044715 * v * v * v))
        store16(0.5 * v * (1 + t), out + i)
        i += 16
    }
    while i < count {
        let v = x[i]
        out[i] = 0.5 * v * (1 + tanhf(c * (v + 0.044715 * v * v * v)))
        i += 1
    }
}

/// Backward of `geluForward`: dx = dOut * gelu'(x) (overwrites dx; dx may alias dOut).
///
/// Shapes: x, dOut, dx [count].
public func geluBackward(
    x: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
    count: Int
) {
    ComputePool.shared.parallelFor(count, grain: 16, minPerThread: 4096, ActArgs(a: x, b: dOut, out: dx, dim: 0)) {
        raw, lo, hi in
        let a = raw.load(as: ActArgs.self)
        geluBackwardRange(x: a.a + lo, dOut: a.b + lo, dx: a.out + lo, count: hi - lo)
    }
}

func geluBackwardRange(x: UnsafePointer<Float>, dOut: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, count: Int)
{
    let c: Float = 0.7978845608028654
    var i = 0
    while i + 16 <= count {
        let v = load16(x + i)
        let t = simdTanh(c * (v + 0.044715 * v * v * v))
        let dt = (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
        store16(load16(dOut + i) * (0.5 * (1 + t) + 0.5 * v * dt), dx + i)
        i += 16
    }
    while i < count {
        let v = x[i]
        let t = tanhf(c * (v + 0.044715 * v * v * v))
        let dt = (1 - t * t) * c * (1 + 3 * 0.044715 * v * v)
        dx[i] = dOut[i] * (0.5 * (1 + t) + 0.5 * v * dt)
        i += 1
    }
}
