import ArgumentParser
import Checkpoint
import Foundation
import Format
import Infer
import Ingest
import Models
import Tokenizers

/// `oreo ingest`: JSONL trajectories to a dataset of shards.
struct IngestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Tokenize JSONL trajectory files into a dataset of shards.",
        discussion: """
            Each line is one trajectory (schemas/trajectory-line.schema.json), in one of three forms:

            1. {"prompt": "...", "response": "...", "reward": 1}   (the official OREO format)

            2. {"prompt": "...", "steps": ["...", "..."], "reward": true}   (explicit steps)

            3. {"prompt_ids": [..], "response_ids": [..], "step_ends": [..], "reward": 0.5}   (ids kept verbatim)

            Optional fields: "id", "group" (default: a hash of the prompt) and "meta" (kept verbatim).

            Prompt and response are tokenized separately. A step ends where a run of step delimiters ends, at the \
            last token boundary at or before it. Run the same command again to continue an interrupted ingest. \
            The manifest's counts always add up: lines read = trajectories written + lines rejected.
            """)

    @Argument(help: "Input JSONL files.") var inputs: [String] = []
    @Option(help: "The model's tokenizer.json (or its .gguf file: the tokenizer its metadata describes).")
    var tokenizer: String?
    @Option(name: .shortAndLong, help: "Output dataset directory.") var out: String
    @Option(help: "Tokens per shard.") var shardTokens = 64_000_000
    @Option(help: "Block compression: raw, zstd, zstd-N.") var compression = "zstd-3"
    @Option(help: "Longest trajectory in tokens; longer responses are cut and flagged truncated (0: no limit).")
    var maxLength = 0
    @Option(help: "Invalid lines: fail (stop with file:line:column) or skip (into rejects.jsonl).") var onInvalid =
        "fail"
    @Option(
        help:
            "Step delimiter (repeatable; \\n \\t \\r escapes). Default: newline. MATH style: --step-delimiter '\\n' --step-delimiter '. ' --step-delimiter '.$ '"
    )
    var stepDelimiter: [String] = []
    @Option(
        help:
            "What joins a line's \"steps\" into its response (\\n \\t \\r escapes). Default: a newline."
    )
    var stepJoin: String?
    @Option(help: "EOS after text responses: auto (unless already there), always, never.") var eos = "auto"
    @Flag(help: "Do not put the tokenizer's BOS/template prefix before prompts.") var noBos = false
    @OptionGroup var specialTokens: SpecialTokenOptions
    @Option(help: "Worker threads.") var threads = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "Ingest only part I of N (I/N) of the lines, for several machines; then --merge-parts N.") var part:
        String?
    @Option(help: "Combine the N finished parts in --out into one manifest.") var mergeParts: Int?
    @Flag(help: "Delete an existing dataset at --out first instead of resuming it.") var overwrite = false

    func run() throws {
        if let n = mergeParts {
            let m = try IngestJob.mergeParts(directory: out, count: n)
            print(
                "merged \(n) parts: \(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens in \(m.shards.count) shard(s)"
            )
            return
        }
        guard let tokenizer else { throw ValidationError("--tokenizer is required") }
        guard !inputs.isEmpty else { throw ValidationError("give at least one input JSONL file") }
        guard let c = Compression(parsing: compression) else {
            throw ValidationError("unknown compression '\(compression)'")
        }
        guard let policy = InvalidLinePolicy(rawValue: onInvalid) else {
            throw ValidationError("--on-invalid takes fail or skip")
        }
        guard let eosPolicy = EOSPolicy(rawValue: eos) else {
            throw ValidationError("--eos takes auto, always or never")
        }
        var partSpec = (index: 0, count: 1)
        if let part {
            let p = part.split(separator: "/").compactMap { Int($0) }
            guard p.count == 2, p[1] >= 1, p[0] >= 0, p[0] < p[1] else {
                throw ValidationError("--part takes I/N with 0 <= I < N")
            }
            partSpec = (p[0], p[1])
        }
        var options = IngestOptions()
        options.maxLength = maxLength
        options.onInvalid = policy
        if !stepDelimiter.isEmpty { options.stepDelimiters = stepDelimiter.map(unescapeDelimiter) }
        if let stepJoin { options.stepJoin = unescapeDelimiter(stepJoin) }
        options.eos = eosPolicy
        options.addBOS = !noBos
        options.recognizeSpecialTokens = !specialTokens.asText

        let start = Date()
        let tok = try GGUFTokenizer.load(path: tokenizer)
        let vocab = IngestVocabulary(tok)
        printError(
            "tokenizer \(tokenizer): \(tok.vocabSize) tokens, loaded in \(String(format: "%.2f", Date().timeIntervalSince(start))) s"
        )
        var job = IngestJob(inputs: inputs, output: out, vocab: vocab, options: options)
        job.compression = c
        job.shardTokens = UInt64(max(1, shardTokens))
        job.threads = max(1, threads)
        job.part = partSpec
        if overwrite { job.removeOutput() }
        let progress = Progress("ingest", unit: "B")
        var total = 0.0
        let summary = try job.run { p in
            total = Double(p.bytesTotal)
            progress.update(Double(p.bytesDone))
        }
        progress.finish(total)
        let m = summary.manifest
        let seconds = Date().timeIntervalSince(start)
        print(
            "\(summary.resumed ? "resumed and finished" : "finished"): \(summary.linesRead) lines read = \(summary.written) trajectories written + \(summary.rejected) rejected; \(summary.truncated) truncated; \(summary.blank) blank lines skipped"
        )
        print(
            "\(m.counts.tokens) tokens in \(m.shards.count) shard(s) at \(out) (\(String(format: "%.1f", total / seconds / 1e6)) MB/s of JSONL)"
        )
        if summary.rejected > 0 { print("rejected lines and reasons: \(out)/rejects.jsonl") }
    }
}
