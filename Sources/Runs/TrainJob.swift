import Checkpoint
import Format
import Foundation
import Models
import Support
import Train

/// One optimizer step's measurements (one line of metrics.jsonl). Means are over the step's sequences
/// (pairs for DPO); fields a method does not have are nil.
public struct StepMetrics: Sendable, Equatable, Codable {
    /// 1-based optimizer step, and the fractional epoch reached.
    public var step: Int, epoch: Double
    /// Learning rates used in this step.
    public var lr: Double, valueLR: Double?
    /// The policy objective (Bellman + alpha*KL for OREO; NLL, DPO, KTO, Q loss otherwise).
    public var loss: Double
    /// Value loss and the Bellman part of the policy loss (OREO, DQO).
    public var valueLoss: Double?, bellman: Double?
    /// Mean per-token KL(pi || ref): exact, k3 estimate, or KTO's z0.
    public var kl: Double?
    /// Mean |V(s_0) - R|.
    public var valueError: Double?
    /// Mean V over the states of positive / negative trajectories.
    public var valuePositive: Double?, valueNegative: Double?
    /// Mean log pi per token of positive / negative responses.
    public var logProbPositive: Double?, logProbNegative: Double?
    /// Mean summed log-ratio sum_t (log pi - log pi_ref) per response.
    public var logRatio: Double?
    /// Gradient norms before clipping.
    public var gradNorm: Double, valueGradNorm: Double?
    /// DPO: fraction of pairs ranked right and mean margin r_w - r_l.
    public var pairAccuracy: Double?, margin: Double?
    /// DQO: mean importance weight.
    public var importanceWeight: Double?
    /// Sequences and tokens in the step; throughput; seconds since the run started (over all sessions).
    public var sequences: Int, tokens: Int, tokensPerSecond: Double, elapsed: Double
    /// Under MPI: seconds this rank spent in the step's all-reduces (nil for one process).
    public var allreduceSeconds: Double? = nil

    enum CodingKeys: String, CodingKey {
        case step, epoch, lr, valueLR = "value_lr", loss, valueLoss = "value_loss", bellman, kl
        case valueError = "value_error", valuePositive = "v_pos", valueNegative = "v_neg"
        case logProbPositive = "logp_pos", logProbNegative = "logp_neg", logRatio = "log_ratio"
        case gradNorm = "grad_norm", valueGradNorm = "value_grad_norm", pairAccuracy = "pair_accuracy", margin
        case importanceWeight = "importance_weight", sequences, tokens, tokensPerSecond = "tokens_per_s", elapsed
        case allreduceSeconds = "allreduce_s"
    }
}

/// Reported after every optimizer step.
public struct TrainProgress: Sendable {
    /// Steps done and planned.
    public var step: Int, totalSteps: Int
    /// The step's metrics.
    public var metrics: StepMetrics
    /// Path of the checkpoint written after this step, if one was.
    public var checkpoint: String?
}

/// What a finished run produced.
public struct TrainSummary: Sendable {
    /// Steps done, and whether the run reached its planned end (false after `stopAfter`).
    public var steps: Int, finished: Bool
    /// The last checkpoint directory and the policy / value model directories inside it (loadable as INIT);
    /// nil when a stopped session wrote none.
    public var checkpoint: String?, policy: String?, value: String?
    /// Metrics of the last step.
    public var last: StepMetrics?
    /// What the data loader kept and left out.
    public var data: LoaderReport
}

/// A run stopped because a loss or gradient stopped being a finite number.
public struct NonFiniteLoss: Error, CustomStringConvertible, CollectiveError {
    /// The 1-based step that produced it, and what was not finite.
    public let step: Int, what: String
    /// The last checkpoint written before it (nil if none), left in place.
    public let lastCheckpoint: String?
    /// Message with the step and the checkpoint to resume from.
    public var description: String {
        "\(what) is not finite at step \(step); stopped. "
            + (lastCheckpoint.map { "Last good checkpoint: \($0)" } ?? "No checkpoint was written yet.")
    }
}

/// A training run of any method: validates data and models, then trains with checkpoints and metrics in
/// a run directory. `oreo train` wraps it; `oreo demo` calls it in-process.
///
/// Per micro-batch: (reference forward,) policy forward, value forward, losses from those numbers, value
/// backward, policy backward; per step the value network is updated first, then the policy, so the policy
/// loss always uses values computed before the update. All buffers are allocated here, once.
///
/// Data-parallel over a `Collective` (the ranks of an MPI job): every rank holds the models and walks the same
/// data order; a step's micro-batch k is trained by rank k mod N (the others skip it, reading only scalars),
/// gradients and the step's sums are all-reduced before the identical updates, and rank 0 alone reads and writes
/// the run directory (its checkpoint state is broadcast to the other ranks when resuming).
public final class TrainJob {
    /// The effective configuration (written to RUN/config.json).
    public let config: TrainConfig
    /// The run directory.
    public let runDirectory: String
    /// The loader (its report says what data is used).
    public let loader: DataLoader
    /// Optimizer steps planned.
    public let totalSteps: Int
    /// Steps already done (non-zero when resuming).
    public private(set) var step = 0
    /// Things the checks could not verify, and what resuming did.
    public private(set) var notes: [String] = []
    /// The models (the value network and the reference only when the method uses them).
    public let policy: TransformerModel, value: TransformerModel?, reference: TransformerModel?
    /// The processes training together (this one alone by default).
    public let collective: Collective
    /// Floats per all-reduce call of the gradients.
    public static let reduceBucket = 1 << 22

    private let run: RunDirectory
    private let policyOptimizer: AdamW, valueOptimizer: AdamW?
    private let objective: BatchObjective
    private let batches: [TrainingBatch]
    private let tokenizerFiles: [(name: String, bytes: [UInt8])]
    private var logProbs: [Float] = [], refLogProbs: [Float] = [], values: [Float] = [], kl: [Float] = []
    private var elapsedBefore = 0.0, tokensBefore = 0
    private var lastCheckpoint: String?
    /// With several micro-batches per step: the trained networks' gradient sums of the step's earlier
    /// micro-batches (policy, then value), so each micro-batch's gradient is computed whole and added once.
    private let stepSums: [FlatBuffer]
    /// The step's sums (ObjectiveStats and tokens) as doubles, for one all-reduce.
    private var reduced = [Double](repeating: 0, count: ObjectiveStats.packedCount)

    /// Checks the configuration, the dataset against the model and method, and the run directory; loads the
    /// models (from the run's latest checkpoint when `resume`). Everything that would stop training is
    /// thrown here, before the first step.
    ///
    /// - Parameters:
    ///   - model: INIT, the policy's start and the value network's backbone (plus a zero head).
    ///   - reference: the frozen reference model when one runs in memory (default: INIT).
    ///   - data: a dataset directory.
    ///   - run: the run directory (created; refused if it already holds a run and `resume` is false).
    ///   - adapter, valueAdapter: PEFT LoRA adapters the policy and the value network start from (a checkpoint,
    ///     when resuming, wins).
    ///   - valueModel: a full value network (a checkpoint directory with value_head.weight, INIT's architecture)
    ///     the value network starts from instead of INIT with a zero head (a checkpoint, when resuming, wins).
    ///   - collective: the ranks training together; every rank calls this with the same arguments. A rank that
    ///     fails here makes every other rank throw `PeerFailure` instead of waiting.
    public init(
        config: TrainConfig, model: ModelSource, reference referenceSource: ModelSource? = nil, data: String,
        run runPath: String, resume: Bool = false, adapter: String? = nil, valueAdapter: String? = nil,
        valueModel: String? = nil, collective: Collective = SingleProcess()
    ) throws {
        // Every rank reaches the agreement below, also when this one fails first.
        var agreed = false
        defer { if !agreed { _ = try? collective.failures(true) } }
        let root = collective.isRoot
        var config = config
        let modelConfig = try model.config()
        // Starting from adapters: their rank, alpha and targets are the run's unless given.
        for (dir, network) in [(adapter, \TrainConfig.lora), (valueAdapter, \TrainConfig.valueLora)] {
            guard let dir, (config[keyPath: network]?.rank ?? 0) == 0 else { continue }
            let c = try PEFTAdapter.config(directory: dir, family: modelConfig.family)
            var l = LoRASettings()
            l.rank = c.rank
            l.alpha = c.alpha
            l.dropout = c.dropout
            l.targets = c.targets.map(\.rawValue).joined(separator: ",")
            config[keyPath: network] = l
        }
        config.normalize()
        try config.validate()
        if valueModel != nil && (!config.method.hasValue || config.valueLora != nil) {
            throw DataError(
                "--value-model: \(config.method.rawValue) \(config.method.hasValue ? "with a LoRA value network (use --value-adapter)" : "trains no value network")"
            )
        }
        var notes: [String] = []
        let run = RunDirectory(path: runPath)
        let dataset = try Dataset(directory: data)
        notes += try Compatibility.check(
            dataset: dataset, model: modelConfig, tokenizerDirectory: model.tokenizerDirectory)
        if let referenceSource, config.usesReferenceModel {
            let rc = try referenceSource.config()
            guard rc.vocabSize == modelConfig.vocabSize else {
                throw DataError(
                    "reference model \(referenceSource.description) has vocabulary \(rc.vocabSize), the policy \(modelConfig.vocabSize)"
                )
            }
        }
        let selection: DataSelection =
            switch config.method {
            case .rft: .positives
            case .dpo: .pairs(perGroup: config.dpoPairsPerPrompt)
            default: .all
            }
        let column = config.method.needsReference && !config.usesReferenceModel ? config.referenceColumn : nil
        // Small datasets are counted for every epoch the schedule spans (exact), large ones planned from statistics.
        let loader = try DataLoader(
            dataset: dataset, config: config.loader, selection: selection,
            sequenceLimit: modelConfig.maxPositions, referenceColumn: column,
            epochs: config.maxSteps > 0 ? 1 : config.epochs)
        let planned = loader.stepCount(epochs: config.epochs)
        let totalSteps = config.maxSteps > 0 ? config.maxSteps : planned
        if config.method == .kto && (loader.report.positives == 0 || loader.report.negatives == 0) {
            notes.append("KTO sees only \(loader.report.positives == 0 ? "negative" : "positive") responses")
        }

        // The run directory: a fresh one, or the same configuration continued from its latest checkpoint.
        let fm = FileManager.default
        var checkpoint: String?
        // Only rank 0 reads the run directory; the others receive its state below.
        if !root {
        } else if fm.fileExists(atPath: run.configFile) {
            guard resume else {
                throw RunDirectoryError(
                    "\(runPath) already holds a run (config.json); pass --resume to continue it, or choose another --out"
                )
            }
            let stored = try RunDirectory.decode(TrainConfig.self, file: run.configFile)
            let diff = try differences(stored, config)
            guard diff.isEmpty else {
                throw RunDirectoryError(
                    "\(runPath): --resume with a different configuration than the run's:\n  "
                        + diff.joined(separator: "\n  "))
            }
            checkpoint = run.latestCheckpoint()
            if checkpoint == nil { notes.append("\(runPath) has no checkpoint yet: starting from the beginning") }
        } else if resume {
            notes.append("\(runPath) holds no run yet: starting a new one")
        }
        let maxTokens = config.loader.tokensPerMicroBatch
        let activations: ActivationMode = config.recompute == true ? .recomputed : .kept
        // a LoRA policy's base is INIT, frozen (packed as base_weights says); a full one trains INIT in f32
        let policyBase = config.lora == nil ? BaseWeights.f32 : config.baseWeights ?? .f32
        var state: RunState?
        let policy: TransformerModel
        var value: TransformerModel?
        if let checkpoint {
            let s = try RunDirectory.decode(RunState.self, file: checkpoint + "/state.json")
            // Without --max-steps a large dataset's step count is an estimate, and its epochs may run past it.
            guard s.step >= 0, s.step <= totalSteps || config.maxSteps == 0, s.seed == config.loader.seed else {
                throw RunDirectoryError(
                    "\(checkpoint)/state.json: step \(s.step) of \(s.totalSteps) does not fit this run of \(totalSteps) steps"
                )
            }
            state = s
            // A LoRA network's checkpoint holds its adapter: the base is INIT again.
            policy =
                config.lora == nil
                ? try ModelCheckpoint.load(
                    directory: checkpoint + "/policy", maxTokens: maxTokens, activations: activations)
                : try model.load(maxTokens: maxTokens, base: policyBase, activations: activations)
            value =
                !config.method.hasValue
                ? nil
                : config.valueLora == nil
                    ? try ModelCheckpoint.load(
                        directory: checkpoint + "/value", maxTokens: maxTokens, valueHead: true,
                        activations: activations)
                    : nil
            guard policy.config == modelConfig else {
                throw RunDirectoryError(
                    "\(checkpoint)/policy: architecture differs from the INIT model \(model.description)")
            }
        } else {
            policy = try model.load(maxTokens: maxTokens, base: policyBase, activations: activations)
            value =
                !config.method.hasValue || config.valueLora != nil
                ? nil
                : try valueModel.map {
                    try Self.loadValueModel(
                        $0, architecture: modelConfig, maxTokens: maxTokens, activations: activations)
                } ?? model.load(maxTokens: maxTokens, valueHead: true, activations: activations)
        }
        if let l = config.lora {
            try Self.attachAdapters(
                l, to: policy, from: checkpoint.map { $0 + "/policy" } ?? adapter, seed: config.loader.seed)
        }
        // A LoRA value network is INIT frozen plus adapters that carry its head: over the policy's own buffer
        // when the policy's base is frozen INIT too, else over a copy of INIT; either way without base gradients.
        if let l = config.valueLora, config.method.hasValue {
            let base =
                policy.adapters != nil
                ? try TransformerModel(
                    config: policy.config, maxTokens: maxTokens, logitCacheBytes: 0, sharing: policy, gradients: false,
                    activations: activations, workspace: policy)
                : try model.load(maxTokens: maxTokens, activations: activations)
            try Self.attachAdapters(
                l, to: base, from: checkpoint.map { $0 + "/value" } ?? valueAdapter, seed: config.loader.seed &+ 1,
                valueHead: true)
            value = base
        }
        // Under LoRA the policy's base is INIT, frozen: the default reference reads the same buffer.
        let reference: TransformerModel? =
            !config.usesReferenceModel
            ? nil
            : policy.adapters != nil && referenceSource == nil
                ? try TransformerModel(
                    config: policy.config, maxTokens: maxTokens, logitCacheBytes: 0, sharing: policy, gradients: false,
                    activations: .forwardOnly, workspace: policy)
                : try (referenceSource ?? model).load(maxTokens: maxTokens, activations: .forwardOnly)
        for m in [policy, value, reference].compactMap({ $0 }) { try m.setPrecision(config.precision ?? .fp32) }
        let adam = AdamWConfig(
            beta1: Float(config.adamBeta1), beta2: Float(config.adamBeta2), eps: Float(config.adamEps),
            weightDecay: Float(config.weightDecay))
        func optimizer(_ m: TransformerModel) -> AdamW {
            m.adapters.map { AdamW(specs: $0.layout, count: $0.parameters.count, config: adam) }
                ?? AdamW(layout: m.layout, config: adam)
        }
        let policyOptimizer = optimizer(policy)
        let valueOptimizer = value.map(optimizer)
        if root {
            do { try fm.createDirectory(atPath: runPath, withIntermediateDirectories: true) } catch {
                throw RunDirectoryError("\(runPath): cannot create: \(error.localizedDescription)")
            }
        }
        if let checkpoint, let state {
            try RunDirectory.loadOptimizer(checkpoint, policy: policyOptimizer, value: valueOptimizer, state: state)
            try loader.seek(state.position)
            try run.truncateMetrics(toSteps: state.step)
            notes.append("resuming \(runPath) after step \(state.step) of \(totalSteps) from \(checkpoint)")
        } else if root {
            try run.write(config, to: "config.json")
            try? fm.removeItem(atPath: run.metricsFile)
        }
        if root { try run.write(loader.report, to: "data.json") }
        agreed = true
        let failed = try collective.failures(false)
        if failed > 0 { throw PeerFailure(ranks: failed) }
        if collective.size > 1 {
            // the ranks must train the same configuration (each resolved its own command line and files)
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            let mine = try encoder.encode(config)
            guard try collective.broadcast(Array(mine), root: 0) == Array(mine) else {
                throw DataError(
                    "rank \(collective.rank): its training configuration differs from rank 0's (different files or settings on its machine)"
                )
            }
            state = try Self.synchronize(
                state, collective, trained: [policy, value].compactMap { $0 },
                optimizers: [policyOptimizer, valueOptimizer].compactMap { $0 }, loader: loader)
        }

        self.config = config
        runDirectory = runPath
        self.run = run
        self.loader = loader
        self.totalSteps = totalSteps
        self.policy = policy
        self.value = value
        self.reference = reference
        self.policyOptimizer = policyOptimizer
        self.valueOptimizer = valueOptimizer
        self.collective = collective
        stepSums =
            config.loader.microBatchesPerStep > 1
            ? [policy, value].compactMap {
                $0.map { FlatBuffer(count: ($0.adapters?.gradients ?? $0.gradients).count) }
            }
            : []
        objective = BatchObjective(capacity: maxTokens)
        batches = (0..<config.loader.microBatchesPerStep).map { _ in TrainingBatch() }
        tokenizerFiles = model.tokenizerFiles()
        step = state?.step ?? 0
        elapsedBefore = state?.elapsedSeconds ?? 0
        tokensBefore = state?.tokens ?? 0
        lastCheckpoint = state == nil ? nil : checkpoint
        self.notes = notes
        logProbs.reserveCapacity(maxTokens)
        refLogProbs.reserveCapacity(maxTokens)
        values.reserveCapacity(maxTokens)
        kl.reserveCapacity(maxTokens)
    }

    /// Trains to the planned step count, writing metrics every step and checkpoints every
    /// `checkpointEvery` steps and at the end. Throws `NonFiniteLoss` (keeping the last checkpoint) when a loss
    /// or gradient norm is NaN or infinite.
    ///
    /// `stopAfter` ends the session early after that step (time-boxed sessions, tests): with
    /// `checkpointAtStop` a checkpoint is written there so `resume` continues from it; without, the run is left
    /// as a killed one would be (resume redoes the steps after the last checkpoint).
    @discardableResult
    public func run(
        stopAfter: Int? = nil, checkpointAtStop: Bool = true,
        progress: (TrainProgress) -> Void = { _ in }
    ) throws -> TrainSummary {
        // Other ranks write nothing: their metrics go to /dev/null.
        let metricsFile = collective.isRoot ? run.metricsFile : "/dev/null"
        if !FileManager.default.fileExists(atPath: metricsFile) {
            _ = FileManager.default.createFile(atPath: metricsFile, contents: nil)
        }
        guard let metricsOut = FileHandle(forWritingAtPath: metricsFile) else {
            throw RunDirectoryError("\(metricsFile): cannot open for writing")
        }
        defer { try? metricsOut.close() }
        if collective.isRoot { try metricsOut.seekToEnd() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let schedule = CosineSchedule(
            baseLR: config.learningRate, minLR: config.learningRate * config.minLearningRateFraction,
            totalSteps: totalSteps, warmupFraction: config.warmupFraction)
        let valueSchedule = CosineSchedule(
            baseLR: config.valueLearningRate,
            minLR: config.valueLearningRate * config.minLearningRateFraction,
            totalSteps: totalSteps, warmupFraction: config.warmupFraction)
        var last: StepMetrics?
        let sessionStart = Date()
        let (rank, ranks) = (collective.rank, collective.size)
        // --max-steps ends a run at that step; otherwise the data does, after `epochs` epochs (the schedule spans
        // `totalSteps`, exact for a counted dataset, estimated for a large one, and holds its final rate after).
        while !isDone {
            let t0 = Date()
            // Micro-batch k is this rank's when k mod ranks == rank: it reads those, and skips the others' (their
            // sequence counts still enter the loss weight, so every rank normalizes as one process would).
            var m = 0, local = 0, sequences = 0, tokens = 0
            while m < config.loader.microBatchesPerStep && (config.maxSteps > 0 || !isDone) {
                if m % ranks == rank {
                    try loader.next(into: batches[local])
                    sequences += batches[local].spans.count
                    tokens += batches[local].count
                    local += 1
                } else {
                    let skipped = try loader.skip()
                    sequences += skipped.sequences
                    tokens += skipped.tokens
                }
                m += 1
            }
            guard m > 0 else { break }
            let weight = 1 / Double(max(1, config.method == .dpo ? sequences / 2 : sequences))
            policy.zeroGradients()
            value?.zeroGradients()
            var stats = ObjectiveStats()
            // The step's gradient is sum_k g_k with every g_k computed whole (from zero) and added once, in order:
            // with one micro-batch per rank the all-reduce then forms the same sums as one process, bit for bit.
            let trained = [policy, value].compactMap { $0 }
            for k in 0..<local {
                if k > 0 {
                    for (m, sum) in zip(trained, stepSums) {
                        sum.copy(from: m.adapters?.gradients ?? m.gradients)
                        m.zeroGradients()
                    }
                }
                setDropoutKeys(step: step, microBatch: rank + k * ranks)
                stats += try microStep(batches[k], weight: weight)
                if k > 0 {
                    for (m, sum) in zip(trained, stepSums) { (m.adapters?.gradients ?? m.gradients).add(sum) }
                }
            }
            var reduceSeconds: Double?
            if ranks > 1 {
                let r0 = Date()
                stats = try allReduce(stats)
                reduceSeconds = Date().timeIntervalSince(r0)
            }
            let stepNumber = step + 1
            guard stats.isFinite else {
                throw NonFiniteLoss(
                    step: stepNumber, what: "the \(config.method.rawValue) loss", lastCheckpoint: lastCheckpoint)
            }
            let clip = config.gradientClip > 0 ? config.gradientClip : Double.infinity
            var valueNorm: Double?
            if let value, let valueOptimizer {
                let norm = clipGradientNorm(value.adapters?.gradients ?? value.gradients, maxNorm: clip)
                guard norm.isFinite else {
                    throw NonFiniteLoss(
                        step: stepNumber, what: "the value gradient norm", lastCheckpoint: lastCheckpoint)
                }
                Self.update(value, valueOptimizer, lr: Float(valueSchedule.learningRate(step: step)))
                valueNorm = norm
            }
            let norm = clipGradientNorm(policy.adapters?.gradients ?? policy.gradients, maxNorm: clip)
            guard norm.isFinite else {
                throw NonFiniteLoss(step: stepNumber, what: "the policy gradient norm", lastCheckpoint: lastCheckpoint)
            }
            let lr = schedule.learningRate(step: step)
            Self.update(policy, policyOptimizer, lr: Float(lr))
            step = stepNumber
            tokensBefore += tokens
            let seconds = Date().timeIntervalSince(t0)
            var metrics = makeMetrics(
                stats, lr: lr, valueLR: value == nil ? nil : valueSchedule.learningRate(step: step - 1),
                gradNorm: norm, valueGradNorm: valueNorm, tokens: tokens, seconds: seconds,
                elapsed: elapsedBefore + Date().timeIntervalSince(sessionStart))
            metrics.allreduceSeconds = reduceSeconds
            if collective.isRoot { try metricsOut.write(contentsOf: try encoder.encode(metrics) + [10]) }
            last = metrics
            var written: String?
            let done = isDone
            if done || (config.checkpointEvery > 0 && step % config.checkpointEvery == 0) {
                written = try saveCheckpoint(elapsed: metrics.elapsed)
            }
            if let stopAfter, step >= stopAfter, !done {
                if checkpointAtStop, written == nil, collective.isRoot {
                    written = try saveCheckpoint(elapsed: metrics.elapsed)
                }
                progress(TrainProgress(step: step, totalSteps: totalSteps, metrics: metrics, checkpoint: written))
                return summary(finished: false, last: last)
            }
            progress(TrainProgress(step: step, totalSteps: totalSteps, metrics: metrics, checkpoint: written))
        }
        if lastCheckpoint == nil || !lastCheckpoint!.hasSuffix(String(format: "step-%08d", step)) {
            _ = try saveCheckpoint(elapsed: elapsedBefore + Date().timeIntervalSince(sessionStart))
        }
        guard collective.isRoot, let final = lastCheckpoint else { return summary(finished: true, last: last) }
        try run.relink("policy", to: String(final.dropFirst(run.path.count + 1)) + "/policy")
        if value != nil { try run.relink("value", to: String(final.dropFirst(run.path.count + 1)) + "/value") }
        return summary(finished: true, last: last)
    }

    private func summary(finished: Bool, last: StepMetrics?) -> TrainSummary {
        TrainSummary(
            steps: step, finished: finished, checkpoint: lastCheckpoint, policy: lastCheckpoint.map { $0 + "/policy" },
            value: value == nil ? nil : lastCheckpoint.map { $0 + "/value" }, last: last, data: loader.report)
    }

    /// The run's memory by kind, in bytes, as allocated (each shared parameter buffer counted once): weights,
    /// LoRA adapters, gradients, optimizer state, activations (with logit caches and bf16 copies).
    public var memoryEstimate: [(kind: String, bytes: Int)] {
        let models = [policy, value, reference].compactMap { $0 }
        var seen = Set<ObjectIdentifier>()
        var weights = 0
        for m in models where seen.insert(ObjectIdentifier(m.parameters)).inserted {
            weights += 4 * m.parameters.count + (m.baseWeights?.byteCount ?? 0)
        }
        let optimizers = [policyOptimizer, valueOptimizer].compactMap { $0 }
        return [
            ("weights", weights), ("adapters", models.reduce(0) { $0 + ($1.adapters?.bytes ?? 0) }),
            (
                "gradients",
                models.reduce(0) { $0 + $1.bufferBytes.gradients } + stepSums.reduce(0) { $0 + 4 * $1.count }
            ),
            ("optimizer", optimizers.reduce(0) { $0 + 4 * ($1.m.count + $1.v.count) }),
            (
                "activations",
                models.reduce(0) { $0 + $1.bufferBytes.activations }
                    + Dictionary(models.map { ($0.workspaceBytes.id, $0.workspaceBytes.bytes) }) { a, _ in a }.values
                    .reduce(0, +)
            ),
        ]
    }

    /// One optimizer update of what `m` trains: its LoRA adapters (the base stays frozen), or all of it.
    private static func update(_ m: TransformerModel, _ optimizer: AdamW, lr: Float) {
        if let a = m.adapters {
            optimizer.update(parameters: a.parameters, gradients: a.gradients, lr: lr)
        } else {
            m.update(optimizer, lr: lr)
        }
    }

    /// Gives `m` LoRA adapters, fresh (PEFT's initialization, seeded) or from a checkpoint's adapter directory,
    /// and freezes its base.
    private static func attachAdapters(
        _ settings: LoRASettings, to m: TransformerModel, from directory: String?, seed: UInt64,
        valueHead: Bool = false
    ) throws {
        let adapters: LoRAAdapters
        if let directory {
            adapters = try PEFTAdapter.load(directory: directory, for: m, dropout: settings.dropout)
            guard adapters.config == (try settings.config(family: m.config.family)),
                (adapters.valueHead != nil) == valueHead
            else {
                throw RunDirectoryError(
                    "\(directory): the adapter's rank, alpha, targets or value head differ from the run's")
            }
        } else {
            adapters = try LoRAAdapters(
                model: m, config: try settings.config(family: m.config.family), valueHead: valueHead)
            adapters.initialize(seed: seed)
        }
        try m.attach(adapters)
        m.dropBaseGradients()
    }

    /// Writes a checkpoint (rank 0; the others write nothing and return nil).
    private func saveCheckpoint(elapsed: Double) throws -> String? {
        guard collective.isRoot else { return nil }
        let state = RunState(
            step: step, totalSteps: totalSteps, position: loader.position, seed: config.loader.seed,
            policyOptimizerStep: policyOptimizer.step, valueOptimizerStep: valueOptimizer?.step ?? 0,
            elapsedSeconds: elapsed, tokens: tokensBefore)
        let path = try run.saveCheckpoint(
            step: step, policy: policy, value: value, policyOptimizer: policyOptimizer,
            valueOptimizer: valueOptimizer, state: state, tokenizerFiles: tokenizerFiles,
            keep: config.keepCheckpoints)
        lastCheckpoint = path
        return path
    }

    /// A value network to start from: a checkpoint directory whose value_head.weight exists and whose
    /// architecture is INIT's.
    private static func loadValueModel(
        _ directory: String, architecture: ModelConfig, maxTokens: Int, activations: ActivationMode
    ) throws -> TransformerModel {
        guard try SafeTensorsCollection(directory: directory).find("value_head.weight") != nil else {
            throw DataError("\(directory): no value_head.weight: --value-model needs a value network checkpoint")
        }
        let m = try ModelCheckpoint.load(
            directory: directory, maxTokens: maxTokens, valueHead: true, activations: activations)
        guard m.config == architecture else {
            throw DataError("\(directory): the value network's architecture differs from INIT's")
        }
        return m
    }

    /// Sums the step's statistics and the networks' gradients over the ranks (in place; every rank then holds
    /// what one process training all the step's micro-batches would).
    private func allReduce(_ stats: ObjectiveStats) throws -> ObjectiveStats {
        try reduced.withUnsafeMutableBufferPointer { b in
            stats.pack(into: b.baseAddress!)
            try collective.sum(b.baseAddress!, count: ObjectiveStats.packedCount)
        }
        for m in [value, policy].compactMap({ $0 }) {
            let g = m.adapters?.gradients ?? m.gradients
            try collective.sum(g.pointer, count: g.count, bucket: Self.reduceBucket)
        }
        return reduced.withUnsafeBufferPointer { ObjectiveStats(packed: $0.baseAddress!) }
    }

    /// Makes every rank's state rank 0's: the step, loader position and counters, the trained parameters (all
    /// of a full network, the adapters of a LoRA one) and, when rank 0 resumed a checkpoint, the optimizers'
    /// moments. Returns the state rank 0 resumed from (nil for a fresh run).
    private static func synchronize(
        _ state: RunState?, _ c: Collective, trained: [TransformerModel], optimizers: [AdamW], loader: DataLoader
    ) throws -> RunState? {
        let encoded = try c.broadcast(state.map { Array(try JSONEncoder().encode($0)) } ?? [], root: 0)
        let shared = encoded.isEmpty ? nil : try JSONDecoder().decode(RunState.self, from: Data(encoded))
        var buffers = trained.map { $0.adapters?.parameters ?? $0.parameters }
        if let shared {
            buffers += optimizers.flatMap { [$0.m, $0.v] }
            if !c.isRoot {
                try loader.seek(shared.position)
                optimizers.first?.restore(step: shared.policyOptimizerStep)
                if optimizers.count > 1 { optimizers[1].restore(step: shared.valueOptimizerStep) }
            }
        }
        for b in buffers { try c.broadcast(UnsafeMutableRawPointer(b.pointer), bytes: 4 * b.count, root: 0) }
        return shared
    }

    /// Gives each network's LoRA dropout the key of this micro-batch: a function of the run's seed, the step and
    /// the micro-batch, so a resumed run draws the masks the uninterrupted one drew.
    private func setDropoutKeys(step: Int, microBatch: Int) {
        for (i, m) in [policy, value].enumerated() {
            guard let a = m?.adapters, a.config.dropout > 0 else { continue }
            var g = SplitMix64(seed: config.loader.seed ^ UInt64(step) &* 0x9E37_79B9 ^ UInt64(microBatch) << 40)
            a.dropoutKey = g.next() &+ UInt64(i)
        }
    }

    /// Forward passes, losses and backward passes of one micro-batch; gradients accumulate.
    private func microStep(_ b: TrainingBatch, weight: Double) throws -> ObjectiveStats {
        let c = config
        if let reference {
            try reference.forward(b.packed, logProbs: &refLogProbs)
        }
        let refs = reference != nil ? refLogProbs : b.refLogProbs
        if c.exactKL, let reference {
            try policy.forward(b.packed, logProbs: &logProbs, klAgainst: reference, kl: &kl)
        } else {
            try policy.forward(b.packed, logProbs: &logProbs)
        }
        if let value { try value.forwardValues(b.packed, values: &values) }
        let stats: ObjectiveStats
        switch c.method {
        case .oreo:
            stats = try objective.oreo(
                spans: b.spans, stepEnds: b.stepEnds, logProbs: logProbs, refLogProbs: refs,
                values: values, kl: c.exactKL ? kl : nil, config: c.oreo, sequenceWeight: weight)
        case .dqo:
            stats = try objective.dqo(
                spans: b.spans, logProbs: logProbs, refLogProbs: refs, values: values,
                config: c.dqo, sequenceWeight: weight)
        case .sft, .rft:
            stats = try objective.nll(spans: b.spans, logProbs: logProbs, sequenceWeight: weight)
        case .dpo:
            stats = try objective.dpo(
                spans: b.spans, logProbs: logProbs, refLogProbs: refs, config: c.dpo, pairWeight: weight)
        case .kto:
            stats = try objective.kto(
                spans: b.spans, logProbs: logProbs, refLogProbs: refs, config: c.kto, sequenceWeight: weight)
        }
        // A non-finite loss must not reach the weights: the caller stops before any update.
        guard stats.isFinite else { return stats }
        if let value { try value.backwardValues(dValues: objective.dValues) }
        if c.exactKL, reference != nil {
            try policy.backward(dLogProbs: objective.dLogProbs, dKL: objective.dKL)
        } else {
            try policy.backward(dLogProbs: objective.dLogProbs)
        }
        return stats
    }

    /// Whether the run has reached its end: step `--max-steps`, or else the data of `epochs` epochs used.
    private var isDone: Bool { config.maxSteps > 0 ? step >= totalSteps : loader.finished(epochs: config.epochs) }

    private func makeMetrics(
        _ s: ObjectiveStats, lr: Double, valueLR: Double?, gradNorm: Double, valueGradNorm: Double?,
        tokens: Int, seconds: Double, elapsed: Double
    ) -> StepMetrics {
        let method = config.method
        let units = Double(max(1, method == .dpo ? s.pairs : s.sequences))
        let seqs = Double(max(1, s.sequences))
        func mean(_ sum: Double, _ n: Int) -> Double? { n > 0 ? sum / Double(n) : nil }
        // Units consumed over the epoch's units (an estimate for a large dataset: held below 1 until its end).
        let p = loader.position
        let fraction =
            p.run >= loader.runCount ? 1 : min(0.999, Double(p.consumed) / Double(max(1, loader.unitsPerEpoch)))
        return StepMetrics(
            step: step, epoch: Double(p.epoch) + fraction,
            lr: lr, valueLR: valueLR, loss: s.policyLoss / units,
            valueLoss: method.hasValue ? s.valueLoss / seqs : nil, bellman: method.hasValue ? s.bellman / seqs : nil,
            kl: (method == .oreo && config.oreo.alpha != 0) || method == .kto ? s.kl / seqs : nil,
            valueError: method.hasValue ? s.valueError / seqs : nil,
            valuePositive: method.hasValue ? mean(s.positiveValue, s.positiveStates) : nil,
            valueNegative: method.hasValue ? mean(s.negativeValue, s.negativeStates) : nil,
            logProbPositive: mean(s.positiveLogProb, s.positiveTokens),
            logProbNegative: mean(s.negativeLogProb, s.negativeTokens),
            logRatio: method.needsReference ? s.logRatio / seqs : nil,
            gradNorm: gradNorm, valueGradNorm: valueGradNorm,
            pairAccuracy: method == .dpo ? mean(Double(s.pairsCorrect), s.pairs) : nil,
            margin: method == .dpo ? mean(s.margin, s.pairs) : nil,
            importanceWeight: method == .dqo ? s.weight / seqs : nil,
            sequences: s.sequences, tokens: tokens, tokensPerSecond: Double(tokens) / max(seconds, 1e-9),
            elapsed: elapsed)
    }
}
