import Format
import Foundation
import Ingest
import Models
import Support
import Train

/// The seed of sample `k` of problem `index` under a job seed: independent of batching and resumption.
public func sampleSeed(_ seed: UInt64, problem index: Int, sample k: Int) -> UInt64 {
    var g = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15))
    for _ in 0...k { _ = g.next() }
    return g.next() ^ UInt64(truncatingIfNeeded: k)
}

/// Progress of a long job, reported after every finished unit.
public struct JobProgress: Sendable {
    /// Units (problems) done, resumed ones included.
    public var done: Int
    /// Units in the job.
    public var total: Int
    /// Tokens generated in this run.
    public var tokens: Int
}

/// Settings of `SampleJob`.
public struct SampleOptions: Sendable {
    /// Samples per prompt.
    public var n = 4
    /// Sampling settings.
    public var sampling = SamplingParameters(temperature: 1)
    /// Most tokens per response.
    public var maxNewTokens = 256
    /// Sequences decoded together.
    public var batchSize = 8
    /// Stop strings (the response keeps the stop string).
    public var stop: [String] = []
    /// Job seed.
    public var seed: UInt64 = 0
    /// Write pre-tokenized lines (prompt_ids / response_ids, exact sampled ids, EOS included when emitted)
    /// instead of text lines.
    public var ids = false

    /// Defaults: 4 samples, temperature 1, 256 tokens, batch 8.
    public init() {}
}

/// What a sampling run did.
public struct SampleSummary: Sendable {
    /// Problems sampled in this run and resumed from an earlier one.
    public var sampled = 0, resumed = 0
    /// Lines written in total.
    public var lines = 0
    /// Tokens generated in this run.
    public var tokens = 0
    /// Mean reward over labelled lines of this run (nil when none).
    public var meanReward: Double?
    /// Wall seconds.
    public var seconds = 0.0
}

/// `oreo sample`: K samples per prompt in the ingest line format, labelled by a verifier when the prompt
/// has an answer, written resumably.
public enum SampleJob {
    /// Samples every problem not already in `output` and appends its K lines, in the prompts' order, once all K
    /// are done (the file does not depend on batching or on the number of ranks).
    ///
    /// Under MPI every rank calls this; rank 0 alone holds `output` (nil elsewhere) and decides what is left to
    /// do. The problems go in rounds: rank r samples the round's problems r, r + N, ..., and rank 0 writes the
    /// round's lines in order, so the file is the one a single process writes.
    public static func run(
        model: InferenceModel, template: ChatTemplate, problems: [Problem], verifier: (any Verifier)?,
        options: SampleOptions, output: ResumableJSONL?, collective: Collective = SingleProcess(),
        progress: (JobProgress) -> Void = { _ in }
    ) throws -> SampleSummary {
        let start = Date()
        var summary = SampleSummary()
        // Resume (rank 0): keep problems whose K lines are all there.
        var todoIndices: [Int] = []
        if let output {
            var count: [String: Int] = [:]
            func problemOf(_ line: [String: Any]) -> String? {
                (line["meta"] as? [String: Any])?["problem"] as? String
            }
            for line in output.existing { if let p = problemOf(line) { count[p, default: 0] += 1 } }
            let ids = Set(problems.map(\.id))
            let done = Set(count.filter { $0.value == options.n && ids.contains($0.key) }.keys)
            // lines of problems cut short by the interruption (or of another prompt file / --n) are dropped
            let keep = output.existing.filter { problemOf($0).map(done.contains) ?? false }
            if keep.count != output.existing.count { try output.rewrite(keeping: keep) }
            todoIndices = problems.indices.filter { !done.contains(problems[$0].id) }
        }
        todoIndices = try shareIndices(todoIndices, collective)
        let todo = todoIndices.map { ($0, problems[$0]) }
        summary.resumed = problems.count - todo.count
        summary.lines = summary.resumed * options.n
        let prompts = todo.map { model.encodePrompt($0.1.prompt, template: template) }
        let maxLength = min(model.model.config.maxPositions, (prompts.map(\.count).max() ?? 1) + options.maxNewTokens)
        let gen = try Generator(
            model: model.model, tokenizer: model.tokenizer, stopTokens: model.stopTokens,
            batchSize: max(1, options.batchSize), maxLength: maxLength)
        var rewardSum = 0.0, labelled = 0, finishedProblems = summary.resumed
        let ordered = OrderedLines(count: todo.count, output: output, collective: collective)
        /// Samples todo[j] for j in `positions`, handing each problem's encoded lines to `ordered`.
        func sample(_ positions: [Int]) throws {
            var requests: [GenerationRequest] = []
            for j in positions {
                for k in 0..<options.n {
                    requests.append(
                        GenerationRequest(
                            prompt: prompts[j], seed: sampleSeed(options.seed, problem: todo[j].0, sample: k),
                            maxNewTokens: options.maxNewTokens))
                }
            }
            var pending: [Int: [Generation?]] = [:]
            _ = try gen.generate(requests, sampling: options.sampling, stop: options.stop) { r, g in
                let local = r / options.n, k = r % options.n
                var slot = pending[local] ?? [Generation?](repeating: nil, count: options.n)
                slot[k] = g
                guard slot.allSatisfy({ $0 != nil }) else {
                    pending[local] = slot
                    return
                }
                pending[local] = nil
                let j = positions[local]
                let p = todo[j].1
                let rendered = template.render(p.prompt)
                var lines: [[String: Any]] = []
                for (k, g) in slot.map({ $0! }).enumerated() {
                    var reward = 0.0
                    if let a = p.answer, let v = verifier {
                        reward = try v.reward(prompt: p.prompt, response: g.text, answer: a)
                        rewardSum += reward
                        labelled += 1
                    }
                    var meta: [String: Any] = [
                        "problem": p.id, "sample": k, "finish": g.finish.rawValue,
                        "tokens": g.tokens.count, "logprob": g.logProb,
                        "labelled": p.answer != nil && verifier != nil,
                    ]
                    if let a = p.answer { meta["answer"] = a }
                    var line: [String: Any] = ["id": "\(p.id)#\(k)", "group": p.id, "reward": reward, "meta": meta]
                    if options.ids {
                        line["prompt_ids"] = prompts[j]
                        line["response_ids"] = g.tokens + (g.endToken.map { [$0] } ?? [])
                    } else {
                        line["prompt"] = rendered
                        line["response"] = g.text
                    }
                    lines.append(line)
                }
                try ordered.put(j, try ResumableJSONL.encode(lines, path: output?.partialPath ?? "output"))
                summary.lines += lines.count
                summary.sampled += 1
                finishedProblems += 1
                progress(JobProgress(done: finishedProblems, total: problems.count, tokens: gen.tokensGenerated))
            }
        }
        try ordered.rounds(perRank: 4 * max(1, options.batchSize), sample)
        summary.tokens = gen.tokensGenerated
        var sums = [
            rewardSum, Double(labelled), Double(summary.sampled), Double(summary.lines - summary.resumed * options.n),
            Double(summary.tokens),
        ]
        try collective.sum(&sums, count: sums.count)
        summary.meanReward = sums[1] > 0 ? sums[0] / sums[1] : nil
        summary.sampled = Int(sums[2])
        summary.lines = summary.resumed * options.n + Int(sums[3])
        summary.tokens = Int(sums[4])
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}

/// Rank 0's list of indices on every rank.
func shareIndices(_ indices: [Int], _ c: Collective) throws -> [Int] {
    guard c.size > 1 else { return indices }
    var bytes = [UInt8]()
    for i in indices { bytes.appendWord(UInt64(i)) }
    let got = try c.broadcast(bytes, root: 0)
    return stride(from: 0, to: got.count, by: 8).map { Int(got.word64(at: $0)) }
}

/// Writes units of work (a problem's lines) in their order whatever order they finish in, on one rank or many.
///
/// One process: a unit's lines are written as soon as every earlier unit's are. Several ranks: the units go in
/// rounds of `perRank` x ranks; rank r does the round's units r, r + N, ...; at the round's end rank 0 gathers
/// them and writes the round in order (a killed job resumes after the last round written).
final class OrderedLines {
    private let count: Int
    private let output: ResumableJSONL?
    private let collective: Collective
    private var ready: [Int: [UInt8]] = [:]
    private var next = 0

    init(count: Int, output: ResumableJSONL?, collective: Collective) {
        self.count = count
        self.output = output
        self.collective = collective
    }

    /// Unit `j`'s encoded lines.
    func put(_ j: Int, _ bytes: [UInt8]) throws {
        ready[j] = bytes
        if collective.size == 1 { try flush() }
    }

    /// Runs `work` over this rank's units, round by round.
    func rounds(perRank: Int, _ work: ([Int]) throws -> Void) throws {
        let n = collective.size
        guard n > 1 else { return try work(Array(0..<count)) }
        let round = max(1, perRank) * n
        for first in stride(from: 0, to: count, by: round) {
            let units = Array(first..<min(count, first + round))
            try work(units.filter { ($0 - first) % n == collective.rank })
            // (unit index, length, bytes) records of this rank's units, gathered to rank 0
            var mine = [UInt8]()
            for j in units where ready[j] != nil {
                let b = ready.removeValue(forKey: j)!
                mine.appendWord(UInt64(j))
                mine.appendWord(UInt64(b.count))
                mine += b
            }
            guard let parts = try collective.gather(mine, root: 0) else { continue }
            for part in parts {
                var at = 0
                while at < part.count {
                    let j = Int(part.word64(at: at)), length = Int(part.word64(at: at + 8))
                    ready[j] = Array(part[at + 16..<at + 16 + length])
                    at += 16 + length
                }
            }
            try flush()
        }
    }

    private func flush() throws {
        while next < count, let b = ready.removeValue(forKey: next) {
            try output?.appendEncoded(b)
            next += 1
        }
    }
}

/// One evaluated problem.
public struct EvalRecord: Sendable {
    /// The problem.
    public var problem: Problem
    /// The chosen response.
    public var response: String
    /// Its reward from the verifier.
    public var reward: Double
    /// The search's score of the chosen response (nil for greedy).
    public var score: Double?
    /// Response tokens.
    public var tokens: Int
    /// How it ended (nil: the search stopped with the response unfinished).
    public var finish: FinishReason?
    /// Policy log-prob of the response.
    public var logProb: Double

    /// The JSON line written for it.
    public var json: [String: Any] {
        var o: [String: Any] = [
            "id": problem.id, "prompt": problem.prompt, "answer": problem.answer ?? "",
            "response": response, "reward": reward, "correct": reward > 0,
            "tokens": tokens, "finish": finish?.rawValue ?? "unfinished", "logprob": logProb,
        ]
        if let score { o["score"] = score }
        return o
    }
}

/// Aggregate numbers of an evaluation.
public struct EvalSummary: Sendable {
    /// Problems evaluated (resumed ones included) and those with a positive reward.
    public var problems = 0, correct = 0
    /// Tokens generated in this run.
    public var tokensGenerated = 0
    /// Beam-search candidates scored in this run.
    public var candidatesScored = 0
    /// Wall seconds of this run.
    public var seconds = 0.0
    /// correct / problems.
    public var accuracy: Double { problems > 0 ? Double(correct) / Double(problems) : 0 }
}

/// How `Evaluator` answers each problem.
public enum EvalMethod {
    /// Greedy decoding, batched.
    case greedy(batchSize: Int)
    /// Step-level beam search with this searcher.
    case beam(BeamSearch)
}

/// Greedy or beam-search accuracy of a policy on problems with answers.
public enum Evaluator {
    /// Evaluates every problem not already in `output` (if given), writing records in the problems' order;
    /// `onRecord` sees each record this process made. Under MPI every rank calls this (rank 0 with `output`,
    /// the others without) and the problems go in rounds as in `SampleJob.run`: the file is a single process's.
    public static func run(
        model: InferenceModel, template: ChatTemplate, problems: [Problem], verifier: any Verifier,
        method: EvalMethod, maxNewTokens: Int, seed: UInt64 = 0, output: ResumableJSONL?,
        collective: Collective = SingleProcess(),
        progress: (JobProgress) -> Void = { _ in },
        onRecord: (EvalRecord) -> Void = { _ in }
    ) throws -> EvalSummary {
        let start = Date()
        for p in problems where p.answer == nil {
            throw InferError.invalid("problem \(p.id) (line \(p.line)) has no \"answer\" to evaluate against")
        }
        var summary = EvalSummary()
        var done = Set<String>()
        let ids = Set(problems.map(\.id))
        var keep: [[String: Any]] = []
        for line in output?.existing ?? [] {
            guard let id = line["id"] as? String, ids.contains(id), !done.contains(id) else { continue }
            done.insert(id)
            keep.append(line)
            summary.problems += 1
            if (line["reward"] as? Double ?? 0) > 0 { summary.correct += 1 }
        }
        if let output, keep.count != output.existing.count { try output.rewrite(keeping: keep) }
        let todo = try shareIndices(problems.indices.filter { !done.contains(problems[$0].id) }, collective)
            .map { ($0, problems[$0]) }
        var resumed = [Double(summary.problems), Double(summary.correct)]
        try collective.sum(&resumed, count: 2)
        summary.problems = Int(resumed[0])
        summary.correct = Int(resumed[1])
        let ordered = OrderedLines(count: todo.count, output: output, collective: collective)
        func record(_ j: Int, _ r: EvalRecord) throws {
            summary.problems += 1
            if r.reward > 0 { summary.correct += 1 }
            try ordered.put(j, try ResumableJSONL.encode([r.json], path: output?.partialPath ?? "output"))
            onRecord(r)
            progress(JobProgress(done: summary.problems, total: problems.count, tokens: summary.tokensGenerated))
        }
        switch method {
        case .greedy(let batch):
            let prompts = todo.map { model.encodePrompt($0.1.prompt, template: template) }
            let maxLength = min(model.model.config.maxPositions, (prompts.map(\.count).max() ?? 1) + maxNewTokens)
            let gen = try Generator(
                model: model.model, tokenizer: model.tokenizer, stopTokens: model.stopTokens,
                batchSize: max(1, batch), maxLength: maxLength)
            try ordered.rounds(perRank: 4 * max(1, batch)) { positions in
                let reqs = positions.map { GenerationRequest(prompt: prompts[$0], maxNewTokens: maxNewTokens) }
                _ = try gen.generate(reqs, sampling: .greedy) { i, g in
                    let p = todo[positions[i]].1
                    summary.tokensGenerated = gen.tokensGenerated
                    try record(
                        positions[i],
                        EvalRecord(
                            problem: p, response: g.text,
                            reward: try verifier.reward(prompt: p.prompt, response: g.text, answer: p.answer!),
                            score: nil, tokens: g.tokens.count, finish: g.finish, logProb: g.logProb))
                }
            }
            summary.tokensGenerated = gen.tokensGenerated
        case .beam(let search):
            try ordered.rounds(perRank: 2) { positions in
                for j in positions {
                    let (index, p) = todo[j]
                    let prompt = model.encodePrompt(p.prompt, template: template)
                    let r = try search.run(prompt: prompt, seed: sampleSeed(seed, problem: index, sample: 0))
                    summary.tokensGenerated += r.tokensGenerated
                    summary.candidatesScored += r.candidatesScored
                    try record(
                        j,
                        EvalRecord(
                            problem: p, response: r.best.text,
                            reward: try verifier.reward(prompt: p.prompt, response: r.best.text, answer: p.answer!),
                            score: r.best.score, tokens: r.best.tokens.count, finish: r.best.finish,
                            logProb: r.best.logProb))
                }
            }
        }
        // each rank counted its own records on top of the resumed ones
        var sums = [
            Double(summary.problems - Int(resumed[0])), Double(summary.correct - Int(resumed[1])),
            Double(summary.tokensGenerated), Double(summary.candidatesScored),
        ]
        try collective.sum(&sums, count: sums.count)
        summary.problems = Int(resumed[0]) + Int(sums[0])
        summary.correct = Int(resumed[1]) + Int(sums[1])
        summary.tokensGenerated = Int(sums[2])
        summary.candidatesScored = Int(sums[3])
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }
}
