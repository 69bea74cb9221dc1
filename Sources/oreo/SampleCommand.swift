import ArgumentParser
import Foundation
import Infer
import Ingest
import Models
import Train

/// Options shared by `oreo sample` and `oreo eval`: the model, its tokenizer and the prompt format.
struct ModelOptions: ParsableArguments {
    @Option(help: "Policy: a GGUF file (Llama family) or an HF directory (config.json + model.safetensors).")
    var model: String
    @Option(help: "tokenizer.json (default: the model directory's, or the one a GGUF's metadata describes).")
    var tokenizer: String?
    @Option(help: "Prompt format: chatml, none, or auto (ChatML when the model's chat template is ChatML).")
    var chatTemplate = "auto"
    @Option(help: "Most tokens per response.")
    var maxNewTokens = 256
    @Option(help: "Sequences decoded together.")
    var batchSize = 8
    @Option(
        help: "Seed of the sampling streams (each sample has its own, derived from the seed, prompt and sample index).")
    var seed: UInt64 = 0
    @Option(help: "Stop string (repeatable); the response keeps it.")
    var stop: [String] = []
    @Option(
        help: ArgumentHelp(
            "Weights decoding reads: auto, f32, bf16, f16 or q8_0.",
            discussion:
                "auto: a GGUF's own blocks (the same values as its f32 dequantization, several times fewer bytes per token, so faster), f32 for a checkpoint directory. bf16, f16 and q8_0 round the f32 weights (lossy, faster)."
        ))
    var decodeWeights: DecodeWeights = .auto
    @Option(
        help: ArgumentHelp(
            "Number format of the matrix products: fp32 (default), or bf16 (CPUs with AVX512_BF16 or AMX).",
            discussion:
                "bf16: passes of more than 12 rows (prompts, beams) run bf16 products with f32 accumulation on the weights rounded to bf16; passes of few rows read the weights given by --decode-weights, whose auto is bf16 for a checkpoint directory. `oreo iterate` trains in this precision too."
        ))
    var precision: Precision?
    @Option(help: "A PEFT LoRA adapter directory (adapter_config.json) for --model, applied unmerged.")
    var adapter: String?

    func load(valueHead: Bool = false) throws -> (InferenceModel, ChatTemplate) {
        let t0 = Date()
        let m = try InferenceModel.load(
            path: model, tokenizer: tokenizer, decodeWeights: decodeWeights, precision: precision ?? .fp32,
            adapter: adapter)
        let template = try m.chatTemplate(chatTemplate)
        let c = m.model.config
        let kind: String
        switch template {
        case .none: kind = "none"
        case .chatML(let s):
            kind = "ChatML" + (s.map { " (default system message: \($0.prefix(40).debugDescription))" } ?? "")
        }
        printRoot(
            "model \(model): \(c.family.rawValue), \(c.layers) layers, d \(c.hiddenSize), vocabulary \(c.vocabSize); chat template \(kind); decoding weights \(m.decodeWeights); loaded in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s"
        )
        printRoot(BLASRuntime.summary)
        return (m, template)
    }
}

/// `oreo sample`: K samples per prompt, labelled, in the ingest line format.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract:
            "Sample K responses per prompt from a model, labelled with rewards, as trajectories for `oreo ingest`.",
        discussion: """
            Prompt file: JSON Lines, one object per line:

              {"prompt": "Natalia sold 48 clips ...", "answer": "72", "id": "gsm8k-1"}

            "prompt" (or "question") is required; "answer" (string or number) is optional and is what the verifier \
            compares against; "id" (string or integer, default: the line number) names the prompt in the output.

            Output (--out): one line per sample, {"prompt", "response", "reward", "id", "group", "meta"} with the \
            chat-templated prompt text, so `oreo ingest T.jsonl --tokenizer tokenizer.json` tokenizes exactly what \
            the model saw (--format ids writes "prompt_ids"/"response_ids" instead, keeping the sampled ids; EOS is \
            included when the model emitted it). "group" is the prompt's id; "meta" holds the answer, the sample \
            index, why it ended (eos, stop, length), its token count and log-prob. `oreo ingest` puts EOS after \
            every text response (--eos auto), also after one cut at --max-new-tokens (meta.finish "length"); \
            --format ids keeps such a response open.

            Lines go to OUT.partial as each prompt's K samples complete; an interrupted run continues where it \
            stopped when started again with the same arguments (samples are seeded per prompt and index, so the \
            result equals an uninterrupted run), and OUT appears when all prompts are done.
            """)

    @OptionGroup var common: ModelOptions
    @OptionGroup var threadOptions: ThreadOptions
    @Option(help: "Prompts (JSON Lines).") var prompts: String
    @Option(help: "Samples per prompt.") var n = 4
    @Option(name: .shortAndLong, help: "Output JSONL.") var out: String
    @Option(help: "Verifier: gsm8k, boxed, exact, or command:SHELL-COMMAND (reads a JSON line, prints a reward).")
    var verifier = "gsm8k"
    @Option(help: "Sampling temperature (0: greedy).") var temperature = 1.0
    @Option(help: "Top-k truncation (0: off).") var topK = 0
    @Option(help: "Top-p (nucleus) truncation (1: off).") var topP = 1.0
    @Option(help: "Line format: text ({prompt, response}) or ids ({prompt_ids, response_ids}).") var format = "text"
    @Flag(help: "Allow prompts without an answer (their samples get reward 0 and meta.labelled false).")
    var allowUnlabelled = false
    @Flag(help: "Discard a partial output from an interrupted run instead of resuming it.") var overwrite = false

    func run() throws {
        let collective = try threadOptions.apply()
        guard n >= 1 else { throw ValidationError("--n must be at least 1") }
        guard format == "text" || format == "ids" else { throw ValidationError("--format takes text or ids") }
        let problems = try ProblemFile.read(prompts)
        guard !problems.isEmpty else { throw ValidationError("\(prompts) has no prompts") }
        let unlabelled = problems.filter { $0.answer == nil }
        if !unlabelled.isEmpty && !allowUnlabelled {
            throw ValidationError(
                "\(prompts): \(unlabelled.count) prompt(s) have no \"answer\" (first: line \(unlabelled[0].line)); pass --allow-unlabelled to sample them with reward 0"
            )
        }
        let v = try makeVerifier(verifier)
        var options = SampleOptions()
        options.n = n
        options.sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP)
        try options.sampling.validate()
        options.maxNewTokens = common.maxNewTokens
        options.batchSize = common.batchSize
        options.stop = common.stop.map { String(decoding: unescapeDelimiter($0), as: UTF8.self) }
        options.seed = common.seed
        options.ids = format == "ids"
        let (m, template) = try common.load()
        // Under mpirun rank 0 writes the file; the others sample their share.
        let output = collective.isRoot ? try ResumableJSONL(path: out, overwrite: overwrite) : nil
        let progress = Progress(
            "sample", total: Double(problems.count), unit: "prompts", silent: !collective.isRoot)
        let t0 = Date()
        let s = try SampleJob.run(
            model: m, template: template, problems: problems, verifier: v, options: options,
            output: output, collective: collective
        ) { p in
            progress.update(Double(p.done))
        }
        progress.finish(Double(problems.count))
        guard let output else { return }
        try output.finish()
        let secs = Date().timeIntervalSince(t0)
        if s.resumed > 0 { print("resumed: \(s.resumed) prompt(s) were already sampled") }
        print(
            "sampled \(s.sampled) prompt(s) x \(n): \(s.tokens) tokens in \(String(format: "%.1f", secs)) s (\(String(format: "%.1f", Double(s.tokens) / max(secs, 1e-9))) tokens/s)"
        )
        if let r = s.meanReward { print("mean reward \(String(format: "%.3f", r)) (\(v.name))") }
        print("wrote \(s.lines) lines to \(out)")
    }
}

extension DecodeWeights: ExpressibleByArgument {}
