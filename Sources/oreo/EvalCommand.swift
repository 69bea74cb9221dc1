import ArgumentParser
import Foundation
import Infer
import Ingest
import Models
import Train

/// `oreo eval`: greedy or value-guided beam-search accuracy on problems with answers.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy of a model on problems with answers: greedy, or value-guided step-level beam search.",
        discussion: """
            Data: JSON Lines like `oreo sample`'s prompts, each with an "answer".

            --search greedy (default) decodes each problem greedily, batched. --search beam runs the step-level \
            beam search of OREO: each of B beams samples B one-step continuations (up to a step delimiter, \
            temperature 1), finished candidates (end token) are set aside, the others are scored and the top B \
            kept, up to --max-steps; the answer is the finished candidate with the highest score. Scores: the \
            value network --value V at the last token of each candidate's full prefix (--scorer value, the \
            default with --value), or the policy's cumulative log-prob (--scorer logprob). Candidates fork their \
            beam's KV cache, so shared prefixes are computed once.

            Every answer is written to --out with its reward and score; an interrupted run resumes from it.
            """)

    @OptionGroup var common: ModelOptions
    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "Problems with answers (JSON Lines).") var data: String
    @Option(name: .shortAndLong, help: "Answers JSONL (id, prompt, answer, response, reward, score, tokens, finish).")
    var out = "answers.jsonl"
    @Option(help: "Verifier: gsm8k, boxed, exact, or command:SHELL-COMMAND.") var verifier = "gsm8k"
    @Option(help: "greedy or beam.") var search = "greedy"
    @Option(help: "Beams kept per step (B).") var width = 7
    @Option(help: "One-step samples per beam (default: the width).") var samplesPerBeam: Int?
    @Option(help: "Value model directory (a checkpoint with value_head.weight) for --search beam.") var value: String?
    @Option(
        help:
            "A PEFT LoRA adapter of the value network (a LoRA run's RUN/value; it carries the head) applied to --value, which is then its base (INIT)."
    )
    var valueAdapter: String?
    @Option(help: "Beam scorer: value or logprob (default: value when --value is given).") var scorer: String?
    @Option(help: "Most steps of the beam search.") var maxSteps = 20
    @Option(help: "Most tokens in one step.") var maxStepTokens = 128
    @Option(help: "Step delimiter (repeatable; \\n \\t \\r escapes). Default: newline.") var stepDelimiter: [String] =
        []
    @Option(help: "Temperature of the beam search's step samples.") var temperature = 1.0
    @Flag(help: "Discard answers from an interrupted run instead of resuming.") var overwrite = false

    func run() throws {
        let collective = try threadOptions.apply()
        if valueAdapter != nil && value == nil {
            throw ValidationError("--value-adapter needs --value BASE (the value network's INIT)")
        }
        let problems = try ProblemFile.read(data)
        guard !problems.isEmpty else { throw ValidationError("\(data) has no problems") }
        let v = try makeVerifier(verifier)
        let (m, template) = try common.load()
        let method: EvalMethod
        switch search {
        case "greedy":
            method = .greedy(batchSize: common.batchSize)
        case "beam":
            let scorerName = scorer ?? (value != nil ? "value" : "")
            let s: CandidateScorer
            switch scorerName {
            case "value":
                guard let value else { throw ValidationError("--scorer value needs --value V") }
                let vm = try InferenceModel.load(
                    path: value, tokenizer: common.tokenizer ?? (m.tokenizer.path), valueHead: true,
                    decodeWeights: common.decodeWeights, precision: common.precision ?? .fp32, adapter: valueAdapter)
                guard vm.model.config.vocabSize == m.model.config.vocabSize else {
                    throw ValidationError(
                        "value model vocabulary \(vm.model.config.vocabSize) differs from the policy's \(m.model.config.vocabSize)"
                    )
                }
                printRoot(
                    "value model \(value): \(vm.model.config.layers) layers, d \(vm.model.config.hiddenSize); decoding weights \(vm.decodeWeights)"
                )
                s = try ValueScorer(model: vm.model)
            case "logprob": s = LogProbScorer()
            case "": throw ValidationError("--search beam needs --value V (or --scorer logprob)")
            default: throw ValidationError("--scorer takes value or logprob")
            }
            var cfg = BeamSearchConfig()
            cfg.width = width
            cfg.samplesPerBeam = samplesPerBeam ?? width
            cfg.maxSteps = maxSteps
            cfg.maxStepTokens = maxStepTokens
            cfg.maxNewTokens = common.maxNewTokens
            if !stepDelimiter.isEmpty {
                cfg.stepDelimiters = stepDelimiter.map { String(decoding: unescapeDelimiter($0), as: UTF8.self) }
            }
            cfg.sampling = SamplingParameters(temperature: temperature)
            let longest = problems.map { m.encodePrompt($0.prompt, template: template).count }.max() ?? 1
            method = .beam(
                try BeamSearch(
                    policy: m.model, tokenizer: m.tokenizer, stopTokens: m.stopTokens, scorer: s,
                    config: cfg, maxPromptTokens: longest))
            printRoot(
                "beam search: \(cfg.width) beams x \(cfg.samplesPerBeam) samples, scorer \(s.name), up to \(cfg.maxSteps) steps"
            )
        default:
            throw ValidationError("--search takes greedy or beam")
        }
        // Under mpirun rank 0 writes the file; the others evaluate their share.
        let output = collective.isRoot ? try ResumableJSONL(path: out, overwrite: overwrite) : nil
        let progress = Progress("eval", total: Double(problems.count), unit: "problems", silent: !collective.isRoot)
        var correctSoFar = 0
        let s = try Evaluator.run(
            model: m, template: template, problems: problems, verifier: v, method: method,
            maxNewTokens: common.maxNewTokens, seed: common.seed, output: output, collective: collective,
            progress: { p in progress.update(Double(p.done)) },
            onRecord: { r in if r.reward > 0 { correctSoFar += 1 } })
        progress.finish(Double(problems.count))
        guard let output else { return }
        try output.finish()
        let secs = max(s.seconds, 1e-9)
        print(
            "accuracy \(String(format: "%.2f", 100 * s.accuracy))% (\(s.correct) / \(s.problems), \(v.name), \(search))"
        )
        var line =
            "\(s.tokensGenerated) tokens generated in \(String(format: "%.1f", s.seconds)) s (\(String(format: "%.1f", Double(s.tokensGenerated) / secs)) tokens/s)"
        if s.candidatesScored > 0 {
            line +=
                "; \(s.candidatesScored) candidates scored (\(String(format: "%.1f", Double(s.candidatesScored) / secs))/s)"
        }
        print(line)
        print("answers: \(out)")
    }
}
