import Foundation
import Format
import Ingest
import TestSupport
import Testing
import Demo
import Tokenizers

/// The JSONL files: what ingest makes of them, the prompt reader, the verifier over ids.
@Suite struct TaskFilesTests {
    static let splits = try! ProblemGenerator(seed: 4).splits(SplitSizes(train: 300, validation: 40, test: 50))

    /// A directory with the splits' files and the task tokenizer.
    static func setUp() throws -> (dir: String, paths: TaskFiles.Paths, tokenizer: Tokenizer) {
        let dir = DemoTestSupport.tempDir()
        let paths = try TaskFiles.writeSplits(splits, directory: dir)
        let t = TaskTokenizer.learn(from: splits.train.map(\.prompt))
        return (dir, paths, try Tokenizer.load(path: try t.write(directory: dir)))
    }

    static func trajectories(_ dir: String) throws -> [TrajectoryView] {
        let d = try Dataset(directory: dir)
        return try (try d.allShards()).flatMap { s in try (0..<s.trajectoryCount).map { try s.cursor().trajectory($0) }
        }
    }

    @Test func sftLinesIngestToPromptStepsAndEOS() throws {
        let (dir, paths, tok) = try TaskFilesTests.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let summary = try IngestJob(
            inputs: [paths.sftTrain], output: dir + "/sft", vocab: IngestVocabulary(tok),
            options: IngestOptions()
        ).run()
        #expect(summary.written == 300 && summary.rejected == 0)
        let verifier = TaskVerifier(tokenizer: tok)
        for (p, t) in zip(TaskFilesTests.splits.train, try TaskFilesTests.trajectories(dir + "/sft")) {
            let ids = t.tokens.array
            let prompt = Array(ids[..<t.promptLength]), response = Array(ids[t.promptLength...])
            #expect(prompt.first == TaskTokenizer.bosId && response.last == TaskTokenizer.eosId)
            #expect(try tok.decode(prompt, skipSpecialTokens: true) == Array(p.prompt.utf8))
            #expect(try tok.decode(response, skipSpecialTokens: true) == Array(p.solution.utf8))
            #expect(t.reward == 1)
            // One step per solution line, where the verifier's line ends put them.
            #expect(t.stepEnds.count == p.solutionLines.count)
            #expect(t.stepEnds.map { Int($0) - t.promptLength } == verifier.lineEnds(response))
            let (check, finished) = try verifier.check(p.key, responseIds: response)
            #expect(
                finished
                    && check
                        == SolutionCheck(
                            reward: 1, finalAnswer: p.answer, firstWrongStep: nil, lineCount: p.solutionLines.count)
            )
        }
    }

    @Test func sampleLinesKeepIdsVerbatim() throws {
        let (dir, _, tok) = try TaskFilesTests.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let verifier = TaskVerifier(tokenizer: tok)
        let p = TaskFilesTests.splits.train[0]
        let prompt = [TaskTokenizer.bosId] + tok.encode(p.prompt)
        // A right solution, a wrong second line, a cut-off response without EOS, and a first line holding a
        // word spelled in byte tokens (not how the tokenizer would encode it: ingest must keep these ids).
        let word = String(p.prompt.prefix { $0 != " " })
        let spelled = Array(word.utf8).map { TaskTokenizer.firstByteId + UInt32($0) }
        #expect(tok.encode(word) != spelled)
        let wrongLines = [p.steps[0], "0+0=7"] + p.steps.dropFirst(2) + ["#### 7"]
        let responses: [[UInt32]] = [
            tok.encode(p.solution) + [TaskTokenizer.eosId],
            tok.encode(wrongLines.joined(separator: "\n")) + [TaskTokenizer.eosId],
            tok.encode(p.solution),
            spelled + tok.encode("\n" + p.solution) + [TaskTokenizer.eosId],
        ]
        var records: [SampleRecord] = []
        for (k, r) in responses.enumerated() {
            let (check, finished) = try verifier.check(p.key, responseIds: r)
            records.append(
                SampleRecord(
                    problemId: p.id, index: k, promptIds: prompt, responseIds: r, check: check, finished: finished))
        }
        #expect(records.map(\.reward) == [1, 0, 0, 1])  // the last one reaches the answer after a junk line
        #expect(records.map(\.check.firstWrongStep) == [nil, 1, nil, 0])
        #expect(records.map(\.finished) == [true, true, false, true])
        try TaskFiles.write(records.map(TaskFiles.sampleLine), to: dir + "/samples.jsonl")
        var options = IngestOptions()
        options.eos = .never
        _ = try IngestJob(
            inputs: [dir + "/samples.jsonl"], output: dir + "/samples", vocab: IngestVocabulary(tok), options: options
        ).run()
        let ts = try TaskFilesTests.trajectories(dir + "/samples")
        #expect(ts.count == 4)
        for (r, t) in zip(records, ts) {
            #expect(t.tokens.array == r.promptIds + r.responseIds && t.promptLength == r.promptIds.count)
            #expect(Double(t.reward) == r.reward)
            #expect(t.stepEnds.map { Int($0) - t.promptLength } == verifier.lineEnds(r.responseIds))
            let meta = try JSONSerialization.jsonObject(with: Data(t.meta)) as! [String: Any]
            #expect(meta["id"] as? String == "\(p.id)/\(r.index)")
            let m = meta["meta"] as! [String: Any]
            #expect(m["first_wrong_step"] as? Int == r.check.firstWrongStep && m["finished"] as? Bool == r.finished)
        }
        // All samples of a problem share its group.
        #expect(Set(ts.map(\.group)).count == 1)
    }

    @Test func promptFilesRoundTripAndBadLinesAreNamed() throws {
        let (dir, paths, _) = try TaskFilesTests.setUp()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let test = try TaskFiles.readPrompts(paths.prompts[.test]!)
        #expect(test == TaskFilesTests.splits.test.map(PromptRecord.init))
        let bad = [
            #"{"id": "a", "prompt": "p", "answer": 3, "values": [1, 3]}"#,
            "",
            #"{"id": "b", "prompt": "p", "answer": 3.5, "values": [3]}"#,
        ]
        try TaskFiles.write(bad, to: dir + "/bad.jsonl")
        #expect(throws: DemoError("\(dir)/bad.jsonl:3: 'answer' must be an integer")) {
            try TaskFiles.readPrompts(dir + "/bad.jsonl")
        }
        for line in [
            #"[1]"#, #"{"id": 1, "prompt": "p", "answer": 1, "values": [1]}"#,
            #"{"id": "x", "prompt": "p", "answer": true, "values": [1]}"#,
            #"{"id": "x", "prompt": "p", "answer": 2, "values": [1]}"#, "{not json",
        ] {
            try TaskFiles.write([line], to: dir + "/bad.jsonl")
            #expect(throws: DemoError.self) { try TaskFiles.readPrompts(dir + "/bad.jsonl") }
        }
        #expect(throws: DemoError.self) { try TaskFiles.readPrompts(dir + "/missing.jsonl") }
    }

    @Test func linesAreValidJSONInTheDocumentedShape() throws {
        let p = TaskFilesTests.splits.validation[3]
        let sft = try JSONSerialization.jsonObject(with: Data(TaskFiles.sftLine(p).utf8)) as! [String: Any]
        #expect(
            sft["prompt"] as? String == p.prompt && sft["steps"] as? [String] == p.solutionLines
                && sft["reward"] as? Int == 1)
        let odd = PromptRecord(
            id: "q\"\\\u{1}", prompt: "tab\there\nnewline \u{2028} é", key: AnswerKey(answer: -4, values: [-4]))
        let line = TaskFiles.promptLine(odd)
        #expect(!line.contains("\n"))
        let back = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
        #expect(
            back["id"] as? String == odd.id && back["prompt"] as? String == odd.prompt && back["answer"] as? Int == -4)
    }
}
