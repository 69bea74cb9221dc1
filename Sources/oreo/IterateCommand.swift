import ArgumentParser
import Format
import Foundation
import Infer
import Ingest
import Models
import Support
import Train
import Runs

/// `oreo iterate`: one round of iterative OREO (or a baseline): sample from the current policy, label with the
/// verifier, ingest, score against the current policy, train from it.
struct IterateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iterate",
        abstract: "One round of sample -> label -> ingest -> score -> train from the current policy.",
        usage: "oreo iterate --model CURRENT --prompts P.jsonl --out ROUND [--n K] [--config TRAIN.toml] [--SETTING VALUE ...]",
        discussion: """
        Stages, each in ROUND (resumable at stage boundaries: rerun the same command after an interruption and \
        finished stages are kept, an interrupted one continues):
          1. sample   K samples per prompt from CURRENT, labelled by --verifier: ROUND/samples.jsonl (token ids \
        kept exactly as sampled, so nothing is re-tokenized)
          2. ingest   ROUND/data (shards), steps cut at --step-delimiter in token space
          3. score    the reference log-prob column, with CURRENT as the reference (only for methods and KL \
        settings that read it: k3, DPO, KTO, DQO)
          4. train    ROUND/run from CURRENT (the value network from CURRENT's backbone with a zero head)
        The next round starts from ROUND/run/policy: `oreo iterate --model ROUND/run/policy --out ROUND2 ...`.

        Training settings are those of `oreo train` (flags after the options below, or --config FILE.toml); \
        --model and --data are set by this command. ROUND/iterate.json records the round's inputs: a rerun with \
        different ones is refused unless --overwrite.
        """)

    @OptionGroup var common: ModelOptions
    @Option(help: "Prompts with answers (JSON Lines: prompt, answer, id).") var prompts: String
    @Option(name: .shortAndLong, help: "The round's directory.") var out: String
    @Option(help: "Samples per prompt.") var n = 8
    @Option(help: "Verifier: gsm8k, boxed, exact, or command:SHELL-COMMAND.") var verifier = "gsm8k"
    @Option(help: "Sampling temperature.") var temperature = 1.0
    @Option(help: "Step delimiter for ingest (repeatable; \\n \\t \\r escapes). Default: newline.")
    var stepDelimiter: [String] = []
    @Option(help: "A TOML file of training settings (flags override it).") var config: String?
    @Flag(help: "Delete what an earlier run of this round left in --out and start again.") var overwrite = false
    @Argument(parsing: .allUnrecognized, help: .hidden) var settings: [String] = []

    func run() throws {
        guard n >= 1 else { throw ValidationError("--n must be at least 1") }
        var s = TrainSettings()
        var set = Set<String>()
        if let config { set.formUnion(try s.apply(tomlFile: config)) }
        set.formUnion(try s.apply(flags: settings))
        for key in ["model", "data", "init_config"] where set.contains(key) {
            throw ValidationError("iterate sets \(key) itself: give the current policy with --model before the training settings")
        }
        s.applyLevelDefaults(explicit: set)
        s.model = common.model
        s.data = out + "/data"
        try s.config.validate()

        let fm = FileManager.default
        if overwrite { try? fm.removeItem(atPath: out) }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let identity = roundIdentity(s)
        let identityPath = out + "/iterate.json"
        if let old = fm.contents(atPath: identityPath) {
            guard old == identity else {
                throw ValidationError("\(identityPath): an earlier run of this round used other inputs or settings; pass --overwrite to start it again, or choose another --out")
            }
        } else {
            try writeFileAtomically(Array(identity), to: identityPath)
        }

        // 1. Sample.
        let samples = out + "/samples.jsonl"
        if fm.fileExists(atPath: samples) {
            print("[1/4 sample] done earlier: \(samples)")
        } else {
            let problems = try ProblemFile.read(prompts)
            guard !problems.isEmpty else { throw ValidationError("\(prompts) has no prompts") }
            if let p = problems.first(where: { $0.answer == nil }) {
                throw ValidationError("\(prompts):\(p.line): no \"answer\" to label samples with")
            }
            let v = try makeVerifier(verifier)
            var options = SampleOptions()
            options.n = n
            options.sampling = SamplingParameters(temperature: temperature)
            try options.sampling.validate()
            options.maxNewTokens = common.maxNewTokens
            options.batchSize = common.batchSize
            options.stop = common.stop.map { String(decoding: unescapeDelimiter($0), as: UTF8.self) }
            options.seed = common.seed
            options.ids = true
            let (m, template) = try common.load()
            let output = try ResumableJSONL(path: samples, overwrite: false)
            let progress = Progress("sample", total: Double(problems.count), unit: "prompts")
            let r = try SampleJob.run(model: m, template: template, problems: problems, verifier: v, options: options,
                                      output: output) { p in progress.update(Double(p.done)) }
            progress.finish(Double(problems.count))
            try output.finish()
            print("[1/4 sample] \(r.lines) samples of \(problems.count) prompts, mean reward \(r.meanReward.map { String(format: "%.3f", $0) } ?? "-") (\(v.name)) -> \(samples)")
        }

        // 2. Ingest (ids verbatim; the model's tokenizer gives the vocabulary and the fingerprint).
        let data = out + "/data"
        if let m = try? Manifest.read(directory: data), m.complete {
            print("[2/4 ingest] done earlier: \(data), \(m.counts.trajectories) trajectories")
        } else {
            let tokenizer = try InferenceModel.loadTokenizer(modelPath: common.model, tokenizer: common.tokenizer)
            var options = IngestOptions()
            options.eos = .never
            if !stepDelimiter.isEmpty { options.stepDelimiters = stepDelimiter.map(unescapeDelimiter) }
            let job = IngestJob(inputs: [samples], output: data, vocab: IngestVocabulary(tokenizer), options: options)
            let progress = Progress("ingest", unit: "B")
            var total = 0.0
            let r = try job.run { p in total = Double(p.bytesTotal); progress.update(Double(p.bytesDone)) }
            progress.finish(total)
            print("[2/4 ingest] \(r.written) trajectories, \(r.manifest.counts.tokens) tokens -> \(data)")
        }

        // 3. Score against the current policy when the method reads the stored column.
        let c = s.config
        if c.method.needsReference && !c.usesReferenceModel {
            let dataset = try Dataset(directory: data)
            if dataset.manifest.tokenColumns.contains(c.referenceColumn) {
                print("[3/4 score] done earlier: column '\(c.referenceColumn)'")
            } else {
                let source = ModelSource(path: common.model)
                let m = try source.load(maxTokens: 4096)
                let progress = Progress("score", total: Double(dataset.manifest.counts.tokens), unit: "tok")
                let r = try ReferenceScorer.score(dataset: dataset, model: m, column: c.referenceColumn) { done, _ in
                    progress.update(Double(done))
                }
                progress.finish(Double(r.tokens))
                print("[3/4 score] \(r.tokens) tokens scored by \(common.model) -> column '\(c.referenceColumn)'")
            }
        } else {
            print("[3/4 score] not needed: \(c.method.rawValue)\(c.usesReferenceModel ? " keeps the reference model in memory" : " reads no reference")")
        }

        // 4. Train from the current policy.
        let run = out + "/run"
        let resume = fm.fileExists(atPath: run + "/config.toml")
        let job = try TrainJob(config: c, model: try s.modelSource(), reference: nil, data: data, run: run, resume: resume)
        try writeFileAtomically(Array(s.toml.utf8), to: run + "/config.toml")
        if resume && job.step >= job.totalSteps {
            print("[4/4 train] done earlier: \(run)")
        } else {
            for note in job.notes { printError("note: \(note)") }
            let progress = Progress("train", total: Double(job.totalSteps), unit: "steps", startingAt: Double(job.step))
            let r = try job.run { p in
                progress.update(Double(p.step), detail: String(format: "loss %.4f, %.0f tok/s", p.metrics.loss, p.metrics.tokensPerSecond))
            }
            progress.finish(Double(job.step))
            print("[4/4 train] \(c.method.rawValue): \(job.step) steps -> \(run)" + (r.last.map { String(format: ", final loss %.4f", $0.loss) } ?? ""))
        }
        print("next round: oreo iterate --model \(run)/policy --prompts \(prompts) --out NEXT ...")
    }

    /// What a rerun must agree on: the inputs and every setting of the round.
    private func roundIdentity(_ s: TrainSettings) -> Data {
        var lines = ["model = \(common.model)", "tokenizer = \(common.tokenizer ?? "-")", "prompts = \(prompts)",
                     "n = \(n)", "verifier = \(verifier)", "temperature = \(temperature)", "seed = \(common.seed)",
                     "max_new_tokens = \(common.maxNewTokens)", "chat_template = \(common.chatTemplate)",
                     "stop = \(common.stop)", "step_delimiter = \(stepDelimiter)"]
        if let size = (try? FileManager.default.attributesOfItem(atPath: prompts))?[.size] as? Int {
            lines.append("prompts_bytes = \(size)")
        }
        lines.append(s.toml)
        return Data(lines.joined(separator: "\n").utf8)
    }
}
