import Format
import Foundation
import Support
import Testing
import Train

/// DQO, NLL and the batch-level objective against independent formulas, OREO and finite differences.
@Suite struct DQOLossTests {
    func random(_ rng: inout SplitMix64, _ t: Int) -> (lp: [Double], lr: [Double], v: [Double]) {
        ((0..<t).map { _ in -3 * rng.unit() }, (0..<t).map { _ in -3 * rng.unit() }, (0..<t).map { _ in rng.unit() })
    }

    /// lambda = 1, w = 1 is token-level OREO without the stop-gradient and without the KL term: same residuals,
    /// losses and both gradients.
    @Test func lambdaOneEqualsOREOWithoutStopGradient() {
        var rng = SplitMix64(seed: 11)
        for t in [1, 2, 5, 17] {
            let (lp, lr, v) = random(&rng, t)
            var d = DQOConfig()
            d.lambda = 1
            d.importanceWeights = false
            d.beta = 0.2
            var o = OREOConfig()
            o.stopGradient = false
            o.alpha = 0
            o.beta = 0.2
            for reward in [0.0, 1.0] {
                let a = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: reward, config: d)
                let b = oreoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: reward, config: o)
                #expect(a.weight == 1)
                #expect(relativeError(a.residuals, b.residuals) < 1e-14)
                #expect(abs(a.valueLoss - b.valueLoss) < 1e-14 && abs(a.policyLoss - b.policyLoss) < 1e-14)
                #expect(relativeError(a.dValues, b.dValues) < 1e-14, "T=\(t) dV")
                #expect(relativeError(a.dLogProbs, b.dLogProbs) < 1e-14, "T=\(t) dlogp")
            }
        }
    }

    /// Residuals against the textbook lambda-return: (1 - lambda)-weighted n-step returns of the soft rewards
    /// `r_h - beta rho_h`, bootstrapped with V (V(s_T) = 0), the tail weight lambda^(T-h-1) on the full return.
    @Test func residualsMatchTextbookLambdaReturn() {
        var rng = SplitMix64(seed: 12)
        let t = 7
        let (lp, lr, v) = random(&rng, t)
        for lambda in [0.0, 0.3, 0.95, 1.0] {
            var c = DQOConfig()
            c.lambda = lambda
            c.beta = 0.1
            c.importanceWeights = false
            let r = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: c)
            for h in 0..<t {
                let soft = (0..<t).map { i in (i == t - 1 ? 1.0 : 0) - c.beta * (lp[i] - lr[i]) }
                func nStep(_ n: Int) -> Double {
                    (h..<(h + n)).reduce(0) { $0 + soft[$1] } + (h + n < t ? v[h + n] : 0)
                }
                var g = pow(lambda, Double(t - h - 1)) * nStep(t - h)
                for n in 1..<(t - h) { g += (1 - lambda) * pow(lambda, Double(n - 1)) * nStep(n) }
                #expect(abs(r.residuals[h] - (v[h] - g)) < 1e-12, "lambda \(lambda) h \(h)")
            }
        }
    }

    /// The policy loss is a plain function of log pi (V detached, w fixed): its gradient equals central
    /// differences for every lambda. The value loss at lambda = 1 (targets free of V) likewise in V.
    @Test func gradientsMatchFiniteDifferences() {
        var rng = SplitMix64(seed: 13)
        let t = 9
        let (lp, lr, v) = random(&rng, t)
        for lambda in [0.0, 0.5, 0.9, 1.0] {
            var c = DQOConfig()
            c.lambda = lambda
            c.beta = 0.3
            c.importanceWeights = false
            let base = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: c)
            let fd = numericGradient(
                { dqoLoss(logProbs: $0, refLogProbs: lr, values: v, reward: 1, config: c).policyLoss }, at: lp)
            #expect(relativeError(base.dLogProbs, fd) < 1e-7, "lambda \(lambda): \(relativeError(base.dLogProbs, fd))")
        }
        var c = DQOConfig()
        c.lambda = 1
        c.clip = 5
        let base = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 1, config: c)
        let fd = numericGradient(
            { dqoLoss(logProbs: lp, refLogProbs: lr, values: $0, reward: 1, config: c).valueLoss }, at: v)
        #expect(relativeError(base.dValues, fd) < 1e-7)
    }

    /// w = exp(min(sum rho, c)) scales both losses and both gradients and is never above exp(c).
    @Test func importanceWeightScalesEverything() {
        var rng = SplitMix64(seed: 14)
        let (lp, lr, v) = random(&rng, 6)
        for clip in [-1.0, 0.0, 2.0, 50.0] {
            var on = DQOConfig()
            on.clip = clip
            var off = on
            off.importanceWeights = false
            let a = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 0, config: on)
            let b = dqoLoss(logProbs: lp, refLogProbs: lr, values: v, reward: 0, config: off)
            let sumRho = zip(lp, lr).reduce(0) { $0 + $1.0 - $1.1 }
            #expect(abs(a.weight / exp(min(sumRho, clip)) - 1) < 1e-12 && a.weight <= exp(clip))
            #expect(abs(a.valueLoss - a.weight * b.valueLoss) < 1e-13)
            #expect(relativeError(a.dLogProbs, b.dLogProbs.map { $0 * a.weight }) < 1e-13)
            #expect(relativeError(a.dValues, b.dValues.map { $0 * a.weight }) < 1e-13)
        }
    }

    @Test func nllGradientMatchesFiniteDifferences() {
        let lp = [-0.3, -2.0, -0.01, -5.5]
        let r = nllLoss(logProbs: lp)
        #expect(abs(r.loss - 7.81 / 4) < 1e-12)
        #expect(relativeError(r.dLogProbs, numericGradient({ nllLoss(logProbs: $0).loss }, at: lp)) < 1e-8)
    }
}

/// The batch path evaluates every method over a packed batch exactly as the per-sequence functions do, with
/// per-sequence means averaged over sequences.
@Suite struct BatchObjectiveTests {
    // Three sequences packed: prompt lengths 2, 1, 3; responses 3, 4, 2 (positions first ..< first + count).
    let spans = [
        ResponseSpan(first: 1, count: 3, reward: 1, positive: true, stepEndStart: 0, stepEndCount: 2),
        ResponseSpan(first: 5, count: 4, reward: 0, positive: false, stepEndStart: 2, stepEndCount: 1),
        ResponseSpan(first: 12, count: 2, reward: 1, positive: true, stepEndStart: 3, stepEndCount: 0),
    ]
    let stepEnds: [Int32] = [1, 3, 2]

    func data(_ seed: UInt64) -> (lp: [Float], lr: [Float], v: [Float], kl: [Float]) {
        var rng = SplitMix64(seed: seed)
        let n = 15
        return (
            (0..<n).map { _ in Float(-3 * rng.unit()) }, (0..<n).map { _ in Float(-3 * rng.unit()) },
            (0..<n).map { _ in Float(rng.unit()) }, (0..<n).map { _ in Float(rng.unit()) }
        )
    }

    func slice(_ a: [Float], _ s: ResponseSpan) -> [Double] { (s.first..<(s.first + s.count)).map { Double(a[$0]) } }

    func expectSpanGradients(_ got: [Float], _ perSequence: [[Double]], scale: Double, _ label: String) {
        var expected = [Float](repeating: 0, count: got.count)
        for (s, g) in zip(spans, perSequence) { for i in 0..<s.count { expected[s.first + i] = Float(scale * g[i]) } }
        #expect(relativeError(got, expected) < 1e-6, "\(label): \(relativeError(got, expected))")
    }

    @Test(arguments: OREOLevel.allCases)
    func oreoMatchesPerSequence(level: OREOLevel) throws {
        let (lp, lr, v, kl) = data(21)
        let obj = BatchObjective(capacity: 32)
        for variant in 0..<3 {
            var c = OREOConfig()
            c.level = level
            c.beta = 0.2
            c.alpha = 0.05
            c.k3 = variant == 1
            c.stopGradient = variant != 2
            let stats = try obj.oreo(
                spans: spans, stepEnds: stepEnds, logProbs: lp, refLogProbs: lr, values: v,
                kl: c.k3 ? nil : kl, config: c)
            let per = spans.map { s in
                oreoLoss(
                    logProbs: slice(lp, s), refLogProbs: slice(lr, s), values: slice(v, s), reward: Double(s.reward),
                    stepEnds: (s.stepEndStart..<(s.stepEndStart + s.stepEndCount)).map { Int(stepEnds[$0]) }, config: c)
            }
            let klMeans = spans.map { s in slice(kl, s).reduce(0, +) / Double(s.count) }
            let expectedPolicy = zip(per, klMeans).map { c.k3 ? $0.policyLoss : $0.policyLoss + c.alpha * $1 }.reduce(
                0, +)
            #expect(abs(stats.valueLoss - per.map(\.valueLoss).reduce(0, +)) < 1e-5)
            #expect(abs(stats.policyLoss - expectedPolicy) < 1e-5)
            #expect(stats.sequences == 3 && stats.responseTokens == 9)
            expectSpanGradients(obj.dLogProbs, per.map(\.dLogProbs), scale: 1.0 / 3, "\(level) \(variant) dlogp")
            expectSpanGradients(obj.dValues, per.map(\.dValues), scale: 1.0 / 3, "\(level) \(variant) dV")
            if !c.k3 {
                expectSpanGradients(
                    obj.dKL, spans.map { s in [Double](repeating: c.alpha / Double(s.count), count: s.count) },
                    scale: 1.0 / 3, "dKL")
            }
        }
    }

    @Test func workedVectorThroughTheBatchPath() throws {
        // One sequence: prompt of 1 token then 3 response tokens; reference 0 so log pi = rho.
        let lp: [Float] = [0.5, -1.0, 2.0, 0], lr: [Float] = [0, 0, 0, 0], v: [Float] = [0.6, 0.4, 0.9, 0]
        let obj = BatchObjective(capacity: 4)
        var c = OREOConfig()
        c.alpha = 0
        let s = try obj.oreo(
            spans: [ResponseSpan(first: 0, count: 3, reward: 1, positive: true)], stepEnds: [],
            logProbs: lp, refLogProbs: lr, values: v, kl: nil, config: c)
        #expect(abs(s.valueLoss - 0.1508417) < 1e-6)
        #expect(relativeError(Array(obj.dLogProbs[0..<3]), [-0.00710, -0.01140, -0.00080]) < 1e-5)
        #expect(obj.dLogProbs[3] == 0 && obj.dValues[3] == 0)
    }

    @Test func dqoNllDpoKtoMatchPerSequence() throws {
        let (lp, lr, v, _) = data(22)
        let obj = BatchObjective(capacity: 32)
        var d = DQOConfig()
        d.lambda = 0.7
        d.clip = 0.5
        let sd = try obj.dqo(spans: spans, logProbs: lp, refLogProbs: lr, values: v, config: d)
        let perD = spans.map { s in
            dqoLoss(
                logProbs: slice(lp, s), refLogProbs: slice(lr, s), values: slice(v, s), reward: Double(s.reward),
                config: d)
        }
        #expect(abs(sd.valueLoss - perD.map(\.valueLoss).reduce(0, +)) < 1e-5)
        #expect(abs(sd.weight - perD.map(\.weight).reduce(0, +)) < 1e-5)
        expectSpanGradients(obj.dLogProbs, perD.map(\.dLogProbs), scale: 1.0 / 3, "dqo dlogp")
        expectSpanGradients(obj.dValues, perD.map(\.dValues), scale: 1.0 / 3, "dqo dV")

        let sn = try obj.nll(spans: spans, logProbs: lp, sequenceWeight: 0.25)
        let perN = spans.map { nllLoss(logProbs: slice(lp, $0)) }
        #expect(abs(sn.policyLoss - perN.map(\.loss).reduce(0, +)) < 1e-5)
        expectSpanGradients(obj.dLogProbs, perN.map(\.dLogProbs), scale: 0.25, "nll")
        #expect(obj.dValues.isEmpty)

        // DPO on (span 0 chosen, span 1 rejected).
        let pair = Array(spans[0..<2])
        let sp = try obj.dpo(spans: pair, logProbs: lp, refLogProbs: lr, config: DPOConfig())
        let r = pair.map { s in zip(slice(lp, s), slice(lr, s)).reduce(0) { $0 + $1.0 - $1.1 } }
        let e = dpoLoss(chosenLogRatio: r[0], rejectedLogRatio: r[1], beta: 0.1)
        #expect(abs(sp.policyLoss - e.loss) < 1e-6 && sp.pairs == 1 && sp.pairsCorrect == (r[0] > r[1] ? 1 : 0))
        expectSpanGradients(
            obj.dLogProbs,
            [[Double](repeating: e.dChosen, count: 3), [Double](repeating: e.dRejected, count: 4)] + [[0, 0]],
            scale: 1, "dpo")

        let sk = try obj.kto(spans: spans, logProbs: lp, refLogProbs: lr, config: KTOConfig())
        let rs = spans.map { s in zip(slice(lp, s), slice(lr, s)).reduce(0) { $0 + $1.0 - $1.1 } }
        let z0 = max(0, rs.reduce(0, +) / 3)
        let perK = zip(spans, rs).map { ktoLoss(logRatio: $1, desirable: $0.positive, z0: z0) }
        #expect(abs(sk.policyLoss - perK.map(\.loss).reduce(0, +)) < 1e-6)
        expectSpanGradients(
            obj.dLogProbs, zip(spans, perK).map { [Double](repeating: $1.dLogRatio, count: $0.count) },
            scale: 1.0 / 3, "kto")
    }

    @Test func refusesSpansOutsideTheBatch() {
        let obj = BatchObjective(capacity: 8)
        let lp = [Float](repeating: -1, count: 6)
        #expect(throws: TrainError.self) {
            try obj.nll(spans: [ResponseSpan(first: 4, count: 3, reward: 1, positive: true)], logProbs: lp)
        }
        #expect(throws: TrainError.self) {
            try obj.nll(spans: [ResponseSpan(first: 0, count: 2, reward: 1, positive: true)], logProbs: lp + lp)
        }
    }
}
