import Foundation
import Infer
import Models
import Runs
import Train

/// Everything one round of `oreo iterate` is configured by: the current policy, the prompts, sampling,
/// ingest and training settings.
public struct IterateSettings: Sendable {
    /// The current policy: a GGUF file or a safetensors directory.
    public var model: String
    /// Its tokenizer.json (nil: the model's own).
    public var tokenizer: String?
    /// Prompt format: chatml, none or auto.
    public var chatTemplate = "auto"
    /// Most tokens per sampled response.
    public var maxNewTokens = 256
    /// Sequences decoded together.
    public var batchSize = 8
    /// Seed of the sampling streams.
    public var seed: UInt64 = 0
    /// Stop strings (escapes as on the command line).
    public var stop: [String] = []
    /// Weights decoding reads.
    public var decodeWeights: DecodeWeights = .auto
    /// Prompts with answers (JSON Lines: prompt, answer, id).
    public var prompts: String
    /// The round's directory.
    public var output: String
    /// Samples per prompt.
    public var samples = 8
    /// Verifier: gsm8k, boxed, exact, or command:SHELL-COMMAND.
    public var verifier = "gsm8k"
    /// Sampling temperature.
    public var temperature = 1.0
    /// Step delimiters for ingest (escapes as on the command line; empty: newline).
    public var stepDelimiters: [String] = []
    /// Training settings (`model` and `data` are the round's: the current policy and the round's dataset).
    public var training: TrainSettings
    /// The round's number format: the training setting `precision`, which sampling and scoring follow.
    public var precision: Precision { training.config.precision ?? .fp32 }
    /// The stage-input entry for a non-default precision (none for fp32, so rounds from before bf16 still match).
    var precisionInput: [(String, String)] { precision == .fp32 ? [] : [("precision", precision.rawValue)] }
    /// Delete what an earlier run of this round left in `output` first.
    public var overwrite = false
    /// Seconds training may take in this run (nil: no limit; `oreo iterate` sets none): a run the budget
    /// stops is continued by the next run of the same round.
    public var timeBudget: Double?

    /// A round of `model` on `prompts` into `output` with these training settings.
    public init(model: String, prompts: String, output: String, training: TrainSettings = TrainSettings()) {
        self.model = model
        self.prompts = prompts
        self.output = output
        self.training = training
        self.training.model = model
        self.training.data = output + "/data"
    }

    /// Training settings from an optional TOML file and `oreo train` flags (flags win); the round sets
    /// the model and the data itself, so settings naming them are refused.
    public static func training(configFile: String?, flags: [String]) throws -> TrainSettings {
        var s = TrainSettings()
        var set = Set<String>()
        if let configFile { set.formUnion(try s.apply(tomlFile: configFile)) }
        set.formUnion(try s.apply(flags: flags))
        for key in ["model", "data", "init_config"] where set.contains(key) {
            throw RoundError(
                "iterate sets \(key) itself: give the current policy with --model before the training settings")
        }
        s.applyLevelDefaults(explicit: set)
        return s
    }

    /// Throws on settings that cannot run.
    public func validate() throws {
        guard samples >= 1 else { throw RoundError("--n must be at least 1") }
        if let timeBudget, !(timeBudget > 0) { throw RoundError("the time budget must be positive") }
        try roundTraining.config.validate()
    }

    /// The training settings with the round's model and data.
    public var roundTraining: TrainSettings {
        var s = training
        s.model = model
        s.data = output + "/data"
        return s
    }

    /// What a rerun of the round must agree on: the inputs and every setting (iterate.json; the same text
    /// as before stage records, so rounds from then are continued).
    var identity: Data {
        var lines = [
            "model = \(model)", "tokenizer = \(tokenizer ?? "-")", "prompts = \(prompts)",
            "n = \(samples)", "verifier = \(verifier)", "temperature = \(temperature)", "seed = \(seed)",
            "max_new_tokens = \(maxNewTokens)", "chat_template = \(chatTemplate)",
            "stop = \(stop)", "step_delimiter = \(stepDelimiters)",
        ]
        if let size = (try? FileManager.default.attributesOfItem(atPath: prompts))?[.size] as? Int {
            lines.append("prompts_bytes = \(size)")
        }
        lines.append(roundTraining.toml)
        return Data(lines.joined(separator: "\n").utf8)
    }
}
