import Foundation

/// Numerically stable log(sigmoid(x)).
@inlinable func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }

/// Numerically stable sigmoid(x).
@inlinable func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }

/// DPO loss of one (chosen, rejected) pair and the gradient with respect to each summed log-ratio.
///
/// `L = -log sigmoid(beta * (r_w - r_l))` with `r = sum_t (log pi - log pi_ref)` over a response; every token
/// of a response gets that response's gradient (dL/dlogp_t = dL/dr).
public func dpoLoss(chosenLogRatio rw: Double, rejectedLogRatio rl: Double, beta: Double = 0.1)
    -> (loss: Double, dChosen: Double, dRejected: Double)
{
    let z = beta * (rw - rl)
    let g = -beta * sigmoid(-z)
    return (-logSigmoid(z), g, -g)
}

/// KTO loss of one unpaired response and dL/dr for its summed log-ratio `r`.
///
/// Desirable (reward 1): `lambdaD * (1 - sigmoid(beta * (r - z0)))`; undesirable: `lambdaU * (1 - sigmoid(beta *
/// (z0 - r)))`. `z0` is the detached, clamped-at-zero batch estimate of KL(pi || pi_ref).
public func ktoLoss(
    logRatio r: Double, desirable: Bool, z0: Double, beta: Double = 0.1,
    lambdaD: Double = 1, lambdaU: Double = 1
) -> (loss: Double, dLogRatio: Double) {
    let ref = max(0, z0)
    if desirable {
        let s = sigmoid(beta * (r - ref))
        return (lambdaD * (1 - s), -lambdaD * beta * s * (1 - s))
    }
    let s = sigmoid(beta * (ref - r))
    return (lambdaU * (1 - s), lambdaU * beta * s * (1 - s))
}
