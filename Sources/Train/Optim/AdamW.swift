import CDecodeKernels
import Foundation

/// AdamW hyper-parameters (decoupled weight decay, as torch.optim.AdamW).
public struct AdamWConfig: Sendable, Equatable {
    /// First-moment decay.
    public var beta1: Float
    /// Second-moment decay.
    public var beta2: Float
    /// Denominator epsilon (added after the square root, as PyTorch).
    public var eps: Float
    /// Decoupled weight decay applied to tensors with `decays` set.
    public var weightDecay: Float

    /// PyTorch's defaults unless given.
    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }
}

/// AdamW over a flat parameter buffer, with its two moment buffers allocated once.
public final class AdamW {
    /// Hyper-parameters.
    public var config: AdamWConfig
    /// Steps taken (bias correction uses step + 1 on the next update).
    public private(set) var step = 0
    /// First moments, same layout as the parameters.
    public let m: FlatBuffer
    /// Second moments.
    public let v: FlatBuffer
    private let ranges: [(offset: Int, count: Int, decay: Bool)]

    /// An optimizer for `layout`; matrices get weight decay, vectors (norms, biases) do not.
    public convenience init(layout: ParameterLayout, config: AdamWConfig) {
        self.init(specs: layout.specs, count: layout.total, config: config)
    }

    /// An optimizer for a buffer of `count` floats holding `specs` (LoRA adapters' A and B, say).
    public init(specs: [TensorSpec], count: Int, config: AdamWConfig) {
        self.config = config
        m = FlatBuffer(count: count)
        v = FlatBuffer(count: count)
        ranges = specs.map { ($0.offset, $0.count, $0.decays) }
    }

    /// Continues from a checkpoint: the moments are restored into `m` and `v` by the caller, the step count here.
    public func restore(step: Int) { self.step = max(0, step) }

    /// One update at learning rate `lr` from `gradients` times `gradientScale` (a clipping coefficient or an
    /// averaging factor, applied here so the gradients need no separate scaling pass). The element range is
    /// split over the compute pool.
    /// With `rounded` ([parameters.count] bf16), each updated element is also written there rounded, in the same
    /// pass (a bf16 model's copy of its weights; elements outside the layout's tensors are left as they are).
    public func update(
        parameters: FlatBuffer, gradients: FlatBuffer, lr: Float, gradientScale: Float = 1,
        rounded: UnsafeMutablePointer<BF16Bits>? = nil
    ) {
        step += 1
        parameters.markChanged()
        let c = config
        let bc1 = 1 - Float(Foundation.pow(Double(c.beta1), Double(step)))
        let bc2 = 1 - Float(Foundation.pow(Double(c.beta2), Double(step)))
        let stepSize = lr / bc1
        let bc2Sqrt = bc2.squareRoot()
        let total = ranges.last.map { $0.offset + $0.count } ?? 0
        ranges.withUnsafeBufferPointer { rs in
            let args = AdamWArgs(
                p: parameters.pointer, g: gradients.pointer, m: m.pointer, v: v.pointer, ranges: rs.baseAddress!,
                rangeCount: rs.count, beta1: c.beta1, beta2: c.beta2, eps: c.eps,
                decay: 1 - lr * c.weightDecay, stepSize: stepSize, bc2Sqrt: bc2Sqrt, gradientScale: gradientScale,
                rounded: rounded)
            ComputePool.shared.parallelFor(total, grain: 64, minPerThread: 1 << 16, args) { raw, lo, hi in
                let a = raw.load(as: AdamWArgs.self)
                for r in UnsafeBufferPointer(start: a.ranges, count: a.rangeCount)
                where r.offset < hi && r.offset + r.count > lo {
                    var s = max(r.offset, lo)
                    let e = min(r.offset + r.count, hi)
                    // In pieces that stay in L1 between the update and the rounding.
                    while s < e {
                        let n = min(4096, e - s)
                        adamWKernel(
                            p: a.p + s, g: a.g + s, m: a.m + s, v: a.v + s, count: n, beta1: a.beta1, beta2: a.beta2,
                            eps: a.eps, decay: r.decay ? a.decay : 1, stepSize: a.stepSize, bc2Sqrt: a.bc2Sqrt,
                            gradientScale: a.gradientScale)
                        if let out = a.rounded { oreo_round_bf16(a.p + s, out + s, n) }
                        s += n
                    }
                }
            }
        }
    }
}

/// The AdamW element update in PyTorch's order: g *= gradientScale; p *= decay; m, v EMAs;
/// p -= stepSize * m / (sqrt(v)/sqrt(bc2) + eps).
///
/// Shapes: p, g, m, v [count].
public func adamWKernel(
    p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
    v: UnsafeMutablePointer<Float>, count: Int, beta1: Float, beta2: Float, eps: Float,
    decay: Float, stepSize: Float, bc2Sqrt: Float, gradientScale: Float = 1
) {
    let gs = F16x(repeating: gradientScale)
    var i = 0
    let b1 = F16x(repeating: beta1), b2 = F16x(repeating: beta2)
    let ob1 = F16x(repeating: 1 - beta1), ob2 = F16x(repeating: 1 - beta2)
    let dc = F16x(repeating: decay), ss = F16x(repeating: stepSize), bs = F16x(repeating: bc2Sqrt)
    let ep = F16x(repeating: eps)
    while i + 16 <= count {
        let gv = load16(g + i) * gs
        let mv = b1 * load16(m + i) + ob1 * gv
        let vv = b2 * load16(v + i) + ob2 * gv * gv
        store16(mv, m + i)
        store16(vv, v + i)
        store16(load16(p + i) * dc - ss * mv / (vv.squareRoot() / bs + ep), p + i)
        i += 16
    }
    while i < count {
        let gv = g[i] * gradientScale
        let mv = beta1 * m[i] + (1 - beta1) * gv
        let vv = beta2 * v[i] + (1 - beta2) * gv * gv
        m[i] = mv
        v[i] = vv
        p[i] = p[i] * decay - stepSize * mv / (vv.squareRoot() / bc2Sqrt + eps)
        i += 1
    }
}

/// Global L2 norm of a gradient buffer: 4096-float blocks accumulated in double, in 64 fixed parts summed in
/// order (the same result for any number of threads).
public func gradientNorm(_ g: FlatBuffer) -> Double {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 64) { partial in
        partial.initialize(repeating: 0)
        let part = (g.count + 63) / 64
        let args = NormArgs(p: g.pointer, part: part, partial: partial.baseAddress!)
        ComputePool.shared.parallelFor(g.count, grain: part, minPerThread: 1 << 16, chunks: 64, args) { raw, lo, hi in
            let a = raw.load(as: NormArgs.self)
            var s = lo
            while s < hi {  // inline runs get the whole range: still sum it part by part
                let e = min(hi, s + a.part)
                var total = 0.0
                var i = s
                while i < e {
                    let k = min(4096, e - i)
                    total += Double(dot(a.p + i, a.p + i, k))
                    i += k
                }
                a.partial[s / a.part] = total
                s = e
            }
        }
        return partial.reduce(0, +).squareRoot()
    }
}

/// Multiplies every gradient by `factor` (averaging accumulated micro-batches, clipping).
public func scaleGradients(_ g: FlatBuffer, by factor: Float) {
    ComputePool.shared.parallelFor(g.count, grain: 16, minPerThread: 1 << 16, (g.pointer, factor)) { raw, lo, hi in
        let (p, factor) = raw.load(as: (UnsafeMutablePointer<Float>, Float).self)
        let f = F16x(repeating: factor)
        var i = lo
        while i + 16 <= hi {
            store16(load16(p + i) * f, p + i)
            i += 16
        }
        while i < hi {
            p[i] *= factor
            i += 1
        }
    }
}

/// The factor torch.nn.utils.clip_grad_norm_ scales by for gradients of norm `norm`: max / (norm + 1e-6) when
/// that is below 1, else 1 (pass it to `AdamW.update(gradientScale:)` to clip without a scaling pass).
public func clipCoefficient(norm: Double, maxNorm: Double) -> Float {
    let coef = maxNorm / (norm + 1e-6)
    return coef < 1 ? Float(coef) : 1
}

/// Clips to `maxNorm` as torch.nn.utils.clip_grad_norm_ (coef = max / (norm + 1e-6), applied when < 1);
/// returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ g: FlatBuffer, maxNorm: Double) -> Double {
    let norm = gradientNorm(g)
    let coef = clipCoefficient(norm: norm, maxNorm: maxNorm)
    if coef < 1 { scaleGradients(g, by: coef) }
    return norm
}

/// Linear warmup then cosine decay to `minLR`, by optimizer step (0-based).
public struct CosineSchedule: Sendable, Equatable {
    /// Peak learning rate.
    public var baseLR: Double
    /// Floor reached at `totalSteps`.
    public var minLR: Double
    /// Steps of linear warmup.
    public var warmupSteps: Int
    /// Steps in the whole run.
    public var totalSteps: Int

    /// A schedule; `warmupFraction` of `totalSteps` (rounded up) warms up (the paper uses 3%).
    public init(baseLR: Double, minLR: Double = 0, totalSteps: Int, warmupFraction: Double = 0.03) {
        self.baseLR = baseLR
        self.minLR = minLR
        self.totalSteps = max(1, totalSteps)
        warmupSteps = Int((Double(totalSteps) * warmupFraction).rounded(.up))
    }

    /// Learning rate for 0-based step `step`.
    public func learningRate(step: Int) -> Double {
        if step < warmupSteps { return baseLR * Double(step + 1) / Double(warmupSteps) }
        let span = max(1, totalSteps - warmupSteps)
        let progress = min(1, Double(step - warmupSteps) / Double(span))
        return minLR + 0.5 * (baseLR - minLR) * (1 + Foundation.cos(Double.pi * progress))
    }
}

/// Gradient accumulation over micro-batches: zero at the window start, average and clip at the end.
public struct GradientAccumulation: Sendable {
    /// Micro-batches per optimizer step.
    public let microBatches: Int
    /// Micro-batches seen in the current window.
    public private(set) var seen = 0

    /// Accumulates `microBatches` backward passes per step.
    public init(microBatches: Int) { self.microBatches = max(1, microBatches) }

    /// Records one micro-batch's backward; returns true when the window is complete.
    public mutating func didAccumulate() -> Bool {
        seen += 1
        return seen >= microBatches
    }

    /// Averages the accumulated gradients, clips to `maxNorm` (if given), resets the window; returns the norm.
    public mutating func finish(_ g: FlatBuffer, maxNorm: Double?) -> Double {
        if seen > 1 { scaleGradients(g, by: 1 / Float(seen)) }
        seen = 0
        if let maxNorm { return clipGradientNorm(g, maxNorm: maxNorm) }
        return gradientNorm(g)
    }
}

/// Operands of the parallel AdamW pass: buffers, the parameter ranges (weight decay per range), step constants.
private struct AdamWArgs {
    let p: UnsafeMutablePointer<Float>, g: UnsafePointer<Float>, m: UnsafeMutablePointer<Float>,
        v: UnsafeMutablePointer<Float>
    let ranges: UnsafePointer<(offset: Int, count: Int, decay: Bool)>, rangeCount: Int
    let beta1: Float, beta2: Float, eps: Float, decay: Float, stepSize: Float, bc2Sqrt: Float, gradientScale: Float
    let rounded: UnsafeMutablePointer<BF16Bits>?
}

/// Operands of the parallel gradient norm: the buffer and one partial sum per thread.
private struct NormArgs {
    let p: UnsafePointer<Float>, part: Int, partial: UnsafeMutablePointer<Double>
}
