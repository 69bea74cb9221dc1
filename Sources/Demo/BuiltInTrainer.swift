import Checkpoint
import Format
import Foundation
import Ingest
import Models
import Support
import Tokenizers
import Rounds
import Train
import Runs

/// Every training setting of a demo run: the from-scratch model, SFT, and the offline methods. All of it is
/// part of each training stage's identity, so changing a setting redoes exactly the runs it affects.
public struct DemoTrainingSettings: Sendable, Equatable, Codable {
    /// Transformer blocks of the from-scratch model (a Llama: RoPE, RMSNorm, SwiGLU, tied embeddings).
    public var layers = 3
    /// Its width.
    public var hidden = 96
    /// Its attention heads.
    public var heads = 4
    /// Its MLP width.
    public var intermediate = 384
    /// Its position limit (prompt + response).
    public var maxPositions = 256
    /// A pretrained starting point (safetensors directory or .gguf) instead of a random initialization.
    public var initModel: String?
    /// SFT optimizer steps.
    public var sftSteps = 1200
    /// SFT peak learning rate.
    public var sftLearningRate = 3e-3
    /// Decoupled weight decay of every run.
    public var weightDecay = 0.1
    /// Tokens per optimizer step (one micro-batch).
    public var batchTokens = 1200
    /// Passes of every offline method over the samples.
    public var epochs = 1
    /// Peak policy learning rate of each offline method.
    public var learningRates: [String: Double] = ["RFT": 1e-4, "DPO": 1e-5, "KTO": 1e-6, "OREO": 1e-4, "DQO": 1e-4]
    /// Peak value-network learning rate (OREO, DQO).
    public var valueLearningRate = 5e-4
    /// OREO's KL-regularization strength beta (and DQO's).
    public var beta = 0.3
    /// OREO's KL weight alpha.
    public var alpha = 0.01
    /// OREO's residual level: token or step.
    public var level = OREOLevel.token
    /// DPO's beta (0.5 beat 0.1 on validation: docs/demo-experiments.md, E4).
    public var preferenceBeta = 0.5
    /// KTO's beta.
    public var ktoBeta = 0.1
    /// Number format of every training run's matrix products (nil: fp32, and absent from earlier records).
    public var precision: Precision?
    /// LoRA on the offline methods' policies (nil: full fine-tuning). SFT stays full: the adapters sit on the SFT
    /// model, which is the reference too.
    public var lora: LoRASettings?
    /// LoRA on OREO's and DQO's value networks (nil: full).
    public var valueLora: LoRASettings?

    /// The defaults.
    public init() {}

    /// The learning rate of `method`.
    public func learningRate(_ method: DemoMethod) -> Double {
        method == .sft ? sftLearningRate : learningRates[method.rawValue] ?? 1e-4
    }

    /// The from-scratch architecture for a vocabulary of `vocab` tokens.
    public func modelConfig(vocab: Int) -> ModelConfig {
        ModelConfig(
            family: .llama, vocabSize: vocab, hiddenSize: hidden, layers: layers, heads: heads,
            intermediateSize: intermediate, maxPositions: maxPositions, tieWordEmbeddings: true)
    }

    /// Throws on settings that cannot train.
    public func validate() throws(DemoError) {
        guard layers >= 1, hidden >= 8, heads >= 1, hidden % heads == 0, (hidden / heads) % 2 == 0, intermediate >= 1
        else {
            throw DemoError(
                "model: need layers >= 1 and a width (\(hidden)) that the heads (\(heads)) divide into even head widths"
            )
        }
        guard maxPositions >= 16 else { throw DemoError("max positions must be at least 16") }
        guard sftSteps >= 1, epochs >= 1, batchTokens >= 64 else {
            throw DemoError("SFT steps and epochs must be positive, batch tokens >= 64")
        }
        for (name, lr) in learningRates.sorted(by: { $0.key < $1.key }) + [
            ("SFT", sftLearningRate), ("value", valueLearningRate),
        ]
        where !(lr > 0 && lr.isFinite) {
            throw DemoError("learning rate of \(name) must be positive, not \(lr)")
        }
        guard beta > 0, alpha >= 0, preferenceBeta > 0, ktoBeta > 0, weightDecay >= 0 else {
            throw DemoError("beta must be > 0, alpha and weight decay >= 0")
        }
    }

    /// The `oreo train` configuration of `method`. Settings the method does not read are those of the
    /// defaults, so they are not part of its identity: a new value learning rate must not retrain SFT.
    public func trainConfig(_ method: DemoMethod, seed: UInt64) -> TrainConfig {
        var c = rawConfig(method, seed: seed)
        let d = DemoTrainingSettings().rawConfig(method, seed: seed)
        if !c.method.hasValue { c.valueLearningRate = d.valueLearningRate }
        if c.method != .oreo { c.oreo = d.oreo }
        if c.method != .dqo { c.dqo = d.dqo }
        if c.method != .dpo { c.dpo = d.dpo }
        if c.method != .kto { c.kto = d.kto }
        return c
    }

    func rawConfig(_ method: DemoMethod, seed: UInt64) -> TrainConfig {
        var c = TrainConfig()
        c.method =
            switch method {
            case .sft: .sft
            case .rft: .rft
            case .dpo: .dpo
            case .kto: .kto
            case .oreo: .oreo
            case .dqo: .dqo
            }
        if method == .sft { c.maxSteps = sftSteps } else { c.epochs = epochs }
        c.learningRate = learningRate(method)
        c.valueLearningRate = valueLearningRate
        c.weightDecay = weightDecay
        c.loader.seed = seed
        c.loader.tokensPerMicroBatch = batchTokens
        c.oreo.beta = beta
        c.oreo.alpha = alpha
        c.oreo.level = level
        c.dqo.beta = beta
        c.dpo.beta = preferenceBeta
        c.kto.beta = ktoBeta
        c.keepCheckpoints = 0  // only the newest: a stopped run resumes from it
        c.precision = precision
        if method != .sft {
            c.lora = lora
            if c.method.hasValue { c.valueLora = valueLora }
        }
        return c
    }

    /// Report rows.
    public var rows: [(key: String, value: String)] {
        let n = { (x: Double) in JSONText.number(x) }
        var out: [(key: String, value: String)] = []
        // The model's file name, not its path: the report ships (docs/demo) and names no directory of this machine.
        out.append(
            (
                "model",
                initModel.map { "\(URL(fileURLWithPath: $0).lastPathComponent) (pretrained)" }
                    ?? "from scratch: Llama, \(layers) layers, d \(hidden), \(heads) heads, MLP \(intermediate), tied embeddings"
            ))
        out.append(
            (
                "SFT",
                "\(sftSteps) steps of \(batchTokens) tokens, lr \(n(sftLearningRate)) cosine, weight decay \(n(weightDecay))"
            ))
        out.append(
            (
                "offline methods",
                "\(epochs) epoch(s) over the samples, lr "
                    + DemoMethod.allCases.dropFirst().map { "\($0.rawValue) \(n(learningRate($0)))" }.joined(
                        separator: ", ")
            ))
        out.append(
            (
                "OREO / DQO",
                "beta \(n(beta)), alpha \(n(alpha)), \(level.rawValue) level, value lr \(n(valueLearningRate)); DPO beta \(n(preferenceBeta)), KTO beta \(n(ktoBeta))"
            ))
        func describe(_ l: LoRASettings?) -> String {
            l.map { "LoRA r \($0.rank), alpha \(n($0.alpha > 0 ? $0.alpha : Double($0.rank))), every linear layer" }
                ?? "full"
        }
        if lora != nil || valueLora != nil {
            out.append(
                (
                    "LoRA",
                    "offline policies: \(describe(lora)); value networks: \(describe(valueLora)) (head full); SFT full, the adapters' base and the reference"
                ))
        }
        return out
    }
}

/// The demo's trainer: `TrainJob` in-process, one run directory per method under the request's output.
/// A run whose inputs (settings, data, starting weights) are unchanged is reused when finished and resumed
/// when interrupted; a run with other inputs is deleted and redone (Rounds' stage runner and train stage).
public struct InProcessTrainer: DemoTrainer {
    /// The training settings.
    public let training: DemoTrainingSettings

    /// A trainer with these settings.
    public init(training: DemoTrainingSettings) { self.training = training }

    /// Report rows.
    public var settings: [(key: String, value: String)] { training.rows }

    /// Trains (or reuses, or resumes) the run for `r`: a stage recorded in `r.output`/stage.json, its run
    /// directory `r.output`/run.
    public func train(_ r: TrainRequest, progress: @escaping @Sendable (HookProgress) -> Void) throws -> TrainedModel {
        let start = Date()
        let fm = FileManager.default
        let tokenizer = try Tokenizer.load(path: r.tokenizer)
        let config = training.trainConfig(r.method, seed: r.seed)
        let source: ModelSource
        let sourceIdentity: String
        if let initial = r.initialization ?? training.initModel {
            source = ModelSource(path: initial)
            sourceIdentity = InputFingerprint.model(initial)
        } else {
            let c = training.modelConfig(vocab: tokenizer.vocabSize)
            source = .random(c, seed: r.seed)
            sourceIdentity =
                source.description + " mlp=\(c.intermediateSize) heads=\(c.heads) positions=\(c.maxPositions)"
        }
        let reference = r.reference.map(ModelSource.init(path:))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let configText = String(decoding: try encoder.encode(config), as: UTF8.self)
        let inputs = InputFingerprint([
            ("method", r.method.rawValue), ("config", configText), ("init", sourceIdentity),
            ("reference", r.reference.map(InputFingerprint.model) ?? "-"),
            ("data", try InputFingerprint.dataset(r.data)),
        ])

        let stage = "stage", runPath = r.output + "/run"
        let runner = StageRunner(directory: r.output)
        if let record = runner.finished(stage, inputs), var m = record.decode(TrainedModel.self),
            fm.fileExists(atPath: m.checkpoint + (m.base == nil ? "/config.json" : "/adapter_config.json"))
        {
            m.reused = true
            m.continuedFrom = nil
            return m
        }
        // An interrupted run with the same inputs is continued; a run with other inputs is stale.
        let continuing = runner.record(stage)?.matches(inputs) == true
        if !continuing, fm.fileExists(atPath: r.output) { try? fm.removeItem(atPath: r.output) }
        try runner.begin(stage, inputs)

        if config.method.needsReference && !config.usesReferenceModel {
            do {
                _ = try ScoreStage.run(
                    data: r.data, reference: reference ?? source, column: config.referenceColumn,
                    maxTokens: training.batchTokens
                ) { done, total in
                    progress(HookProgress(done: Double(done), total: Double(total), unit: "tok"))
                }
            } catch let e as RoundError { throw DemoError(e.message) }
        }
        BLASRuntime.setThreads(r.threads)
        let job: TrainJob
        let outcome: (summary: TrainSummary, status: StageStatus)
        do {
            job = try TrainStage(config: config, model: source, reference: reference, data: r.data, run: runPath).open(
                resume: continuing)
            // Sessions of at most a tenth of the run and about two minutes each: a checkpoint at every stop
            // (what a killed run resumes from), and a chance to honour the time budget.
            outcome = try TrainStage.train(job, timeBudget: r.timeBudget, started: start) { p in
                progress(HookProgress(done: Double(p.step), total: Double(p.totalSteps), unit: "steps"))
            }
        } catch {
            throw DemoError("\(r.method.rawValue): \(error)")
        }
        let s = outcome.summary, total = job.totalSteps
        guard let policy = s.policy else { throw DemoError("\(r.method.rawValue): training wrote no checkpoint") }
        var notes: [String] = []
        if outcome.status.stoppedAfter != nil {
            notes.append(
                "\(r.method.rawValue) stopped by its time budget (\(Int(r.timeBudget)) s) after \(s.steps) of \(total) steps; run `oreo demo` again to continue it"
            )
        }
        let d = s.data
        if d.skippedOverlong > 0 || d.truncated > 0 {
            notes.append(
                "\(r.method.rawValue): \(d.skippedOverlong) trajectories longer than \(d.maxLength) tokens left out, \(d.truncated) cut"
            )
        }
        let finalPolicy = s.finished ? runPath + "/policy" : policy
        let finalValue = s.value.map { s.finished ? runPath + "/value" : $0 }
        var model = TrainedModel(
            method: r.method, checkpoint: finalPolicy, hasValueHead: finalValue != nil,
            seconds: Date().timeIntervalSince(start), updates: s.steps, valueCheckpoint: finalValue,
            identity: inputs.digest + "@\(s.steps)", plannedUpdates: total, notes: notes)
        model.continuedFrom = outcome.status.continuedFrom
        // a LoRA run's checkpoints are adapters of its INIT
        if config.lora != nil { model.base = r.initialization ?? training.initModel }
        if config.valueLora != nil { model.valueBase = r.initialization ?? training.initModel }
        let result = Array(try encoder.encode(model))
        if s.finished {
            try runner.finish(stage, inputs, result: result)
        } else {
            try runner.pause(stage, inputs, result: result)
        }
        return model
    }
}
