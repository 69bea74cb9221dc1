import Format
import Foundation
import Models
import Support
import TOMLKit
import Train

/// Everything `oreo train` is told: the training configuration plus where the models and data are, as
/// read from a TOML file and flags (`apply`) and written back as TOML (`toml`).
public struct TrainSettings: Sendable {
    /// The training configuration.
    public var config = TrainConfig()
    /// INIT: a safetensors directory or a .gguf file.
    public var model: String?
    /// Or a config.json to initialize randomly from, with its seed.
    public var initConfig: String?
    /// Seed of the random initialization.
    public var initSeed: UInt64 = 0
    /// The frozen reference model, when one runs in memory (default: INIT).
    public var referenceModel: String?
    /// The dataset directory.
    public var data: String?
    /// A PEFT LoRA adapter the policy starts from (its rank, alpha and targets become the run's).
    public var adapter: String?
    /// A PEFT LoRA adapter (with its value head) the value network starts from.
    public var valueAdapter: String?
    /// A full value network (a checkpoint directory with value_head.weight) the value network starts from.
    public var valueModel: String?

    /// The defaults.
    public init() {}
}

/// One setting: its TOML key (the flag is the key with dashes), help, and how to read and write it.
public struct Setting: Sendable {
    /// TOML key.
    public let key: String
    /// One line of help.
    public let help: String
    let get: @Sendable (TrainSettings) -> String
    let set: @Sendable (inout TrainSettings, String) throws -> Void
    let isBool: Bool

    /// The command-line flag.
    public var flag: String { "--" + key.replacingOccurrences(of: "_", with: "-") }
}

/// A bad setting value or file, with where it came from.
public struct SettingError: Error, CustomStringConvertible {
    /// What is wrong, with file:line when from a file.
    public let description: String
}

private func number<T: LosslessStringConvertible>(_ s: String, _ key: String) throws -> T {
    guard let v = T(s) else { throw SettingError(description: "\(key): '\(s)' is not a valid \(T.self)") }
    return v
}

private func choice<E: RawRepresentable & CaseIterable & Sendable>(_ s: String, _ key: String) throws -> E
where E.RawValue == String {
    guard let v = E(rawValue: s) else {
        throw SettingError(
            description: "\(key): '\(s)' is not one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return v
}

private func flag(_ s: String, _ key: String) throws -> Bool {
    switch s.lowercased() {
    case "true", "1", "yes", "on": return true
    case "false", "0", "no", "off": return false
    default: throw SettingError(description: "\(key): '\(s)' is not true or false")
    }
}

/// A TOML string literal (a JSON string literal is a valid TOML basic string).
func tomlString(_ s: String) -> String { jsonStringLiteral(s) }

/// A TOML float literal that reads back to the same Double.
private func tomlDouble(_ x: Double) -> String {
    let s = "\(x)"
    return s.contains(".") || s.contains("e") || s.contains("inf") || s.contains("nan") ? s : s + ".0"
}

private func d(_ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, Double> & Sendable) -> Setting {
    Setting(
        key: key, help: help, get: { tomlDouble($0[keyPath: kp]) },
        set: { $0[keyPath: kp] = try number($1, key) }, isBool: false)
}

private func i(_ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, Int> & Sendable) -> Setting {
    Setting(
        key: key, help: help, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try number($1, key) },
        isBool: false)
}

private func b(_ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, Bool> & Sendable) -> Setting {
    Setting(
        key: key, help: help, get: { "\($0[keyPath: kp])" }, set: { $0[keyPath: kp] = try flag($1, key) }, isBool: true)
}

private func e<E: RawRepresentable & CaseIterable & Sendable>(
    _ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, E> & Sendable
) -> Setting
where E.RawValue == String {
    Setting(
        key: key, help: help + " (" + E.allCases.map(\.rawValue).joined(separator: "|") + ")",
        get: { tomlString($0[keyPath: kp].rawValue) }, set: { $0[keyPath: kp] = try choice($1, key) }, isBool: false)
}

private func path(_ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, String?> & Sendable) -> Setting {
    Setting(
        key: key, help: help, get: { $0[keyPath: kp].map(tomlString) ?? "" }, set: { $0[keyPath: kp] = $1 },
        isBool: false)
}

/// Every setting of `oreo train`, in the order --help and RUN/config.toml list them.
public let trainSettings: [Setting] =
    [
        path("model", "INIT: a safetensors directory with config.json, or a .gguf file", \.model),
        path(
            "init_config", "instead of --model: a config.json to initialize randomly (seeded by init_seed)",
            \.initConfig),
        Setting(
            key: "init_seed", help: "seed of the random initialization", get: { "\($0.initSeed)" },
            set: { $0.initSeed = try number($1, "init_seed") }, isBool: false),
        path("reference_model", "the frozen reference model when one runs in memory (default: INIT)", \.referenceModel),
        path("data", "the dataset directory", \.data),
        path(
            "adapter", "a PEFT LoRA adapter of INIT for the policy to start from (sets the lora_* settings)", \.adapter),
        path(
            "value_adapter", "a PEFT LoRA adapter (with value_head) for the value network to start from",
            \.valueAdapter),
        path(
            "value_model",
            "a value network (a checkpoint directory with value_head.weight, e.g. RUN/value) for a full value network to start from instead of INIT with a zero head",
            \.valueModel),
        e("method", "training method", \.config.method),
        i("epochs", "passes over the data (ignored when max_steps > 0)", \.config.epochs),
        i("max_steps", "stop after N optimizer steps (0: as many as the epochs give)", \.config.maxSteps),
        Setting(
            key: "seed", help: "seed of the data order and of DPO pair drawing", get: { "\($0.config.loader.seed)" },
            set: { $0.config.loader.seed = try number($1, "seed") }, isBool: false),
        i(
            "tokens_per_micro_batch", "token budget of one micro-batch (the memory knob)",
            \.config.loader.tokensPerMicroBatch),
        i(
            "micro_batches_per_step", "micro-batches accumulated into one optimizer step",
            \.config.loader.microBatchesPerStep),
        i("max_length", "longest sequence in tokens (0: the model's limit)", \.config.loader.maxLength),
        e("overlong", "trajectories longer than max_length", \.config.loader.overlong),
        i("window_tokens", "shuffle locality window in tokens", \.config.loader.windowTokens),
        i("mix_windows", "windows shuffled together", \.config.loader.mixWindows),
        Setting(
            key: "positive_threshold", help: "reward at or above which a trajectory is positive",
            get: { tomlDouble(Double($0.config.loader.positiveThreshold)) },
            set: { $0.config.loader.positiveThreshold = try number($1, "positive_threshold") }, isBool: false),
        d(
            "learning_rate", "peak policy learning rate (5e-6 is the paper's 1.5B value; tiny models need ~1e-4..1e-3)",
            \.config.learningRate),
        d("value_learning_rate", "peak value-network learning rate", \.config.valueLearningRate),
        d("min_lr_fraction", "cosine floor as a fraction of the peak", \.config.minLearningRateFraction),
        d("warmup_fraction", "fraction of steps in linear warmup", \.config.warmupFraction),
        d("adam_beta1", "Adam first-moment decay", \.config.adamBeta1),
        d("adam_beta2", "Adam second-moment decay", \.config.adamBeta2),
        d("adam_eps", "Adam epsilon", \.config.adamEps),
        d("weight_decay", "decoupled weight decay of matrices", \.config.weightDecay),
        d("grad_clip", "gradient-norm clip per network (0: none)", \.config.gradientClip),
        d("beta", "OREO: KL-regularization strength of the soft Bellman equation", \.config.oreo.beta),
        d(
            "alpha", "OREO: weight of the KL term (default 0.01; 0.1 at step level, 0.3 at response level unless set)",
            \.config.oreo.alpha),
        e("level", "OREO: states that carry residuals", \.config.oreo.level),
        b(
            "stop_gradient", "OREO: stop the gradient through later log-ratios (false: the ablation)",
            \.config.oreo.stopGradient),
        b("td", "OREO: single-step TD residual instead of the Monte-Carlo one", \.config.oreo.temporalDifference),
        Setting(
            key: "kl",
            help:
                "OREO: exact full-vocabulary KL against the reference model, or the k3 estimate from the stored column (exact|k3)",
            get: { tomlString($0.config.oreo.k3 ? "k3" : "exact") },
            set: { s, v in
                guard v == "exact" || v == "k3" else {
                    throw SettingError(description: "kl: '\(v)' is not one of exact, k3")
                }
                s.config.oreo.k3 = v == "k3"
            }, isBool: false),
        d("dqo_beta", "DQO: KL-regularization strength", \.config.dqo.beta),
        d("dqo_lambda", "DQO: lambda of the lambda-returns", \.config.dqo.lambda),
        d("dqo_clip", "DQO: importance weights are exp(min(sum rho, c))", \.config.dqo.clip),
        b(
            "dqo_importance_weights", "DQO: weight trajectories by their clipped importance ratio",
            \.config.dqo.importanceWeights),
        d("dpo_beta", "DPO: temperature", \.config.dpo.beta),
        i(
            "dpo_pairs_per_prompt", "DPO: pairs drawn per prompt group from positives x negatives",
            \.config.dpoPairsPerPrompt),
        d("kto_beta", "KTO: temperature", \.config.kto.beta),
        d("kto_lambda_d", "KTO: weight of desirable responses", \.config.kto.lambdaD),
        d("kto_lambda_u", "KTO: weight of undesirable responses", \.config.kto.lambdaU),
        e(
            "reference", "reference log-probs: auto (a model for the exact KL, else the column), column, model",
            \.config.reference),
        Setting(
            key: "reference_column", help: "the dataset's per-token reference column",
            get: { tomlString($0.config.referenceColumn) },
            set: { $0.config.referenceColumn = $1 }, isBool: false),
        e(
            "precision",
            "number format of the matrix products: fp32, or bf16 (f32 weights and optimizer, bf16 products with f32 accumulation; CPUs with AVX512_BF16 or AMX)",
            \.config.precision, absent: .fp32),
        e(
            "base_weights",
            "how the frozen base under LoRA holds its layers' matrices: f32, bf16, q8_0, or gguf (a GGUF INIT's own blocks); the base is read one tensor at a time",
            \.config.baseWeights, absent: .f32),
        Setting(
            key: "recompute",
            help:
                "activation checkpointing: keep only each layer's input and recompute its activations in the backward (about a third more compute, far less memory for long sequences)",
            get: { "\($0.config.recompute ?? false)" },
            set: { $0.config.recompute = try flag($1, "recompute") ? true : nil }, isBool: true),
        i("checkpoint_every", "checkpoint every N steps (0: only at the end)", \.config.checkpointEvery),
        i("keep_checkpoints", "checkpoints kept besides the newest", \.config.keepCheckpoints),
    ] + loraSettings

/// A choice stored as nil when it is `absent`'s value (what configurations made before the setting existed hold).
private func e<E: RawRepresentable & CaseIterable & Sendable & Equatable>(
    _ key: String, _ help: String, _ kp: WritableKeyPath<TrainSettings, E?> & Sendable, absent: E
) -> Setting
where E.RawValue == String {
    Setting(
        key: key, help: help + " (" + E.allCases.map(\.rawValue).joined(separator: "|") + ")",
        get: { tomlString(($0[keyPath: kp] ?? absent).rawValue) },
        set: {
            let v: E = try choice($1, key)
            $0[keyPath: kp] = v == absent ? nil : v
        }, isBool: false)
}

/// One field of one network's LoRA settings (the settings struct appears when a field is first set).
private func lora<T: LosslessStringConvertible & Sendable>(
    _ key: String, _ help: String, _ network: WritableKeyPath<TrainConfig, LoRASettings?> & Sendable,
    _ field: WritableKeyPath<LoRASettings, T> & Sendable, toml: @escaping @Sendable (T) -> String
) -> Setting {
    Setting(
        // nothing when the network has no LoRA settings, so the effective TOML of a full run lists none
        key: key, help: help, get: { $0.config[keyPath: network].map { toml($0[keyPath: field]) } ?? "" },
        set: {
            var l = $0.config[keyPath: network] ?? LoRASettings()
            l[keyPath: field] = try number($1, key)
            $0.config[keyPath: network] = l
        }, isBool: false)
}

/// LoRA settings of the policy (`lora_*`) and of the value network (`value_lora_*`).
private let loraSettings: [Setting] =
    loraSettings(prefix: "", network: \TrainConfig.lora, who: "the policy")
    + loraSettings(prefix: "value_", network: \TrainConfig.valueLora, who: "the value network's backbone")

/// The LoRA settings of one network.
private func loraSettings(
    prefix: String, network: WritableKeyPath<TrainConfig, LoRASettings?> & Sendable, who: String
) -> [Setting] {
    let head = prefix.isEmpty ? "" : ", the head trains in full"
    return [
        lora(
            prefix + "lora_rank",
            "LoRA rank of \(who) (default 0: full fine-tuning; with a rank the base stays frozen\(head))",
            network, \.rank, toml: { "\($0)" }),
        lora(
            prefix + "lora_alpha", "LoRA alpha of \(who): updates are scaled by alpha / rank (default 0: alpha = rank)",
            network, \.alpha, toml: tomlDouble),
        lora(
            prefix + "lora_dropout", "dropout probability on the LoRA adapters' input of \(who) (default 0)", network,
            \.dropout, toml: tomlDouble),
        lora(
            prefix + "lora_targets",
            "layers the adapters of \(who) go on: q,k,v,o,gate,up,down (GPT-2: c_attn,c_proj,c_fc) or all (default all)",
            network, \.targets, toml: tomlString),
    ]
}

let settingsByKey = Dictionary(uniqueKeysWithValues: trainSettings.map { ($0.key, $0) })

extension TrainSettings {
    /// Applies a TOML file's keys (flat `key = value`, the same names as the flags with underscores).
    /// Returns the keys it set.
    public mutating func apply(tomlFile file: String) throws -> Set<String> {
        let text: String
        do { text = try readTextFile(file) } catch { throw SettingError(description: error.description) }
        return try apply(tomlText: text, file: file)
    }

    /// Applies settings from TOML text (`file` names it in errors); returns the keys it set.
    public mutating func apply(tomlText text: String, file: String) throws -> Set<String> {
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw SettingError(description: "\(file):\(e.source.begin.line):\(e.source.begin.column): \(e.description)")
        }
        func line(of key: String) -> String {
            for (n, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where l.trimmingCharacters(in: .whitespaces).hasPrefix(key) { return "\(file):\(n + 1)" }
            return file
        }
        var set = Set<String>()
        for (key, value) in table {
            // A record of the MPI ranks that ran the last session (`ranksLine`), not a setting.
            if key == "ranks" { continue }
            guard let s = settingsByKey[key] else {
                throw SettingError(description: "\(line(of: key)): unknown setting '\(key)' (see oreo train --help)")
            }
            let literal: String
            if let v = value.bool {
                literal = "\(v)"
            } else if let v = value.int {
                literal = "\(v)"
            } else if let v = value.double {
                literal = "\(v)"
            } else if let v = value.string {
                literal = v
            } else {
                throw SettingError(description: "\(line(of: key)): '\(key)' must be a number, boolean or string")
            }
            do { try s.set(&self, literal) } catch let err as SettingError {
                throw SettingError(description: "\(line(of: key)): \(err.description)")
            }
            set.insert(key)
        }
        return set
    }

    /// Applies `--key value` / `--key=value` pairs (bare boolean flags mean true). Returns the keys set.
    public mutating func apply(flags args: [String]) throws -> Set<String> {
        var set = Set<String>()
        var k = 0
        while k < args.count {
            let a = args[k]
            guard a.hasPrefix("--") else { throw SettingError(description: "unexpected argument '\(a)'") }
            var name = String(a.dropFirst(2)), value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            let key = name.replacingOccurrences(of: "-", with: "_")
            guard let s = settingsByKey[key] else {
                throw SettingError(description: "unknown option '\(a)' (see oreo train --help)")
            }
            if value == nil {
                if k + 1 < args.count, !(s.isBool && args[k + 1].hasPrefix("--")) {
                    value = args[k + 1]
                    k += 1
                } else if s.isBool {
                    value = "true"
                } else {
                    throw SettingError(description: "\(s.flag) needs a value")
                }
            }
            try s.set(&self, value!)
            set.insert(key)
            k += 1
        }
        return set
    }

    /// The paper's alpha per OREO level (0.1 step, 0.3 response) unless `alpha` is among `explicit`.
    public mutating func applyLevelDefaults(explicit: Set<String>) {
        guard !explicit.contains("alpha") else { return }
        switch config.oreo.level {
        case .token: break
        case .step: config.oreo.alpha = 0.1
        case .response: config.oreo.alpha = 0.3
        }
    }

    /// INIT as a model source: `model`, or a random initialization of `init_config`.
    public func modelSource() throws -> ModelSource {
        switch (model, initConfig) {
        case (let m?, nil): return ModelSource(path: m)
        case (nil, let c?): return try ModelSource.random(configFile: c, seed: initSeed)
        case (nil, nil):
            throw SettingError(
                description: "give --model INIT (a safetensors directory or .gguf) or --init-config config.json")
        default: throw SettingError(description: "give either --model or --init-config, not both")
        }
    }

    /// The settings as a TOML file `apply(tomlFile:)` reads back (paths that are unset are left out).
    /// The line RUN/config.toml records the number of MPI ranks with (read back as nothing: a resumed run may
    /// use another count with the same global batch).
    public static func ranksLine(_ ranks: Int) -> String {
        "# MPI ranks of the last session (a record, not a setting)\nranks = \(ranks)\n"
    }

    public var toml: String {
        var out = "# oreo train: effective configuration (flags override these keys)\n"
        for s in trainSettings {
            let v = s.get(self)
            if !v.isEmpty { out += "\(s.key) = \(v)\n" }
        }
        return out
    }
}

/// The settings list for --help, with the defaults.
public func settingsHelp() -> String {
    let defaults = TrainSettings()
    return trainSettings.map { s in
        let v = s.get(defaults)
        return "  \(s.flag)\(v.isEmpty ? "" : " (default \(v))")\n      \(s.help)"
    }.joined(separator: "\n")
}
