import Foundation
import Format
import Ingest
import Synchronization
import TestSupport
import Testing
import Demo
import Tokenizers
import Rounds

/// Test doubles for the hooks: they do no learning; they let the test check what the pipeline asks for and
/// what it makes of the answers (every number in the report comes from the verifier, not from a hook).
final class CallLog: Sendable {
    let requests = Mutex<[TrainRequest]>([])
}

struct RecordingTrainer: DemoTrainer {
    let log: CallLog
    func train(_ r: TrainRequest, progress: @escaping @Sendable (HookProgress) -> Void) throws -> TrainedModel {
        log.requests.withLock { $0.append(r) }
        try FileManager.default.createDirectory(atPath: r.output, withIntermediateDirectories: true)
        progress(HookProgress(done: 1, total: 1, unit: "steps"))
        return TrainedModel(
            method: r.method, checkpoint: r.output, hasValueHead: [.oreo, .dqo].contains(r.method), seconds: 0,
            updates: 1)
    }
}

/// Answers built from the key: `v+0=v` lines are right; `1+1=3` and the answer -1 (no problem has it) are wrong.
struct ScriptedPolicy: DemoSampler, DemoEvaluator {
    let tokenizer: Tokenizer
    let prompts: [String: AnswerKey]  // prompt text -> key (the double's only way to know the answers)

    func ids(_ prompt: String, right: Bool) -> SampledResponse {
        let key = prompts[prompt]!
        let text =
            right
            ? key.values.map { "\($0)+0=\($0)" }.joined(separator: "\n") + "\n#### \(key.answer)" : "1+1=3\n#### -1"
        return SampledResponse(
            promptIds: [TaskTokenizer.bosId] + tokenizer.encode(prompt),
            responseIds: tokenizer.encode(text) + [TaskTokenizer.eosId])
    }

    func sample(
        _ model: TrainedModel, prompts: [PromptRecord], count: Int, temperature: Double, maxTokens: Int, seed: UInt64,
        threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[SampledResponse]] {
        prompts.enumerated().map { i, p in (0..<count).map { k in ids(p.prompt, right: (i + k) % 3 == 0) } }
    }

    func decode(
        _ model: TrainedModel, prompts: [PromptRecord], decoding: Decoding, maxTokens: Int, seed: UInt64,
        threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [DecodedAnswer] {
        // Wider beams answer more prompts right, so rows differ; greedy answers every other one.
        prompts.enumerated().map { i, p in
            let r = ids(p.prompt, right: i % (decoding.isGreedy ? 2 : 1 + decoding.width) == 0 || decoding.width >= 4)
            return DecodedAnswer(
                responseIds: r.responseIds, tokensGenerated: r.responseIds.count * decoding.width,
                candidatesScored: decoding.isGreedy ? 0 : decoding.width * decoding.width)
        }
    }

    func scorers(for model: TrainedModel) -> [String] { model.hasValueHead ? ["value"] : [] }

    /// V = 0.5 at the prompt, then 0.8 after right steps and 0.1 from the first "1+1=3" on.
    func scores(
        _ model: TrainedModel, scorer: String, samples: [SampledResponse], stepEnds: [[Int]], threads: Int,
        progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[Double]] {
        try zip(samples, stepEnds).map { s, ends in
            var v = [0.5]
            var start = 0
            var wrong = false
            for e in ends {
                let text = String(decoding: try tokenizer.decode(Array(s.responseIds[start..<e])), as: UTF8.self)
                wrong = wrong || text.contains("1+1=3")
                v.append(wrong ? 0.1 : 0.8)
                start = e
            }
            return v
        }
    }
}

@Suite(.serialized) struct PipelineTests {
    static func config(_ dir: String) -> DemoConfig {
        var c = DemoConfig(output: dir)
        c.seeds = [1, 2]
        c.sizes = SplitSizes(train: 60, validation: 12, test: 20)
        c.samplesPerProblem = 3
        c.beamWidths = [2, 4]
        c.timeBudget = 60
        c.parallelSeeds = 1  // the order of requests and events below is one seed after the other
        return c
    }

    final class Events: Sendable {
        let list = Mutex<[DemoEvent]>([])
        func stages(_ pick: (DemoEvent) -> DemoStage?) -> [DemoStage] { list.withLock { $0.compactMap(pick) } }
    }

    @Test func withoutHooksItPreparesTheDataAndSaysWhatDidNotRun() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let events = Events()
        let outcome = try DemoPipeline(config: PipelineTests.config(dir)).run { e in
            events.list.withLock { $0.append(e) }
        }
        #expect(outcome.report.evaluations.isEmpty && outcome.report.valueQuality.isEmpty)
        #expect(outcome.report.notes.contains { $0.hasPrefix("Training did not run") })
        let skipped = events.stages { if case .skipped(let s, _, _, _) = $0 { s } else { nil } }
        #expect(
            skipped
                == Array(repeating: [.trainSFT, .sample, .ingestSamples, .train, .evaluate, .values], count: 2).flatMap
            { $0 })
        let finished = events.stages { if case .finished(let s, _, _, _) = $0 { s } else { nil } }
        #expect(finished == [.tokenizer, .generate, .write, .ingest, .generate, .write, .ingest, .report])
        // The datasets are there and hold the worked solutions.
        for seed in outcome.seeds {
            let d = try Dataset(directory: seed.sftData)
            #expect(d.manifest.counts.trajectories == 60 && d.manifest.complete)
            #expect(try Dataset(directory: seed.sftValidationData).manifest.counts.trajectories == 12)
            #expect(try TaskFiles.readPrompts(seed.files.prompts[.test]!).count == 20)
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/results.md"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/search-tokens.svg"))  // nothing to plot
        #expect(try String(contentsOfFile: dir + "/results.md", encoding: .utf8).contains("No evaluations were run."))

        // Running again continues: same tokenizer, datasets reused as they are.
        let before = try Manifest.read(directory: outcome.seeds[0].sftData)
        let again = try DemoPipeline(config: PipelineTests.config(dir)).run()
        #expect(try Manifest.read(directory: again.seeds[0].sftData) == before)
        // Other data settings in the same directory are refused, unless asked to start afresh.
        var other = PipelineTests.config(dir)
        other.sizes.train = 61
        #expect(throws: DemoError.self) { try DemoPipeline(config: other).run() }
        other.overwrite = true
        let fresh = try DemoPipeline(config: other).run()
        #expect(try Dataset(directory: fresh.seeds[0].sftData).manifest.counts.trajectories == 61)
    }

    @Test func withHooksEveryNumberComesFromTheVerifier() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = PipelineTests.config(dir)
        // The doubles need the tokenizer and the keys; build them the way the pipeline will.
        _ = try DemoPipeline(config: config).run()
        let tok = try Tokenizer.load(path: dir + "/tokenizer.json")
        var keys: [String: AnswerKey] = [:]
        for seed in config.seeds {
            for p in try ProblemGenerator(config: config.task, seed: seed).splits(config.sizes).train
                + (try ProblemGenerator(config: config.task, seed: seed).splits(config.sizes).validation)
                + (try ProblemGenerator(config: config.task, seed: seed).splits(config.sizes).test)
            { keys[p.prompt] = p.key }
        }
        let policy = ScriptedPolicy(tokenizer: tok, prompts: keys)
        let log = CallLog()
        let outcome = try DemoPipeline(
            config: config, hooks: DemoHooks(trainer: RecordingTrainer(log: log), sampler: policy, evaluator: policy)
        ).run()

        // SFT from scratch on the worked solutions, then every method from SFT on the samples.
        let requests = log.requests.withLock { $0 }
        #expect(requests.map(\.method) == Array(repeating: DemoMethod.allCases, count: 2).flatMap { $0 })
        let sft = requests[0]
        #expect(sft.initialization == nil && sft.reference == nil && sft.data.hasSuffix("seed-1/shards/sft-train"))
        for r in requests.dropFirst().prefix(5) {
            #expect(
                r.initialization == sft.output && r.reference == sft.output && r.data.hasSuffix("seed-1/shards/samples")
            )
        }
        // Each method gets what is left of the methods' share over the methods still to train: the doubles
        // take no time, so later ones inherit the first ones' unused time.
        let plan = BudgetPlan(total: 60, seeds: 2, methods: 5)
        let budgets = requests.dropFirst().prefix(5).map(\.timeBudget)
        #expect(
            abs(budgets[0] - plan.perMethod) < 0.5 && budgets.last! > 4 * plan.perMethod
                && budgets.last! <= plan.allMethods)
        // The samples were labeled by the verifier and ingested with their ids: one in three is right.
        let samples = try Dataset(directory: outcome.seeds[0].samplesData!)
        #expect(samples.manifest.counts.trajectories == 60 * 3)
        var rewards = 0.0
        for s in (try samples.allShards()) {
            for i in 0..<s.trajectoryCount { rewards += Double(try s.cursor().trajectory(i).reward) }
        }
        #expect(rewards == 60)

        // Greedy: every other test problem right (10 of 20); B=2: every third (7 of 20); B=4: all.
        let r = outcome.report
        #expect(r.summary("SFT", .greedy)?.perSeed.map(\.accuracy) == [0.5, 0.5])
        #expect(r.summary("OREO", .beam(width: 2, scorer: "value"))?.accuracy.mean == 0.35)
        #expect(r.summary("DQO", .beam(width: 4, scorer: "value"))?.accuracy.mean == 1)
        #expect(r.summary("SFT", .beam(width: 2, scorer: "value")) == nil)  // no value head
        #expect(r.evaluations.count == 2 * (6 + 2 * 2))
        // The value double ranks perfectly and drops at the first wrong step.
        #expect(r.valueQuality.map(\.method) == ["OREO", "DQO", "OREO", "DQO"])
        for q in r.valueQuality {
            #expect(q.auc.auc == 1 && q.auc.problems == 12)
            // 0.5 -> 0.1 at the first (wrong) line; right samples rise 0.3 on their first line and stay.
            #expect(q.stepChange.atFirstWrong.map { abs($0 + 0.4) < 1e-12 } == true)
            #expect(q.stepChange.atCorrect.map { $0 > 0 && $0 < 0.3 } == true)
        }
        let md = try String(contentsOfFile: dir + "/results.md", encoding: .utf8)
        #expect(md.contains("| SFT | 50.0 | 50.0 | 50.0 ± 0.0 |"))
        // results.json names files relative to the run directory (it ships in docs/ and moves between machines).
        #expect(dir.hasPrefix("/") && !md.contains(dir))
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/results.json")))
        func strings(_ v: Any) -> [String] {
            if let s = v as? String { return [s] }
            if let a = v as? [Any] { return a.flatMap(strings) }
            if let o = v as? [String: Any] { return o.values.flatMap(strings) }
            return []
        }
        let absolute = strings(json).filter { $0.hasPrefix("/") || $0.contains(dir) }
        #expect(absolute.isEmpty, "absolute paths in results.json: \(absolute.prefix(3))")
        let answers = ((json as? [String: Any])?["evaluations"] as? [[String: Any]] ?? []).compactMap {
            $0["answers"] as? String
        }
        #expect(answers.count == r.evaluations.count)
        for a in answers {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + a), "\(a) is not a file in the run directory")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/search-tokens.svg"))
    }

    @Test func seedsSideBySideGiveWhatSeedsInTurnGive() throws {
        let dir = DemoTestSupport.tempDir(), dir2 = DemoTestSupport.tempDir()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: dir2)
        }
        var config = PipelineTests.config(dir)
        config.seeds = [1, 2, 3]
        _ = try DemoPipeline(config: config).run()
        let tok = try Tokenizer.load(path: dir + "/tokenizer.json")
        var keys: [String: AnswerKey] = [:]
        for seed in config.seeds {
            let s = try ProblemGenerator(config: config.task, seed: seed).splits(config.sizes)
            for p in s.train + s.validation + s.test { keys[p.prompt] = p.key }
        }
        let policy = ScriptedPolicy(tokenizer: tok, prompts: keys)
        let inTurn = try DemoPipeline(
            config: config,
            hooks: DemoHooks(trainer: RecordingTrainer(log: CallLog()), sampler: policy, evaluator: policy)
        ).run()
        var parallel = config
        parallel.output = dir2
        parallel.parallelSeeds = 3
        let log = CallLog()
        let sideBySide = try DemoPipeline(
            config: parallel, hooks: DemoHooks(trainer: RecordingTrainer(log: log), sampler: policy, evaluator: policy)
        ).run()
        // Every seed trained all six methods, each with a third of the budget's rounds (all three in one round).
        #expect(log.requests.withLock { $0 }.count == 18)
        #expect(log.requests.withLock { $0 }.allSatisfy { $0.threads == 1 })
        let strip = { (e: [Evaluation]) in
            e.map { [$0.method, $0.decoding.label, "\($0.seed)", "\($0.correct)", "\($0.tokensGenerated)"] }
        }
        #expect(strip(inTurn.report.evaluations) == strip(sideBySide.report.evaluations))
        #expect(inTurn.report.valueQuality == sideBySide.report.valueQuality)
        #expect(inTurn.report.samples == sideBySide.report.samples)
        #expect(BudgetPlan(total: 60, seeds: 3, methods: 5, concurrent: 3).perSeed == 60)
        #expect(BudgetPlan(total: 60, seeds: 3, methods: 5, concurrent: 2).perSeed == 30)
    }

    @Test func budgetPlanSharesTheTime() {
        let p = BudgetPlan(total: 900, seeds: 3, methods: 5)
        #expect(p.perSeed == 300 && abs(p.sft - 105) < 1e-9 && abs(p.perMethod - 24) < 1e-9)
        #expect(p.sft + 5 * p.perMethod <= p.perSeed)
    }

    @Test func aSpentBudgetLeavesTheRestForTheNextRun() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = PipelineTests.config(dir)
        config.seeds = [1]
        config.timeBudget = 0.001  // spent before SFT ends: SFT trains (capped), nothing after it does
        _ = try DemoPipeline(config: config).run()
        let tok = try Tokenizer.load(path: dir + "/tokenizer.json")
        var keys: [String: AnswerKey] = [:]
        let splits = try ProblemGenerator(config: config.task, seed: 1).splits(config.sizes)
        for p in splits.train + splits.validation + splits.test { keys[p.prompt] = p.key }
        let policy = ScriptedPolicy(tokenizer: tok, prompts: keys)
        let log = CallLog()
        let events = Events()
        let outcome = try DemoPipeline(
            config: config, hooks: DemoHooks(trainer: RecordingTrainer(log: log), sampler: policy, evaluator: policy)
        )
        .run { e in events.list.withLock { $0.append(e) } }
        #expect(log.requests.withLock { $0 }.map(\.method) == [.sft])
        #expect(outcome.report.evaluations.isEmpty && outcome.report.valueQuality.isEmpty)
        let notes = outcome.report.notes
        #expect(notes.filter { $0.contains("not trained: the time budget ran out") }.count == 5)
        #expect(notes.contains { $0.contains("decodings not run: the time budget ran out") })
        #expect(notes.contains { $0.contains("value metrics not measured") })
        // The stages the budget left out say so, and the run says it is not complete.
        let leftOut = events.stages {
            if case .skipped(let s, _, let status, _) = $0, status == .leftOut { s } else { nil }
        }
        #expect(leftOut == [.train, .evaluate, .values])
        #expect(
            outcome.unfinished.count == 5 + 2 && outcome.unfinished.contains("seed 1: OREO not trained"),
            "\(outcome.unfinished)")

        // With time, the next run in the same directory does the rest, skipping what is done.
        config.timeBudget = 60
        let again = Events()
        let rest = try DemoPipeline(
            config: config, hooks: DemoHooks(trainer: RecordingTrainer(log: log), sampler: policy, evaluator: policy)
        )
        .run { e in again.list.withLock { $0.append(e) } }
        #expect(rest.report.notes.allSatisfy { !$0.contains("time budget") })
        #expect(rest.report.summary("OREO", .beam(width: 4, scorer: "value")) != nil)
        #expect(rest.unfinished.isEmpty)
        let summaries = again.list.withLock { $0 }.compactMap { e -> (DemoStage, String)? in
            if case .finished(let s, _, let summary, _) = e { (s, summary) } else { nil }
        }
        for stage in [DemoStage.ingest, .sample, .ingestSamples] {
            #expect(
                summaries.contains { $0.0 == stage && $0.1.hasPrefix("skipped (done): ") },
                "\(stage.rawValue): \(summaries)")
        }
        #expect(summaries.contains { $0.0 == .train && !$0.1.contains("skipped") })
    }

    /// A trainer whose SFT run was continued and cut again by the budget, as the built-in one reports it.
    struct CutTrainer: DemoTrainer {
        func train(_ r: TrainRequest, progress: @escaping @Sendable (HookProgress) -> Void) throws -> TrainedModel {
            try FileManager.default.createDirectory(atPath: r.output, withIntermediateDirectories: true)
            var m = TrainedModel(
                method: r.method, checkpoint: r.output, hasValueHead: false, seconds: 0, updates: 5, plannedUpdates: 10)
            m.continuedFrom = 3
            return m
        }
    }

    @Test func aContinuedAndCutTrainingRunSaysSo() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = PipelineTests.config(dir)
        config.seeds = [1]
        let events = Events()
        let outcome = try DemoPipeline(config: config, hooks: DemoHooks(trainer: CutTrainer())).run { e in
            events.list.withLock { $0.append(e) }
        }
        let sft = events.list.withLock { $0 }.compactMap { e -> String? in
            if case .finished(.trainSFT, _, let summary, _) = e { summary } else { nil }
        }
        #expect(sft.count == 1 && sft[0].hasPrefix("5 updates in "), "\(sft)")
        #expect(
            sft.first?.contains(" s (continued from step 3; stopped by the time budget after 5 of 10 updates) -> ")
                == true, "\(sft)")
        #expect(
            outcome.unfinished == [
                "seed 1: SFT continued from step 3; stopped by the time budget after 5 of 10 updates"
            ])
    }

    @Test func badSettingsAreRefused() {
        let edits: [(inout DemoConfig) -> Void] = [
            { $0.seeds = [] }, { $0.seeds = [1, 1] }, { $0.sizes.test = 0 }, { $0.samplesPerProblem = 0 },
            { $0.sampledProblems = 100_000 }, { $0.temperature = 0 }, { $0.beamWidths = [1] }, { $0.timeBudget = 0 },
            { $0.task.maxSteps = 0 },
        ]
        for edit in edits {
            var c = DemoConfig(output: "/tmp/unused")
            edit(&c)
            #expect(throws: DemoError.self) { try DemoPipeline(config: c) }
        }
    }
}
