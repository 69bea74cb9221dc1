import Foundation
import Format
import Ingest
import Support
import TestSupport
import Testing
import Demo
import Tokenizers

/// Helpers shared by the demo suites.
enum DemoTestSupport {
    static func tempDir() -> String { makeTemporaryDirectory("demo") }

    static var requireOracles: Bool { ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" }

    /// python3 on PATH with `module` importable, or nil (recording a failure when oracles are required).
    static func python(with module: String) -> String? {
        let found = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
            .map { $0 + "/python3" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        if let found, (try? run(found, ["-c", "import \(module)"])) == 0 { return found }
        if requireOracles { Issue.record("python3 with \(module) not found (pip install \(module))") }
        return nil
    }

    /// Runs a program and returns its exit status.
    @discardableResult
    static func run(_ program: String, _ arguments: [String]) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// The repository root (scripts live there).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Texts with a bit of everything the byte-level pipeline must get right.
    static func randomTexts(_ n: Int, seed: UInt64) -> [String] {
        let atoms = [
            "a", "Mia", " apples", "s", "'s", "'", " ", "  ", "\n", "\n\n", "\t", "\r\n", "7", "12", "+", "-", "*",
            "=", "#### ", "?", ".", ",", "é", "naïve", "你好", "👍🏽", "\u{0085}", "<s>", "</s>", "<pad>", "<s", "s>",
            "</", "x", "Q", "zz", "The", " the", "  the", "_", "\u{00A0}", "١٢", "ß",
        ]
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { _ in (0..<rng.draw(0...24)).map { _ in rng.pick(atoms) }.joined() }
    }
}

/// The task tokenizer: what it merges, that it loads in Ingest, and id-for-id parity with HF tokenizers.
@Suite struct TaskTokenizerTests {
    static let problems: [Problem] = {
        let g = try! ProblemGenerator(seed: 11)
        return try! g.problems(.train, count: 1500)
    }()

    static let tokenizer = TaskTokenizer.learn(from: problems.map { $0.prompt + $0.solution })

    @Test func mergesOnlyLetterRunsAndAreDeterministic() throws {
        let t = TaskTokenizerTests.tokenizer
        #expect(t.merges.count > 100 && t.merges.count <= 512)
        for token in t.mergedTokens {
            let body = token.first == 0x20 ? Array(token.dropFirst()) : token
            #expect(
                !body.isEmpty && body.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) },
                "merged token \(String(decoding: token, as: UTF8.self).debugDescription)")
        }
        let again = TaskTokenizer.learn(from: TaskTokenizerTests.problems.map { $0.prompt + $0.solution })
        #expect(again == t && again.tokenizerJSON == t.tokenizerJSON)
        #expect(t.vocabSize == 259 + t.mergedTokens.count)
        #expect(TaskTokenizer.learn(from: [], maxMerges: 10).merges.isEmpty)
        #expect(TaskTokenizer.learn(from: ["ab ab ab"], maxMerges: 1).merges == [TaskTokenizer.Merge([0x61], [0x62])])
    }

    @Test func refusesMergesOfUnknownTokens() {
        #expect(throws: TokenizerError.self) { try TaskTokenizer(merges: [TaskTokenizer.Merge([0x61, 0x62], [0x63])]) }
        #expect(throws: Never.self) {
            try TaskTokenizer(merges: [.init([0x61], [0x62]), .init([0x61, 0x62], [0x63])])
        }
    }

    @Test func loadsInIngestWithSpecialTokensAndRoundTrips() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = TaskTokenizerTests.tokenizer
        let tok = try Tokenizer.load(path: try t.write(directory: dir))
        #expect(tok.vocabSize == t.vocabSize)
        #expect(tok.bosId == TaskTokenizer.bosId && tok.eosId == TaskTokenizer.eosId)
        #expect(tok.templateIds.prefix == [TaskTokenizer.bosId] && tok.templateIds.suffix.isEmpty)
        #expect(tok.isSpecial(0) && tok.isSpecial(1) && tok.isSpecial(2) && !tok.isSpecial(3))
        var encoder = tok.makeEncoder()
        for text in TaskTokenizerTests.problems.prefix(200).map({ $0.prompt + $0.solution })
            + DemoTestSupport.randomTexts(500, seed: 3)
        {
            var ids: [UInt32] = []
            encoder.encode(text, into: &ids)
            #expect(try tok.decode(ids) == Array(text.utf8))
        }
        // Digits, operators and newlines are one byte token each; words shrink to a token or two.
        let p = TaskTokenizerTests.problems[0]
        var sol: [UInt32] = []
        encoder.encode(p.solution, into: &sol)
        #expect(sol == p.solution.utf8.map { TaskTokenizer.firstByteId + UInt32($0) })
        var prompt: [UInt32] = []
        encoder.encode(p.prompt, into: &prompt)
        #expect(prompt.count * 2 < p.prompt.utf8.count, "\(prompt.count) tokens for \(p.prompt.utf8.count) bytes")
        // A second write is byte-identical.
        let first = try Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try t.write(directory: dir)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer.json")) == first)
    }

    @Test func sameIdsAsHFTokenizers() throws {
        guard let python = DemoTestSupport.python(with: "tokenizers") else { return }
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = TaskTokenizerTests.tokenizer
        let path = try t.write(directory: dir)
        let cases =
            TaskTokenizerTests.problems.flatMap { [$0.prompt, $0.solution, $0.prompt + $0.solution] }
            + TaskTokenizerTests.sentenceStyleTexts() + DemoTestSupport.randomTexts(3000, seed: 17)
        try JSONSerialization.data(withJSONObject: cases).write(to: URL(fileURLWithPath: dir + "/cases.json"))
        let status = try DemoTestSupport.run(
            python,
            [
                DemoTestSupport.root + "/scripts/oracles/demo_tokenizer_ids.py",
                path, dir + "/cases.json", dir + "/hf.json",
            ])
        #expect(status == 0)
        guard status == 0 else { return }
        let hf =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/hf.json")))
            as! [String: Any]
        let expected = (hf["ids"] as! [[[Int]]]).map { $0.map { $0.map(UInt32.init) } }
        let decoded = hf["decoded"] as! [String]
        let info = hf["info"] as! [String: Any]
        #expect(info["vocab_size"] as? Int == t.vocabSize)
        #expect((info["specials"] as! [String: Int]) == ["<pad>": 0, "<s>": 1, "</s>": 2])
        #expect(expected.count == cases.count)
        let tok = try Tokenizer.load(path: path)
        let modes = [
            EncodeOptions(), EncodeOptions(addSpecialTokens: true), EncodeOptions(recognizeSpecialTokens: false),
        ]
        for (m, options) in modes.enumerated() {
            var encoder = tok.makeEncoder(options: options)
            var failures = 0
            for (i, text) in cases.enumerated() {
                var ids: [UInt32] = []
                encoder.encode(text, into: &ids)
                if ids != expected[i][m] {
                    failures += 1
                    if failures <= 3 {
                        Issue.record("mode \(m) \(text.debugDescription): oreo \(ids), HF \(expected[i][m])")
                    }
                }
                if m == 0 && decoded[i] != text && !text.contains("<") {
                    Issue.record("HF decodes \(text.debugDescription) to \(decoded[i].debugDescription)")
                }
            }
            #expect(failures == 0, "mode \(m): \(failures) of \(cases.count) texts differ")
        }
    }

    /// Sentence-style problems: words the merges were not learned from.
    static func sentenceStyleTexts() -> [String] {
        let g = try! ProblemGenerator(
            config: {
                var c = ProblemConfig()
                c.style = .sentence
                return c
            }(), seed: 2)
        return (try! g.problems(.test, count: 300)).map { $0.prompt + $0.solution }
    }
}
