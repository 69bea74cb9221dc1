import Format
import Support

/// One sampled solution's score (a value estimate, or any scorer's) and whether it was correct.
public struct ScoredSample: Sendable, Equatable {
    /// The problem it was sampled for.
    public var problem: String
    /// The scorer's score (higher: more likely correct).
    public var score: Double
    /// The verifier's verdict.
    public var correct: Bool

    /// A scored sample.
    public init(problem: String, score: Double, correct: Bool) {
        self.problem = problem
        self.score = score
        self.correct = correct
    }
}

/// Within-problem AUC: how well a scorer ranks one problem's correct samples above its wrong ones.
public struct WithinProblemAUC: Sendable, Equatable, Codable {
    /// Mean over the problems used of P(a correct sample scores above a wrong one), ties counting 0.5;
    /// nil when no problem has both kinds.
    public var auc: Double?
    /// Problems with both correct and wrong samples (the others say nothing about ranking).
    public var problems: Int
    /// Correct-wrong pairs compared over those problems.
    public var pairs: Int

    /// A result.
    public init(auc: Double?, problems: Int, pairs: Int) {
        self.auc = auc
        self.problems = problems
        self.pairs = pairs
    }
}

/// A value trace of one sample: V at the prompt and after each step, with the verifier's first wrong step.
public struct StepValues: Sendable, Equatable {
    /// `values[0]` = V(prompt), `values[k + 1]` = V after step k; so `values.count` = steps + 1.
    public var values: [Double]
    /// The first wrong step (0-based), or nil when every step was right.
    public var firstWrongStep: Int?

    /// A trace.
    public init(values: [Double], firstWrongStep: Int?) {
        self.values = values
        self.firstWrongStep = firstWrongStep
    }
}

/// How V moves across a step: at the first wrong step against at steps that were right.
public struct StepValueChange: Sendable, Equatable, Codable {
    /// Mean of V(after) - V(before) over first wrong steps; nil when there is none.
    public var atFirstWrong: Double?
    /// First wrong steps counted.
    public var firstWrongCount: Int
    /// Mean of V(after) - V(before) over steps before any error; nil when there is none.
    public var atCorrect: Double?
    /// Correct steps counted.
    public var correctCount: Int

    /// A result.
    public init(atFirstWrong: Double?, firstWrongCount: Int, atCorrect: Double?, correctCount: Int) {
        self.atFirstWrong = atFirstWrong
        self.firstWrongCount = firstWrongCount
        self.atCorrect = atCorrect
        self.correctCount = correctCount
    }
}

/// The mean of several evaluations with its spread.
public struct Spread: Sendable, Equatable, Codable {
    /// Measurements.
    public var count: Int
    /// Their mean (nan when there are none).
    public var mean: Double
    /// Sample standard deviation (n - 1); 0 for one measurement.
    public var standardDeviation: Double
    /// Standard error of the mean (sd / sqrt(n)); 0 for one measurement.
    public var standardError: Double

    /// A spread.
    public init(count: Int, mean: Double, standardDeviation: Double, standardError: Double) {
        self.count = count
        self.mean = mean
        self.standardDeviation = standardDeviation
        self.standardError = standardError
    }
}

/// Pure functions that measure the value network (and any other scorer) and summarize seeds.
public enum Metrics {
    /// Within-problem AUC of `samples`, averaged over the problems that have both correct and wrong samples.
    public static func withinProblemAUC(_ samples: [ScoredSample]) -> WithinProblemAUC {
        var byProblem: [String: (correct: [Double], wrong: [Double])] = [:]
        for s in samples {
            if s.correct {
                byProblem[s.problem, default: ([], [])].correct.append(s.score)
            } else {
                byProblem[s.problem, default: ([], [])].wrong.append(s.score)
            }
        }
        var total = 0.0, problems = 0, pairs = 0
        // In key order, so the floating-point sum is the same in every process.
        for key in byProblem.keys.sorted() {
            let (c, w) = byProblem[key]!
            guard !c.isEmpty, !w.isEmpty else { continue }
            var wins = 0.0
            for a in c {
                for b in w { wins += a > b ? 1 : a == b ? 0.5 : 0 }
            }
            total += wins / Double(c.count * w.count)
            problems += 1
            pairs += c.count * w.count
        }
        return WithinProblemAUC(auc: problems > 0 ? total / Double(problems) : nil, problems: problems, pairs: pairs)
    }

    /// Mean value change at the first wrong step and at the correct steps before it (steps after an error
    /// are left out: their state is already wrong).
    public static func stepValueChange(_ traces: [StepValues]) -> StepValueChange {
        var wrongSum = 0.0, wrongCount = 0, rightSum = 0.0, rightCount = 0
        for t in traces {
            let steps = t.values.count - 1
            guard steps > 0 else { continue }
            let firstWrong = t.firstWrongStep ?? steps
            for k in 0..<min(firstWrong, steps) {
                rightSum += t.values[k + 1] - t.values[k]
                rightCount += 1
            }
            if firstWrong < steps {
                wrongSum += t.values[firstWrong + 1] - t.values[firstWrong]
                wrongCount += 1
            }
        }
        return StepValueChange(
            atFirstWrong: wrongCount > 0 ? wrongSum / Double(wrongCount) : nil, firstWrongCount: wrongCount,
            atCorrect: rightCount > 0 ? rightSum / Double(rightCount) : nil, correctCount: rightCount)
    }

    /// Pearson correlation of paired evaluations; nil when fewer than two pairs or either side is constant.
    public static func pearson(_ x: [Double], _ y: [Double]) -> Double? {
        let n = min(x.count, y.count)
        guard n >= 2 else { return nil }
        let mx = x.prefix(n).reduce(0, +) / Double(n), my = y.prefix(n).reduce(0, +) / Double(n)
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for i in 0..<n {
            let dx = x[i] - mx, dy = y[i] - my
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        }
        guard sxx > 0, syy > 0 else { return nil }
        return sxy / (sxx * syy).squareRoot()
    }

    /// Pearson correlation of V(prompt) with the per-problem success rate, over the problems both know.
    public static func promptValueCorrelation(values: [String: Double], successRate: [String: Double]) -> (
        r: Double?, problems: Int
    ) {
        let keys = values.keys.filter { successRate[$0] != nil }.sorted()
        return (pearson(keys.map { values[$0]! }, keys.map { successRate[$0]! }), keys.count)
    }

    /// Mean, sample standard deviation and standard error of `xs`.
    public static func spread(_ xs: [Double]) -> Spread {
        let n = xs.count
        guard n > 0 else { return Spread(count: 0, mean: .nan, standardDeviation: .nan, standardError: .nan) }
        let mean = xs.reduce(0, +) / Double(n)
        guard n > 1 else { return Spread(count: 1, mean: mean, standardDeviation: 0, standardError: 0) }
        let sd = (xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n - 1)).squareRoot()
        return Spread(count: n, mean: mean, standardDeviation: sd, standardError: sd / Double(n).squareRoot())
    }

    /// Standard error of an accuracy measured on `n` independent problems (binomial).
    public static func accuracyStandardError(_ accuracy: Double, n: Int) -> Double {
        n > 0 ? (accuracy * (1 - accuracy) / Double(n)).squareRoot() : .nan
    }

    /// Bootstrap of `statistic` over `xs` resampled with replacement: the statistic on the data (`mean`),
    /// the standard deviation of the resampled statistics (`standardError` and `standardDeviation`), and the
    /// percentile interval at `level`. Seeded, so the same call gives the same answer.
    public static func bootstrap(
        _ xs: [Double], resamples: Int = 1000, level: Double = 0.95, seed: UInt64 = 1,
        statistic: ([Double]) -> Double = { $0.reduce(0, +) / Double($0.count) }
    )
        -> (spread: Spread, low: Double, high: Double)
    {
        guard !xs.isEmpty, resamples > 1 else {
            return (Spread(count: xs.count, mean: .nan, standardDeviation: .nan, standardError: .nan), .nan, .nan)
        }
        var rng = SplitMix64.stream(seed, 0xB007)
        var stats: [Double] = []
        stats.reserveCapacity(resamples)
        var sample = [Double](repeating: 0, count: xs.count)
        for _ in 0..<resamples {
            for i in sample.indices { sample[i] = xs[rng.draw(0...(xs.count - 1))] }
            stats.append(statistic(sample))
        }
        stats.sort()
        let sd = spread(stats).standardDeviation
        let tail = (1 - level) / 2
        let lowIndex = min(resamples - 1, max(0, Int((tail * Double(resamples)).rounded(.down))))
        let highIndex = min(resamples - 1, max(0, Int(((1 - tail) * Double(resamples)).rounded(.up)) - 1))
        return (
            Spread(count: xs.count, mean: statistic(xs), standardDeviation: sd, standardError: sd),
            stats[lowIndex], stats[highIndex]
        )
    }
}
