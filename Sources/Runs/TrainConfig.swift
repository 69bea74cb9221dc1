import Foundation
import Checkpoint
import Train

/// The training methods `TrainJob` runs on the same offline data.
public enum TrainMethod: String, Sendable, Codable, CaseIterable {
    /// Policy and value network trained jointly on the soft Bellman equation.
    case oreo
    /// Token NLL on every response.
    case sft
    /// Rejection sampling: token NLL on positive responses only.
    case rft
    /// Direct preference optimization on (positive, negative) pairs of a prompt.
    case dpo
    /// Kahneman-Tversky optimization on unpaired positives and negatives.
    case kto
    /// Direct Q-function optimization: lambda-returns and clipped importance weights.
    case dqo

    /// Whether the method trains a value network beside the policy.
    public var hasValue: Bool { self == .oreo || self == .dqo }
    /// Whether the method needs reference log-probs.
    public var needsReference: Bool { self != .sft && self != .rft }
}

/// Where reference log-probs come from.
public enum ReferenceSource: String, Sendable, Codable, CaseIterable {
    /// A reference model when OREO's exact KL needs one, else the dataset's stored column.
    case auto
    /// The per-token column written by `oreo score` (no reference model in memory).
    case column
    /// A frozen reference model running beside the policy (one more forward pass per micro-batch).
    case model
}

/// Every setting of a training run. Defaults follow docs/algorithm.md (the paper's 1.5B settings):
/// tiny models need far larger learning rates (the demo calibration used 1e-4 for the policy, 5e-4 for the value).
public struct TrainConfig: Sendable, Equatable, Codable {
    /// Method.
    public var method = TrainMethod.oreo
    /// Passes over the data (ignored when `maxSteps` > 0).
    public var epochs = 1
    /// Stop after this many optimizer steps (0: as many as `epochs` give); the schedule spans them.
    public var maxSteps = 0
    /// Data order, batching and sequence limits.
    public var loader = LoaderConfig()
    /// Peak learning rate of the policy.
    public var learningRate = 5e-6
    /// Peak learning rate of the value network.
    public var valueLearningRate = 5e-6
    /// Cosine floor as a fraction of the peak.
    public var minLearningRateFraction = 0.0
    /// Fraction of the steps spent in linear warmup.
    public var warmupFraction = 0.03
    /// Adam moment decays, epsilon and decoupled weight decay.
    public var adamBeta1 = 0.9, adamBeta2 = 0.95, adamEps = 1e-8, weightDecay = 0.0
    /// Gradient-norm clip of each network (0: no clipping).
    public var gradientClip = 1.0
    /// OREO objective (beta, alpha, level, stop-gradient, TD, k3 KL).
    public var oreo = OREOConfig()
    /// DQO objective.
    public var dqo = DQOConfig()
    /// DPO objective.
    public var dpo = DPOConfig()
    /// DPO pairs drawn per prompt group (from its positives x negatives, without replacement).
    public var dpoPairsPerPrompt = 8
    /// KTO objective.
    public var kto = KTOConfig()
    /// Where reference log-probs come from.
    public var reference = ReferenceSource.auto
    /// The dataset's per-token reference column.
    public var referenceColumn = ReferenceScorer.defaultColumn
    /// Write a checkpoint every N optimizer steps (0: only at the end).
    public var checkpointEvery = 0
    /// Checkpoints kept besides the newest one (older ones are deleted).
    public var keepCheckpoints = 2
    /// Number format of the models' matrix products; nil is fp32 (and is what runs made before bf16 stored, so
    /// they still resume).
    public var precision: Precision?
    /// LoRA on the policy (nil: full fine-tuning; also what runs made before LoRA stored).
    public var lora: LoRASettings?
    /// LoRA on the value network's backbone (its head stays full-rank); nil: full fine-tuning.
    public var valueLora: LoRASettings?
    /// How the frozen base under LoRA stores its blocks' matrices; nil is f32 (and what earlier runs stored).
    public var baseWeights: BaseWeights?
    /// Recompute each block's activations in the backward instead of keeping them (nil: keep them, as earlier runs).
    public var recompute: Bool?

    /// The defaults.
    public init() {}

    /// Whether this configuration keeps a frozen reference model in memory.
    public var usesReferenceModel: Bool {
        guard method.needsReference else { return false }
        switch reference {
        case .model: return true
        case .column: return false
        case .auto: return method == .oreo && !oreo.k3 && oreo.alpha != 0
        }
    }

    /// Whether OREO's KL term is the exact full-vocabulary one (needs the reference model).
    public var exactKL: Bool { method == .oreo && !oreo.k3 && oreo.alpha != 0 }

    /// Drops LoRA settings of rank 0 (a TOML file lists every key, rank 0 meaning none), so equal runs compare equal.
    public mutating func normalize() {
        if lora?.rank == 0 { lora = nil }
        if valueLora?.rank == 0 { valueLora = nil }
        if baseWeights == .f32 { baseWeights = nil }
        if recompute == false { recompute = nil }
    }

    /// Checks ranges; the first problem is thrown with the setting's name.
    public func validate() throws {
        func bad(_ s: String) -> DataError { DataError("invalid setting: \(s)") }
        for (prefix, l) in [("lora", lora), ("value_lora", valueLora)] {
            guard let l else { continue }
            if l.rank < 0 || l.alpha < 0 || !l.alpha.isFinite {
                throw bad("\(prefix)_rank and \(prefix)_alpha must be >= 0")
            }
            if !(0..<1).contains(l.dropout) { throw bad("\(prefix)_dropout must be in [0, 1)") }
        }
        if let b = baseWeights, b != .f32, lora == nil {
            throw bad(
                "base_weights \(b.rawValue): a packed base is frozen, so the policy must train LoRA adapters (set lora_rank)"
            )
        }
        if valueLora.map({ $0.rank > 0 }) == true && !method.hasValue {
            throw bad("value_lora_rank: \(method.rawValue) trains no value network")
        }
        if epochs < 1 { throw bad("epochs must be >= 1") }
        if maxSteps < 0 { throw bad("max_steps must be >= 0") }
        for (n, v) in [("learning_rate", learningRate), ("value_learning_rate", valueLearningRate)]
        where !(v >= 0 && v.isFinite) {
            throw bad("\(n) = \(v) must be a finite number >= 0")
        }
        if !(0...1).contains(minLearningRateFraction) { throw bad("min_lr_fraction must be in [0, 1]") }
        if !(0...1).contains(warmupFraction) { throw bad("warmup_fraction must be in [0, 1]") }
        if !(0..<1).contains(adamBeta1) || !(0..<1).contains(adamBeta2) { throw bad("adam betas must be in [0, 1)") }
        if !(adamEps > 0) || weightDecay < 0 || gradientClip < 0 {
            throw bad("adam_eps must be > 0, weight_decay and grad_clip >= 0")
        }
        if !(oreo.beta > 0) || oreo.alpha < 0 { throw bad("beta must be > 0 and alpha >= 0") }
        if !(0...1).contains(dqo.lambda) { throw bad("dqo_lambda must be in [0, 1]") }
        if !(dqo.beta > 0) || !(dpo.beta > 0) || !(kto.beta > 0) {
            throw bad("dqo_beta, dpo_beta and kto_beta must be > 0")
        }
        if dpoPairsPerPrompt < 1 { throw bad("dpo_pairs_per_prompt must be >= 1") }
        if checkpointEvery < 0 || keepCheckpoints < 0 {
            throw bad("checkpoint_every and keep_checkpoints must be >= 0")
        }
        if exactKL && reference == .column {
            throw bad(
                "the exact KL needs the reference distribution: use reference = model (or auto), or kl = k3 with the stored column"
            )
        }
    }
}

/// LoRA settings of one network of a run.
public struct LoRASettings: Sendable, Equatable, Codable {
    /// Rank r (0: no adapters).
    public var rank = 0
    /// Scale numerator (the update is multiplied by alpha / r); 0 means alpha = r.
    public var alpha = 0.0
    /// Adapted layers: comma-separated targets (q, k, v, o, gate, up, down; c_attn, c_proj, c_fc) or all.
    public var targets = "all"
    /// Dropout probability on the adapters' input (0: none).
    public var dropout = 0.0

    /// No adapters until a rank is set.
    public init() {}

    private enum CodingKeys: String, CodingKey { case rank, alpha, targets, dropout }

    /// Decodes settings; runs stored before dropout existed had none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rank = try c.decode(Int.self, forKey: .rank)
        alpha = try c.decode(Double.self, forKey: .alpha)
        targets = try c.decode(String.self, forKey: .targets)
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? 0
    }

    /// The adapters' configuration for a model of `family` (targets checked against it).
    public func config(family: ModelFamily) throws -> LoRAConfig {
        LoRAConfig(
            rank: rank, alpha: alpha > 0 ? alpha : Double(rank), dropout: dropout,
            targets: try LoRATarget.parse(targets, family: family))
    }
}
