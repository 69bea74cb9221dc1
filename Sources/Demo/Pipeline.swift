import Foundation
import Format
import Checkpoint
import Infer
import Ingest
import Models
import Support
import Rounds
import Synchronization
import Tokenizers
import Train

/// Everything a demo run is configured by.
public struct DemoConfig: Sendable, Equatable {
    /// Output directory (created; a run with the same data settings there is continued).
    public var output: String
    /// Seeds; each gets its own splits, models and evaluations, and the table reports their spread.
    public var seeds: [UInt64] = [1, 2, 3]
    /// Difficulty knobs of the task.
    public var task = ProblemConfig()
    /// Problems per split.
    public var sizes = SplitSizes(train: 5000, validation: 500, test: 500)
    /// Most tokenizer merges to learn over the task's words.
    public var tokenizerMerges = 512
    /// Samples drawn per problem for the offline data (K) and for the held-out value metrics.
    public var samplesPerProblem = 8
    /// Training problems that get samples; nil: all of them.
    public var sampledProblems: Int? = nil
    /// Sampling temperature.
    public var temperature = 1.0
    /// Longest response the sampler and decoders may generate, in tokens.
    public var maxResponseTokens = 128
    /// Beam widths evaluated for every scorer.
    public var beamWidths = [2, 4]
    /// Methods trained from the SFT model (SFT itself is always trained: it is the reference).
    public var methods: [DemoMethod] = DemoMethod.allCases.filter { $0 != .sft }
    /// Wall-clock budget of the whole run in seconds (shared out by `BudgetPlan`).
    public var timeBudget: Double = 900
    /// Threads for ingest and the hooks.
    public var threads = 2
    /// Delete what an earlier run wrote to `output` first instead of continuing it.
    public var overwrite = false
    /// A pretrained model (.gguf or safetensors directory) whose tokenizer replaces the task tokenizer.
    public var pretrainedModel: String? = nil
    /// The split accuracy is measured on: test for the reported results, validation for choosing settings.
    public var evaluationSplit = ProblemSplit.test
    /// Seeds run side by side, each on one thread (nil: up to twice the threads; one for a pretrained model).
    /// Small models gain little from a second BLAS thread, so seeds in parallel use the cores better.
    public var parallelSeeds: Int? = nil

    /// Seeds that run side by side.
    public var concurrentSeeds: Int {
        min(seeds.count, max(1, parallelSeeds ?? (pretrainedModel == nil ? 2 * threads : 1)))
    }

    /// A configuration writing to `output`, with the defaults.
    public init(output: String) { self.output = output }

    /// Throws on settings that cannot run.
    public func validate() throws(DemoError) {
        try task.validate()
        guard !seeds.isEmpty, Set(seeds).count == seeds.count else {
            throw DemoError("seeds must be non-empty and distinct")
        }
        guard sizes.train >= 1, sizes.validation >= 0, sizes.test >= 1 else {
            throw DemoError("need at least one training and one test problem")
        }
        guard tokenizerMerges >= 0, tokenizerMerges <= 100_000 else {
            throw DemoError("tokenizer merges must lie within 0...100000")
        }
        guard samplesPerProblem >= 1, samplesPerProblem <= 1024 else {
            throw DemoError("samples per problem must lie within 1...1024")
        }
        if let n = sampledProblems, n < 1 || n > sizes.train {
            throw DemoError("sampled problems \(n) must lie within 1...\(sizes.train) (the training split)")
        }
        guard temperature > 0, temperature.isFinite else { throw DemoError("temperature must be positive") }
        guard maxResponseTokens >= 1 else { throw DemoError("max response tokens must be positive") }
        guard beamWidths.allSatisfy({ $0 >= 2 && $0 <= 64 }) else {
            throw DemoError("beam widths must lie within 2...64")
        }
        guard timeBudget > 0 else { throw DemoError("the time budget must be positive") }
        guard threads >= 1 else { throw DemoError("threads must be positive") }
        guard evaluationSplit != .train else {
            throw DemoError("accuracy is measured on the validation or the test split, not on training problems")
        }
    }

    /// The settings that decide the data: a run in the same directory must agree on them to be continued.
    public var identity: String {
        let t = task
        let ints = { (v: [Int]) in JSONText.array(v.map(String.init)) }
        return JSONText.object([
            ("min_steps", "\(t.minSteps)"), ("max_steps", "\(t.maxSteps)"),
            ("start_range", ints([t.startRange.lowerBound, t.startRange.upperBound])),
            ("operand_range", ints([t.operandRange.lowerBound, t.operandRange.upperBound])),
            ("operations", JSONText.array(t.operations.map { JSONText.string($0.rawValue) })),
            ("factors", ints(t.factors)), ("multiply_probability", JSONText.number(t.multiplyProbability)),
            ("min_value", "\(t.minValue)"), ("max_value", "\(t.maxValue)"),
            ("style", JSONText.string(t.style.rawValue)),
            ("train", "\(sizes.train)"), ("validation", "\(sizes.validation)"), ("test", "\(sizes.test)"),
            ("tokenizer_merges", "\(tokenizerMerges)"), ("samples_per_problem", "\(samplesPerProblem)"),
            ("sampled_problems", sampledProblems.map(String.init) ?? "null"),
            ("temperature", JSONText.number(temperature)),
            ("max_response_tokens", "\(maxResponseTokens)"),
            ("tokenizer_from", pretrainedModel.map(JSONText.string) ?? "null"),
        ])
    }

    /// The settings as report rows.
    public var settings: [(key: String, value: String)] {
        let t = task
        return [
            ("seeds", seeds.map(String.init).joined(separator: ", ")),
            ("problems (train / validation / test)", "\(sizes.train) / \(sizes.validation) / \(sizes.test)"),
            ("steps per problem", "\(t.minSteps)-\(t.maxSteps)"),
            (
                "start value, +/- operand",
                "\(t.startRange.lowerBound)-\(t.startRange.upperBound), \(t.operandRange.lowerBound)-\(t.operandRange.upperBound)"
            ),
            (
                "multiplication",
                "x" + t.factors.map(String.init).joined(separator: "/x")
                    + " with probability \(JSONText.number(t.multiplyProbability))"
            ),
            ("operations", t.operations.map(\.rawValue).joined(separator: " ")),
            ("values", "\(t.minValue)-\(t.maxValue)"), ("step style", t.style.rawValue),
            ("samples per problem", "\(samplesPerProblem) at temperature \(JSONText.number(temperature))"),
            ("beam widths", beamWidths.map(String.init).joined(separator: ", ")),
            ("accuracy measured on", "the \(evaluationSplit.rawValue) split"),
            ("methods", (["SFT"] + methods.map(\.rawValue)).joined(separator: ", ")),
            ("time budget", "\(JSONText.number(timeBudget)) s on \(threads) thread(s)"),
        ]
    }
}

/// How the time budget caps training: seeds running side by side share the wall clock, so each of the
/// `seeds / concurrent` rounds gets an equal part; of a seed's part SFT may use `sftShare`, the other
/// methods `methodsShare` together (each what is left of it over the methods still to train, so time a
/// cheap method leaves goes to the dearer ones after it), leaving the rest for sampling, evaluation and the report. The
/// demo's step counts are chosen to stay well inside these caps; a run that reaches one stops, is reported
/// as stopped, and continues when the demo is run again. Decodings and metrics still to do when a seed's
/// part has passed are left for the next run too, so the budget bounds the whole run.
public struct BudgetPlan: Sendable, Equatable {
    /// Total seconds.
    public var total: Double
    /// Seeds sharing it.
    public var seeds: Int
    /// Methods trained after SFT per seed.
    public var methods: Int
    /// Share of a seed's time for SFT.
    public var sftShare = 0.35
    /// Share of a seed's time for all other methods together.
    public var methodsShare = 0.40

    /// Seeds trained side by side.
    public var concurrent = 1

    /// A plan.
    public init(total: Double, seeds: Int, methods: Int, concurrent: Int = 1) {
        self.total = total
        self.seeds = seeds
        self.methods = methods
        self.concurrent = max(1, concurrent)
    }

    /// Seconds of wall clock for one seed.
    public var perSeed: Double {
        let rounds = (max(seeds, 1) + concurrent - 1) / concurrent
        return total / Double(rounds)
    }
    /// Seconds for SFT.
    public var sft: Double { perSeed * sftShare }
    /// Seconds for each other method.
    public var perMethod: Double { allMethods / Double(max(methods, 1)) }
    /// Seconds for all other methods together.
    public var allMethods: Double { perSeed * methodsShare }
}

/// The stages of `oreo demo`, in order.
public enum DemoStage: String, Sendable, CaseIterable {
    /// Generate the seed's train, validation and test problems.
    case generate
    /// Learn and write the task tokenizer.json (once per run).
    case tokenizer
    /// Write worked solutions and prompt files as JSONL.
    case write
    /// Ingest the worked solutions into shards.
    case ingest
    /// Train the SFT model from scratch (the reference and every method's start).
    case trainSFT = "train-sft"
    /// Sample K solutions per problem from the SFT model and label them with the verifier.
    case sample
    /// Ingest the labeled samples into shards.
    case ingestSamples = "ingest-samples"
    /// Train every other method from the SFT model on the samples.
    case train
    /// Greedy and beam-search accuracy on the test problems.
    case evaluate
    /// The value networks' quality on held-out samples.
    case values
    /// Write the results table and plots.
    case report

    /// One line on what the stage does (for --help and logs).
    public var summary: String {
        switch self {
        case .generate: "the seed's train / validation / test problems (disjoint)"
        case .tokenizer: "the task tokenizer.json: bytes + merges over words"
        case .write: "worked solutions and prompt files as JSONL"
        case .ingest: "worked solutions into shards (Ingest, in-process)"
        case .trainSFT: "SFT model from scratch on the worked solutions"
        case .sample: "K samples per training problem from SFT, verified"
        case .ingestSamples: "the labeled samples into shards (ids verbatim)"
        case .train: "RFT, DPO, KTO, OREO, DQO from SFT on the samples"
        case .evaluate: "greedy and beam-search test accuracy per model"
        case .values: "value nets on held-out samples: AUC, value drop"
        case .report: "results.md, results.json, search-*.svg"
        }
    }
}

/// What the pipeline reports as it goes.
public enum DemoEvent: Sendable {
    /// A stage began (seed nil: a stage of the whole run).
    case started(DemoStage, seed: UInt64?)
    /// Progress inside a stage.
    case progress(DemoStage, seed: UInt64?, HookProgress)
    /// A stage ended with a one-line summary.
    case finished(DemoStage, seed: UInt64?, summary: String, seconds: Double)
    /// A stage did not run: not needed or not built (`.notRun`), left out by the time budget (`.leftOut`).
    case skipped(DemoStage, seed: UInt64?, status: StageStatus, reason: String)
}

/// What one seed produced.
public struct SeedArtifacts: Sendable {
    /// The seed.
    public var seed: UInt64
    /// Its directory.
    public var directory: String
    /// The JSONL files.
    public var files: TaskFiles.Paths
    /// The worked solutions' datasets (train, validation).
    public var sftData: String, sftValidationData: String
    /// The labeled samples' dataset, when sampling ran.
    public var samplesData: String?
    /// Trained models by method.
    public var models: [DemoMethod: TrainedModel] = [:]
}

/// What a run produced.
public struct DemoOutcome: Sendable {
    /// The results (only what was measured).
    public var report: ResultsReport
    /// Files the report was written to.
    public var reportPaths: [String]
    /// The task tokenizer.json.
    public var tokenizer: String
    /// Per seed.
    public var seeds: [SeedArtifacts]
    /// What the time budget cut or left out (empty: the run is complete); the same command continues it.
    public var unfinished: [String] = []
}

/// The demo from problems to report; stages whose hook is missing are skipped and listed in the report.
public struct DemoPipeline: Sendable {
    /// The run's settings.
    public let config: DemoConfig
    /// Training, sampling and evaluation, where built.
    public let hooks: DemoHooks

    /// A pipeline (the configuration is validated).
    public init(config: DemoConfig, hooks: DemoHooks = DemoHooks()) throws(DemoError) {
        try config.validate()
        self.config = config
        self.hooks = hooks
    }

    /// Seed of the generator whose problems the tokenizer is learned from: one tokenizer serves every seed.
    public static let tokenizerCorpusSeed: UInt64 = 0x70C
    /// Problems in the tokenizer's corpus.
    public static let tokenizerCorpusProblems = 2000

    static func elapsed(since t: Date) -> Double { Date().timeIntervalSince(t) }

    /// Runs every stage; `events` sees each start, progress report, finish and skip. Stages whose inputs
    /// are unchanged since an earlier run in the same directory are reused; the others are redone.
    public func run(events: @escaping @Sendable (DemoEvent) -> Void = { _ in }) throws -> DemoOutcome {
        let out = config.output
        try prepareOutput()
        var notes: [String] = []

        events(.started(.tokenizer, seed: nil))
        let t0 = Date()
        let corpusGenerator = try ProblemGenerator(config: config.task, seed: DemoPipeline.tokenizerCorpusSeed)
        let corpus = try corpusGenerator.problems(.train, count: DemoPipeline.tokenizerCorpusProblems).map {
            $0.prompt + $0.solution
        }
        let tokenizerPath: String, tokenizerSummary: String
        if let model = config.pretrainedModel {
            tokenizerPath = try DemoPipeline.writeModelTokenizer(model, directory: out)
            tokenizerSummary = "from \(model)"
        } else {
            let taskTokenizer = TaskTokenizer.learn(from: corpus, maxMerges: config.tokenizerMerges)
            tokenizerPath = try taskTokenizer.write(directory: out)
            tokenizerSummary = "\(taskTokenizer.mergedTokens.count) merged words"
        }
        let tokenizer: Tokenizer
        do { tokenizer = try Tokenizer.load(path: tokenizerPath) } catch {
            throw DemoError("\(tokenizerPath): \(error)")
        }
        events(
            .finished(
                .tokenizer, seed: nil,
                summary: "\(tokenizer.vocabSize) tokens (\(tokenizerSummary)) at \(tokenizerPath)",
                seconds: DemoPipeline.elapsed(since: t0)))

        let deadline = Date(timeIntervalSinceNow: config.timeBudget)
        let results = try runSeeds(
            tokenizer: tokenizer, tokenizerPath: tokenizerPath, deadline: deadline, events: events)

        if hooks.trainer == nil {
            notes.append("Training did not run: \(DemoPipeline.missing(.trainSFT)). No accuracy is reported.")
        } else if hooks.sampler == nil {
            notes.append("Sampling did not run: \(DemoPipeline.missing(.sample)); only SFT was trained.")
        }
        if hooks.evaluator == nil { notes.append("Evaluation did not run: \(DemoPipeline.missing(.evaluate)).") }
        notes += results.notes
        events(.started(.report, seed: nil))
        let t1 = Date()
        let settings =
            config.settings + (hooks.trainer?.settings ?? []) + (hooks.evaluator?.settings ?? [])
            + [("tokenizer", "\(tokenizer.vocabSize) tokens")]
        let report = ResultsReport(
            title: "oreo demo: SFT, RFT, DPO, KTO, OREO and DQO on generated multi-step word problems",
            settings: settings, evaluations: results.evaluations, valueQuality: results.quality,
            samples: results.samples, notes: notes, split: config.evaluationSplit.rawValue)
        let paths = try report.write(directory: out)
        events(
            .finished(
                .report, seed: nil, summary: paths.joined(separator: ", "), seconds: DemoPipeline.elapsed(since: t1)))
        return DemoOutcome(
            report: report, reportPaths: paths, tokenizer: tokenizerPath, seeds: results.artifacts,
            unfinished: results.unfinished)
    }

    /// What the seeds measured, gathered for the report.
    struct SeedResults: Sendable {
        var evaluations: [Evaluation] = []
        var quality: [ValueQuality] = []
        var samples: [SampleStatistics] = []
        var artifacts: [SeedArtifacts] = []
        var notes: [String] = []
        /// What the time budget cut or left out.
        var unfinished: [String] = []

        mutating func append(_ o: SeedResults) {
            evaluations += o.evaluations
            quality += o.quality
            samples += o.samples
            artifacts += o.artifacts
            notes += o.notes
            unfinished += o.unfinished
        }
    }

    /// Every seed: one after another on all threads, or `concurrentSeeds` side by side on one thread each
    /// (BLAS and the small-batch kernel set to one thread meanwhile). Results are gathered in seed order.
    func runSeeds(
        tokenizer: Tokenizer, tokenizerPath: String, deadline: Date, events: @escaping @Sendable (DemoEvent) -> Void
    ) throws -> SeedResults {
        let seeds = config.seeds, concurrent = config.concurrentSeeds
        var all = SeedResults()
        guard concurrent > 1 else {
            for seed in seeds {
                var r = SeedResults()
                try runSeed(
                    seed, threads: config.threads, tokenizer: tokenizer, tokenizerPath: tokenizerPath,
                    deadline: deadline, into: &r, events: events)
                all.append(r)
            }
            return all
        }
        return try BLASRuntime.singleThreaded {
            let next = Mutex(0)
            let done = Mutex([SeedResults?](repeating: nil, count: seeds.count))
            let failure = Mutex<DemoError?>(nil)
            let finished = DispatchSemaphore(value: 0)
            for _ in 0..<concurrent {
                // Threads of their own: a dispatch queue would run no more CPU-bound blocks at once than there are cores.
                let worker = Thread {
                    while true {
                        let i = next.withLock { (n: inout Int) -> Int in
                            defer { n += 1 }
                            return n
                        }
                        guard i < seeds.count, failure.withLock({ $0 == nil }) else { break }
                        var r = SeedResults()
                        do {
                            try self.runSeed(
                                seeds[i], threads: 1, tokenizer: tokenizer, tokenizerPath: tokenizerPath,
                                deadline: deadline, into: &r, events: events)
                            done.withLock { $0[i] = r }
                        } catch {
                            let e = error as? DemoError ?? DemoError("seed \(seeds[i]): \(error)")
                            failure.withLock { if $0 == nil { $0 = e } }
                        }
                    }
                    finished.signal()
                }
                worker.stackSize = 16 << 20
                worker.start()
            }
            for _ in 0..<concurrent { finished.wait() }
            if let e = failure.withLock({ $0 }) { throw e }
            for r in done.withLock({ $0 }) { if let r { all.append(r) } }
            return all
        }
    }

    /// Every stage of one seed, on `threads` threads (`SeedRun`, one function per stage).
    func runSeed(
        _ seed: UInt64, threads: Int, tokenizer: Tokenizer, tokenizerPath: String, deadline: Date,
        into results: inout SeedResults,
        events: @escaping @Sendable (DemoEvent) -> Void
    ) throws {
        try SeedRun(
            pipeline: self, seed: seed, threads: threads, tokenizer: tokenizer, tokenizerPath: tokenizerPath,
            deadline: deadline,
            events: events
        ).run(into: &results)
    }

    /// Writes a pretrained model's tokenizer as `directory`/tokenizer.json (with tokenizer_config.json):
    /// copied from a safetensors directory, rebuilt from a GGUF file's metadata. Returns the path.
    public static func writeModelTokenizer(_ model: String, directory: String) throws -> String {
        let target = directory + "/tokenizer.json"
        // demo.json pins the model the tokenizer came from: an existing copy is that tokenizer.
        if FileManager.default.fileExists(atPath: target) { return target }
        var files: [(String, [UInt8])] = []
        if GGUFFile.isGGUF(path: model) {
            do {
                let (json, config) = try GGUFTokenizer.files(try GGUFFile(path: model))
                files = [("tokenizer.json", Array(json)), ("tokenizer_config.json", Array(config))]
            } catch { throw DemoError("\(model): cannot read its tokenizer: \(error)") }
        } else {
            for name in ["tokenizer.json", "tokenizer_config.json"] {
                guard let data = FileManager.default.contents(atPath: model + "/" + name) else {
                    if name == "tokenizer.json" {
                        throw DemoError(
                            "\(model)/tokenizer.json: cannot read (a pretrained model directory needs its tokenizer)")
                    }
                    continue
                }
                files.append((name, Array(data)))
            }
        }
        for (name, bytes) in files { try writeFileAtomically(bytes, to: directory + "/" + name) }
        return target
    }

    /// Why `method` cannot train on samples with these counts (nil: it can).
    static func untrainable(_ method: DemoMethod, _ c: SampleCounts) -> String? {
        switch method {
        case .rft where c.correct == 0: "no sample is correct (rejection sampling trains on correct samples only)"
        case .dpo where c.mixed == 0: "no problem has both a correct and a wrong sample to pair"
        default: nil
        }
    }

    /// Why a stage without its hook did not run.
    static func missing(_ stage: DemoStage) -> String {
        switch stage {
        case .trainSFT, .train: "training is not built into this oreo yet (it plugs in as a DemoTrainer)"
        case .sample, .ingestSamples: "sampling is not built into this oreo yet (it plugs in as a DemoSampler)"
        default: "evaluation is not built into this oreo yet (it plugs in as a DemoEvaluator)"
        }
    }

    /// Creates the output directory; refuses one holding a run with other data settings unless `overwrite`,
    /// which first deletes only what a demo run writes.
    func prepareOutput() throws {
        let out = config.output
        try makeDirectory(out)
        let marker = out + "/demo.json"
        if config.overwrite {
            let items = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            for f in items
            where f.hasPrefix("seed-")
                || [
                    "demo.json", "tokenizer.json", "tokenizer_config.json", "results.md",
                    "results.json", "search-tokens.svg", "search-candidates.svg",
                ].contains(f)
            {
                try FileManager.default.removeItem(atPath: out + "/" + f)
            }
        } else if let old = FileManager.default.contents(atPath: marker),
            String(decoding: old, as: UTF8.self) != config.identity + "\n"
        {
            throw DemoError(
                "\(marker): an earlier demo run with other data settings is in \(out); pass --overwrite or choose another --out"
            )
        }
        try writeFileAtomically(Array((config.identity + "\n").utf8), to: marker)
    }

    func makeDirectory(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw DemoError("\(path): cannot create the directory: \(error.localizedDescription)")
        }
    }

    /// Verdicts on sampled responses (one array per prompt, in prompt order).
    func label(_ sampled: [[SampledResponse]], _ prompts: [PromptRecord], _ verifier: TaskVerifier) throws
        -> [SampleRecord]
    {
        guard sampled.count == prompts.count else {
            throw DemoError("the sampler returned samples for \(sampled.count) prompts, not \(prompts.count)")
        }
        var out: [SampleRecord] = []
        for (p, responses) in zip(prompts, sampled) {
            for (k, r) in responses.enumerated() {
                let (check, finished) = try verifier.check(p.key, responseIds: r.responseIds)
                out.append(
                    SampleRecord(
                        problemId: p.id, index: k, promptIds: r.promptIds, responseIds: r.responseIds,
                        check: check, finished: finished))
            }
        }
        return out
    }

    /// One line on a set of labeled samples: the positive rate and how many problems have both outcomes.
    static func describe(_ records: [SampleRecord]) -> String {
        var byProblem: [String: (right: Int, all: Int)] = [:]
        for r in records {
            byProblem[r.problemId, default: (0, 0)].all += 1
            if r.reward > 0 { byProblem[r.problemId]!.right += 1 }
        }
        let right = records.filter { $0.reward > 0 }.count
        let mixed = byProblem.values.filter { $0.right > 0 && $0.right < $0.all }.count
        let none = byProblem.values.filter { $0.right == 0 }.count
        let n = Double(max(byProblem.count, 1))
        return
            "\(records.count) samples, \(ResultsReport.percent(Double(right) / Double(max(records.count, 1))))% correct; "
            + "\(ResultsReport.percent(Double(mixed) / n))% of problems mixed, \(ResultsReport.percent(Double(none) / n))% with none correct"
    }

    /// An evaluation from decoded answers, each checked by the verifier.
    static func score(
        _ method: DemoMethod, _ d: Decoding, _ seed: UInt64, _ answers: [DecodedAnswer], _ prompts: [PromptRecord],
        _ verifier: TaskVerifier, seconds: Double
    ) throws -> Evaluation {
        guard answers.count == prompts.count else {
            throw DemoError(
                "the evaluator answered \(answers.count) of \(prompts.count) prompts (\(method.rawValue), \(d.label))")
        }
        var correct = 0
        for (p, a) in zip(prompts, answers) {
            let (check, finished) = try verifier.check(p.key, responseIds: a.responseIds)
            if finished && check.correct { correct += 1 }
        }
        return Evaluation(
            method: method.rawValue, decoding: d, seed: seed, correct: correct, total: prompts.count,
            tokensGenerated: answers.reduce(0) { $0 + $1.tokensGenerated },
            candidatesScored: answers.reduce(0) { $0 + $1.candidatesScored }, seconds: seconds)
    }

    /// Verdicts on samples read back from an earlier run (each re-checked; the prompts must match by id).
    func relabel(
        _ stored: [(problemId: String, index: Int, promptIds: [UInt32], responseIds: [UInt32])],
        _ prompts: [PromptRecord],
        _ verifier: TaskVerifier
    ) throws -> [SampleRecord] {
        let keys = Dictionary(prompts.map { ($0.id, $0.key) }, uniquingKeysWith: { a, _ in a })
        return try stored.map { s in
            guard let key = keys[s.problemId] else {
                throw DemoError("a stored sample names problem \(s.problemId), which this run does not have")
            }
            let (check, finished) = try verifier.check(key, responseIds: s.responseIds)
            return SampleRecord(
                problemId: s.problemId, index: s.index, promptIds: s.promptIds, responseIds: s.responseIds,
                check: check, finished: finished)
        }
    }

    /// A scorer's quality on labeled held-out samples: the value network's (or the policy log-prob's)
    /// within-problem AUC, its change at the first wrong step, and its prompt score against success rates.
    func scoreQuality(
        _ model: TrainedModel, scorer: String, _ samples: [SampleRecord], _ evaluator: any DemoEvaluator,
        _ verifier: TaskVerifier, seed: UInt64, threads: Int,
        progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> ValueQuality {
        let ends = samples.map { verifier.lineEnds($0.responseIds) }
        let values = try evaluator.scores(
            model, scorer: scorer,
            samples: samples.map { SampledResponse(promptIds: $0.promptIds, responseIds: $0.responseIds) },
            stepEnds: ends, threads: threads, progress: progress)
        guard values.count == samples.count, zip(values, ends).allSatisfy({ $0.count == $1.count + 1 }) else {
            throw DemoError(
                "the evaluator's \(scorer) scores do not match the samples' steps (\(model.method.rawValue))")
        }
        var scored: [ScoredSample] = [], traces: [StepValues] = []
        var prompt: [String: Double] = [:], success: [String: (right: Int, all: Int)] = [:]
        for (s, v) in zip(samples, values) {
            scored.append(ScoredSample(problem: s.problemId, score: v.last!, correct: s.reward > 0))
            traces.append(StepValues(values: v, firstWrongStep: s.check.firstWrongStep))
            prompt[s.problemId] = v[0]
            success[s.problemId, default: (0, 0)].all += 1
            if s.reward > 0 { success[s.problemId]!.right += 1 }
        }
        let (r, n) = Metrics.promptValueCorrelation(
            values: prompt, successRate: success.mapValues { Double($0.right) / Double($0.all) })
        return ValueQuality(
            method: model.method.rawValue, scorer: scorer, seed: seed, auc: Metrics.withinProblemAUC(scored),
            stepChange: Metrics.stepValueChange(traces), promptCorrelation: r, correlationProblems: n)
    }
}
