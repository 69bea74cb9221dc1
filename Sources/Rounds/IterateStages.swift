import Foundation
import Format
import Infer
import Ingest
import Models
import Support
import Train
import Runs

/// The four stages of a round, each a function from its inputs to a one-line summary and a status.
extension IterateRound {
    /// Stage 1: K samples per prompt from the current policy, labelled by the verifier, token ids kept as
    /// sampled (so nothing is re-tokenized). An interrupted stage continues after its last complete prompt.
    func sample(into samples: String, modelIdentity: String, events: (RoundEvent) -> Void) throws -> (
        String, StageStatus
    ) {
        let s = settings, fm = FileManager.default
        let inputs = InputFingerprint(
            [
                ("model", modelIdentity), ("tokenizer", s.tokenizer.map(InputFingerprint.file) ?? "-"),
                ("prompts", InputFingerprint.file(s.prompts)), ("n", "\(s.samples)"), ("verifier", s.verifier),
                ("temperature", "\(s.temperature)"), ("seed", "\(s.seed)"), ("max_new_tokens", "\(s.maxNewTokens)"),
                ("chat_template", s.chatTemplate), ("stop", "\(s.stop)"),
            ] + s.precisionInput)
        if runner.finished("sample", inputs) != nil, fm.fileExists(atPath: samples) { return (samples, .done) }
        let start = try runner.begin("sample", inputs)
        if start == .fresh, fm.fileExists(atPath: samples) {
            // A round from before stage records: iterate.json pinned its inputs, so its samples stand.
            try runner.finish("sample", inputs)
            return (samples, .done)
        }
        if start == .replacing {
            try? fm.removeItem(atPath: samples)
            try? fm.removeItem(atPath: samples + ".partial")
        }
        let problems = try ProblemFile.read(s.prompts)
        guard !problems.isEmpty else { throw RoundError("\(s.prompts) has no prompts") }
        if let p = problems.first(where: { $0.answer == nil }) {
            throw RoundError("\(s.prompts):\(p.line): no \"answer\" to label samples with")
        }
        let verifier = try makeVerifier(s.verifier)
        var options = SampleOptions()
        options.n = s.samples
        options.sampling = SamplingParameters(temperature: s.temperature)
        try options.sampling.validate()
        options.maxNewTokens = s.maxNewTokens
        options.batchSize = s.batchSize
        options.stop = s.stop.map { String(decoding: unescapeDelimiter($0), as: UTF8.self) }
        options.seed = s.seed
        options.ids = true
        let t0 = Date()
        let model = try InferenceModel.load(
            path: s.model, tokenizer: s.tokenizer, decodeWeights: s.decodeWeights, precision: s.precision)
        let template = try model.chatTemplate(s.chatTemplate)
        let c = model.model.config
        events(
            .note(
                "model \(s.model): \(c.family.rawValue), \(c.layers) layers, d \(c.hiddenSize), vocabulary \(c.vocabSize); decoding weights \(model.decodeWeights); loaded in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s"
            ))
        events(.note(BLASRuntime.summary))
        let output = try ResumableJSONL(path: samples, overwrite: false)
        let total = Double(problems.count)
        let r = try SampleJob.run(
            model: model, template: template, problems: problems, verifier: verifier, options: options,
            output: output
        ) { p in
            events(.progress(.sample, StageProgress(done: Double(p.done), total: total, unit: "prompts")))
        }
        try output.finish()
        try runner.finish("sample", inputs)
        let continued =
            r.resumed > 0 ? "; continued after \(r.resumed) of \(problems.count) prompts sampled earlier" : ""
        return (
            "\(r.lines) samples of \(problems.count) prompts, mean reward \(r.meanReward.map { String(format: "%.3f", $0) } ?? "-") (\(verifier.name)) -> \(samples)\(continued)",
            .ran
        )
    }

    /// Stage 2: the samples into shards, steps cut at the step delimiters in token space (the model's
    /// tokenizer gives the vocabulary and the fingerprint).
    func ingest(_ samples: String, into data: String, events: (RoundEvent) -> Void) throws -> (String, StageStatus) {
        let s = settings
        let tokenizer = try InferenceModel.loadTokenizer(modelPath: s.model, tokenizer: s.tokenizer)
        var options = IngestOptions()
        options.eos = .never
        if !s.stepDelimiters.isEmpty { options.stepDelimiters = s.stepDelimiters.map(unescapeDelimiter) }
        let inputs = InputFingerprint([
            ("samples", InputFingerprint.file(samples)), ("tokenizer", String(tokenizer.fingerprint, radix: 16)),
            ("step_delimiters", "\(s.stepDelimiters)"),
        ])
        if runner.finished("ingest", inputs) != nil, let m = try? Manifest.read(directory: data), m.complete {
            return ("\(data), \(m.counts.trajectories) trajectories", .done)
        }
        if try runner.begin("ingest", inputs) == .replacing { try? FileManager.default.removeItem(atPath: data) }
        var total = 0.0
        let (m, reused) = try IngestStage.run(
            [samples], into: data, vocab: IngestVocabulary(tokenizer), options: options, threads: 2
        ) { p in
            total = Double(p.bytesTotal)
            events(.progress(.ingest, StageProgress(done: Double(p.bytesDone), total: total, unit: "B")))
        }
        try runner.finish("ingest", inputs)
        if reused { return ("\(data), \(m.counts.trajectories) trajectories", .done) }
        return ("\(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens -> \(data)", .ran)
    }

    /// Stage 3: the current policy's log-probs as the reference column, for methods and KL settings that
    /// read it (k3, DPO, KTO, DQO).
    func score(_ data: String, modelIdentity: String, events: (RoundEvent) -> Void) throws -> (String, StageStatus) {
        let s = settings, c = s.roundTraining.config
        guard c.method.needsReference && !c.usesReferenceModel else {
            return (
                "not needed: \(c.method.rawValue)\(c.usesReferenceModel ? " keeps the reference model in memory" : " reads no reference")",
                .notRun
            )
        }
        let inputs = InputFingerprint(
            [
                ("data", try InputFingerprint.dataset(data)), ("model", modelIdentity), ("column", c.referenceColumn),
            ] + s.precisionInput)
        let done = "column '\(c.referenceColumn)'"
        if runner.finished("score", inputs) != nil,
            (try? Dataset(directory: data))?.manifest.tokenColumns.contains(c.referenceColumn) == true
        {
            return (done, .done)
        }
        try runner.begin("score", inputs)
        let r = try ScoreStage.run(
            data: data, reference: ModelSource(path: s.model), column: c.referenceColumn, maxTokens: 4096,
            precision: s.precision
        ) { done, total in
            events(.progress(.score, StageProgress(done: Double(done), total: Double(total), unit: "tok")))
        }
        try runner.finish("score", inputs)
        guard let r else { return (done, .done) }
        return ("\(r.tokens) tokens scored by \(s.model) -> column '\(c.referenceColumn)'", .ran)
    }

    /// Stage 4: training from the current policy into ROUND/run (the value network from its backbone with a
    /// zero head), continued from the run's last checkpoint when an earlier run was interrupted.
    func train(_ data: String, into run: String, modelIdentity: String, events: (RoundEvent) -> Void) throws -> (
        String, StageStatus
    ) {
        let s = settings.roundTraining, c = s.config, fm = FileManager.default
        let inputs = InputFingerprint([
            ("settings", s.toml), ("model", modelIdentity), ("data", try InputFingerprint.dataset(data)),
        ])
        if runner.finished("train", inputs) != nil, fm.fileExists(atPath: run + "/policy/config.json") {
            return (run, .done)
        }
        if try runner.begin("train", inputs) == .replacing { try? fm.removeItem(atPath: run) }
        let job = try TrainStage(config: c, model: try s.modelSource(), data: data, run: run).open(resume: true)
        try writeFileAtomically(Array(s.toml.utf8), to: run + "/config.toml")
        if job.step >= job.totalSteps {
            try runner.finish("train", inputs)
            return (run, .done)
        }
        for note in job.notes { events(.note("note: \(note)")) }
        let first = Double(job.step)
        let (summary, status) = try TrainStage.train(job, timeBudget: settings.timeBudget) { p in
            events(
                .progress(
                    .train,
                    StageProgress(
                        done: Double(p.step), total: Double(p.totalSteps), unit: "steps", before: first,
                        detail: String(format: "loss %.4f, %.0f tok/s", p.metrics.loss, p.metrics.tokensPerSecond))))
        }
        if summary.finished { try runner.finish("train", inputs) } else { try runner.pause("train", inputs) }
        return (
            "\(c.method.rawValue): \(job.step) steps -> \(run)"
                + (summary.last.map { String(format: ", final loss %.4f", $0.loss) } ?? ""), status
        )
    }
}
