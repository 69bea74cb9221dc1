import Format
import Support
import Testing
import Train

/// The OREO losses against algorithm.md's worked vector and against finite differences.
@Suite struct OREOLossTests {
    // beta=0.03, R=1, T=3, rho=[0.5,-1.0,2.0], V=[0.6,0.4,0.9] (reference log-probs 0 so logp = rho).
    let lp = [0.5, -1.0, 2.0], lr = [0.0, 0.0, 0.0], v = [0.6, 0.4, 0.9]

    func close(_ a: [Double], _ b: [Double], _ tol: Double = 1e-9) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
    }

    @Test func workedVectorTokenLevel() {
        let r = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: OREOConfig())
        #expect(close(r.residuals, [-0.355, -0.570, -0.040]))
        #expect(abs(r.valueLoss - 0.1508417) < 1e-7)
        #expect(close(r.dLogProbs, [-0.00710, -0.01140, -0.00080]))
        #expect(close(r.dValues, r.residuals.map { 2 * $0 / 3 }))
        var noSG = OREOConfig()
        noSG.stopGradient = false
        let n = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: noSG)
        #expect(close(n.dLogProbs, [-0.00710, -0.01850, -0.01930]))
    }

    @Test func workedVectorResponseLevel() {
        var c = OREOConfig()
        c.level = .response
        let r = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: c)
        #expect(abs(r.valueLoss - 0.126025) < 1e-12)
        #expect(close(r.dValues, [2 * -0.355, 0, 0]))
        #expect(close(r.dLogProbs, [Double](repeating: 2 * 0.03 * -0.355, count: 3)))
    }

    /// Every configuration's gradients equal central differences of its own loss, computed in double.
    @Test(arguments: OREOLevel.allCases)
    func gradientsMatchFiniteDifferences(level: OREOLevel) {
        var rng = SplitMix64(seed: 3)
        for variant in 0..<4 {
            var c = OREOConfig()
            c.level = level
            c.beta = 0.3
            c.alpha = 0.05
            c.stopGradient = variant & 1 == 0
            c.k3 = variant & 2 != 0
            let t = 9
            let lp = (0..<t).map { _ in -3 * rng.unit() }, lr = (0..<t).map { _ in -3 * rng.unit() }
            let v = (0..<t).map { _ in rng.unit() }
            let ends = [2, 5, 9]
            let base = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, stepEnds: ends, config: c)
            let h = 1e-6
            for i in 0..<t {
                // Policy: perturb log pi; only the gradient paths the configuration allows are followed, so the
                // finite difference of the policy loss must hold V and the stopped suffix fixed. That is exact
                // when stop-gradient is off (the loss is then a plain function of logp) and for the k3 part.
                if !c.stopGradient {
                    var up = lp, dn = lp
                    up[i] += h
                    dn[i] -= h
                    let fd =
                        (oreoLoss(logProbs: up, refLogProbs: lr, values: v, reward: 1, stepEnds: ends, config: c)
                            .policyLoss
                            - oreoLoss(logProbs: dn, refLogProbs: lr, values: v, reward: 1, stepEnds: ends, config: c)
                            .policyLoss) / (2 * h)
                    #expect(
                        abs(fd - base.dLogProbs[i]) < 1e-7,
                        "\(level) variant \(variant) dlogp[\(i)]: fd \(fd) vs \(base.dLogProbs[i])")
                }
                var up = v, dn = v
                up[i] += h
                dn[i] -= h
                let fd =
                    (oreoLoss(logProbs: lp, refLogProbs: lr, values: up, reward: 1, stepEnds: ends, config: c).valueLoss
                        - oreoLoss(logProbs: lp, refLogProbs: lr, values: dn, reward: 1, stepEnds: ends, config: c)
                        .valueLoss) / (2 * h)
                #expect(abs(fd - base.dValues[i]) < 1e-7, "\(level) variant \(variant) dV[\(i)]")
            }
        }
    }

    @Test func temporalDifferenceResiduals() {
        var c = OREOConfig()
        c.temporalDifference = true
        let r = oreoLoss(logProbs: [0.5, -1.0], refLogProbs: [0, 0], values: [0.6, 0.4], reward: 1, config: c)
        // res_0 = V0 - 0 - V1 + beta*rho0; res_1 = V1 - R - 0 + beta*rho1 (terminal value 0).
        #expect(close(r.residuals, [0.6 - 0.4 + 0.015, 0.4 - 1 - 0.03]))
        #expect(close(r.dLogProbs, r.residuals.map { 2 * 0.03 * $0 / 2 }))
        #expect(close(r.dValues, r.residuals.map { 2 * $0 / 2 }))
    }

    /// With stop-gradient, residual k's policy gradient reaches only its own tokens: check that directly by
    /// differentiating each residual's square with the later log-ratios frozen.
    @Test func stopGradientFreezesLaterLogRatios() {
        var c = OREOConfig()
        c.level = .step
        let lp = [0.1, -0.4, 0.3, 0.7, -0.2], lr = [0.0, 0.1, 0.0, -0.3, 0.2], v = [0.2, 0.5, 0.1, 0.9, 0.3]
        let ends = [2, 5]
        let r = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, stepEnds: ends, config: c)
        // Step 0 covers tokens 0-1, step 1 tokens 2-4; each gets 2 * beta * res_k / K.
        let expected = [0, 0, 1, 1, 1].map { 2 * c.beta * r.residuals[$0] / 2 }
        #expect(close(r.dLogProbs, expected))
        #expect(r.dValues[0] != 0 && r.dValues[2] != 0 && r.dValues[1] == 0)
    }
}

extension SplitMix64 {
    /// Uniform in [0, 1).
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
