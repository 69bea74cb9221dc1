import Foundation
import TestSupport
import Testing
import Format
import Ingest
import Tokenizers

/// Ingest end to end on a byte-level tokenizer built by the test (ids = bytes, one merge, BOS and EOS).
@Suite struct IngestJobTests {
    static func tokenizer() throws -> Tokenizer {
        try SyntheticTokenizer.load(
            SyntheticTokenizer.json(merges: ["a b"], extra: ["ab"]) { root in
                root["added_tokens"] = [
                    [
                        "id": 300, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true,
                    ],
                    [
                        "id": 301, "content": "<|bos|>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true,
                    ],
                ]
                root["post_processor"] = [
                    "type": "TemplateProcessing",
                    "single": [
                        ["SpecialToken": ["id": "<|bos|>", "type_id": 0]],
                        ["Sequence": ["id": "A", "type_id": 0]],
                    ],
                    "pair": [Any](),
                    "special_tokens": ["<|bos|>": ["id": "<|bos|>", "ids": [301], "tokens": ["<|bos|>"]]],
                ]
            })
    }

    static func write(_ lines: [String], _ dir: String, _ name: String = "in.jsonl") -> String {
        let path = dir + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(lines.joined(separator: "\n").utf8 + [10]))
        return path
    }

    static func tempDir() -> String { makeTemporaryDirectory("ingest") }

    static func trajectories(_ dir: String) throws -> [TrajectoryView] {
        let d = try Dataset(directory: dir)
        var out: [TrajectoryView] = []
        for s in (try d.allShards()) {
            let c = s.cursor()
            for i in 0..<s.trajectoryCount { out.append(try c.trajectory(i)) }
        }
        return out
    }

    static func bytes(_ s: String) -> [UInt32] { s.utf8.map { UInt32($0) } }

    @Test func allThreeLineFormats() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write(
            [
                #"{"prompt": "Q:", "response": "x=1\n\ny=2\nab", "reward": 1}"#,
                #"{"prompt": "Q:", "steps": ["s1", "s2\nstill s2"], "reward": false, "id": 7, "meta": {"k": [1]}}"#,
                #"{"prompt_ids": [5, 6], "response_ids": [7, 10, 8, 9], "step_ends": [2, 4], "reward": 0.25, "group": "g"}"#,
                #"{"prompt_ids": [5], "response_ids": [10, 7, 10], "reward": 1, "group": 3}"#,
            ], dir)
        let vocab = IngestVocabulary(try IngestJobTests.tokenizer())
        let summary = try IngestJob(inputs: [input], output: dir + "/ds", vocab: vocab, options: IngestOptions()).run()
        #expect(summary.linesRead == 4 && summary.written == 4 && summary.rejected == 0)
        let t = try IngestJobTests.trajectories(dir + "/ds")
        let b = IngestJobTests.bytes

        // Text: BOS + prompt; response bytes with the one merge (a b -> 256) and EOS appended.
        let expected0: [UInt32] = [301] + b("Q:") + b("x=1\n\ny=2\n") + [256, 300]
        #expect(t[0].tokens.array == expected0)
        #expect(t[0].promptLength == 3)
        // Steps end after each newline run; EOS belongs to the last step.
        let steps0: [UInt32] = [8, 12, 14]  // prompt 3, then "x=1\n\n" (5), "y=2\n" (4), "ab" + EOS (2)
        #expect(Array(t[0].stepEnds) == steps0)
        #expect(t[0].flags.contains(.eosAppended))
        #expect(t[0].sourceLine == 1 && t[0].sourceFile == input)

        // Steps array joined with a newline; boundaries only between steps.
        let expected1: [UInt32] = [301] + b("Q:") + b("s1\ns2\nstill s2") + [300]
        #expect(t[1].tokens.array == expected1)
        let steps1: [UInt32] = [6, 18]
        #expect(Array(t[1].stepEnds) == steps1)
        #expect(t[1].reward == 0)
        #expect(String(decoding: Array(t[1].meta), as: UTF8.self) == #"{"id":7,"meta":{"k": [1]}}"#)
        // Same prompt text, no group given: same derived group.
        #expect(t[0].group == t[1].group)

        // Pre-tokenized ids are kept verbatim: no BOS, no EOS; step_ends count from the response start.
        let expected2: [UInt32] = [5, 6, 7, 10, 8, 9]
        let steps2: [UInt32] = [4, 6]
        #expect(t[2].tokens.array == expected2)
        #expect(Array(t[2].stepEnds) == steps2)
        #expect(t[2].reward == 0.25)
        // Without step_ends, delimiters are found in the ids' bytes (10 is a newline).
        let steps3: [UInt32] = [2, 4]
        #expect(Array(t[3].stepEnds) == steps3)
        #expect(t[3].group == 3)
    }

    @Test func invalidLinesFailWithTheirPlaceOrGoToRejects() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write(
            [
                #"{"prompt": "a", "response": "b", "reward": 1}"#,
                #"{"prompt": "a", "response": "b"}"#,
                "",
                #"{"prompt": "a", "response": "b", "reward": 1"#,
                #"{"prompt_ids": [1, 99999], "response_ids": [], "reward": 1}"#,
                #"{"prompt": "a", "response": "b", "steps": ["b"], "reward": 1}"#,
                #"{"prompt": "a", "response": "b", "reward": "yes"}"#,
                #"{"prompt": "a", "response": "c", "reward": 0}"#,
            ], dir)
        let vocab = IngestVocabulary(try IngestJobTests.tokenizer())
        var options = IngestOptions()
        do {
            _ = try IngestJob(inputs: [input], output: dir + "/failing", vocab: vocab, options: options).run()
            Issue.record("an invalid line was accepted")
        } catch let e as IngestError {
            #expect(e.location == "\(input):2:1")
            #expect(e.reason.contains("reward"))
        }
        options.onInvalid = .skip
        let s = try IngestJob(inputs: [input], output: dir + "/ds", vocab: vocab, options: options).run()
        #expect(s.linesRead == 7 && s.written == 2 && s.rejected == 5 && s.blank == 1)
        #expect(s.manifest.properties["ingest.lines_read"] == "7")
        #expect(s.manifest.properties["ingest.rejected"] == "5")
        let rejects = try String(contentsOfFile: dir + "/ds/rejects.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(rejects.count == 5)
        let first = try JSONSerialization.jsonObject(with: Data(rejects[0].utf8)) as! [String: String]
        #expect(first["where"] == "\(input):2:1")
        #expect(first["line"] == #"{"prompt": "a", "response": "b"}"#)
        #expect(rejects[1].contains("\(input):4:") && rejects[2].contains("vocabulary size"))
        #expect(rejects[3].contains("cannot both") && rejects[4].contains("number or a boolean"))
    }

    /// A file holding one JSON array (the official ALFWorld data's form) is refused once, at the array's first
    /// byte, with how to convert it; even under --on-invalid skip, where line by line it would vanish into
    /// rejects.
    @Test func aJSONArrayFileIsRefusedOnceWithTheWayOut() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write(
            [
                "", "  [", #"  {"prompt": "a", "response": "b", "reward": 1},"#,
                #"  {"prompt": "a", "response": "c", "reward": 0}"#, "]",
            ],
            dir, "array.json")
        var options = IngestOptions()
        options.onInvalid = .skip
        do {
            _ = try IngestJob(
                inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
                options: options
            ).run()
            Issue.record("a JSON array file was ingested")
        } catch let e as IngestError {
            #expect(e.location == "\(input):2:3")
            #expect(e.reason.contains("JSON array, not JSON Lines") && e.reason.contains("jq -c '.[]'"))
        }
    }

    /// `steps` are joined with `stepJoin` (`--step-join`), and the step ends fall after each join.
    @Test func stepsAreJoinedWithTheStepJoin() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write([#"{"prompt": "Q", "steps": ["x=1", "y=2"], "reward": 1}"#], dir)
        var options = IngestOptions()
        options.stepJoin = Array(" ;; ".utf8)
        options.addBOS = false
        _ = try IngestJob(
            inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
            options: options
        ).run()
        let t = try IngestJobTests.trajectories(dir + "/ds")[0]
        let response = Array(t.tokens[t.promptLength...])
        #expect(response == IngestJobTests.bytes("x=1 ;; y=2") + [300])
        #expect(Array(t.stepEnds) == [UInt32(1 + 7), UInt32(1 + 11)])
    }

    @Test func truncationIsRecorded() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let input = IngestJobTests.write(
            [
                #"{"prompt": "pp", "response": "r1\nr2\nr3", "reward": 1}"#,
                #"{"prompt": "p", "response": "r", "reward": 1}"#,
                #"{"prompt": "very long prompt", "response": "r", "reward": 1}"#,
            ], dir)
        var options = IngestOptions()
        options.maxLength = 8
        options.onInvalid = .skip
        let s = try IngestJob(
            inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
            options: options
        ).run()
        #expect(s.written == 2 && s.rejected == 1 && s.truncated == 1)
        let t = try IngestJobTests.trajectories(dir + "/ds")
        #expect(t[0].tokens.count == 8 && t[0].flags.contains(.truncated) && !t[0].flags.contains(.eosAppended))
        #expect(Array(t[0].stepEnds) == [6, 8])
        #expect(!t[1].flags.contains(.truncated))
    }

    /// Lines for resume and part tests: varied lengths so shards close at different places.
    static func corpus(_ n: Int) -> [String] {
        (0..<n).map { i in
            let body = String(repeating: "step \(i)\\n", count: 1 + i % 7)
            return #"{"prompt": "problem \#(i)", "response": "\#(body)done", "reward": \#(i % 2)}"#
        }
    }

    static func signature(_ dir: String) throws -> [String] {
        try trajectories(dir).map { "\($0.sourceLine) \($0.reward) \($0.tokens.array) \(Array($0.stepEnds))" }
    }

    @Test func interruptedRunResumesWithoutLosingOrDuplicating() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var lines = IngestJobTests.corpus(3000)
        let good = lines[2500]
        // Same byte length, but invalid: the first run stops there after committing several shards.
        lines[2500] = String(good.dropLast(2)) + "x}"
        let vocab = IngestVocabulary(try IngestJobTests.tokenizer())
        let input = IngestJobTests.write(lines, dir)
        var job = IngestJob(inputs: [input], output: dir + "/ds", vocab: vocab, options: IngestOptions())
        job.shardTokens = 5_000
        job.batchLines = 64
        #expect(throws: IngestError.self) { try job.run() }
        let partial = try Manifest.read(directory: dir + "/ds")
        #expect(!partial.complete && partial.shards.count >= 3)
        #expect(partial.counts.trajectories < 2500)

        lines[2500] = good
        _ = IngestJobTests.write(lines, dir)
        let resumed = try job.run()
        #expect(resumed.resumed && resumed.linesRead == 3000 && resumed.written == 3000)

        var fresh = job
        fresh.output = dir + "/fresh"
        _ = try fresh.run()
        #expect(try IngestJobTests.signature(dir + "/ds") == IngestJobTests.signature(dir + "/fresh"))
        #expect(try Dataset(directory: dir + "/ds").verify().allSatisfy { $0.error == nil })
    }

    /// A snapshot of the output directory taken between batches is what a kill at that moment leaves; resuming
    /// from it must give the clean run's dataset and rejects, whatever rejects, blank lines and shard rolls
    /// fell inside the batches before it.
    @Test func resumeFromAnyBatchBoundaryWithRejectsAndBlanks() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var lines = IngestJobTests.corpus(1500)
        for i in stride(from: 7, to: lines.count, by: 53) { lines[i] = "{not json \(i)" }
        for i in stride(from: 11, to: lines.count, by: 31) { lines[i] = "  " }
        let input = IngestJobTests.write(lines, dir)
        var options = IngestOptions()
        options.onInvalid = .skip
        var job = IngestJob(
            inputs: [input], output: dir + "/ds", vocab: IngestVocabulary(try IngestJobTests.tokenizer()),
            options: options)
        job.shardTokens = 1_500
        job.batchLines = 40
        var batches = 0
        var snapshots: [String] = []
        let clean = try job.run { _ in
            batches += 1
            guard batches % 6 == 0 else { return }
            let copy = dir + "/snap\(batches)"
            try? FileManager.default.copyItem(atPath: dir + "/ds", toPath: copy)
            snapshots.append(copy)
        }
        #expect(clean.rejected == 28 && clean.blank == 49 && clean.manifest.shards.count > 20 && snapshots.count >= 5)
        let cleanRejects = try String(contentsOfFile: dir + "/ds/rejects.jsonl", encoding: .utf8)
        for snap in snapshots {
            var again = job
            again.output = snap
            let s = try again.run()
            #expect(
                s.resumed && s.linesRead == clean.linesRead && s.written == clean.written
                    && s.rejected == clean.rejected)
            #expect(s.blank == clean.blank && s.truncated == clean.truncated)
            #expect(try IngestJobTests.signature(snap) == IngestJobTests.signature(dir + "/ds"), "\(snap)")
            #expect(try String(contentsOfFile: snap + "/rejects.jsonl", encoding: .utf8) == cleanRejects, "\(snap)")
        }
    }

    @Test func partsMergeIntoTheWholeDataset() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let vocab = IngestVocabulary(try IngestJobTests.tokenizer())
        let a = IngestJobTests.write(Array(IngestJobTests.corpus(500)[0..<300]), dir, "a.jsonl")
        let b = IngestJobTests.write(Array(IngestJobTests.corpus(500)[300...]), dir, "b.jsonl")
        var whole = IngestJob(inputs: [a, b], output: dir + "/whole", vocab: vocab, options: IngestOptions())
        whole.shardTokens = 3_000
        _ = try whole.run()
        for i in 0..<3 {
            var p = whole
            p.output = dir + "/parts"
            p.part = (i, 3)
            _ = try p.run()
        }
        let merged = try IngestJob.mergeParts(directory: dir + "/parts", count: 3)
        #expect(merged.counts.trajectories == 500)
        #expect(merged.properties["ingest.lines_read"] == "500")
        #expect(
            try IngestJobTests.signature(dir + "/parts").sorted() == IngestJobTests.signature(dir + "/whole").sorted())
    }
}

/// `oreo ingest` killed with SIGKILL mid-run, then run again, gives the same dataset as one clean run.
@Suite struct IngestKillTests {
    static var oreoBinary: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo")
            .path
    }

    static func ingest(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oreoBinary)
        p.arguments = ["ingest"] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    @Test func killedIngestResumesToTheSameDataset() throws {
        let dir = IngestJobTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tokenizer = try SyntheticTokenizer.write(SyntheticTokenizer.json(merges: ["a b"], extra: ["ab"]))
        var lines = IngestJobTests.corpus(40_000)
        lines[777] = "not json"  // one reject, so rejects.jsonl is exercised across the restart
        let input = IngestJobTests.write(lines, dir)
        let common = [input, "--tokenizer", tokenizer, "--shard-tokens", "20000", "--on-invalid", "skip"]

        let victim = try IngestKillTests.ingest(common + ["--out", dir + "/ds"])
        // Kill once at least one shard is committed (or give up waiting after 60 s).
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, victim.isRunning {
            if let m = try? Manifest.read(directory: dir + "/ds"), m.shards.count >= 2 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let wasRunning = victim.isRunning
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        if wasRunning {
            #expect(throws: FormatError.self) { try Dataset(directory: dir + "/ds") }
        }
        let again = try IngestKillTests.ingest(common + ["--out", dir + "/ds"])
        again.waitUntilExit()
        #expect(again.terminationStatus == 0)
        let clean = try IngestKillTests.ingest(common + ["--out", dir + "/clean"])
        clean.waitUntilExit()
        #expect(clean.terminationStatus == 0)

        #expect(try IngestJobTests.signature(dir + "/ds") == IngestJobTests.signature(dir + "/clean"))
        let resumed = try Manifest.read(directory: dir + "/ds")
        #expect(resumed.properties["ingest.lines_read"] == "40000")
        #expect(resumed.properties["ingest.rejected"] == "1")
        let rejects = try String(contentsOfFile: dir + "/ds/rejects.jsonl", encoding: .utf8)
        #expect(rejects.split(separator: "\n").count == 1)
    }
}
