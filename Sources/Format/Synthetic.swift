import Support

/// Random trajectories whose token statistics resemble text (Zipf-distributed phrases), for benchmarks,
/// tests and `oreo synth`. Deterministic for a seed.
public struct SyntheticTrajectories: Sendable {
    /// Vocabulary size of the ids drawn.
    public let vocabSize: Int
    /// Mean tokens per trajectory (prompt + response).
    public let meanTokens: Int
    /// Every trajectory exactly `meanTokens` long (benchmarks that need equal micro-batches).
    public var fixedLength = false
    private var rng: SplitMix64
    private let phrases: [[UInt32]]
    private var index: UInt64 = 0

    /// A generator over `vocabSize` ids with about `meanTokens` tokens per trajectory.
    public init(vocabSize: Int, meanTokens: Int = 256, seed: UInt64 = 1) {
        self.vocabSize = vocabSize
        self.meanTokens = max(2, meanTokens)
        var g = SplitMix64(seed: seed)
        var p: [[UInt32]] = []
        for _ in 0..<4096 {
            let n = Int.random(in: 1...6, using: &g)
            var phrase: [UInt32] = []
            for _ in 0..<n { phrase.append(SyntheticTrajectories.zipf(&g, UInt32(vocabSize))) }
            p.append(phrase)
        }
        rng = g
        phrases = p
    }

    static func zipf(_ rng: inout SplitMix64, _ n: UInt32) -> UInt32 {
        // Log-uniform rank: frequent small ids, a long tail, like BPE ids in real text.
        let u = Double(rng.next() >> 11) / Double(1 << 53)
        return min(n - 1, UInt32(exp(u * log(Double(n)))) - 1)
    }

    /// The next trajectory: prompt, response split into newline-like steps, 0/1 reward, a group per 8.
    public mutating func next() -> TrajectoryRecord {
        let total = fixedLength ? meanTokens : Int.random(in: 2...(2 * meanTokens - 2), using: &rng)
        var tokens: [UInt32] = []
        tokens.reserveCapacity(total + 6)
        while tokens.count < total {
            let phrase = phrases[Int(SyntheticTrajectories.zipf(&rng, UInt32(phrases.count)))]
            tokens.append(contentsOf: phrase)
        }
        tokens.removeLast(tokens.count - total)
        let prompt = Int.random(in: 1...max(1, total / 4), using: &rng)
        var ends: [UInt32] = []
        var e = prompt
        while true {
            e += Int.random(in: 1...32, using: &rng)
            if e >= total { break }
            ends.append(UInt32(e))
        }
        if total > prompt { ends.append(UInt32(total)) }
        defer { index += 1 }
        return TrajectoryRecord(
            tokens: tokens, promptLength: prompt, reward: rng.next() & 1 == 0 ? 0 : 1,
            group: index / 8, stepEnds: ends, sourceLine: index + 1)
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
