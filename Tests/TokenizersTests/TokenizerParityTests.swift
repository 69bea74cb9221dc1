import Foundation
import Ingest
import TestSupport
import Testing
import Tokenizers

/// Token-for-token parity with HF `tokenizers` on the generated corpus (differential fuzz included).
@Suite(
    "Tokenizer parity with HF tokenizers", .enabled(if: Fixtures.enabled, Comment(rawValue: Fixtures.missingMessage)))
struct TokenizerParityTests {
    static let names = ["gpt2", "gpt2split", "llama3", "qwen2", "smollm2", "cl100k"]

    @Test("ids equal HF for every corpus case and option", arguments: names)
    func parity(name: String) throws {
        guard Fixtures.check() else { return }
        let tokenizer = try Tokenizer.load(path: Fixtures.path("\(name).tokenizer.json"))
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected(name)
        #expect(corpus.count == expected.count)
        let modes = [
            EncodeOptions(), EncodeOptions(addSpecialTokens: true), EncodeOptions(recognizeSpecialTokens: false),
        ]
        for (m, options) in modes.enumerated() {
            var encoder = tokenizer.makeEncoder(options: options)
            var failures = 0
            for (i, text) in corpus.enumerated() {
                var ids: [UInt32] = []
                try encoder.encode(bytes: text, into: &ids)
                if ids != expected[i][m] {
                    failures += 1
                    if failures <= 3 {
                        Issue.record(
                            "\(name) mode \(m) case \(i) \(String(decoding: text, as: UTF8.self).debugDescription): got \(ids), HF \(expected[i][m])"
                        )
                    }
                }
            }
            #expect(failures == 0, "\(name) mode \(m): \(failures) of \(corpus.count) cases differ")
        }
    }

    @Test(
        "decode(encode(x)) == x bytes (less the bytes a vocabulary lacks)",
        arguments: ["gpt2split", "llama3", "smollm2", "cl100k"])
    func roundTrip(name: String) throws {
        guard Fixtures.check() else { return }
        let path = Fixtures.path("\(name).tokenizer.json")
        let tokenizer = try Tokenizer.load(path: path)
        // SmolLM2 has no token for 21 bytes; HF drops them, and so must we.
        let root =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let vocab = (root["model"] as! [String: Any])["vocab"] as! [String: Any]
        let dropped = Set((0...255).map(UInt8.init).filter { vocab[SyntheticTokenizer.byteString($0)] == nil })
        #expect(dropped.count == (name == "smollm2" ? 21 : 0))
        var encoder = tokenizer.makeEncoder()
        for text in try Fixtures.corpus() {
            var ids: [UInt32] = []
            try encoder.encode(bytes: text, into: &ids)
            #expect(try tokenizer.decode(ids) == text.filter { !dropped.contains($0) })
        }
    }

    @Test("String, [UInt8] and raw-buffer entry points agree")
    func entryPoints() throws {
        guard Fixtures.check() else { return }
        let tokenizer = try Tokenizer.load(path: Fixtures.path("qwen2.tokenizer.json"))
        var encoder = tokenizer.makeEncoder()
        for text in try Fixtures.corpus().prefix(500) {
            var a: [UInt32] = [], b: [UInt32] = [], c: [UInt32] = []
            encoder.encode(String(decoding: text, as: UTF8.self), into: &a)
            try encoder.encode(bytes: text, into: &b)
            try text.withUnsafeBytes { try encoder.encode(bytes: $0, into: &c) }
            #expect(a == b && b == c)
        }
    }

    @Test("cl100k loads well under a second, with ids above 65535")
    func cl100kLoad() throws {
        guard Fixtures.check() else { return }
        // CPU time of this thread: other processes on a shared machine must not fail the test.
        func cpuSeconds() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
        }
        let start = cpuSeconds()
        let tokenizer = try Tokenizer.load(path: Fixtures.path("cl100k.tokenizer.json"))
        let elapsed = cpuSeconds() - start
        print("cl100k load: \(elapsed) s of CPU")
        #expect(elapsed < 1.0)
        #expect(tokenizer.vocabSize == 100_301)
        #expect(tokenizer.bosId == 100_300)
        #expect(tokenizer.eosId == 100_257)
        #expect(tokenizer.encode("<|endoftext|>") == [100_257])
    }

    @Test("SmolLM2 rebuilt from GGUF: BOS 1, EOS 2, single digits")
    func smollm2Facts() throws {
        guard Fixtures.check() else { return }
        let tokenizer = try Tokenizer.load(path: Fixtures.path("smollm2.tokenizer.json"))
        #expect(tokenizer.vocabSize == 49_152)
        #expect(tokenizer.bosId == 1)
        #expect(tokenizer.eosId == 2)
        #expect(tokenizer.encode("2024").count == 4)
        let loadedTwice = try Tokenizer.load(path: Fixtures.path("smollm2.tokenizer.json"))
        #expect(loadedTwice.fingerprint == tokenizer.fingerprint)
    }

    @Test("encoders on two threads share one tokenizer")
    func threads() async throws {
        guard Fixtures.check() else { return }
        let tokenizer = try Tokenizer.load(path: Fixtures.path("cl100k.tokenizer.json"))
        let corpus = try Fixtures.corpus()
        let expected = try Fixtures.expected("cl100k")
        try await withThrowingTaskGroup(of: Int.self) { group in
            for part in 0..<2 {
                group.addTask {
                    var encoder = tokenizer.makeEncoder()
                    var bad = 0
                    for i in stride(from: part, to: corpus.count, by: 2) {
                        var ids: [UInt32] = []
                        try encoder.encode(bytes: corpus[i], into: &ids)
                        if ids != expected[i][0] { bad += 1 }
                    }
                    return bad
                }
            }
            for try await bad in group { #expect(bad == 0) }
        }
    }
}
