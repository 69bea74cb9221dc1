/// Which states carry a soft-Bellman residual (shared/docs/algorithm.md).
public enum OREOLevel: String, Sendable, CaseIterable {
    /// Every response token's state (the default).
    case token
    /// Only states at step boundaries; a step's residual uses the sum of its tokens' log-ratios.
    case step
    /// Only the initial state s_0 (close to DRO).
    case response
}

/// Settings of the OREO objective.
public struct OREOConfig: Sendable, Equatable {
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
public func oreoLoss(logProbs: [Double], refLogProbs: [Double], values: [Double], reward: Double,
                     stepEnds: [Int] = [], config: OREOConfig) -> OREOSequenceResult {
    let t = logProbs.count
    precondition(refLogProbs.count == t && values.count == t, "logProbs, refLogProbs and values must have one entry per response token")
    var out = OREOSequenceResult(valueLoss: 0, policyLoss: 0, k3: 0, residuals: [],
                                 dValues: [Double](repeating: 0, count: t), dLogProbs: [Double](repeating: 0, count: t))
    guard t > 0 else { return out }
    let beta = config.beta
    let rho = (0..<t).map { logProbs[$0] - refLogProbs[$0] }

    // Segments [start, end) that each carry one residual, and V at each segment's first state.
    var segments: [(start: Int, end: Int)]
    switch config.level {
    case .token: segments = (0..<t).map { ($0, $0 + 1) }
    case .response: segments = [(0, t)]
    case .step:
        let ends = stepEnds.isEmpty || stepEnds.last != t ? stepEnds.filter { $0 < t } + [t] : stepEnds
        var start = 0
        segments = []
        for e in ends where e > start { segments.append((start, e)); start = e }
    }
    let k = Double(segments.count)
    // suffix[i] = sum of rho from token i to the end.
    var suffix = [Double](repeating: 0, count: t + 1)
    for i in stride(from: t - 1, through: 0, by: -1) { suffix[i] = suffix[i + 1] + rho[i] }

    for seg in segments {
        let v = values[seg.start]
        let res: Double
        if config.temporalDifference && config.level == .token {
            let next = seg.end < t ? values[seg.end] : 0
            let r = seg.end == t ? reward : 0
            res = v - r - next + beta * rho[seg.start]
        } else {
            res = v - reward + beta * suffix[seg.start]
        }
        out.residuals.append(res)
        out.valueLoss += res * res / k
        out.policyLoss += res * res / k
        out.dValues[seg.start] += 2 * res / k
        // The residual's own log-ratios always get gradient; with stop-gradient off, so do the later ones
        // that enter it through the suffix (not for TD, whose residual holds only its own token).
        let gradientEnd = config.stopGradient || config.temporalDifference ? seg.end : t
        for i in seg.start..<gradientEnd { out.dLogProbs[i] += 2 * beta * res / k }
    }
    if config.k3 {
        // k3 = exp(lr - lp) + (lp - lr) - 1 >= 0, unbiased for KL(pi || ref) under samples from pi.
        for i in 0..<t {
            let e = (-rho[i]).exp()
            out.k3 += (e + rho[i] - 1) / Double(t)
            out.dLogProbs[i] += config.alpha * (1 - e) / Double(t)
        }
        out.policyLoss += config.alpha * out.k3
    }
    return out
}

private extension Double {
    func exp() -> Double { Foundation.exp(self) }
}

import Foundation
