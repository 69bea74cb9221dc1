import Foundation

/// The soft-Bellman residual every value-based method here shares (OREO at all levels, single-step TD, DQO).
///
/// The response is cut into K segments (tokens, steps or the whole response). Segment j has soft reward
/// `r_j - beta * sum_{i in j} rho_i` (r_j = R on the last segment, else 0) and the lambda-return target
/// `G_j = softReward_j + (1 - lambda) V(s_{j+1}) + lambda G_{j+1}` with `G_K = 0` and `V(s_K) = 0`: lambda = 1 is
/// the Monte-Carlo target `R - beta * suffix_j` (OREO), lambda = 0 the single-step TD target. The residual
/// `res_j = V(s_j) - G_j` is the same number in the value and the policy loss; only the gradient paths differ:
/// the value loss reaches V(s_j) alone (targets detached); the policy loss reaches the log-ratios through
/// `beta * rho`, either only those of segment j (the stop-gradient) or also those of later segments, which
/// enter `G_j` with weight `lambda^(k - j)`.
///
/// Shapes: rho, values, dValues, dLogProbs [t]; segmentEnds [k] (exclusive, increasing, last == t);
/// residuals [k]. Returns `weight / k * sum_j res_j^2`; gradients are of that quantity and are overwritten.
@inline(__always)
func softBellmanResiduals(
    rho: UnsafePointer<Double>, values: UnsafePointer<Double>, t: Int,
    segmentEnds: UnsafePointer<Int>, segments k: Int, reward: Double, beta: Double,
    lambda: Double, stopGradient: Bool, weight: Double,
    residuals: UnsafeMutablePointer<Double>, dValues: UnsafeMutablePointer<Double>,
    dLogProbs: UnsafeMutablePointer<Double>
) -> Double {
    dValues.update(repeating: 0, count: t)
    dLogProbs.update(repeating: 0, count: t)
    guard t > 0, k > 0 else { return 0 }
    var g = 0.0, loss = 0.0
    for j in stride(from: k - 1, through: 0, by: -1) {
        let start = j == 0 ? 0 : segmentEnds[j - 1], end = segmentEnds[j]
        var segRho = 0.0
        for i in start..<end { segRho += rho[i] }
        let last = j == k - 1
        let nextValue = last ? 0 : values[end]
        g = (last ? reward : 0) - beta * segRho + (1 - lambda) * nextValue + lambda * g
        let res = values[start] - g
        residuals[j] = res
        loss += res * res
    }
    let scale = 2 * weight / Double(k)
    // acc_j = sum_{h <= j} lambda^(j-h) res_h: how much the residuals up to j depend on segment j's log-ratios.
    var acc = 0.0
    for j in 0..<k {
        let start = j == 0 ? 0 : segmentEnds[j - 1], end = segmentEnds[j]
        let res = residuals[j]
        acc = stopGradient ? res : lambda * acc + res
        dValues[start] = scale * res
        let d = scale * beta * acc
        for i in start..<end { dLogProbs[i] = d }
    }
    return weight * loss / Double(k)
}

/// Segment ends (exclusive, in response tokens) for `level`: every token, the given steps (clipped to the
/// response, closed at t, empty steps dropped), or the whole response. Writes into `out` ([t]); returns k.
@inline(__always)
func segmentEnds(
    level: OREOLevel, t: Int, stepEnds: UnsafeBufferPointer<Int>,
    into out: UnsafeMutablePointer<Int>
) -> Int {
    switch level {
    case .token:
        for i in 0..<t { out[i] = i + 1 }
        return t
    case .response:
        out[0] = t
        return t > 0 ? 1 : 0
    case .step:
        var k = 0, previous = 0
        for e in stepEnds where e > previous && e < t {
            out[k] = e
            k += 1
            previous = e
        }
        if t > previous {
            out[k] = t
            k += 1
        }
        return k
    }
}
