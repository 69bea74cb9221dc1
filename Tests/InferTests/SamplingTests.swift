import Format
import Foundation
import Infer
import Support
import Testing

/// Sampling: truncation sets, temperature, seeds, and empirical frequencies against the exact distribution.
@Suite struct SamplingTests {
    static let logits: [Float] = [2.0, 1.0, 0.5, 0.5, -1.0, 3.0, -4.0, 0.0]

    static func softmax(_ z: [Float], _ t: Double = 1) -> [Double] {
        let m = Double(z.max()!)
        let e = z.map { Foundation.exp((Double($0) - m) / t) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    @Test func temperatureZeroIsGreedy() throws {
        var s = try TokenSampler(.greedy)
        var rng = SplitMix64(seed: 1)
        for _ in 0..<20 { #expect(s.sample(Self.logits[...], rng: &rng).token == 5) }
        // ties go to the lowest id, like torch.argmax
        #expect(s.sample([1, 3, 3, 0][...], rng: &rng).token == 1)
        let lp = s.sample(Self.logits[...], rng: &rng).logProb
        #expect(abs(lp - Foundation.log(Self.softmax(Self.logits)[5])) < 1e-9)
    }

    @Test func topKKeepsTheKLargest() throws {
        var s = try TokenSampler(SamplingParameters(topK: 3))
        let d = s.distribution(Self.logits[...])
        #expect(Set(d.map(\.token)) == [5, 0, 1])
        let p = Self.softmax([3.0, 2.0, 1.0])
        for (t, q) in d { #expect(abs(q - p[[5: 0, 0: 1, 1: 2][t]!]) < 1e-12) }
        // ties at the k-th value are kept (HF semantics)
        var s2 = try TokenSampler(SamplingParameters(topK: 3))
        #expect(Set(s2.distribution([2.0, 1.0, 0.5, 0.5, 0.1][...]).map(\.token)) == [0, 1, 2, 3])
    }

    @Test func topPKeepsTheSmallestNucleus() throws {
        let p = Self.softmax(Self.logits)  // sorted: 5 (.49), 0 (.18), 1 (.067), 2, 3 (.04 each), 7, 4, 6
        let order = p.indices.sorted { p[$0] > p[$1] }
        for topP in [0.3, 0.5, 0.67, 0.8, 0.9, 0.99] {
            var s = try TokenSampler(SamplingParameters(topP: topP))
            let got = Set(s.distribution(Self.logits[...]).map { Int($0.token) })
            var want = Set<Int>(), cum = 0.0
            for i in order where cum < topP {
                want.insert(i)
                cum += p[i]
            }
            #expect(got == want, "top-p \(topP): \(got.sorted()) vs \(want.sorted())")
        }
        // the nucleus of a flat distribution over a large vocabulary (one bucket holds everything)
        var flat = try TokenSampler(SamplingParameters(topP: 0.25))
        #expect(flat.distribution([Float](repeating: 0.5, count: 4000)[...]).count == 1000)
        // a wide distribution over 50k tokens spanning many buckets agrees with sorting
        var rng = SplitMix64(seed: 9)
        let wide = (0..<50_000).map { _ in Float(Double(rng.next() % 10_000) / 500) }
        let pw = Self.softmax(wide)
        let sortedW = pw.indices.sorted { pw[$0] > pw[$1] }
        var cum = 0.0, n = 0
        for i in sortedW where cum < 0.9 {
            cum += pw[i]
            n += 1
        }
        var sw = try TokenSampler(SamplingParameters(topP: 0.9))
        let dw = sw.distribution(wide[...])
        #expect(abs(dw.count - n) <= 2, "nucleus size \(dw.count) vs \(n) by sorting")  // ties at the cut
    }

    @Test func temperatureSharpensAndFlattens() throws {
        for t in [0.5, 1.0, 2.0] {
            var s = try TokenSampler(SamplingParameters(temperature: t))
            let d = s.distribution(Self.logits[...])
            let p = Self.softmax(Self.logits, t)
            for (tok, q) in d { #expect(abs(q - p[Int(tok)]) < 1e-12) }
        }
    }

    /// Empirical frequencies of 40k draws within 4.5 standard errors of the exact truncated distribution.
    @Test func frequenciesMatchTheDistribution() throws {
        for params in [
            SamplingParameters(), SamplingParameters(temperature: 0.7, topK: 4), SamplingParameters(topP: 0.8),
        ] {
            var s = try TokenSampler(params)
            let exact = s.distribution(Self.logits[...])
            var counts = [Int32: Int]()
            var rng = SplitMix64(seed: 42)
            let n = 40_000
            for _ in 0..<n { counts[s.sample(Self.logits[...], rng: &rng).token, default: 0] += 1 }
            #expect(Set(counts.keys).isSubset(of: Set(exact.map(\.token))), "\(params): sampled outside the kept set")
            for (tok, q) in exact {
                let f = Double(counts[tok] ?? 0) / Double(n)
                let se = (q * (1 - q) / Double(n)).squareRoot()
                #expect(abs(f - q) <= 4.5 * se + 1e-9, "\(params) token \(tok): frequency \(f) vs p \(q)")
            }
        }
    }

    @Test func seedsReproduce() throws {
        var s = try TokenSampler(SamplingParameters(temperature: 1.3, topP: 0.95))
        func draw(_ seed: UInt64) -> [Int32] {
            var rng = SplitMix64(seed: seed)
            return (0..<50).map { _ in s.sample(Self.logits[...], rng: &rng).token }
        }
        #expect(draw(7) == draw(7))
        #expect(draw(7) != draw(8))
    }

    @Test func rejectsBadParameters() {
        #expect(throws: InferError.self) { try TokenSampler(SamplingParameters(temperature: -1)) }
        #expect(throws: InferError.self) { try TokenSampler(SamplingParameters(topP: 0)) }
        #expect(throws: InferError.self) { try TokenSampler(SamplingParameters(topK: -2)) }
    }

    @Test func stopMatcherSeesStringsSpanningTokens() {
        let m = StopMatcher(["\n\n", "Answer:"])
        var text = Array("Step one.\n".utf8)
        #expect(m.match(text, newFrom: 0) == nil)
        let before = text.count
        text += Array("\nAns".utf8)
        #expect(m.match(text, newFrom: before) == "\n\n")
        #expect(m.match(Array("The Answer: 4".utf8), newFrom: 9) == "Answer:")
        #expect(m.match(Array("The Answer: 4".utf8), newFrom: 12) == nil)  // ended before the new bytes
    }
}
