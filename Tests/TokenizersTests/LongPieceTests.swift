import Foundation
import Support
import TestSupport
import Testing
import Ingest
@testable import Tokenizers

/// A word of megabytes is merged chunk by chunk: the same ids as one plain heap run over the whole word (the path
/// the parity tests check against HF tokenizers), with the work and working memory bounded by a few chunks.
@Suite struct LongPieceTests {
    /// Every string of 2...5 letters over {a, b, c}, each from a random split into two shorter ones, ranked at
    /// random: merges that compete across any boundary; plus long runs of a.
    static func tokenizer(seed: UInt64) throws -> Tokenizer {
        var rng = SplitRNG(seed)
        var strings: [String] = []
        var level = ["a", "b", "c"]
        for _ in 2...5 {
            level = level.flatMap { s in ["a", "b", "c"].map { s + $0 } }
            strings += level
        }
        var merges = strings.map { s -> String in
            let cut = 1 + Int(rng.next() % UInt64(s.count - 1))
            return "\(s.prefix(cut)) \(s.dropFirst(cut))"
        }
        for i in stride(from: merges.count - 1, to: 0, by: -1) { merges.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let runs = ["aaaaaaaa", "aaaaaaaaaaaaaaaa"]
        merges += ["aaaa aaaa", "aaaaaaaa aaaaaaaa"]
        return try SyntheticTokenizer.load(SyntheticTokenizer.json(merges: merges, extra: strings + runs))
    }

    static func words(_ n: Int, seed: UInt64) -> [[UInt8]] {
        var rng = SplitRNG(seed)
        let abc = (0..<n).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 3) }
        let ab = (0..<n).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 2) }
        let runs = (0..<n).map { i in i % 1000 == 999 ? UInt8(ascii: "b") : UInt8(ascii: "a") }
        return [
            abc, ab, runs, [UInt8](repeating: UInt8(ascii: "a"), count: n),
            Array(String(repeating: "abc", count: n / 3).utf8),
        ]
    }

    static func merge(_ t: Tokenizer, _ word: [UInt8], chunked: Bool) -> MergeScratch {
        var m = MergeScratch()
        word.withUnsafeBufferPointer {
            m.merge($0.baseAddress!, $0.count, t.model.encoderTables.merge, chunked: chunked)
        }
        return m
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func chunkedEqualsOnePlainRun(seed: UInt64) throws {
        let t = try Self.tokenizer(seed: seed)
        for (k, word) in Self.words(150_000 + Int(seed) * 7_777, seed: seed).enumerated() {
            let chunked = Self.merge(t, word, chunked: true), plain = Self.merge(t, word, chunked: false)
            #expect(chunked.ids == plain.ids, "word \(k), seed \(seed)")
            // Bounded work: each symbol goes through about one heap run (joins re-run a few groups).
            #expect(chunked.work.heapSymbols <= 4 * word.count, "word \(k): \(chunked.work)")
            #expect(chunked.work.largestRun <= 64 * MergeScratch.chunkBytes, "word \(k): \(chunked.work)")
            // The encoder takes the chunked path for such a piece.
            #expect(t.encode(String(decoding: word, as: UTF8.self)) == chunked.ids)
        }
    }

    /// A real vocabulary (cl100k, from the tokenizer fixtures) on a 2 MB word of random letters.
    @Test(.enabled(if: Fixtures.present)) func realVocabulary() throws {
        let t = try Tokenizer.load(path: Fixtures.path("cl100k.tokenizer.json"))
        var rng = SplitRNG(9)
        let word = (0..<2_000_000).map { _ in UInt8(ascii: "a") + UInt8(rng.next() % 26) }
        let chunked = Self.merge(t, word, chunked: true), plain = Self.merge(t, word, chunked: false)
        #expect(chunked.ids == plain.ids)
        #expect(chunked.work.heapSymbols <= 2 * word.count, "\(chunked.work)")
        print("cl100k, 2 MB of random letters: \(chunked.work)")
        #expect(chunked.work.largestRun <= 32 * MergeScratch.chunkBytes, "\(chunked.work)")
    }
}

/// SplitMix64, so the words are the same on every run.
struct SplitRNG {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
