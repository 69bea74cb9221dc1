import Foundation
import Format
import Ingest
import Support
import Tokenizers

/// A problem as the sampler and evaluator see it: id, prompt and the key its solutions are checked against.
public struct PromptRecord: Sendable, Hashable {
    /// The problem id (`test-3`).
    public var id: String
    /// The prompt text.
    public var prompt: String
    /// Answer and running values.
    public var key: AnswerKey

    /// A record.
    public init(id: String, prompt: String, key: AnswerKey) {
        self.id = id
        self.prompt = prompt
        self.key = key
    }

    /// The record of a generated problem.
    public init(_ p: Problem) { self.init(id: p.id, prompt: p.prompt, key: p.key) }
}

/// One sampled solution with its verdict, ready to be written as a pre-tokenized trajectory line.
public struct SampleRecord: Sendable, Equatable {
    /// The problem sampled for.
    public var problemId: String
    /// Which of the problem's samples this is (0-based).
    public var index: Int
    /// The prompt ids exactly as fed to the model (BOS included).
    public var promptIds: [UInt32]
    /// The sampled ids exactly as drawn (EOS included when the model emitted it).
    public var responseIds: [UInt32]
    /// The verifier's verdict on the response text.
    public var check: SolutionCheck
    /// Whether the model ended the response with EOS (a cut-off response earns no reward).
    public var finished: Bool

    /// A record.
    public init(
        problemId: String, index: Int, promptIds: [UInt32], responseIds: [UInt32], check: SolutionCheck, finished: Bool
    ) {
        self.problemId = problemId
        self.index = index
        self.promptIds = promptIds
        self.responseIds = responseIds
        self.check = check
        self.finished = finished
    }

    /// 1 iff the response ended with EOS and its final answer is right.
    public var reward: Double { finished ? check.reward : 0 }
}

/// The JSONL files of the demo task, in the formats `oreo ingest` and the sampler read.
public enum TaskFiles {
    /// A worked solution as an SFT trajectory: `{"id", "prompt", "steps": [...], "reward": 1}` (the answer line
    /// is the last step; ingest adds BOS before the prompt and EOS after the response).
    public static func sftLine(_ p: Problem) -> String {
        JSONText.object([
            ("id", JSONText.string(p.id)), ("prompt", JSONText.string(p.prompt)),
            ("steps", JSONText.array(p.solutionLines.map(JSONText.string))), ("reward", "1"),
        ])
    }

    /// A problem for sampling and evaluation: `{"id", "prompt", "answer", "values"}`.
    public static func promptLine(_ p: PromptRecord) -> String {
        JSONText.object([
            ("id", JSONText.string(p.id)), ("prompt", JSONText.string(p.prompt)),
            ("answer", String(p.key.answer)), ("values", JSONText.array(p.key.values.map(String.init))),
        ])
    }

    /// A sampled solution as a pre-tokenized trajectory (ids kept verbatim: re-tokenizing sampled text can
    /// change ids): `{"id", "group", "prompt_ids", "response_ids", "reward", "meta": {...}}`; ingest finds the
    /// steps at newlines and, with `--eos never`, leaves the ids as sampled.
    public static func sampleLine(_ s: SampleRecord) -> String {
        let ids = { (v: [UInt32]) in JSONText.array(v.map { String($0) }) }
        let meta = JSONText.object([
            ("finished", s.finished ? "true" : "false"),
            ("final_answer", s.check.finalAnswer.map(String.init) ?? "null"),
            ("first_wrong_step", s.check.firstWrongStep.map(String.init) ?? "null"),
        ])
        return JSONText.object([
            ("id", JSONText.string("\(s.problemId)/\(s.index)")), ("group", JSONText.string(s.problemId)),
            ("prompt_ids", ids(s.promptIds)), ("response_ids", ids(s.responseIds)),
            ("reward", JSONText.number(s.reward)), ("meta", meta),
        ])
    }

    /// Writes lines as a JSONL file, atomically (temporary name, then rename).
    public static func write(_ lines: [String], to path: String) throws {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(lines.reduce(0) { $0 + $1.utf8.count + 1 })
        for l in lines {
            bytes.append(contentsOf: l.utf8)
            bytes.append(0x0A)
        }
        try writeFileAtomically(bytes, to: path)
    }

    /// The files `writeSplits` makes in a directory.
    public struct Paths: Sendable, Equatable {
        /// Worked solutions of the training split (SFT data).
        public var sftTrain: String
        /// Worked solutions of the validation split (held-out SFT loss).
        public var sftValidation: String
        /// Prompt file per split.
        public var prompts: [ProblemSplit: String]

        /// The paths inside `directory`.
        public init(directory: String) {
            sftTrain = directory + "/sft-train.jsonl"
            sftValidation = directory + "/sft-validation.jsonl"
            prompts = Dictionary(
                uniqueKeysWithValues: ProblemSplit.allCases.map { ($0, directory + "/prompts-\($0.rawValue).jsonl") })
        }
    }

    /// Writes the SFT files of train and validation and the prompt file of every split into `directory`.
    @discardableResult
    public static func writeSplits(_ s: ProblemSplits, directory: String) throws -> Paths {
        let paths = Paths(directory: directory)
        try write(s.train.map(sftLine), to: paths.sftTrain)
        try write(s.validation.map(sftLine), to: paths.sftValidation)
        for split in ProblemSplit.allCases {
            try write(s[split].map { promptLine(PromptRecord($0)) }, to: paths.prompts[split]!)
        }
        return paths
    }

    /// Reads a prompt file written by `promptLine` (Ingest's strict JSON scanner); a bad line is an error
    /// naming the file, line and column.
    public static func readPrompts(_ path: String) throws(DemoError) -> [PromptRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DemoError("\(path): cannot read") }
        var scanner = JSONScanner()
        var scratch: [UInt8] = []
        var out: [PromptRecord] = []
        for (n, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) else { continue }
            let bytes = Array(line)
            let parsed: Result<PromptRecord, DemoError> = bytes.withUnsafeBufferPointer { b in
                do { return .success(try prompt(b, &scanner, &scratch)) } catch let e as JSONScanner.Failure {
                    return .failure(DemoError("\(path):\(n + 1):\(e.offset + 1): \(e.reason)"))
                } catch let e as DemoError {
                    return .failure(DemoError("\(path):\(n + 1): \(e.message)"))
                } catch {
                    return .failure(DemoError("\(path):\(n + 1): \(error)"))
                }
            }
            out.append(try parsed.get())
        }
        return out
    }

    private static func prompt(_ b: UnsafeBufferPointer<UInt8>, _ scanner: inout JSONScanner, _ scratch: inout [UInt8])
        throws -> PromptRecord
    {
        let root = try scanner.parse(b)
        guard scanner[root].kind == .object else { throw DemoError("not a JSON object") }
        func text(_ key: StaticString) throws -> String {
            guard let n = scanner.member(root, key), scanner[n].kind == .string else {
                throw DemoError("needs a string field '\(key)'")
            }
            return try scanner.withText(n, in: b, scratch: &scratch) { String(decoding: $0, as: UTF8.self) }
        }
        func integer(_ n: Int?) -> Int? {
            guard let n, let v = scanner.integer(n, in: b), abs(v) < 1_000_000_000 else { return nil }
            return Int(v)
        }
        let id = try text("id"), prompt = try text("prompt")
        guard let answer = integer(scanner.member(root, "answer")) else {
            throw DemoError("'answer' must be an integer")
        }
        guard let v = scanner.member(root, "values"), scanner[v].kind == .array else {
            throw DemoError("'values' must be an array of integers")
        }
        let items = scanner.children(v)
        let values = items.compactMap(integer)
        guard values.count == items.count, values.last == answer else {
            throw DemoError("'values' must be integers ending with the answer \(answer)")
        }
        return PromptRecord(id: id, prompt: prompt, key: AnswerKey(answer: answer, values: values))
    }
}

/// The task's verifier over token ids: decodes a sampled response with the task tokenizer and checks it.
public struct TaskVerifier: Sendable {
    /// The tokenizer the samples were drawn with.
    public let tokenizer: Tokenizer

    /// A verifier for samples drawn with `tokenizer`.
    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// The verdict on sampled `responseIds` (a trailing EOS marks the response finished and is not text).
    public func check(_ key: AnswerKey, responseIds: [UInt32]) throws(DemoError) -> (
        check: SolutionCheck, finished: Bool
    ) {
        var ids = responseIds[...]
        let finished = tokenizer.eosId.map { ids.last == $0 } ?? false
        if finished { ids = ids.dropLast() }
        let bytes: [UInt8]
        do { bytes = try tokenizer.decode(Array(ids), skipSpecialTokens: true) } catch {
            throw DemoError("sampled ids do not decode with \(tokenizer.path): \(error)")
        }
        return (key.check(String(decoding: bytes, as: UTF8.self)), finished)
    }

    /// Response-token offsets where each step ends, by ingest's rule for the newline delimiter (a step ends
    /// where a run of newlines ends, before the token holding the next byte; the response end closes the last
    /// step): so step k of a check is `lineEnds[k - 1]..<lineEnds[k]` of the ingested trajectory.
    public func lineEnds(_ responseIds: [UInt32]) -> [Int] {
        var ends: [Int] = []
        var last = 0
        var inRun = false
        for (k, id) in responseIds.enumerated() {
            for b in (try? tokenizer.decode([id])) ?? [] {
                if b == 0x0A {
                    inRun = true
                } else if inRun {
                    if k > last {
                        ends.append(k)
                        last = k
                    }
                    inRun = false
                }
            }
        }
        if responseIds.count > last { ends.append(responseIds.count) }
        return ends
    }
}

/// One decoded test answer as the per-answer file stores it (`eval/METHOD-DECODING.jsonl`): the verifier's
/// verdict beside the ids, so every accuracy in results.json can be recounted from these lines.
public struct AnswerLine: Sendable, Equatable, Codable {
    /// The test problem.
    public var id: String
    /// Whether the answer earned reward 1 (ended with EOS and its final answer is right).
    public var correct: Bool
    /// Whether it ended with EOS.
    public var finished: Bool
    /// The integer after the last `#### `, if any.
    public var finalAnswer: Int?
    /// The first wrong line, if any.
    public var firstWrongStep: Int?
    /// Tokens generated and candidates scored for this problem.
    public var tokensGenerated: Int, candidatesScored: Int
    /// The response text (special tokens left out) and ids (EOS included when emitted).
    public var response: String, responseIds: [UInt32]

    enum CodingKeys: String, CodingKey {
        case id, correct, finished, finalAnswer = "final_answer", firstWrongStep = "first_wrong_step"
        case tokensGenerated = "tokens_generated", candidatesScored = "candidates_scored", response, responseIds =
            "response_ids"
    }
}

/// A sampled solution line as `TaskFiles.sampleLine` writes it (the fields read back).
struct StoredSample: Decodable {
    var id: String
    var group: String
    var promptIds: [UInt32]
    var responseIds: [UInt32]

    enum CodingKeys: String, CodingKey { case id, group, promptIds = "prompt_ids", responseIds = "response_ids" }
}

extension TaskFiles {
    /// JSON lines of `path` decoded as `T`; a bad line is an error naming the file and line.
    static func readLines<T: Decodable>(_ path: String, as type: T.Type) throws(DemoError) -> [T] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DemoError("\(path): cannot read") }
        let decoder = JSONDecoder()
        var out: [T] = []
        for (n, line) in data.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() where !line.isEmpty
        {
            do { out.append(try decoder.decode(T.self, from: Data(line))) } catch {
                throw DemoError("\(path):\(n + 1): not a valid \(T.self) line: \(error)")
            }
        }
        return out
    }

    /// Samples written by `sampleLine`: problem, index (from the id `problem/k`) and ids.
    public static func readSamples(_ path: String) throws(DemoError) -> [(
        problemId: String, index: Int, promptIds: [UInt32], responseIds: [UInt32]
    )] {
        try readLines(path, as: StoredSample.self).map { s throws(DemoError) in
            guard let slash = s.id.lastIndex(of: "/"), let k = Int(s.id[s.id.index(after: slash)...]) else {
                throw DemoError("\(path): sample id \(s.id) is not PROBLEM/INDEX")
            }
            return (s.group, k, s.promptIds, s.responseIds)
        }
    }

    /// Writes the answers to `prompts` (one line each, checked by `verifier`) and their wall time beside them
    /// (`path` with `.seconds` appended).
    public static func writeAnswers(
        _ answers: [DecodedAnswer], prompts: [PromptRecord], verifier: TaskVerifier, seconds: Double,
        to path: String
    ) throws {
        guard answers.count == prompts.count else {
            throw DemoError("\(answers.count) answers for \(prompts.count) prompts")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines: [String] = []
        for (p, a) in zip(prompts, answers) {
            let (check, finished) = try verifier.check(p.key, responseIds: a.responseIds)
            let text =
                (try? verifier.tokenizer.decode(a.responseIds, skipSpecialTokens: true)).map {
                    String(decoding: $0, as: UTF8.self)
                } ?? ""
            let line = AnswerLine(
                id: p.id, correct: finished && check.correct, finished: finished, finalAnswer: check.finalAnswer,
                firstWrongStep: check.firstWrongStep, tokensGenerated: a.tokensGenerated,
                candidatesScored: a.candidatesScored, response: text, responseIds: a.responseIds)
            lines.append(String(decoding: try encoder.encode(line), as: UTF8.self))
        }
        try write(lines, to: path)
        try writeFileAtomically(Array((JSONText.number(seconds) + "\n").utf8), to: path + ".seconds")
    }

    /// Answers written by `writeAnswers`, with their wall time.
    public static func readAnswers(_ path: String) throws(DemoError) -> (
        lines: [AnswerLine], answers: [DecodedAnswer], seconds: Double
    ) {
        let lines = try readLines(path, as: AnswerLine.self)
        let seconds =
            FileManager.default.contents(atPath: path + ".seconds")
            .flatMap { Double(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }
            ?? 0
        return (
            lines,
            lines.map {
                DecodedAnswer(
                    responseIds: $0.responseIds, tokensGenerated: $0.tokensGenerated,
                    candidatesScored: $0.candidatesScored)
            },
            seconds
        )
    }
}
