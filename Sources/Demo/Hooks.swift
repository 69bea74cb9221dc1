/// What the demo asks a trainer to do: one method, on one dataset, from one starting point.
public struct TrainRequest: Sendable, Equatable {
    /// The method to train (SFT from scratch first; every other method from the SFT model).
    public var method: DemoMethod
    /// The training dataset directory (shards written by ingest).
    public var data: String
    /// A held-out dataset for validation loss (SFT: the validation split's worked solutions), if any.
    public var validation: String?
    /// Checkpoint to start from; nil: a fresh model (the demo's small from-scratch configuration).
    public var initialization: String?
    /// Frozen reference model for KL terms and log-ratios (the SFT model); nil for SFT itself.
    public var reference: String?
    /// Checkpoint directory to write.
    public var output: String
    /// The task tokenizer.json (vocabulary size, PAD/BOS/EOS ids).
    public var tokenizer: String
    /// Seed of the run (initialization, data order).
    public var seed: UInt64
    /// Wall-clock seconds this job may use; the trainer stops (and saves) when they run out.
    public var timeBudget: Double
    /// Threads to use.
    public var threads: Int

    /// A request.
    public init(
        method: DemoMethod, data: String, validation: String?, initialization: String?, reference: String?,
        output: String, tokenizer: String, seed: UInt64, timeBudget: Double, threads: Int
    ) {
        self.method = method
        self.data = data
        self.validation = validation
        self.initialization = initialization
        self.reference = reference
        self.output = output
        self.tokenizer = tokenizer
        self.seed = seed
        self.timeBudget = timeBudget
        self.threads = threads
    }
}

/// A checkpoint a trainer produced.
public struct TrainedModel: Sendable, Equatable, Codable {
    /// The method that trained it.
    public var method: DemoMethod
    /// Its checkpoint directory (the policy).
    public var checkpoint: String
    /// Whether it has a value network (OREO, DQO), so value-guided search and value metrics apply.
    public var hasValueHead: Bool
    /// Wall seconds spent training.
    public var seconds: Double
    /// Optimizer updates made.
    public var updates: Int
    /// The value network's checkpoint directory, when it has one apart from the policy's.
    public var valueCheckpoint: String?
    /// What produced these weights (settings, data, starting point, steps done): stages that use the model
    /// are redone when it changes.
    public var identity: String
    /// Updates the run was planned for (more than `updates` when a time budget stopped it).
    public var plannedUpdates: Int
    /// Remarks for the report (a run stopped by its time budget, data left out).
    public var notes: [String]
    /// Whether the trainer reused a finished run instead of training.
    public var reused = false
    /// The step an interrupted run was continued from in this run (nil: trained from its start, or reused).
    public var continuedFrom: Int?
    /// The model `checkpoint` is a PEFT LoRA adapter of (nil: a whole model).
    public var base: String?
    /// The model `valueCheckpoint` is an adapter of (nil: a whole model).
    public var valueBase: String?

    /// A trained model.
    public init(
        method: DemoMethod, checkpoint: String, hasValueHead: Bool, seconds: Double, updates: Int,
        valueCheckpoint: String? = nil, identity: String = "", plannedUpdates: Int? = nil, notes: [String] = []
    ) {
        self.method = method
        self.checkpoint = checkpoint
        self.hasValueHead = hasValueHead
        self.seconds = seconds
        self.updates = updates
        self.valueCheckpoint = valueCheckpoint
        self.identity = identity.isEmpty ? "\(method.rawValue)@\(checkpoint)#\(updates)" : identity
        self.plannedUpdates = plannedUpdates ?? updates
        self.notes = notes
    }
}

/// One sampled response: the ids exactly as fed and drawn.
public struct SampledResponse: Sendable, Equatable {
    /// Prompt ids as fed to the model (BOS included).
    public var promptIds: [UInt32]
    /// Response ids as drawn (EOS included when the model emitted it).
    public var responseIds: [UInt32]

    /// A response.
    public init(promptIds: [UInt32], responseIds: [UInt32]) {
        self.promptIds = promptIds
        self.responseIds = responseIds
    }
}

/// The answer a decoding chose for one prompt, with what it cost.
public struct DecodedAnswer: Sendable, Equatable {
    /// The chosen response's ids (EOS included when emitted).
    public var responseIds: [UInt32]
    /// Tokens generated for this prompt, every candidate included.
    public var tokensGenerated: Int
    /// Candidates the scorer ranked for this prompt (0 for greedy decoding).
    public var candidatesScored: Int

    /// An answer.
    public init(responseIds: [UInt32], tokensGenerated: Int, candidatesScored: Int) {
        self.responseIds = responseIds
        self.tokensGenerated = tokensGenerated
        self.candidatesScored = candidatesScored
    }
}

/// Progress of a long hook call: units done of a total.
public struct HookProgress: Sendable {
    /// Units done.
    public var done: Double
    /// Units in all, when known.
    public var total: Double?
    /// What a unit is ("steps", "prompts").
    public var unit: String

    /// A progress report.
    public init(done: Double, total: Double?, unit: String) {
        self.done = done
        self.total = total
        self.unit = unit
    }
}

/// Trains models for the demo (the trainer: `oreo train`'s job behind this protocol).
public protocol DemoTrainer: Sendable {
    /// Trains `request.method` as requested and returns the checkpoint; reports progress as it goes. A
    /// trainer reuses a finished run with the same inputs and continues an interrupted one.
    func train(_ request: TrainRequest, progress: @escaping @Sendable (HookProgress) -> Void) throws -> TrainedModel
    /// The training settings, as report rows.
    var settings: [(key: String, value: String)] { get }
}

extension DemoTrainer {
    /// No settings to report.
    public var settings: [(key: String, value: String)] { [] }
}

/// Samples solutions from a model (the infer branch's KV-cached sampler behind this protocol).
public protocol DemoSampler: Sendable {
    /// `count` samples per prompt at `temperature`, at most `maxTokens` response tokens each, seeded, on
    /// `threads` threads; the result has one array per prompt, in order.
    func sample(
        _ model: TrainedModel, prompts: [PromptRecord], count: Int, temperature: Double, maxTokens: Int,
        seed: UInt64, threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[SampledResponse]]
}

/// Decodes answers and reads value estimates (the infer branch's greedy decoding, value-guided beam search
/// and value head behind this protocol). The demo checks every answer itself with the task verifier.
public protocol DemoEvaluator: Sendable {
    /// One answer per prompt, in order, by `decoding` (greedy, or beam search of a width ranked by a scorer),
    /// on `threads` threads.
    func decode(
        _ model: TrainedModel, prompts: [PromptRecord], decoding: Decoding, maxTokens: Int, seed: UInt64,
        threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [DecodedAnswer]
    /// Scorers this evaluator can rank beam candidates by for `model` ("value" needs a value head; "logprob" the policy).
    func scorers(for model: TrainedModel) -> [String]
    /// The scorer's score along each sample: at the prompt and at each of `stepEnds` (response-token
    /// offsets), so `result[i].count == stepEnds[i].count + 1`. "value": V of the value network at each
    /// prefix; "logprob": the policy's cumulative log-prob of the response up to there (0 at the prompt).
    func scores(
        _ model: TrainedModel, scorer: String, samples: [SampledResponse], stepEnds: [[Int]], threads: Int,
        progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[Double]]
    /// Report rows on how decoding and search run.
    var settings: [(key: String, value: String)] { get }
}

extension DemoEvaluator {
    /// No settings to report.
    public var settings: [(key: String, value: String)] { [] }
}

/// Where the other branches plug into `oreo demo`; a missing hook skips its stages (and says so).
public struct DemoHooks: Sendable {
    /// Training (`oreo train`), or nil.
    public var trainer: (any DemoTrainer)?
    /// Sampling, or nil.
    public var sampler: (any DemoSampler)?
    /// Decoding and value estimates, or nil.
    public var evaluator: (any DemoEvaluator)?

    /// Hooks; none by default.
    public init(
        trainer: (any DemoTrainer)? = nil, sampler: (any DemoSampler)? = nil, evaluator: (any DemoEvaluator)? = nil
    ) {
        self.trainer = trainer
        self.sampler = sampler
        self.evaluator = evaluator
    }
}
