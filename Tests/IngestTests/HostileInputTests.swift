import Foundation
import Format
import TestSupport
import Testing
import Ingest
import Tokenizers

/// Hostile tokenizer.json files and JSONL lines: refused with the file and the entry (or the line) named, or
/// accepted on purpose, and the same reason under --on-invalid fail and skip.
@Suite struct HostileInputTests {
    /// The message loading `root` gives (empty when it loads), and the path it was written to.
    static func loadError(_ root: [String: Any]) throws -> (String, String) {
        let path = try SyntheticTokenizer.write(root)
        do {
            _ = try Tokenizer.load(path: path)
            return ("", path)
        } catch { return (error.description, path) }
    }

    static func template(ids: [Any]) -> [String: Any] {
        [
            "type": "TemplateProcessing",
            "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
            "pair": [Any](), "special_tokens": ["<s>": ["id": "<s>", "ids": ids, "tokens": ["<s>"]]],
        ]
    }

    @Test(
        "template ids must be tokens of the vocabulary",
        arguments: [[Int64(1) << 40], [-1], [257], [65, 300]] as [[Int64]])
    func templateIds(ids: [Int64]) throws {
        let (message, path) = try Self.loadError(
            SyntheticTokenizer.json { $0["post_processor"] = Self.template(ids: ids) })
        let bad = ids.first { $0 < 0 || $0 >= 256 }!
        #expect(
            message.hasPrefix(
                path
                    + ": malformed tokenizer.json: post_processor.special_tokens[\"<s>\"].ids[\(ids.firstIndex(of: bad)!)]: \(bad) is not the id of a token"
            ), "\(message)")
    }

    @Test func templateIdsInRangeStillWork() throws {
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json { $0["post_processor"] = Self.template(ids: [65]) })
        #expect(t.templateIds.prefix == [65] && t.bosId == 65)
    }

    @Test func repeatedVocabularyIdsAreRefused() throws {
        let (message, path) = try Self.loadError(
            SyntheticTokenizer.json(merges: ["a b"], extra: ["ab"]) { root in
                var model = root["model"] as! [String: Any]
                var vocab = model["vocab"] as! [String: Any]
                vocab["ab"] = 0x41
                model["vocab"] = vocab
                root["model"] = model
            })
        #expect(message.hasPrefix(path + ": malformed tokenizer.json: model.vocab["), "\(message)")
        #expect(message.contains("id 65 is already the id of"), "\(message)")
    }

    @Test(
        "an added token must agree with the vocabulary and the other added tokens",
        arguments: [
            ([(0x41, "<x>")], "added_tokens[0]: id 65 of \"<x>\" is already the id of model.vocab entry \"A\""),
            ([(300, "A")], "added_tokens[0]: \"A\" has id 300, but model.vocab gives it id 65"),
            (
                [(300, "<x>"), (300, "<y>")],
                "added_tokens[1]: id 300 of \"<y>\" is already the id of added_tokens[0] \"<x>\""
            ),
            ([(300, "<x>"), (301, "<x>")], "added_tokens[1]: \"<x>\" has id 301, added_tokens[0] gives it id 300"),
        ] as [([(Int, String)], String)])
    func addedTokens(added: [(Int, String)], message expected: String) throws {
        let (message, path) = try Self.loadError(
            SyntheticTokenizer.json { root in
                root["added_tokens"] = added.map { ["id": $0.0, "content": $0.1, "special": true] as [String: Any] }
            })
        #expect(message == path + ": malformed tokenizer.json: " + expected, "\(message)")
    }

    @Test func syntaxErrorsGiveThePosition() throws {
        let dir = NSTemporaryDirectory() + "oreo-hostile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tokenizer.json"
        for (text, reason) in [
            (
                "{\"model\": {\"vocab\": {\"a\": NaN}}}",
                "byte 26 (line 1, column 27): NaN and Infinity are not JSON numbers"
            ),
            ("{\"model\": 1,\n \"model\": 2}", "byte 14 (line 2, column 2): duplicate key \"model\""),
            ("{\"x\": 1e999}", "byte 6 (line 1, column 7): number 1e999 is out of range"),
        ] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            #expect { _ = try Tokenizer.load(path: path) } throws: { e in
                "\(e)".hasPrefix("\(path): malformed tokenizer.json: JSON at \(reason)")
            }
        }
        // A broken tokenizer_config.json beside it is named, not silently ignored.
        let good = try SyntheticTokenizer.write(SyntheticTokenizer.json())
        let config = (good as NSString).deletingLastPathComponent + "/tokenizer_config.json"
        try Data("{\"bos_token\": \"<s>\",}".utf8).write(to: URL(fileURLWithPath: config))
        #expect { _ = try Tokenizer.load(path: good) } throws: {
            "\($0)".hasPrefix(
                config + ": malformed tokenizer_config.json: JSON at byte 20 (line 1, column 21): expected a string key"
            )
        }
    }

    // MARK: - JSONL lines

    static let lines: [(line: String, reason: String?)] = [
        (#"{"prompt_ids": [], "response_ids": [1], "reward": 1}"#, "'prompt_ids' is empty"),
        (#"{"prompt_ids": [1], "response_ids": [], "reward": 1}"#, "'response_ids' is empty"),
        (
            #"{"prompt_ids": [1], "response_ids": [2, 3, 4], "step_ends": [2], "reward": 1}"#,
            "'step_ends' must end at the last response token: its last value is 2, the response has 3 tokens"
        ),
        (#"{"prompt_ids": [1], "response_ids": [2], "step_ends": [], "reward": 1}"#, "'step_ends' is empty"),
        (#"{"prompt": "a", "steps": [], "reward": 1}"#, "'steps' is empty"),
        (#"{"prompt": "a", "response": "b", "reward": 1, "reward": 0}"#, "duplicate key 'reward'"),
        (#"{"prompt": "a", "response": "b", "rew\u0061rd": 1, "reward": 0}"#, "duplicate key 'reward'"),
        (#"{"prompt": "a", "response": "b", "x": 1, "x": 1, "reward": 0}"#, "duplicate key 'x'"),
        (#"{"prompt": "a\u0000b", "response": "c\u0000", "reward": 1}"#, nil),
        (#"{"prompt": "a", "response": "b", "rew\u0061rd": 0.5}"#, nil),
        (#"{"prompt_ids": [1], "response_ids": [2, 3], "step_ends": [1, 2], "reward": 1}"#, nil),
    ]

    @Test func eachLineFailsWithItsReasonUnderFail() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vocab = IngestVocabulary(try IngestJobTests.tokenizer())
        for (k, (line, reason)) in Self.lines.enumerated() {
            let input = IngestJobTests.write(
                [#"{"prompt": "a", "response": "b", "reward": 1}"#, line], dir, "in\(k).jsonl")
            do {
                let s = try IngestJob(inputs: [input], output: dir + "/out\(k)", vocab: vocab, options: IngestOptions())
                    .run()
                #expect(reason == nil, "accepted \(line)")
                #expect(s.written == 2)
            } catch let e as IngestError {
                #expect(reason != nil && e.reason.contains(reason!), "\(line): \(e)")
                #expect(e.location.hasPrefix(input + ":2:"))
            }
        }
    }

    @Test func skipRejectsTheSameLinesForTheSameReasons() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write(Self.lines.map(\.line), dir)
        var options = IngestOptions()
        options.onInvalid = .skip
        let s = try IngestJob(
            inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
            options: options
        ).run()
        let refused = Self.lines.filter { $0.reason != nil }
        #expect(s.rejected == refused.count && s.written == Self.lines.count - refused.count)
        let rejects = try String(contentsOfFile: dir + "/ds/rejects.jsonl", encoding: .utf8).split(separator: "\n")
        for (r, expected) in zip(rejects, refused) {
            let o = try JSONSerialization.jsonObject(with: Data(r.utf8)) as! [String: String]
            #expect(o["reason"]?.contains(expected.reason!) == true, "\(r)")
            #expect(o["line"] == expected.line)
        }
        // U+0000 is tokenized as the byte it is (id 0 here, since ids are bytes), like any other character.
        let t = try IngestJobTests.trajectories(dir + "/ds")
        #expect(t[0].tokens.array == [301, 0x61, 0, 0x62, 0x63, 0, 300])
        // An escaped key means the same as the plain one.
        #expect(t[1].reward == 0.5)
    }

    /// An empty text prompt with no BOS before it has no tokens: refused like empty prompt_ids.
    @Test func emptyPromptWithoutBOS() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write([#"{"prompt": "", "response": "b", "reward": 1}"#], dir)
        var options = IngestOptions()
        options.addBOS = false
        #expect {
            try IngestJob(
                inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
                options: options
            ).run()
        } throws: { ($0 as? IngestError)?.reason.contains("'prompt' is empty") == true }
        options.addBOS = true
        let s = try IngestJob(
            inputs: [input], output: dir + "/ds2", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
            options: options
        ).run()
        #expect(s.written == 1)
    }
}
