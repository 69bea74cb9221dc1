import Foundation

/// Settings of DQO (Q parameterized by the LM: `Q(s, a) = beta * rho(s, a) + V(s)`), token level.
public struct DQOConfig: Sendable, Equatable, Codable {
    /// KL-regularization strength.
    public var beta: Double = 0.03
    /// lambda of the lambda-return of soft rewards (1: Monte-Carlo, 0: single-step TD).
    public var lambda: Double = 0.95
    /// Clip c of the importance weight `w = exp(min(sum_t rho_t, c))`; 0 keeps weights in (0, 1].
    public var clip: Double = 0
    /// Whether to weight each trajectory by `w` at all (off: w = 1).
    public var importanceWeights = true

    /// Defaults: beta 0.03, lambda 0.95, clip 0, weights on.
    public init() {}
}

/// DQO losses of one response and their gradients (already divided by T and multiplied by w).
public struct DQOSequenceResult: Sendable {
    /// Value loss `w/T sum_h (V(s_h) - sg[G_h])^2`.
    public var valueLoss: Double
    /// Policy (Q) loss `w/T sum_h (beta rho_h + sg[V(s_h)] - r_h - (1-lambda) sg[V(s_{h+1})] - lambda G_{h+1})^2`.
    public var policyLoss: Double
    /// The importance weight used (no gradient flows through it).
    public var weight: Double
    /// Residuals `V(s_h) - G_h`, one per response token.
    public var residuals: [Double]
    /// dL_V / dV(s_h).
    public var dValues: [Double]
    /// dL_Q / d log pi(y_h | s_h): through `beta * rho_h` and through the later soft rewards inside the target.
    public var dLogProbs: [Double]
}

/// DQO's value and policy losses for one response (pure function; shapes: T response tokens).
///
/// With lambda = 1 and w = 1 this is token-level OREO without the stop-gradient and without the KL term.
public func dqoLoss(
    logProbs: [Double], refLogProbs: [Double], values: [Double], reward: Double,
    config: DQOConfig
) -> DQOSequenceResult {
    let t = logProbs.count
    precondition(
        refLogProbs.count == t && values.count == t,
        "logProbs, refLogProbs and values must have one entry per response token")
    let rho = (0..<t).map { logProbs[$0] - refLogProbs[$0] }
    let w = dqoWeight(rhoSum: rho.reduce(0, +), config: config)
    var out = DQOSequenceResult(
        valueLoss: 0, policyLoss: 0, weight: w, residuals: [Double](repeating: 0, count: t),
        dValues: [Double](repeating: 0, count: t), dLogProbs: [Double](repeating: 0, count: t))
    guard t > 0 else { return out }
    let ends = (1...t).map { $0 }
    let loss = softBellmanResiduals(
        rho: rho, values: values, t: t, segmentEnds: ends, segments: t, reward: reward,
        beta: config.beta, lambda: config.lambda, stopGradient: false, weight: w,
        residuals: &out.residuals, dValues: &out.dValues, dLogProbs: &out.dLogProbs)
    out.valueLoss = loss
    out.policyLoss = loss
    return out
}

/// The clipped importance weight `exp(min(sum rho, c))` (1 when weights are off).
@inline(__always)
func dqoWeight(rhoSum: Double, config: DQOConfig) -> Double {
    config.importanceWeights ? Foundation.exp(min(rhoSum, config.clip)) : 1
}

/// Token NLL of one response (SFT, rejection sampling): `-(1/T) sum_t log pi(y_t | s_t)` and its gradient.
public func nllLoss(logProbs: [Double]) -> (loss: Double, dLogProbs: [Double]) {
    let t = Double(max(1, logProbs.count))
    return (-logProbs.reduce(0, +) / t, [Double](repeating: -1 / t, count: logProbs.count))
}
