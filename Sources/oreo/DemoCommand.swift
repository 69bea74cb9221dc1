import ArgumentParser
import Demo
import Foundation
import Synchronization

/// `oreo demo`: the paper's comparison in miniature on the built-in word-problem task.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the built-in demo: SFT vs RFT, DPO, KTO, OREO and DQO on generated multi-step word problems.",
        discussion: """
        Stages (per seed unless marked):
        \(DemoStage.allCases.map { "  \($0.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0))\($0.summary)\($0 == .tokenizer || $0 == .report ? " (once)" : "")" }.joined(separator: "\n"))

        The task: a short word problem (varied names, objects and sentences), 2 to 6 calculation steps one per \
        line (`7+5=12`), then `#### N`. A sample earns reward 1 when it ends with EOS and its final answer is right; \
        the verifier also finds the first wrong line. Train, validation and test problems never share a problem.

        Output (--out): tokenizer.json, and per seed: data/*.jsonl (worked solutions, prompts, labeled samples), \
        shards/ (ingested datasets), models/; then results.md, results.json and search-*.svg. Run the same command \
        again to continue; other data settings in the same directory need --overwrite.

        Stages whose component is not built into this oreo are skipped and listed, never filled with numbers.
        """)

    @Option(name: .shortAndLong, help: "Output directory.") var out = "oreo-demo"
    @Option(help: "Seeds, comma-separated; the table reports their spread.") var seeds = "1,2,3"
    @Option(help: "Training problems (worked solutions for SFT; prompts for sampling).") var train = 5000
    @Option(help: "Validation problems (held-out SFT loss and value-network metrics).") var validation = 500
    @Option(help: "Test problems (reported accuracy).") var test = 1000
    @Option(help: "Samples per problem (K) for the offline data and the held-out value metrics.") var samples = 8
    @Option(help: "Training problems that get samples (default: all).") var sampleProblems: Int?
    @Option(help: "Sampling temperature.") var temperature = 1.0
    @Option(help: "Longest generated response, in tokens.") var maxTokens = 128
    @Option(help: "Beam widths for value-guided search, comma-separated.") var beamWidths = "2,4,8"
    @Option(help: "Methods trained from the SFT model, comma-separated (SFT is always trained).") var methods = "RFT,DPO,KTO,OREO,DQO"
    @Option(help: "Wall-clock budget of the whole run: seconds, or with s / m / h.") var timeBudget = "15m"
    @Option(help: "Fewest calculation steps per problem.") var minSteps = 2
    @Option(help: "Most calculation steps per problem.") var maxSteps = 4
    @Option(help: "Starting value range, LOW-HIGH.") var startRange = "2-20"
    @Option(help: "Operand range of + and -, LOW-HIGH.") var operandRange = "1-9"
    @Option(help: "Operations steps may use, comma-separated from + - *.") var operations = "+,-,*"
    @Option(help: "Multiplication factors, comma-separated (empty: none).") var factors = "2,3"
    @Option(help: "Probability that a step multiplies (when a factor keeps the value in bounds).") var multiplyProbability = 0.25
    @Option(help: "Largest intermediate value.") var maxValue = 99
    @Option(help: "Calculation lines: equation (7+5=12) or sentence (Adding 5: 7+5=12).") var style = "equation"
    @Option(help: "Most tokenizer merges over the task's words (0: bytes only).") var merges = 512
    @Option(help: "Threads.") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Delete what an earlier demo run wrote to --out first.") var overwrite = false

    /// The hooks this build has. Training plugs in here as a `DemoTrainer` (the trainer's `TrainJob`);
    /// sampling, greedy decoding, value-guided beam search and value estimates as `DemoSampler` and
    /// `DemoEvaluator` (the infer branch). Until they do, their stages are skipped and say so.
    static func builtInHooks() -> DemoHooks { DemoHooks(trainer: nil, sampler: nil, evaluator: nil) }

    func config() throws -> DemoConfig {
        var c = DemoConfig(output: out)
        c.seeds = try DemoCommand.list(seeds, "--seeds") { UInt64($0) }
        c.sizes = SplitSizes(train: train, validation: validation, test: test)
        c.samplesPerProblem = samples
        c.sampledProblems = sampleProblems
        c.temperature = temperature
        c.maxResponseTokens = maxTokens
        c.beamWidths = try DemoCommand.list(beamWidths, "--beam-widths") { Int($0) }
        c.methods = try DemoCommand.list(methods, "--methods") { name in DemoMethod.allCases.first { $0.rawValue.lowercased() == name.lowercased() } }
            .filter { $0 != .sft }
        guard let budget = DemoCommand.seconds(timeBudget) else { throw ValidationError("--time-budget takes seconds or a number with s, m or h: '\(timeBudget)'") }
        c.timeBudget = budget
        c.task.minSteps = minSteps
        c.task.maxSteps = maxSteps
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
        guard p.count == 2, p[0] <= p[1] else { throw ValidationError("\(option) takes LOW-HIGH with LOW <= HIGH: '\(text)'") }
        return p[0]...p[1]
    }

    /// `900`, `900s`, `15m`, `1.5h` in seconds.
    static func seconds(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
        if let u = text.last, let scale = units[u] { return Double(text.dropLast()).map { $0 * scale } }
        return Double(text)
    }

    func run() throws {
        let c = try config()
        let pipeline: DemoPipeline
        do { pipeline = try DemoPipeline(config: c, hooks: DemoCommand.builtInHooks()) } catch { throw ValidationError(error.message) }
        EventPrinter.say("oreo demo: seeds \(c.seeds.map(String.init).joined(separator: ",")), \(c.sizes.train) / \(c.sizes.validation) / \(c.sizes.test) problems, budget \(Int(c.timeBudget)) s, \(c.threads) thread(s) -> \(c.output)")
        let printer = EventPrinter()
        let outcome = try pipeline.run { printer.show($0) }
        if outcome.report.evaluations.isEmpty {
            print("no accuracy to report: training, sampling and evaluation are not built into this oreo yet; the data is ready in \(c.output)")
        }
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

    static func tag(_ stage: DemoStage, _ seed: UInt64?) -> String { seed.map { "[seed \($0)] \(stage.rawValue)" } ?? "[\(stage.rawValue)]" }

    func show(_ e: DemoEvent) {
        jobs.withLock { jobs in
            switch e {
            case .started:
                break
            case .progress(let stage, let seed, let p):
                let tag = EventPrinter.tag(stage, seed)
                if let job = jobs[tag], p.total != job.total || p.done < job.done {  // the next piece of work in the stage
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
                EventPrinter.say("\(tag): \(summary) (\(String(format: "%.1f", seconds)) s; \(String(format: "%.0f", Date().timeIntervalSince(start))) s in all)")
            case .skipped(let stage, let seed, let reason):
                EventPrinter.say("\(EventPrinter.tag(stage, seed)): skipped: \(reason)")
            }
        }
    }
}
