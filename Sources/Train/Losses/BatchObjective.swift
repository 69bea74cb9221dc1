import Foundation

/// One response inside a packed batch, as the losses see it.
///
/// Positions `first ..< first + count` are where the response tokens are predicted (the prompt's last position
/// predicts the first response token) and where the states s_0 ... s_{T-1} end, so V(s_t) is read there too.
public struct ResponseSpan: Sendable, Equatable {
    /// Batch position whose target is the first response token.
    public var first: Int
    /// Response tokens T.
    public var count: Int
    /// Terminal reward R.
    public var reward: Float
    /// Counts as a positive (reward-1) trajectory for DPO/KTO/RFT and the value statistics.
    public var positive: Bool
    /// This response's step ends (response-relative, exclusive) are `stepEnds[stepEndStart ..< + stepEndCount]`.
    public var stepEndStart: Int, stepEndCount: Int

    /// A span; step ends default to none.
    public init(first: Int, count: Int, reward: Float, positive: Bool, stepEndStart: Int = 0, stepEndCount: Int = 0) {
        self.first = first
        self.count = count
        self.reward = reward
        self.positive = positive
        self.stepEndStart = stepEndStart
        self.stepEndCount = stepEndCount
    }
}

/// DPO settings.
public struct DPOConfig: Sendable, Equatable, Codable {
    /// Temperature of the implicit reward.
    public var beta: Double = 0.1
    /// Defaults: beta 0.1.
    public init() {}
}

/// KTO settings.
public struct KTOConfig: Sendable, Equatable, Codable {
    /// Temperature of the implicit reward.
    public var beta: Double = 0.1
    /// Weight of desirable (positive) responses.
    public var lambdaD: Double = 1
    /// Weight of undesirable (negative) responses.
    public var lambdaU: Double = 1
    /// Defaults: beta 0.1, both weights 1.
    public init() {}
}

/// Sums over the sequences of one or more batches; divide by the matching count for means.
public struct ObjectiveStats: Sendable, Equatable {
    /// Sequences and response tokens seen.
    public var sequences = 0, responseTokens = 0
    /// Sum over sequences (pairs for DPO) of the policy objective (Bellman + KL, NLL, DPO or KTO loss).
    public var policyLoss = 0.0
    /// Sum over sequences of the value loss.
    public var valueLoss = 0.0
    /// Sum over sequences of the Bellman part of the policy loss.
    public var bellman = 0.0
    /// Sum over sequences of the mean per-token KL(pi || ref) (exact or k3).
    public var kl = 0.0
    /// Sum over sequences of |V(s_0) - R|: how well the value at the prompt predicts the outcome.
    public var valueError = 0.0
    /// Sums and counts of V over the states of positive / negative trajectories.
    public var positiveValue = 0.0, positiveStates = 0, negativeValue = 0.0, negativeStates = 0
    /// Sums and counts of log pi(y_t) over the tokens of positive / negative responses.
    public var positiveLogProb = 0.0, positiveTokens = 0, negativeLogProb = 0.0, negativeTokens = 0
    /// Sum over sequences of the summed log-ratio sum_t rho_t.
    public var logRatio = 0.0
    /// Sum of DQO importance weights.
    public var weight = 0.0
    /// DPO pairs, pairs whose chosen log-ratio exceeds the rejected one, and the sum of the margins r_w - r_l.
    public var pairs = 0, pairsCorrect = 0, margin = 0.0

    /// Empty sums.
    public init() {}

    /// Adds another batch's sums.
    public static func += (a: inout ObjectiveStats, b: ObjectiveStats) {
        a.sequences += b.sequences
        a.responseTokens += b.responseTokens
        a.policyLoss += b.policyLoss
        a.valueLoss += b.valueLoss
        a.bellman += b.bellman
        a.kl += b.kl
        a.valueError += b.valueError
        a.positiveValue += b.positiveValue
        a.positiveStates += b.positiveStates
        a.negativeValue += b.negativeValue
        a.negativeStates += b.negativeStates
        a.positiveLogProb += b.positiveLogProb
        a.positiveTokens += b.positiveTokens
        a.negativeLogProb += b.negativeLogProb
        a.negativeTokens += b.negativeTokens
        a.logRatio += b.logRatio
        a.weight += b.weight
        a.pairs += b.pairs
        a.pairsCorrect += b.pairsCorrect
        a.margin += b.margin
    }

    /// True when every loss sum is a finite number.
    public var isFinite: Bool { [policyLoss, valueLoss, bellman, kl, logRatio].allSatisfy(\.isFinite) }
}

extension ObjectiveStats {
    /// Doubles `pack(into:)` writes: the sums laid out for one all-reduce over ranks (counts are exact as doubles
    /// below 2^53).
    public static let packedCount = 20

    /// Writes the sums to `out[0..<packedCount]`.
    public func pack(into out: UnsafeMutablePointer<Double>) {
        out[0] = Double(sequences)
        out[1] = Double(responseTokens)
        out[2] = policyLoss
        out[3] = valueLoss
        out[4] = bellman
        out[5] = kl
        out[6] = valueError
        out[7] = positiveValue
        out[8] = Double(positiveStates)
        out[9] = negativeValue
        out[10] = Double(negativeStates)
        out[11] = positiveLogProb
        out[12] = Double(positiveTokens)
        out[13] = negativeLogProb
        out[14] = Double(negativeTokens)
        out[15] = logRatio
        out[16] = weight
        out[17] = Double(pairs)
        out[18] = Double(pairsCorrect)
        out[19] = margin
    }

    /// Reads sums written by `pack(into:)` (and summed over ranks).
    public init(packed p: UnsafePointer<Double>) {
        self.init()
        sequences = Int(p[0])
        responseTokens = Int(p[1])
        policyLoss = p[2]
        valueLoss = p[3]
        bellman = p[4]
        kl = p[5]
        valueError = p[6]
        positiveValue = p[7]
        positiveStates = Int(p[8])
        negativeValue = p[9]
        negativeStates = Int(p[10])
        positiveLogProb = p[11]
        positiveTokens = Int(p[12])
        negativeLogProb = p[13]
        negativeTokens = Int(p[14])
        logRatio = p[15]
        weight = p[16]
        pairs = Int(p[17])
        pairsCorrect = Int(p[18])
        margin = p[19]
    }
}

/// Evaluates a method's losses for all sequences of a packed batch into buffers allocated once.
///
/// Reduction: each sequence's loss is its mean over its residuals (tokens, steps or one), and the batch loss is
/// the mean over sequences. Callers that accumulate several micro-batches into one step pass
/// `sequenceWeight = 1 / (sequences in the step)`, so the step's gradient is the mean over all its sequences.
/// Gradients are written per batch position (0 off the responses) into `dLogProbs`, `dValues` and `dKL`.
public final class BatchObjective {
    /// d(loss)/d(log pi) per batch position, ready for `TransformerModel.backward`.
    public private(set) var dLogProbs: [Float] = []
    /// d(loss)/dV per batch position, ready for `backwardValues`.
    public private(set) var dValues: [Float] = []
    /// d(loss)/d(exact KL) per batch position, ready for `backward(dLogProbs:dKL:)`.
    public private(set) var dKL: [Float] = []
    /// Most positions (and response tokens) one batch may hold.
    public let capacity: Int
    private var rho: [Double], vals: [Double], dV: [Double], dLP: [Double], res: [Double]
    private var ends: [Int], steps: [Int]

    /// Buffers for batches of up to `capacity` positions.
    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        rho = [Double](repeating: 0, count: self.capacity)
        vals = rho
        dV = rho
        dLP = rho
        res = rho
        ends = [Int](repeating: 0, count: self.capacity)
        steps = ends
        dLogProbs.reserveCapacity(self.capacity)
        dValues.reserveCapacity(self.capacity)
        dKL.reserveCapacity(self.capacity)
    }

    private func reset(_ n: Int, values: Bool, kl: Bool) {
        func zero(_ a: inout [Float], _ count: Int) {
            a.removeAll(keepingCapacity: true)
            a.append(contentsOf: repeatElement(0, count: count))
        }
        zero(&dLogProbs, n)
        zero(&dValues, values ? n : 0)
        zero(&dKL, kl ? n : 0)
    }

    /// Validates spans against the batch (the kernels index unchecked); `counts` are the per-position arrays'
    /// lengths (-1 for none), passed as a tuple so that checking allocates nothing.
    private func check(_ spans: [ResponseSpan], n: Int, counts: (Int, Int, Int) = (-1, -1, -1), stepEnds: Int? = nil)
        throws
    {
        guard n <= capacity else { throw TrainError.shape("batch of \(n) positions; objective holds \(capacity)") }
        for c in [counts.0, counts.1, counts.2] where c >= 0 && c != n {
            throw TrainError.shape("per-position array of \(c) entries for \(n) positions")
        }
        var previousEnd = 0
        for (i, s) in spans.enumerated() {
            guard s.count > 0, s.first >= previousEnd, s.first + s.count <= n else {
                throw TrainError.shape(
                    "response span \(i) (\(s.first) + \(s.count)) outside the batch of \(n) or overlapping")
            }
            if let stepEnds, s.stepEndStart < 0 || s.stepEndCount < 0 || s.stepEndStart + s.stepEndCount > stepEnds {
                throw TrainError.shape(
                    "response span \(i): step ends \(s.stepEndStart) + \(s.stepEndCount) outside \(stepEnds)")
            }
            previousEnd = s.first + s.count
        }
    }

    /// Copies span `s`'s log-ratios (and values) into the double scratch; returns sum of rho and adds the
    /// log-prob and value statistics.
    private func load(
        _ s: ResponseSpan, _ logProbs: [Float], _ refLogProbs: [Float]?, _ values: [Float]?,
        _ stats: inout ObjectiveStats
    ) -> Double {
        var sum = 0.0, lpSum = 0.0
        for i in 0..<s.count {
            let lp = Double(logProbs[s.first + i])
            lpSum += lp
            let r = lp - Double(refLogProbs?[s.first + i] ?? 0)
            rho[i] = r
            sum += r
            if let values { vals[i] = Double(values[s.first + i]) }
        }
        stats.sequences += 1
        stats.responseTokens += s.count
        stats.logRatio += refLogProbs == nil ? 0 : sum
        if s.positive {
            stats.positiveLogProb += lpSum
            stats.positiveTokens += s.count
        } else {
            stats.negativeLogProb += lpSum
            stats.negativeTokens += s.count
        }
        if values != nil {
            var vs = 0.0
            for i in 0..<s.count { vs += vals[i] }
            if s.positive {
                stats.positiveValue += vs
                stats.positiveStates += s.count
            } else {
                stats.negativeValue += vs
                stats.negativeStates += s.count
            }
            stats.valueError += abs(vals[0] - Double(s.reward))
        }
        return sum
    }

    private func store(_ s: ResponseSpan, scale: Double, values: Bool) {
        for i in 0..<s.count {
            dLogProbs[s.first + i] = Float(scale * dLP[i])
            if values { dValues[s.first + i] = Float(scale * dV[i]) }
        }
    }

    /// OREO's value and policy losses. `kl` is the model's exact per-position KL (nil with `config.k3`, which
    /// estimates it from `refLogProbs`, or when alpha is 0).
    public func oreo(
        spans: [ResponseSpan], stepEnds: [Int32], logProbs: [Float], refLogProbs: [Float], values: [Float],
        kl: [Float]?, config: OREOConfig, sequenceWeight: Double? = nil
    ) throws -> ObjectiveStats {
        let n = logProbs.count
        let exact = !config.k3 && kl != nil && config.alpha != 0
        try check(
            spans, n: n, counts: (refLogProbs.count, values.count, exact ? kl!.count : -1), stepEnds: stepEnds.count)
        reset(n, values: true, kl: exact)
        let w = sequenceWeight ?? 1 / Double(max(1, spans.count))
        var stats = ObjectiveStats()
        for s in spans {
            _ = load(s, logProbs, refLogProbs, values, &stats)
            let t = s.count
            for j in 0..<s.stepEndCount { steps[j] = Int(stepEnds[s.stepEndStart + j]) }
            let k = steps.withUnsafeBufferPointer {
                segmentEnds(
                    level: config.level, t: t, stepEnds: UnsafeBufferPointer(rebasing: $0[0..<s.stepEndCount]),
                    into: &ends)
            }
            let loss = softBellmanResiduals(
                rho: rho, values: vals, t: t, segmentEnds: ends, segments: k,
                reward: Double(s.reward), beta: config.beta,
                lambda: config.temporalDifference ? 0 : 1, stopGradient: config.stopGradient,
                weight: 1, residuals: &res, dValues: &dV, dLogProbs: &dLP)
            var klMean = 0.0
            if config.k3 {
                klMean = k3Penalty(rho: rho, t: t, alpha: config.alpha, dLogProbs: &dLP)
            } else if exact, let kl {
                for i in 0..<t {
                    klMean += Double(kl[s.first + i]) / Double(t)
                    dKL[s.first + i] = Float(w * config.alpha / Double(t))
                }
            }
            stats.valueLoss += loss
            stats.bellman += loss
            stats.kl += klMean
            stats.policyLoss += loss + config.alpha * klMean
            store(s, scale: w, values: true)
        }
        return stats
    }

    /// DQO's value and policy losses (token level, lambda-returns, clipped importance weights).
    public func dqo(
        spans: [ResponseSpan], logProbs: [Float], refLogProbs: [Float], values: [Float],
        config: DQOConfig, sequenceWeight: Double? = nil
    ) throws -> ObjectiveStats {
        let n = logProbs.count
        try check(spans, n: n, counts: (refLogProbs.count, values.count, -1))
        reset(n, values: true, kl: false)
        let w = sequenceWeight ?? 1 / Double(max(1, spans.count))
        var stats = ObjectiveStats()
        for s in spans {
            let rhoSum = load(s, logProbs, refLogProbs, values, &stats)
            let t = s.count
            for i in 0..<t { ends[i] = i + 1 }
            let iw = dqoWeight(rhoSum: rhoSum, config: config)
            let loss = softBellmanResiduals(
                rho: rho, values: vals, t: t, segmentEnds: ends, segments: t,
                reward: Double(s.reward), beta: config.beta, lambda: config.lambda,
                stopGradient: false, weight: iw, residuals: &res, dValues: &dV, dLogProbs: &dLP)
            stats.valueLoss += loss
            stats.bellman += loss
            stats.policyLoss += loss
            stats.weight += iw
            store(s, scale: w, values: true)
        }
        return stats
    }

    /// Token NLL of every response (SFT; rejection sampling when the batch holds only positives).
    public func nll(spans: [ResponseSpan], logProbs: [Float], sequenceWeight: Double? = nil) throws -> ObjectiveStats {
        let n = logProbs.count
        try check(spans, n: n)
        reset(n, values: false, kl: false)
        let w = sequenceWeight ?? 1 / Double(max(1, spans.count))
        var stats = ObjectiveStats()
        for s in spans {
            _ = load(s, logProbs, nil, nil, &stats)
            var sum = 0.0
            for i in 0..<s.count {
                sum += Double(logProbs[s.first + i])
                dLP[i] = -1 / Double(s.count)
            }
            stats.policyLoss += -sum / Double(s.count)
            store(s, scale: w, values: false)
        }
        return stats
    }

    /// DPO over consecutive (chosen, rejected) spans; the loss is the mean over pairs (or `pairWeight` per pair).
    public func dpo(
        spans: [ResponseSpan], logProbs: [Float], refLogProbs: [Float], config: DPOConfig,
        pairWeight: Double? = nil
    ) throws -> ObjectiveStats {
        let n = logProbs.count
        guard spans.count % 2 == 0 else {
            throw TrainError.shape("DPO needs (chosen, rejected) pairs; got \(spans.count) spans")
        }
        try check(spans, n: n, counts: (refLogProbs.count, -1, -1))
        reset(n, values: false, kl: false)
        let w = pairWeight ?? 1 / Double(max(1, spans.count / 2))
        var stats = ObjectiveStats()
        for p in 0..<spans.count / 2 {
            let c = spans[2 * p], r = spans[2 * p + 1]
            let rw = load(c, logProbs, refLogProbs, nil, &stats)
            let rl = load(r, logProbs, refLogProbs, nil, &stats)
            let (loss, dw, dl) = dpoLoss(chosenLogRatio: rw, rejectedLogRatio: rl, beta: config.beta)
            for i in 0..<c.count { dLogProbs[c.first + i] = Float(w * dw) }
            for i in 0..<r.count { dLogProbs[r.first + i] = Float(w * dl) }
            stats.policyLoss += loss
            stats.pairs += 1
            stats.pairsCorrect += rw > rl ? 1 : 0
            stats.margin += rw - rl
        }
        return stats
    }

    /// KTO with z0 = the detached, clamped-at-zero mean of the batch's summed log-ratios (an estimate of
    /// KL(pi || ref) on the batch's responses); the loss is the mean over sequences.
    public func kto(
        spans: [ResponseSpan], logProbs: [Float], refLogProbs: [Float], config: KTOConfig,
        sequenceWeight: Double? = nil
    ) throws -> ObjectiveStats {
        let n = logProbs.count
        try check(spans, n: n, counts: (refLogProbs.count, -1, -1))
        reset(n, values: false, kl: false)
        let w = sequenceWeight ?? 1 / Double(max(1, spans.count))
        var stats = ObjectiveStats()
        var total = 0.0
        for s in spans {
            var r = 0.0
            for i in 0..<s.count { r += Double(logProbs[s.first + i]) - Double(refLogProbs[s.first + i]) }
            total += r
        }
        let z0 = max(0, total / Double(max(1, spans.count)))
        for s in spans {
            let r = load(s, logProbs, refLogProbs, nil, &stats)
            let (loss, d) = ktoLoss(
                logRatio: r, desirable: s.positive, z0: z0, beta: config.beta,
                lambdaD: config.lambdaD, lambdaU: config.lambdaU)
            for i in 0..<s.count { dLogProbs[s.first + i] = Float(w * d) }
            stats.policyLoss += loss
            stats.kl += z0
        }
        return stats
    }
}
