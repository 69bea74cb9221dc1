import ArgumentParser
import Format
import Foundation
import Models
import Support
import Train
import Runs

/// `oreo train`: OREO or a baseline on a dataset, into a run directory.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a policy (and value network) with OREO, SFT, RFT, DPO, KTO or DQO.",
        usage:
            "oreo train --method oreo --model INIT --data DATASET --out RUN [--config FILE.toml] [--SETTING VALUE ...]",
        discussion: """
            Every setting below is a flag and a key of the TOML file given with --config (the key is the flag \
            with underscores: learning_rate = 1e-4). Flags override the file; the effective configuration is \
            written to RUN/config.toml, so `oreo train --config RUN/config.toml --out NEW` repeats a run and \
            `oreo train --out RUN --resume` continues one exactly (same data order, optimizer and random state).

            RUN holds metrics.jsonl (one line per step: each loss part, KL, value error, mean V on positive and \
            negative trajectories, gradient norms, learning rates, tokens/s), data.json (what the loader kept and \
            left out), checkpoints/step-N (policy/ and value/ as safetensors loadable as INIT, optimizer and loader \
            state), and the links latest, policy and value.

            Reference log-probs: OREO's exact KL (kl = exact, the default) runs a frozen reference model beside \
            the policy: one more forward pass and one more model in memory, and the full-vocabulary KL in the LM \
            head. kl = k3 (and DPO, KTO, DQO) read the column `oreo score` stored instead: no reference model, \
            a sampled-token estimate of the KL.

            SETTINGS:
            \(settingsHelp())
            """)

    @Option(name: .shortAndLong, help: "The run directory.") var out: String
    @Option(help: "A TOML file of settings (flags override it).") var config: String?
    @Flag(help: "Continue the run in --out from its latest checkpoint (its config.toml is the base).") var resume =
        false
    @OptionGroup var threadOptions: ThreadOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var settings: [String] = []

    func run() throws {
        let collective = try threadOptions.apply()
        var s = TrainSettings()
        var set = Set<String>()
        let stored = out + "/config.toml"
        if collective.isRoot {
            if resume && !FileManager.default.fileExists(atPath: out) {
                throw CommandError("no such file or directory: \(out) (--resume continues the run in --out)")
            }
            if resume, config == nil, FileManager.default.fileExists(atPath: stored) {
                set.formUnion(try s.apply(tomlFile: stored))
            }
            if let config { set.formUnion(try s.apply(tomlFile: config)) }
            set.formUnion(try s.apply(flags: settings))
            s.applyLevelDefaults(explicit: set)
        }
        // Rank 0 resolves the settings (RUN/config.toml may exist on its machine only); every rank trains with them.
        if collective.size > 1 {
            let text = String(decoding: try collective.broadcast(Array(s.toml.utf8), root: 0), as: UTF8.self)
            if !collective.isRoot {
                s = TrainSettings()
                s.applyLevelDefaults(explicit: try s.apply(tomlText: text, file: "rank 0's settings"))
            }
        }
        guard let data = s.data else { throw ValidationError("--data DATASET is required") }
        let model = try s.modelSource()
        let reference = s.referenceModel.map(ModelSource.init(path:))

        let job = try TrainJob(
            config: s.config, model: model, reference: reference, data: data, run: out, resume: resume,
            adapter: s.adapter, valueAdapter: s.valueAdapter, valueModel: s.valueModel, collective: collective)
        let ranks = collective.size
        if collective.isRoot {
            try writeFileAtomically(Array((s.toml + TrainSettings.ranksLine(ranks)).utf8), to: stored)
        }
        // Rank 0 logs and reports; the other ranks train silently.
        let log: (String) -> Void = { printRoot($0) }
        let c = job.config
        log("\(c.method.rawValue): \(model.description) -> \(out); \(job.loader.reportSummary)")
        if ranks > 1 {
            log(
                "\(ranks) ranks, \(BLASRuntime.threads) thread(s) each: micro-batch k of a step on rank k mod \(ranks), gradients all-reduced"
            )
        }
        log(
            "policy \(job.policy.layout.total) parameters\(job.policy.baseWeights.map { " (base \($0.summary))" } ?? "")\(job.value != nil ? ", value network" : "")\(job.reference != nil ? ", reference model in memory" : "")\(c.exactKL ? " (exact KL)" : c.method == .oreo && c.oreo.alpha != 0 ? " (k3 KL from '\(c.referenceColumn)')" : ""); \(job.totalSteps) steps"
        )
        for n in job.notes { log("note: \(n)") }
        let estimate = job.memoryEstimate
        let total = estimate.reduce(0) { $0 + $1.bytes }
        log(
            "memory (estimated): "
                + estimate.filter { $0.bytes > 0 }.map { "\($0.kind) \(megabytes($0.bytes))" }.joined(separator: ", ")
                + "; total \(megabytes(total))")
        var measured = false
        let progress = Progress(
            "train", total: Double(job.totalSteps), unit: "steps", startingAt: Double(job.step),
            silent: !collective.isRoot)
        let summary: TrainSummary
        do {
            summary = try job.run { p in
                let m = p.metrics
                var detail = String(format: "loss %.4f", m.loss)
                if let v = m.valueLoss { detail += String(format: " value %.4f", v) }
                if let k = m.kl { detail += String(format: " kl %.4f", k) }
                detail += String(format: ", %.0f tok/s", m.tokensPerSecond)
                progress.update(Double(p.step), detail: detail)
                if !measured {
                    measured = true
                    let mem = processMemory()
                    progress.note(
                        "memory (measured after the first step): resident \(megabytes(mem.resident)), peak \(megabytes(mem.peak))"
                    )
                }
                if let ck = p.checkpoint, p.step < p.totalSteps { progress.note("checkpoint \(ck)") }
            }
        } catch let e as NonFiniteLoss {
            progress.finish(Double(job.step))
            // every rank stops here: rank 0 reports it (Oreo.endRank)
            if ranks > 1 { throw e }
            throw ValidationError(e.description)
        }
        progress.finish(Double(job.step))
        guard collective.isRoot else { return }
        if let m = summary.last {
            print(
                String(
                    format: "step %d/%d: loss %.4f, %.0f tokens/s", m.step, job.totalSteps, m.loss, m.tokensPerSecond))
        }
        print("policy: \(summary.policy ?? "-")" + (summary.value.map { "\nvalue: \($0)" } ?? ""))
        print("metrics: \(out)/metrics.jsonl")
    }
}

/// `oreo score`: the reference log-prob column, once.
struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Add each token's reference log-prob to a dataset (column ref_logprob), once.",
        discussion: """
            Runs the reference model over every trajectory and stores log p_ref(token | previous tokens) per token \
            as a sidecar column, so k3-KL OREO, DPO, KTO and DQO train without the reference model in memory. The \
            dataset's manifest changes only when every shard is scored: an interrupted run leaves it as it was, and \
            running the same command again keeps the shards it finished (when the model is the same) and scores the \
            rest. --max-trajectories N scores only the first N trajectories (to try the model and see the rate): \
            the shards finished by then are kept for the full run, the manifest is left alone. Tokens past the \
            model's position limit are stored as NaN (training skips or cuts those trajectories).
            """)

    @Option(help: "The reference model: a safetensors directory with config.json, or a .gguf file.") var model: String
    @Option(help: "The dataset directory.") var data: String
    @Option(help: "Column name.") var column = ReferenceScorer.defaultColumn
    @Option(help: "Positions per forward pass.") var tokensPerBatch = 4096
    @Option(help: "Stop after scoring this many trajectories (a trial on a prefix; the column is not added).")
    var maxTrajectories: Int?
    @Option(
        help:
            "Number format of the matrix products: fp32, or bf16 (bf16 products with f32 accumulation; CPUs with AVX512_BF16 or AMX)."
    )
    var precision = Precision.fp32
    @Option(help: "A PEFT LoRA adapter of --model, applied unmerged (the reference is then base + adapter).")
    var adapter: String?
    @Option(
        help:
            "How the base holds its layers' matrices: f32, or bf16, q8_0, gguf (a GGUF's own blocks) to score a large model in less memory."
    )
    var baseWeights = BaseWeights.f32
    @OptionGroup var threadOptions: ThreadOptions

    func run() throws {
        let collective = try threadOptions.apply()
        guard tokensPerBatch > 0 else { throw ValidationError("--tokens-per-batch must be positive") }
        if let maxTrajectories, maxTrajectories <= 0 { throw ValidationError("--max-trajectories must be positive") }
        try precision.checkSupported()
        let source = ModelSource(path: model)
        let dataset = try Dataset(directory: data)
        for n in try Compatibility.check(
            dataset: dataset, model: try source.config(), tokenizerDirectory: source.tokenizerDirectory)
        {
            printRoot("note: \(n)")
        }
        let m = try source.load(maxTokens: tokensPerBatch, base: baseWeights, activations: .forwardOnly)
        if let adapter { try m.attach(try PEFTAdapter.load(directory: adapter, for: m)) }
        try m.setPrecision(precision)
        // With --max-trajectories the token total is the prefix's share (an estimate: trajectories differ in length).
        let counts = dataset.manifest.counts
        let share = min(1, Double(maxTrajectories ?? .max) / Double(max(1, counts.trajectories)))
        let progress = Progress(
            "score", total: (Double(counts.tokens) * share).rounded(), unit: "tok", silent: !collective.isRoot)
        let start = Date()
        let s = try ReferenceScorer.score(
            dataset: dataset, model: m, column: column, maxTrajectories: maxTrajectories ?? .max,
            collective: collective
        ) { done, _ in progress.update(Double(done)) }
        progress.finish(Double(s.tokens))
        guard collective.isRoot else { return }
        let rate = Double(s.tokens) / max(1e-9, Date().timeIntervalSince(start))
        var line =
            "scored \(s.trajectories) trajectories, \(s.tokens) tokens in \(s.batches) forward passes (\(String(format: "%.0f", rate)) tokens/s\(collective.size > 1 ? " over \(collective.size) ranks" : ""))"
        if s.reusedShards > 0 { line += "; kept \(s.reusedShards) shard(s) an earlier run of this model finished" }
        if s.complete {
            line += "; column '\(column)' added to \(data)"
        } else {
            line +=
                "; stopped by --max-trajectories: the column is not added yet (run again without it to finish; finished shards are kept)"
        }
        print(line)
        if s.overlong > 0 {
            print(
                "\(s.overlong) trajectories are longer than the model's \(m.config.maxPositions) positions: their tokens past it hold NaN"
            )
        }
    }
}

extension Precision: ExpressibleByArgument {}

extension BaseWeights: ExpressibleByArgument {}

/// Bytes as MB with one decimal below 10 GB, GB above.
func megabytes(_ bytes: Int) -> String {
    bytes >= 10_000_000_000
        ? String(format: "%.1f GB", Double(bytes) / 1e9) : String(format: "%.0f MB", Double(bytes) / 1e6)
}
