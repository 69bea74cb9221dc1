/// Which states carry a soft-Bellman residual (docs/algorithm.md).
public enum OREOLevel: String, Sendable, CaseIterable, Codable {
    /// Every response token's state (the default).
    case token
    /// Only states at step boundaries; a step's residual uses the sum of its tokens' log-ratios.
    case step
    /// Only the initial state s_0 (close to DRO).
    case response
}

/// Settings of the OREO objective.
public struct OREOConfig: Sendable, Equatable, Codable {
    /// KL-regularization strength of the soft Bellman equation.
    public var beta: Double = 0.03
    /// Weight of the KL(pi || pi_ref) term of the policy loss.
    public var alpha: Double = 0.01
    /// Which states carry residuals.
    public var level: OREOLevel = .token
    /// Stop the gradient through later log-ratios (the paper's default); false is the ablation.
    public var stopGradient = true
    /// Single-step TD residual `V(s_t) - r_t - V(s_{t+1}) + beta*rho_t` instead of the Monte-Carlo one (token level).
    public var temporalDifference = false
    /// Use the sampled-token k3 estimator for the KL term (needs only stored reference log-probs) instead of
    /// the exact full-vocabulary KL, which the model computes.
    public var k3 = false

    /// Defaults from the paper: beta 0.03, alpha 0.01, token level, stop-gradient on.
    public init() {}
}

/// Loss values and per-token gradients of one sequence (already divided by its number of residuals).
public struct OREOSequenceResult: Sendable {
    /// Value loss.
    public var valueLoss: Double
    /// Policy loss (Bellman part plus the k3 KL part when enabled; the exact KL is added by the model).
    public var policyLoss: Double
    /// Mean k3 KL estimate over response tokens (0 unless `k3`).
    public var k3: Double
    /// Residuals, one per state that carries one.
    public var residuals: [Double]
    /// dL_V / dV(s_t) for each response token's state.
    public var dValues: [Double]
    /// dL_pi / d log pi(y_t | s_t) for each response token.
    public var dLogProbs: [Double]
}

/// OREO's value and policy losses for one response (pure function; shapes: T response tokens).
///
/// - Parameters:
///   - logProbs: log pi_theta(y_t | s_t), [T].
///   - refLogProbs: log pi_ref(y_t | s_t), [T].
///   - values: V(s_t) for the state before each response token, [T].
///   - reward: terminal reward R.
///   - stepEnds: step ends in response tokens (exclusive, increasing, last == T) for the step level.
public func oreoLoss(
    logProbs: [Double], refLogProbs: [Double], values: [Double], reward: Double,
    stepEnds: [Int] = [], config: OREOConfig
) -> OREOSequenceResult {
    let t = logProbs.count
    precondition(
        refLogProbs.count == t && values.count == t,
        "logProbs, refLogProbs and values must have one entry per response token")
    var out = OREOSequenceResult(
        valueLoss: 0, policyLoss: 0, k3: 0, residuals: [],
        dValues: [Double](repeating: 0, count: t), dLogProbs: [Double](repeating: 0, count: t))
    guard t > 0 else { return out }
    let rho = (0..<t).map { logProbs[$0] - refLogProbs[$0] }
    var ends = [Int](repeating: 0, count: t), residuals = [Double](repeating: 0, count: t)
    let k = stepEnds.withUnsafeBufferPointer { segmentEnds(level: config.level, t: t, stepEnds: $0, into: &ends) }
    let loss = softBellmanResiduals(
        rho: rho, values: values, t: t, segmentEnds: ends, segments: k, reward: reward,
        beta: config.beta, lambda: config.temporalDifference ? 0 : 1,
        stopGradient: config.stopGradient, weight: 1, residuals: &residuals,
        dValues: &out.dValues, dLogProbs: &out.dLogProbs)
    out.residuals = Array(residuals[0..<k])
    out.valueLoss = loss
    out.policyLoss = loss
    if config.k3 {
        out.k3 = k3Penalty(rho: rho, t: t, alpha: config.alpha, dLogProbs: &out.dLogProbs)
        out.policyLoss += config.alpha * out.k3
    }
    return out
}

/// Mean sampled-token k3 estimate of KL(pi || ref) over t tokens, `exp(-rho) + rho - 1 >= 0` (unbiased under
/// samples from pi); adds the gradient of `alpha * mean` to dLogProbs. Shapes: rho, dLogProbs [t].
@inline(__always)
func k3Penalty(rho: UnsafePointer<Double>, t: Int, alpha: Double, dLogProbs: UnsafeMutablePointer<Double>) -> Double {
    var k3 = 0.0
    for i in 0..<t {
        let e = Foundation.exp(-rho[i])
        k3 += (e + rho[i] - 1) / Double(t)
        dLogProbs[i] += alpha * (1 - e) / Double(t)
    }
    return k3
}

import Foundation
