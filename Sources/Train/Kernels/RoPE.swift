import Checkpoint
import Foundation

/// Inverse frequencies `inv_freq[i]`, i < headDim/2, after `scaling` (computed in double like HF's fp32 path
/// closely enough for 1e-6 relative agreement).
public func ropeInverseFrequencies(headDim: Int, theta: Double, scaling: RoPEScaling) -> [Double] {
    let half = headDim / 2
    var inv = (0..<half).map { Double(Float(1.0 / pow(theta, Double(2 * $0) / Double(headDim)))) }
    switch scaling {
    case .none: break
    case .linear(let factor): inv = inv.map { $0 / factor }
    case let .llama3(factor, low, high, original):
        let lowWavelen = Double(original) / low, highWavelen = Double(original) / high
        inv = inv.map { f in
            let wavelen = 2 * Double.pi / f
            if wavelen < highWavelen { return f }
            if wavelen > lowWavelen { return f / factor }
            let smooth = (Double(original) / wavelen - low) / (high - low)
            return (1 - smooth) * f / factor + smooth * f
        }
    }
    return inv
}

/// cos/sin tables [maxPositions, headDim/2] for `ropeApply`, built once per model.
public struct RoPETable: Sendable {
    /// Head dimension the table was built for.
    public let headDim: Int
    /// Number of positions covered.
    public let maxPositions: Int
    /// cos(pos * inv_freq[i]) at [pos * headDim/2 + i].
    public let cos: [Float]
    /// sin(pos * inv_freq[i]) at [pos * headDim/2 + i].
    public let sin: [Float]

    /// Builds the tables; angles are formed as HF does, float(pos) * float(inv_freq), then cos/sin in double.
    public init(headDim: Int, maxPositions: Int, theta: Double, scaling: RoPEScaling) {
        self.headDim = headDim
        self.maxPositions = maxPositions
        let inv = ropeInverseFrequencies(headDim: headDim, theta: theta, scaling: scaling).map { Float($0) }
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxPositions * half), s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Double(Float(p) * inv[i])
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        cos = c
        sin = s
    }
}

/// Rotary embedding in HF rotate_half layout, in place: for each head, dim j pairs with j + hd/2:
/// `y1 = x1 cos - x2 sin`, `y2 = x2 cos + x1 sin`. `inverse` applies the transpose rotation, which is the
/// backward (gradients rotate by -angle).
///
/// Shapes: x [rows, ld] with `heads` heads of `headDim` starting at column 0; positions [rows];
/// cos, sin [maxPos, headDim/2].
public func ropeApply(
    x: UnsafeMutablePointer<Float>, ld: Int, rows: Int, heads: Int, headDim: Int,
    positions: UnsafePointer<Int32>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
    inverse: Bool
) {
    let args = RoPEArgs(
        x: x, ld: ld, heads: heads, headDim: headDim, positions: positions, cos: cos, sin: sin,
        sign: inverse ? -1 : 1)
    ComputePool.shared.parallelFor(rows, minPerThread: 32, args) { raw, lo, hi in
        let a = raw.load(as: RoPEArgs.self)
        let x = a.x, ld = a.ld, heads = a.heads, headDim = a.headDim, positions = a.positions, cos = a.cos, sin = a.sin
        let half = headDim / 2, sign = a.sign
        for r in lo..<hi {
            let c = cos + Int(positions[r]) * half
            let s = sin + Int(positions[r]) * half
            for h in 0..<heads {
                let x1 = x + r * ld + h * headDim, x2 = x1 + half
                var i = 0
                let sg = F16x(repeating: sign)
                while i + 16 <= half {
                    let a = load16(x1 + i), b = load16(x2 + i)
                    let cv = load16(c + i), sv = load16(s + i) * sg
                    store16(a * cv - b * sv, x1 + i)
                    store16(b * cv + a * sv, x2 + i)
                    i += 16
                }
                while i < half {
                    let a = x1[i], b = x2[i]
                    let sv = s[i] * sign
                    x1[i] = a * c[i] - b * sv
                    x2[i] = b * c[i] + a * sv
                    i += 1
                }
            }
        }
    }
}

/// Operands of `ropeApply`, for the pool.
private struct RoPEArgs {
    let x: UnsafeMutablePointer<Float>, ld: Int, heads: Int, headDim: Int
    let positions: UnsafePointer<Int32>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    let sign: Float
}
