import Foundation
import Format
import Ingest
import Rounds
import Support
import Tokenizers

/// One seed's stages, one function each, in order: generate, write, ingest, train-sft, sample,
/// ingest-samples, train, evaluate, values. Stages record their inputs in SEED/stages (Rounds' stage
/// runner), so a rerun skips what finished with the same inputs and continues what was cut.
struct SeedRun {
    /// The pipeline whose seed this is.
    let pipeline: DemoPipeline
    /// The seed.
    let seed: UInt64
    /// Threads of this seed.
    let threads: Int
    /// The tokenizer and its file.
    let tokenizer: Tokenizer, tokenizerPath: String
    /// The time shares.
    let plan: BudgetPlan
    /// When the seed's part of the budget ends.
    let deadline: Date
    /// The seed's directory.
    let dir: String
    /// The stage records.
    let records: StageRunner
    /// Where events go.
    let events: @Sendable (DemoEvent) -> Void
    let verifier: TaskVerifier

    /// Why a stage or part of one did not run.
    static let outOfTime = "the time budget ran out; run `oreo demo` again to continue"

    var config: DemoConfig { pipeline.config }

    /// Seconds left of the seed's part of the budget.
    var remaining: Double { deadline.timeIntervalSinceNow }

    /// The seed's stages (its directories created); its part of the budget ends at the run's `deadline` or
    /// its own share after now, whichever comes first.
    init(
        pipeline: DemoPipeline, seed: UInt64, threads: Int, tokenizer: Tokenizer, tokenizerPath: String, deadline: Date,
        events: @escaping @Sendable (DemoEvent) -> Void
    ) throws {
        let c = pipeline.config
        self.pipeline = pipeline
        self.seed = seed
        self.threads = threads
        self.tokenizer = tokenizer
        self.tokenizerPath = tokenizerPath
        self.events = events
        plan = BudgetPlan(
            total: c.timeBudget, seeds: c.seeds.count, methods: c.methods.count, concurrent: c.concurrentSeeds)
        self.deadline = min(deadline, Date(timeIntervalSinceNow: plan.perSeed))
        dir = c.output + "/seed-\(seed)"
        records = StageRunner(directory: dir + "/stages")
        verifier = TaskVerifier(tokenizer: tokenizer)
        for sub in ["/data", "/shards", "/eval", "/stages"] { try pipeline.makeDirectory(dir + sub) }
    }

    func finished(_ stage: DemoStage, _ summary: String, since t0: Date) {
        events(.finished(stage, seed: seed, summary: summary, seconds: DemoPipeline.elapsed(since: t0)))
    }

    /// Every stage of the seed; training runs are capped by the seed's part of the budget, and the decodings
    /// and metrics not yet done when it has passed are left for the next run.
    func run(into results: inout DemoPipeline.SeedResults) throws {
        let splits = try generate()
        let files = try write(splits)
        var artifacts = try ingest(files)
        defer { results.artifacts.append(artifacts) }
        guard let trainer = pipeline.hooks.trainer else {
            for stage in [DemoStage.trainSFT, .sample, .ingestSamples, .train, .evaluate, .values] {
                events(.skipped(stage, seed: seed, status: .notRun, reason: DemoPipeline.missing(stage)))
            }
            return
        }
        let sft = try trainSFT(trainer, &artifacts, &results)
        var heldOut: [SampleRecord] = []
        var trainCounts: SampleCounts?
        if let sampler = pipeline.hooks.sampler {
            let (train, validation, trainFile, inputs) = try sample(sampler, from: sft, splits, &results)
            heldOut = validation
            trainCounts = SampleCounts(train)
            artifacts.samplesData = try ingestSamples(trainFile, inputs)
        } else {
            events(.skipped(.sample, seed: seed, status: .notRun, reason: DemoPipeline.missing(.sample)))
            events(.skipped(.ingestSamples, seed: seed, status: .notRun, reason: DemoPipeline.missing(.sample)))
        }
        if let samples = artifacts.samplesData {
            try trainMethods(trainer, from: sft, on: samples, counts: trainCounts, &artifacts, &results)
        } else {
            events(.skipped(.train, seed: seed, status: .notRun, reason: "needs the labeled samples"))
        }
        guard let evaluator = pipeline.hooks.evaluator else {
            events(.skipped(.evaluate, seed: seed, status: .notRun, reason: DemoPipeline.missing(.evaluate)))
            events(.skipped(.values, seed: seed, status: .notRun, reason: DemoPipeline.missing(.evaluate)))
            return
        }
        let models = ([DemoMethod.sft] + config.methods).compactMap { artifacts.models[$0] }
        try evaluate(evaluator, models, splits, &results)
        try values(evaluator, models, heldOut, &results)
    }

    /// The seed's train, validation and test problems.
    func generate() throws -> ProblemSplits {
        events(.started(.generate, seed: seed))
        let t0 = Date()
        let splits = try ProblemGenerator(config: config.task, seed: seed).splits(config.sizes)
        finished(
            .generate,
            "\(splits.train.count) train, \(splits.validation.count) validation, \(splits.test.count) test problems",
            since: t0)
        return splits
    }

    /// Worked solutions and prompt files as JSONL.
    func write(_ splits: ProblemSplits) throws -> TaskFiles.Paths {
        events(.started(.write, seed: seed))
        let t0 = Date()
        let files = try TaskFiles.writeSplits(splits, directory: dir + "/data")
        finished(.write, "JSONL in \(dir)/data", since: t0)
        return files
    }

    /// The worked solutions into shards (train and validation).
    func ingest(_ files: TaskFiles.Paths) throws -> SeedArtifacts {
        events(.started(.ingest, seed: seed))
        let t0 = Date()
        let artifacts = SeedArtifacts(
            seed: seed, directory: dir, files: files, sftData: dir + "/shards/sft-train",
            sftValidationData: dir + "/shards/sft-validation")
        var summaries: [String] = []
        var reused = 0
        for (input, dataset) in [
            (files.sftTrain, artifacts.sftData), (files.sftValidation, artifacts.sftValidationData),
        ] {
            let (m, wasThere) = try ingestDataset(input, into: dataset, options: IngestOptions(), stage: .ingest)
            summaries.append("\(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens")
            if wasThere { reused += 1 }
        }
        finished(
            .ingest, (reused == 2 ? StageStatus.done : .ran).line("train \(summaries[0]); validation \(summaries[1])"),
            since: t0)
        return artifacts
    }

    /// The SFT model from scratch: the reference and every method's starting point.
    func trainSFT(
        _ trainer: any DemoTrainer, _ artifacts: inout SeedArtifacts, _ results: inout DemoPipeline.SeedResults
    ) throws -> TrainedModel {
        events(.started(.trainSFT, seed: seed))
        let t0 = Date()
        let sft = try trainer.train(
            TrainRequest(
                method: .sft, data: artifacts.sftData, validation: artifacts.sftValidationData,
                initialization: nil, reference: nil, output: dir + "/models/sft",
                tokenizer: tokenizerPath, seed: seed, timeBudget: max(1, min(plan.sft, remaining)),
                threads: threads)
        ) {
            events(.progress(.trainSFT, seed: seed, $0))
        }
        artifacts.models[.sft] = sft
        results.notes += sft.notes.map { "seed \(seed): \($0)" }
        if sft.status.unfinished { results.unfinished.append("seed \(seed): SFT \(sft.status.remark)") }
        let summary =
            sft.reused ? "\(sft.updates) updates" : "\(sft.updates) updates in \(ResultsReport.fixed(sft.seconds, 1)) s"
        finished(.trainSFT, sft.status.line(summary) + " -> \(sft.checkpoint)", since: t0)
        return sft
    }

    /// K samples of the SFT policy per problem, labeled by the verifier: offline data on training problems,
    /// held-out samples (validation problems) for the value metrics. Returns both and the training file.
    func sample(
        _ sampler: any DemoSampler, from sft: TrainedModel, _ splits: ProblemSplits,
        _ results: inout DemoPipeline.SeedResults
    ) throws -> (train: [SampleRecord], heldOut: [SampleRecord], file: String, inputs: InputFingerprint) {
        events(.started(.sample, seed: seed))
        let t0 = Date()
        let trainProblems = Array(splits.train.prefix(config.sampledProblems ?? splits.train.count))
        let trainPrompts = trainProblems.map(PromptRecord.init),
            validationPrompts = splits.validation.map(PromptRecord.init)
        let trainFile = dir + "/data/samples-train.jsonl", validationFile = dir + "/data/samples-validation.jsonl"
        let inputs = sampleInputs(sft, trainPrompts, validationPrompts)
        typealias Labeled = (train: [SampleRecord], heldOut: [SampleRecord])
        let sampled: (value: Labeled, status: StageStatus) = try records.run(
            "sample", inputs: inputs,
            reuse: { _ -> Labeled? in
                (
                    try pipeline.relabel(TaskFiles.readSamples(trainFile), trainPrompts, verifier),
                    try pipeline.relabel(TaskFiles.readSamples(validationFile), validationPrompts, verifier)
                )
            }
        ) { _ -> Labeled in
            let n = Double(trainPrompts.count + validationPrompts.count) * Double(config.samplesPerProblem)
            let trainShare = Double(trainPrompts.count * config.samplesPerProblem)
            let train = try pipeline.label(
                sampler.sample(
                    sft, prompts: trainPrompts, count: config.samplesPerProblem, temperature: config.temperature,
                    maxTokens: config.maxResponseTokens, seed: seed, threads: threads
                ) {
                    events(.progress(.sample, seed: seed, HookProgress(done: $0.done, total: n, unit: $0.unit)))
                }, trainPrompts, verifier)
            let heldOut = try pipeline.label(
                sampler.sample(
                    sft, prompts: validationPrompts, count: config.samplesPerProblem,
                    temperature: config.temperature, maxTokens: config.maxResponseTokens, seed: seed ^ 0x5EED,
                    threads: threads
                ) {
                    events(
                        .progress(
                            .sample, seed: seed, HookProgress(done: trainShare + $0.done, total: n, unit: $0.unit)))
                }, validationPrompts, verifier)
            try TaskFiles.write(train.map(TaskFiles.sampleLine), to: trainFile)
            try TaskFiles.write(heldOut.map(TaskFiles.sampleLine), to: validationFile)
            return (train, heldOut)
        }
        let (train, heldOut) = sampled.value
        results.samples.append(SampleStatistics(seed: seed, train: train, validation: heldOut))
        finished(.sample, sampled.status.line(DemoPipeline.describe(train)), since: t0)
        return (train, heldOut, trainFile, inputs)
    }

    /// What the samples depend on: the SFT weights, the sampling settings and the prompts.
    func sampleInputs(_ sft: TrainedModel, _ train: [PromptRecord], _ validation: [PromptRecord]) -> InputFingerprint {
        InputFingerprint([
            ("model", sft.identity), ("samples", "\(config.samplesPerProblem)"),
            ("temperature", JSONText.number(config.temperature)),
            ("max_tokens", "\(config.maxResponseTokens)"), ("seed", "\(seed)"),
            ("train", InputFingerprint.texts(train.map(\.prompt))),
            ("validation", InputFingerprint.texts(validation.map(\.prompt))),
        ])
    }

    /// The labeled training samples into shards, ids verbatim (no EOS added); `inputs` are the sample
    /// stage's (what the samples depend on), as in the records of runs before.
    func ingestSamples(_ trainFile: String, _ inputs: InputFingerprint) throws -> String {
        events(.started(.ingestSamples, seed: seed))
        let t0 = Date()
        var options = IngestOptions()
        options.eos = .never
        let samplesData = dir + "/shards/samples"
        let (m, status): (Manifest, StageStatus) = try records.run(
            "ingest-samples", inputs: inputs,
            reuse: { _ -> Manifest? in
                let m = try Manifest.read(directory: samplesData)
                return m.complete ? m : nil
            }
        ) { start -> Manifest in
            if start != .continuing { try? FileManager.default.removeItem(atPath: samplesData) }
            return try ingestDataset(trainFile, into: samplesData, options: options, stage: .ingestSamples).manifest
        }
        finished(
            .ingestSamples, status.line("\(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens"), since: t0)
        return samplesData
    }

    /// Every other method from the SFT model on the samples, each within what is left of the methods' share.
    func trainMethods(
        _ trainer: any DemoTrainer, from sft: TrainedModel, on samples: String, counts: SampleCounts?,
        _ artifacts: inout SeedArtifacts, _ results: inout DemoPipeline.SeedResults
    ) throws {
        events(.started(.train, seed: seed))
        let t0 = Date()
        let methodsEnd = Date(timeIntervalSinceNow: plan.allMethods)
        var leftOut: [DemoMethod] = []
        for (k, method) in config.methods.enumerated() {
            if let c = counts, let why = DemoPipeline.untrainable(method, c) {
                results.notes.append("seed \(seed): \(method.rawValue) not trained: \(why)")
                continue
            }
            let share = min(methodsEnd.timeIntervalSinceNow / Double(config.methods.count - k), remaining)
            guard share > 0 else {
                results.notes.append("seed \(seed): \(method.rawValue) not trained: \(SeedRun.outOfTime)")
                results.unfinished.append("seed \(seed): \(method.rawValue) not trained")
                leftOut.append(method)
                continue
            }
            let m = try trainer.train(
                TrainRequest(
                    method: method, data: samples, validation: nil, initialization: sft.checkpoint,
                    reference: sft.checkpoint, output: dir + "/models/\(method.rawValue.lowercased())",
                    tokenizer: tokenizerPath, seed: seed, timeBudget: share, threads: threads)
            ) {
                events(
                    .progress(
                        .train, seed: seed,
                        HookProgress(done: $0.done, total: $0.total, unit: "\(method.rawValue) \($0.unit)")))
            }
            artifacts.models[method] = m
            results.notes += m.notes.map { "seed \(seed): \($0)" }
            if m.status.unfinished { results.unfinished.append("seed \(seed): \(method.rawValue) \(m.status.remark)") }
        }
        let trained = config.methods.compactMap { artifacts.models[$0] }
        if trained.isEmpty, !leftOut.isEmpty {
            events(.skipped(.train, seed: seed, status: .leftOut, reason: SeedRun.outOfTime))
            return
        }
        let parts = config.methods.map { m -> String in
            if leftOut.contains(m) { return "\(m.rawValue) skipped (budget)" }
            guard let model = artifacts.models[m] else { return "\(m.rawValue) not trained" }
            if model.reused { return "\(m.rawValue) \(model.updates) updates (reused)" }
            let remark = model.status.remark
            return "\(m.rawValue) \(model.updates) updates" + (remark.isEmpty ? "" : " (\(remark))")
        }
        let status: StageStatus = !trained.isEmpty && trained.allSatisfy(\.reused) && leftOut.isEmpty ? .done : .ran
        finished(.train, status.line(parts.joined(separator: ", ")), since: t0)
    }

    /// Greedy and beam-search accuracy of every model on the evaluation split, each decoding a stage of its
    /// own: every greedy decoding first, then the searches from the narrowest, so a budget that runs out
    /// costs the widest.
    func evaluate(
        _ evaluator: any DemoEvaluator, _ models: [TrainedModel], _ splits: ProblemSplits,
        _ results: inout DemoPipeline.SeedResults
    ) throws {
        events(.started(.evaluate, seed: seed))
        let t0 = Date()
        let split = config.evaluationSplit.rawValue
        let test = splits[config.evaluationSplit].map(PromptRecord.init)
        let testDigest = InputFingerprint.texts(test.map(\.prompt))
        var reused = 0, count = 0, leftOut = 0
        var queue: [(model: TrainedModel, decoding: Decoding)] = models.map { ($0, Decoding.greedy) }
        for width in config.beamWidths.sorted() {
            for model in models {
                queue += evaluator.scorers(for: model).map { (model, Decoding.beam(width: width, scorer: $0)) }
            }
        }
        for (model, d) in queue {
            let method = model.method.rawValue.lowercased()
            let name = "eval-\(split)-\(method)-\(d.slug)"
            let answersFile = dir + "/eval/\(split)-\(method)-\(d.slug).jsonl"
            let inputs = InputFingerprint([
                ("model", model.identity), ("decoding", d.label), ("max_tokens", "\(config.maxResponseTokens)"),
                ("seed", "\(seed)"),
                ("test", testDigest),
                ("search", evaluator.settings.map { "\($0.key)=\($0.value)" }.joined(separator: ";")),
            ])
            let answers: [DecodedAnswer], seconds: Double
            if let stored = records.reuse(
                name, inputs,
                { _ -> (answers: [DecodedAnswer], seconds: Double)? in
                    let stored = try TaskFiles.readAnswers(answersFile)
                    return stored.answers.count == test.count ? (stored.answers, stored.seconds) : nil
                })
            {
                answers = stored.answers
                seconds = stored.seconds
                reused += 1
            } else {
                guard remaining > 0 else {
                    leftOut += 1
                    continue
                }
                try records.begin(name, inputs)
                let start = Date()
                answers = try evaluator.decode(
                    model, prompts: test, decoding: d, maxTokens: config.maxResponseTokens, seed: seed,
                    threads: threads
                ) {
                    events(.progress(.evaluate, seed: seed, $0))
                }
                seconds = DemoPipeline.elapsed(since: start)
                try TaskFiles.writeAnswers(
                    answers, prompts: test, verifier: verifier, seconds: seconds, to: answersFile)
                try records.finish(name, inputs)
            }
            var evaluation = try DemoPipeline.score(model.method, d, seed, answers, test, verifier, seconds: seconds)
            evaluation.answers = answersFile
            results.evaluations.append(evaluation)
            count += 1
        }
        if leftOut > 0 {
            results.notes.append("seed \(seed): \(leftOut) decodings not run: \(SeedRun.outOfTime)")
            results.unfinished.append("seed \(seed): \(leftOut) decodings")
        }
        if count == 0, leftOut > 0 {
            events(
                .skipped(.evaluate, seed: seed, status: .leftOut, reason: "\(leftOut) decodings: \(SeedRun.outOfTime)"))
            return
        }
        let status: StageStatus = reused == count && leftOut == 0 ? .done : .ran
        finished(
            .evaluate,
            status.line(
                "\(models.count) models, \(count) decodings on \(test.count) \(split) problems"
                    + (reused > 0 ? " (\(reused) reused)" : "") + (leftOut > 0 ? "; \(leftOut) skipped (budget)" : "")),
            since: t0)
    }

    /// The scorers' quality on the held-out samples: within-problem AUC, value change at the first wrong step.
    func values(
        _ evaluator: any DemoEvaluator, _ models: [TrainedModel], _ heldOut: [SampleRecord],
        _ results: inout DemoPipeline.SeedResults
    ) throws {
        if heldOut.isEmpty {
            events(.skipped(.values, seed: seed, status: .notRun, reason: "needs held-out samples"))
            return
        }
        guard remaining > 0 else {
            events(.skipped(.values, seed: seed, status: .leftOut, reason: SeedRun.outOfTime))
            results.notes.append("seed \(seed): value metrics not measured: \(SeedRun.outOfTime)")
            results.unfinished.append("seed \(seed): value metrics")
            return
        }
        events(.started(.values, seed: seed))
        let t0 = Date()
        var measured: [ValueQuality] = []
        for model in models {
            for scorer in evaluator.scorers(for: model) {
                measured.append(
                    try pipeline.scoreQuality(
                        model, scorer: scorer, heldOut, evaluator, verifier, seed: seed, threads: threads
                    ) {
                        events(.progress(.values, seed: seed, $0))
                    })
            }
        }
        results.quality += measured
        finished(
            .values,
            measured.map {
                "\($0.method) \($0.scorer) AUC \($0.auc.auc.map { ResultsReport.fixed($0, 3) } ?? "–")"
            }.joined(separator: "; ") + " over \(measured.first?.auc.problems ?? 0) mixed problems", since: t0)
    }

    /// Ingests `input` into `dataset` (Rounds' ingest stage: a complete dataset of the same tokenizer is
    /// kept, an interrupted one continued); the data settings are pinned by demo.json.
    func ingestDataset(_ input: String, into dataset: String, options: IngestOptions, stage: DemoStage) throws -> (
        manifest: Manifest, reused: Bool
    ) {
        try IngestStage.run(
            [input], into: dataset, vocab: IngestVocabulary(tokenizer), options: options, threads: config.threads
        ) { p in
            events(
                .progress(
                    stage, seed: seed, HookProgress(done: Double(p.bytesDone), total: Double(p.bytesTotal), unit: "B")))
        }
    }
}

extension TrainedModel {
    /// How the run that produced the model went: reused, continued, stopped by the time budget.
    var status: StageStatus {
        reused ? .done : .training(from: continuedFrom ?? 0, at: updates, of: plannedUpdates)
    }
}
