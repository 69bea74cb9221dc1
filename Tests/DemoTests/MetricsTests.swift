import Format
import Support
import Testing
import Demo

/// Value-net quality metrics and seed statistics, on hand-computed cases and independent formulas.
@Suite struct MetricsTests {
    @Test func withinProblemAUCByHand() {
        let s = [
            ScoredSample(problem: "a", score: 0.9, correct: true),
            ScoredSample(problem: "a", score: 0.5, correct: true),
            ScoredSample(problem: "a", score: 0.4, correct: false),
            ScoredSample(problem: "a", score: 0.5, correct: false),
            ScoredSample(problem: "b", score: 0.1, correct: true),
            ScoredSample(problem: "b", score: 0.2, correct: false),
            ScoredSample(problem: "c", score: 0.3, correct: true),
            ScoredSample(problem: "c", score: 0.7, correct: true),
            ScoredSample(problem: "d", score: 0.3, correct: false),
        ]
        // a: (1 + 1 + 1 + 0.5) / 4 = 0.875; b: 0; c and d have one kind only.
        #expect(Metrics.withinProblemAUC(s) == WithinProblemAUC(auc: 0.4375, problems: 2, pairs: 5))
        #expect(Metrics.withinProblemAUC(Array(s.suffix(3))) == WithinProblemAUC(auc: nil, problems: 0, pairs: 0))
        // A scorer that is the verdict itself is perfect; its negation is perfectly wrong; a constant is 0.5.
        let flip = s.map { ScoredSample(problem: $0.problem, score: $0.correct ? 1 : 0, correct: $0.correct) }
        #expect(Metrics.withinProblemAUC(flip).auc == 1)
        #expect(
            Metrics.withinProblemAUC(
                flip.map { ScoredSample(problem: $0.problem, score: -$0.score, correct: $0.correct) }
            ).auc == 0)
        #expect(
            Metrics.withinProblemAUC(s.map { ScoredSample(problem: $0.problem, score: 3, correct: $0.correct) }).auc
                == 0.5)
    }

    /// Against the Mann-Whitney U statistic from mid-ranks, per problem, on random scores with ties.
    @Test func withinProblemAUCMatchesMannWhitney() {
        var rng = SplitMix64(seed: 5)
        var samples: [ScoredSample] = []
        var expected: [Double] = []
        for p in 0..<200 {
            let n = rng.draw(2...12)
            let group = (0..<n).map { _ in
                ScoredSample(problem: "p\(p)", score: Double(rng.draw(0...6)), correct: rng.chance(0.4))
            }
            samples += group
            let nc = group.filter(\.correct).count, nw = n - nc
            guard nc > 0, nw > 0 else { continue }
            let sorted = group.map(\.score).sorted()
            func midRank(_ x: Double) -> Double {
                let below = sorted.filter { $0 < x }.count, equal = sorted.filter { $0 == x }.count
                return Double(below) + Double(equal + 1) / 2
            }
            let rankSum = group.filter(\.correct).reduce(0) { $0 + midRank($1.score) }
            let u = rankSum - Double(nc * (nc + 1)) / 2
            expected.append(u / Double(nc * nw))
        }
        let r = Metrics.withinProblemAUC(samples)
        #expect(r.problems == expected.count)
        #expect(abs(r.auc! - expected.reduce(0, +) / Double(expected.count)) < 1e-12)
    }

    @Test func valueChangeAtTheFirstWrongStep() {
        let traces = [
            StepValues(values: [0.5, 0.6, 0.2, 0.1], firstWrongStep: 1),  // right +0.1, wrong -0.4, after: ignored
            StepValues(values: [0.3, 0.4, 0.6], firstWrongStep: nil),  // right +0.1, +0.2
            StepValues(values: [0.3, 0.0], firstWrongStep: 0),  // wrong -0.3
            StepValues(values: [0.3], firstWrongStep: 0),  // no step: ignored
            StepValues(values: [0.3, 0.5], firstWrongStep: 4),  // first wrong beyond the trace (a missing line)
        ]
        let c = Metrics.stepValueChange(traces)
        #expect(c.firstWrongCount == 2 && c.correctCount == 4)
        #expect(abs(c.atFirstWrong! - (-0.35)) < 1e-12)
        #expect(abs(c.atCorrect! - (0.1 + 0.1 + 0.2 + 0.2) / 4) < 1e-12)
        #expect(
            Metrics.stepValueChange([])
                == StepValueChange(atFirstWrong: nil, firstWrongCount: 0, atCorrect: nil, correctCount: 0))
    }

    @Test func pearsonByHand() {
        // dx = [-1.5, -0.5, 0.5, 1.5], dy = [-1.75, 0.25, 1.25, 0.25]: 3.5 / sqrt(5 * 4.75).
        #expect(abs(Metrics.pearson([1, 2, 3, 4], [2, 4, 5, 4])! - 3.5 / (5 * 4.75).squareRoot()) < 1e-12)
        #expect(abs(Metrics.pearson([1, 2, 3], [10, 20, 30])! - 1) < 1e-12)
        #expect(abs(Metrics.pearson([1, 2, 3], [3, 2, 1])! + 1) < 1e-12)
        #expect(Metrics.pearson([1, 1, 1], [1, 2, 3]) == nil && Metrics.pearson([1], [1]) == nil)
        let (r, n) = Metrics.promptValueCorrelation(
            values: ["a": 1, "b": 2, "c": 3, "x": 9], successRate: ["a": 0.1, "b": 0.2, "c": 0.3, "y": 1])
        #expect(n == 3 && abs(r! - 1) < 1e-12)
    }

    @Test func spreadByHand() {
        let s = Metrics.spread([1, 2, 3, 4])
        #expect(s.count == 4 && s.mean == 2.5)
        #expect(abs(s.standardDeviation - (5.0 / 3).squareRoot()) < 1e-12)
        #expect(abs(s.standardError - (5.0 / 3).squareRoot() / 2) < 1e-12)
        #expect(Metrics.spread([7]) == Spread(count: 1, mean: 7, standardDeviation: 0, standardError: 0))
        #expect(Metrics.spread([]).mean.isNaN)
        #expect(abs(Metrics.accuracyStandardError(0.5, n: 100) - 0.05) < 1e-12)
    }

    @Test func bootstrapAgreesWithTheStandardError() {
        var rng = SplitMix64(seed: 8)
        let xs = (0..<400).map { _ in rng.chance(0.3) ? 1.0 : 0.0 }
        let b = Metrics.bootstrap(xs, resamples: 2000, seed: 3)
        let se = Metrics.spread(xs).standardError
        #expect(abs(b.spread.standardError / se - 1) < 0.1, "bootstrap \(b.spread.standardError) vs \(se)")
        #expect(b.spread.mean == Metrics.spread(xs).mean)
        #expect(b.low < b.spread.mean && b.spread.mean < b.high)
        #expect(abs((b.high - b.low) / (2 * 1.96 * se) - 1) < 0.15)
        // Seeded: the same call gives the same interval.
        let again = Metrics.bootstrap(xs, resamples: 2000, seed: 3)
        #expect(again.low == b.low && again.high == b.high && again.spread == b.spread)
        // Any statistic: the median of a constant is that constant with no spread.
        let m = Metrics.bootstrap([2, 2, 2], statistic: { $0.sorted()[$0.count / 2] })
        #expect(m.spread.mean == 2 && m.spread.standardDeviation == 0 && m.low == 2 && m.high == 2)
    }
}
