import ArgumentParser
import Format
import Foundation
import Infer
import Ingest
import Models
import Support
import Train
import Runs
import Rounds
import Runs

/// `oreo iterate`: one round of iterative OREO (or a baseline): sample from the current policy, label with the
/// verifier, ingest, score against the current policy, train from it.
struct IterateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iterate",
        abstract: "One round of sample -> label -> ingest -> score -> train from the current policy.",
        usage:
            "oreo iterate --model CURRENT --prompts P.jsonl --out ROUND [--n K] [--config TRAIN.toml] [--SETTING VALUE ...]",
        discussion: """
            Stages, each in ROUND (each records its inputs in ROUND/stages: rerun the same command after an \
            interruption and finished stages whose inputs match are skipped, an interrupted one continues):
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
        if common.adapter != nil {
            throw ValidationError(
                "--adapter is for oreo sample and oreo eval; oreo iterate does not train adapters yet")
        }
        var round = IterateSettings(model: common.model, prompts: prompts, output: out)
        round.tokenizer = common.tokenizer
        round.chatTemplate = common.chatTemplate
        round.maxNewTokens = common.maxNewTokens
        round.batchSize = common.batchSize
        round.seed = common.seed
        round.stop = common.stop
        round.decodeWeights = common.decodeWeights
        round.samples = n
        round.verifier = verifier
        round.temperature = temperature
        round.stepDelimiters = stepDelimiter
        round.overwrite = overwrite
        let iterate: IterateRound
        do {
            round.training = try IterateSettings.training(configFile: config, flags: settings)
            if let p = common.precision { round.training.config.precision = p == .fp32 ? nil : p }
            iterate = try IterateRound(settings: round)
        } catch let e as RoundError {
            throw ValidationError(e.message)
        }
        let printer = RoundPrinter()
        let outcome = try iterate.run { printer.show($0) }
        if outcome.unfinished {
            print("to continue: \(ContinueCommand(commandLine: CommandLine.arguments).line)")
        } else {
            print("next round: oreo iterate --model \(outcome.run)/policy --prompts \(prompts) --out NEXT ...")
        }
    }
}

/// Prints a round's events: a line per stage (`[1/4 sample] ...`, saying when it was skipped, continued or
/// cut) on stdout, progress lines and remarks on stderr.
final class RoundPrinter {
    private var bars: [RoundStage: (bar: Progress, done: Double)] = [:]

    /// Prints one event.
    func show(_ e: RoundEvent) {
        switch e {
        case .progress(let stage, let p):
            let bar = bars[stage]?.bar ?? Progress(stage.rawValue, total: p.total, unit: p.unit, startingAt: p.before)
            bar.update(p.done, detail: p.detail)
            bars[stage] = (bar, p.done)
        case .finished(let stage, let summary, let status):
            if let b = bars.removeValue(forKey: stage) { b.bar.finish(b.done) }
            print("\(stage.tag) \(status.line(summary))")
        case .note(let text):
            printError(text)
        }
    }
}
