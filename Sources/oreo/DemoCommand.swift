import ArgumentParser
import Demo
import Runs
import Foundation
import Rounds
import Synchronization
import Train

/// `oreo demo`: the paper's comparison in miniature on the built-in word-problem task.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the built-in demo: SFT vs RFT, DPO, KTO, OREO and DQO on generated multi-step word problems.",
        discussion: """
            Stages (per seed unless marked):
            \(DemoStage.allCases.map { "  \($0.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0))\($0.summary)\($0 == .tokenizer || $0 == .report ? " (once)" : "")" }.joined(separator: "\n"))

            The task: a short word problem (varied names, objects and sentences), \(ProblemConfig().minSteps) to \
            \(ProblemConfig().maxSteps) calculation steps (--min-calc-steps, --max-calc-steps) one per line (`7+5=12`), \
            then `#### N`. A sample earns reward 1 when it ends with EOS and its final answer is right; \
            the verifier also finds the first wrong line. Train, validation and test problems never share a problem.

            Every model starts from the same SFT model, trained from scratch on the worked solutions (or from \
            --model, a pretrained GGUF or safetensors directory, whose tokenizer then replaces the task's). Every \
            offline method trains on the same labeled samples of the SFT policy. Accuracy is greedy decoding and \
            step-level beam search (B beams x B one-line samples, ranked by a value network or by the policy's own \
            log-prob) on the test problems; the scorers are also measured on held-out samples (within-problem AUC, \
            score change at the first wrong line).

            Output (--out): tokenizer.json, and per seed: data/*.jsonl (worked solutions, prompts, labeled samples), \
            shards/ (ingested datasets), models/METHOD/run (oreo train run directories), eval/*.jsonl (every \
            answer with its verdict); then results.md, results.json and search-*.svg. Run the same command again to \
            continue: finished stages whose inputs are unchanged are reused, an interrupted training run resumes \
            from its last checkpoint, and a stage whose inputs changed (another learning rate, say) is redone with \
            everything downstream of it. Other data settings (problems, samples) in the same directory need \
            --overwrite. The time budget bounds the whole run: seeds side by side share it, each seed's part caps its \
            training runs (SFT at most 35% of it, the other methods 40% together) and, once it has passed, the \
            decodings and metrics not yet done are left out; what did not fit is reported as such ("skipped (budget)", \
            "stopped by the time budget after N of M updates"), the run ends with the command that continues it, and \
            the next run in the same directory does (or continues) it ("continued from step N"); a finished stage \
            whose inputs match says "skipped (done)".
            """)

    @Option(name: .shortAndLong, help: "Output directory.") var out = "oreo-demo"
    @Option(help: "Seeds, comma-separated; the table reports their spread.") var seeds = "1,2,3"
    @Option(help: "Training problems (worked solutions for SFT; prompts for sampling).") var train = 5000
    @Option(help: "Validation problems (held-out SFT loss and value-network metrics).") var validation = 500
    @Option(help: "Test problems (reported accuracy).") var test = 500
    @Option(help: "Samples per problem (K) for the offline data and the held-out value metrics.") var samples = 8
    @Option(help: "Training problems that get samples (at most --train).") var sampleProblems = 600
    @Option(help: "Sampling temperature.") var temperature = 1.0
    @Option(help: "Longest generated response, in tokens.") var maxTokens = 128
    @Option(help: "Beam widths for value-guided search, comma-separated.") var beamWidths = "2,4"
    @Option(help: "Methods trained from the SFT model, comma-separated (SFT is always trained).") var methods =
        "RFT,DPO,KTO,OREO,DQO"
    @Option(help: "Wall-clock budget of the whole run: seconds, or with s / m / h.") var timeBudget = "15m"
    @Option(help: "Fewest calculation steps (lines like 7+5=12) per problem.") var minCalcSteps = ProblemConfig()
        .minSteps
    @Option(help: "Most calculation steps (lines like 7+5=12) per problem.") var maxCalcSteps = ProblemConfig().maxSteps
    // Their first names, hidden: `oreo eval --max-steps` counts beam-search steps, a different thing.
    @Option(name: .customLong("min-steps"), help: .hidden) var minStepsAlias: Int?
    @Option(name: .customLong("max-steps"), help: .hidden) var maxStepsAlias: Int?
    @Option(help: "Starting value range, LOW-HIGH.") var startRange = "2-20"
    @Option(help: "Operand range of + and -, LOW-HIGH.") var operandRange = "1-9"
    @Option(help: "Operations steps may use, comma-separated from + - *.") var operations = "+,-,*"
    @Option(help: "Multiplication factors, comma-separated (empty: none).") var factors = "2,3"
    @Option(help: "Probability that a step multiplies (when a factor keeps the value in bounds).")
    var multiplyProbability = 0.25
    @Option(help: "Largest intermediate value.") var maxValue = 99
    @Option(help: "Calculation lines: equation (7+5=12) or sentence (Adding 5: 7+5=12).") var style = "equation"
    @Option(help: "Most tokenizer merges over the task's words (0: bytes only).") var merges = 512
    @Option(help: "Split accuracy is measured on: test (the results) or validation (for choosing settings).")
    var evaluateOn = "test"
    @Option(help: "Seeds run side by side, one thread each (default: up to twice --threads; 1 with --model).")
    var parallelSeeds: Int?
    @Option(help: "Threads.") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Delete what an earlier demo run wrote to --out first.") var overwrite = false

    @Option(
        help: ArgumentHelp(
            "Start from this pretrained model (a .gguf file or a safetensors directory) instead of training from scratch; its tokenizer replaces the task tokenizer.",
            valueName: "PATH"))
    var model: String?
    @Option(help: "Transformer blocks of the from-scratch model.") var layers = DemoTrainingSettings().layers
    @Option(help: "Width of the from-scratch model.") var hidden = DemoTrainingSettings().hidden
    @Option(help: "Attention heads of the from-scratch model.") var heads = DemoTrainingSettings().heads
    @Option(help: "MLP width of the from-scratch model.") var mlp = DemoTrainingSettings().intermediate
    @Option(help: "SFT optimizer steps.") var sftSteps = DemoTrainingSettings().sftSteps
    @Option(help: "SFT peak learning rate (cosine schedule).") var sftLr = DemoTrainingSettings().sftLearningRate
    @Option(help: "Tokens per optimizer step.") var batchTokens = DemoTrainingSettings().batchTokens
    @Option(help: "Weight decay of every run.") var weightDecay = DemoTrainingSettings().weightDecay
    @Option(help: "Epochs of every offline method over the samples.") var epochs = DemoTrainingSettings().epochs
    @Option(
        help:
            "Number format of the training runs' matrix products: fp32, or bf16 (CPUs with AVX512_BF16 or AMX; sampling stays fp32)."
    )
    var precision = Precision.fp32
    @Option(
        help:
            "LoRA rank of the offline methods' policies (0: full fine-tuning); SFT stays full, so the adapters sit on the SFT model, which is also the reference."
    )
    var loraRank = 0
    @Option(help: "LoRA rank of OREO's and DQO's value networks (0: full; the head trains in full either way).")
    var valueLoraRank = 0
    @Option(help: "LoRA alpha of both (0: alpha = rank).") var loraAlpha = 0.0
    @Option(
        help: ArgumentHelp(
            "Policy learning rates of the offline methods, METHOD=LR comma-separated (default: \(DemoCommand.rates(DemoTrainingSettings().learningRates))).",
            valueName: "RATES"))
    var lr: String?
    @Option(help: "Value-network learning rate (OREO, DQO).") var valueLr = DemoTrainingSettings().valueLearningRate
    @Option(help: "OREO and DQO's KL strength beta.") var beta = DemoTrainingSettings().beta
    @Option(help: "OREO's KL weight alpha.") var alpha = DemoTrainingSettings().alpha
    @Option(help: "OREO's residual level: token or step.") var level = DemoTrainingSettings().level.rawValue
    @Option(help: "DPO's beta.") var preferenceBeta = DemoTrainingSettings().preferenceBeta
    @Option(help: "KTO's beta.") var ktoBeta = DemoTrainingSettings().ktoBeta
    @Option(help: "One-step samples per beam in beam search (default: the width).") var samplesPerBeam: Int?
    @Option(help: "Policies also searched with their own log-prob as scorer: sft, sft-and-value, all or none.")
    var logprobSearch = LogProbSearch.sft.rawValue

    static func rates(_ r: [String: Double]) -> String {
        DemoMethod.allCases.compactMap { m in r[m.rawValue].map { "\(m.rawValue)=\($0)" } }.joined(separator: ",")
    }

    /// The training settings from the options.
    func training() throws -> DemoTrainingSettings {
        var t = DemoTrainingSettings()
        t.initModel = model
        t.layers = layers
        t.hidden = hidden
        t.heads = heads
        t.intermediate = mlp
        t.sftSteps = sftSteps
        t.sftLearningRate = sftLr
        t.batchTokens = batchTokens
        t.weightDecay = weightDecay
        t.epochs = epochs
        try precision.checkSupported()
        t.precision = precision == .fp32 ? nil : precision
        guard loraRank >= 0, valueLoraRank >= 0, loraAlpha >= 0 else {
            throw ValidationError("--lora-rank, --value-lora-rank and --lora-alpha must be >= 0")
        }
        for (rank, path) in [(loraRank, \DemoTrainingSettings.lora), (valueLoraRank, \.valueLora)] where rank > 0 {
            var l = LoRASettings()
            l.rank = rank
            l.alpha = loraAlpha
            t[keyPath: path] = l
        }
        for (name, value) in try DemoCommand.list(
            lr ?? "", "--lr",
            { part -> (String, Double)? in
                let kv = part.split(separator: "=").map(String.init)
                guard kv.count == 2, let v = Double(kv[1]),
                    let m = DemoMethod.allCases.first(where: { $0.rawValue.lowercased() == kv[0].lowercased() }),
                    m != .sft
                else { return nil }
                return (m.rawValue, v)
            })
        { t.learningRates[name] = value }
        t.valueLearningRate = valueLr
        t.beta = beta
        t.alpha = alpha
        t.preferenceBeta = preferenceBeta
        t.ktoBeta = ktoBeta
        guard let l = OREOLevel(rawValue: level), l != .response else {
            throw ValidationError("--level takes token or step")
        }
        t.level = l
        do { try t.validate() } catch { throw ValidationError(error.message) }
        return t
    }

    /// The hooks of this build: `TrainJob` for training, Infer's generator and beam search for sampling,
    /// decoding and scoring, all in-process.
    func builtInHooks(_ c: DemoConfig, tokenizer: String) throws -> DemoHooks {
        var search = DemoSearchSettings()
        search.samplesPerBeam = samplesPerBeam
        guard let l = LogProbSearch(rawValue: logprobSearch) else {
            throw ValidationError("--logprob-search takes sft, sft-and-value, all or none")
        }
        search.logProbSearch = l
        let inference = InProcessInference(tokenizer: tokenizer, search: search)
        return DemoHooks(trainer: InProcessTrainer(training: try training()), sampler: inference, evaluator: inference)
    }

    func config() throws -> DemoConfig {
        var c = DemoConfig(output: out)
        c.seeds = try DemoCommand.list(seeds, "--seeds") { UInt64($0) }
        c.sizes = SplitSizes(train: train, validation: validation, test: test)
        c.samplesPerProblem = samples
        c.sampledProblems = min(sampleProblems, train)
        c.temperature = temperature
        c.maxResponseTokens = maxTokens
        c.beamWidths = try DemoCommand.list(beamWidths, "--beam-widths") { Int($0) }
        c.methods = try DemoCommand.list(methods, "--methods") { name in
            DemoMethod.allCases.first { $0.rawValue.lowercased() == name.lowercased() }
        }
        .filter { $0 != .sft }
        guard let budget = DemoCommand.seconds(timeBudget) else {
            throw ValidationError("--time-budget takes seconds or a number with s, m or h: '\(timeBudget)'")
        }
        c.timeBudget = budget
        c.task.minSteps = minStepsAlias ?? minCalcSteps
        c.task.maxSteps = maxStepsAlias ?? maxCalcSteps
        c.task.startRange = try DemoCommand.range(startRange, "--start-range")
        c.task.operandRange = try DemoCommand.range(operandRange, "--operand-range")
        c.task.operations = try DemoCommand.list(operations, "--operations") { ArithmeticOp(rawValue: $0) }
        c.task.factors = factors.isEmpty ? [] : try DemoCommand.list(factors, "--factors") { Int($0) }
        c.task.multiplyProbability = multiplyProbability
        c.task.maxValue = maxValue
        guard let s = StepStyle(rawValue: style) else { throw ValidationError("--style takes equation or sentence") }
        c.task.style = s
        c.tokenizerMerges = merges
        c.threads = max(1, threads)
        if let p = parallelSeeds, p < 1 { throw ValidationError("--parallel-seeds must be positive") }
        c.parallelSeeds = parallelSeeds
        guard let split = ProblemSplit(rawValue: evaluateOn), split != .train else {
            throw ValidationError("--evaluate-on takes test or validation")
        }
        c.evaluationSplit = split
        c.overwrite = overwrite
        return c
    }

    static func list<T>(_ text: String, _ option: String, _ parse: (String) -> T?) throws -> [T] {
        try text.split(separator: ",").map { part in
            let s = part.trimmingCharacters(in: .whitespaces)
            guard let v = parse(s) else { throw ValidationError("\(option): cannot read '\(s)'") }
            return v
        }
    }

    static func range(_ text: String, _ option: String) throws -> ClosedRange<Int> {
        let p = text.split(separator: "-").compactMap { Int($0) }
        guard p.count == 2, p[0] <= p[1] else {
            throw ValidationError("\(option) takes LOW-HIGH with LOW <= HIGH: '\(text)'")
        }
        return p[0]...p[1]
    }

    /// `900`, `900s`, `15m`, `1.5h` in seconds.
    static func seconds(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let u = text.last, let scale = units[u] { return Double(text.dropLast()).map { $0 * scale } }
        return Double(text)
    }

    func run() throws {
        var c = try config()
        c.pretrainedModel = model
        // Before any stage runs (the data stages would run first and fail later, at the tokenizer).
        if let model, !FileManager.default.fileExists(atPath: model) {
            throw CommandError("no such file or directory: \(model)")
        }
        if let s = samplesPerBeam, s < 1 { throw ValidationError("--samples-per-beam must be positive") }
        let pipeline: DemoPipeline
        do {
            pipeline = try DemoPipeline(config: c, hooks: try builtInHooks(c, tokenizer: c.output + "/tokenizer.json"))
        } catch let e as DemoError {
            throw ValidationError(e.message)
        }
        EventPrinter.say(
            "oreo demo: seeds \(c.seeds.map(String.init).joined(separator: ",")) (\(c.concurrentSeeds) at a time), \(c.sizes.train) / \(c.sizes.validation) / \(c.sizes.test) problems, budget \(Int(c.timeBudget)) s, \(c.threads) thread(s) -> \(c.output)"
        )
        let printer = EventPrinter()
        let started = Date()
        let outcome = try pipeline.run { printer.show($0) }
        // The last line: how to finish what the time budget cut or left out.
        defer {
            if !outcome.unfinished.isEmpty {
                print("cut by the time budget: \(outcome.unfinished.joined(separator: "; "))")
                print("to continue: \(ContinueCommand(commandLine: CommandLine.arguments).line)")
            }
        }
        if outcome.report.evaluations.isEmpty {
            print("no accuracy to report; the data is ready in \(c.output)")
            return
        }
        // The accuracy table, as in results.md.
        let md = outcome.report.markdown.split(separator: "\n", omittingEmptySubsequences: false)
        if let start = md.firstIndex(where: { $0.hasSuffix("accuracy (%)") }) {
            print("")
            for line in md[start...].prefix(while: { !$0.hasPrefix("Mean ±") }) where !line.isEmpty { print(line) }
        }
        print(
            "\nresults: \(outcome.reportPaths.joined(separator: ", ")) (\(String(format: "%.0f", Date().timeIntervalSince(started))) s)"
        )
    }
}

/// Prints pipeline events as stage lines; work inside a stage that runs longer than a second gets a
/// progress line (rate, ETA) on stderr.
final class EventPrinter: Sendable {
    private struct Job {
        var start = Date(), done = 0.0, total: Double?, shown = false
        var bar: Progress
    }
    private let jobs = Mutex<[String: Job]>([:])
    private let start = Date()

    /// Prints a line to stdout now (stdout is block-buffered in logs; progress lines go to stderr in between).
    static func say(_ line: String) {
        print(line)
        fflush(nil)
    }

    static func tag(_ stage: DemoStage, _ seed: UInt64?) -> String {
        seed.map { "[seed \($0)] \(stage.rawValue)" } ?? "[\(stage.rawValue)]"
    }

    func show(_ e: DemoEvent) {
        jobs.withLock { jobs in
            switch e {
            case .started:
                break
            case .progress(let stage, let seed, let p):
                let tag = EventPrinter.tag(stage, seed)
                // the next piece of work in the stage
                if let job = jobs[tag], p.total != job.total || p.done < job.done {
                    if job.shown { job.bar.finish(job.done) }
                    jobs[tag] = nil
                }
                var job = jobs[tag] ?? Job(total: p.total, bar: Progress(tag, total: p.total, unit: p.unit))
                job.done = p.done
                if job.shown || Date().timeIntervalSince(job.start) >= 1 {
                    job.bar.update(p.done)
                    job.shown = true
                }
                jobs[tag] = job
            case .finished(let stage, let seed, let summary, let seconds):
                let tag = EventPrinter.tag(stage, seed)
                if let job = jobs.removeValue(forKey: tag), job.shown { job.bar.finish(job.done) }
                EventPrinter.say(
                    "\(tag): \(summary) (\(String(format: "%.1f", seconds)) s; \(String(format: "%.0f", Date().timeIntervalSince(start))) s in all)"
                )
            case .skipped(let stage, let seed, let status, let reason):
                EventPrinter.say(
                    "\(EventPrinter.tag(stage, seed)): \(status.outcome == .notRun ? "skipped: " + reason : status.line(reason))"
                )
            }
        }
    }
}
