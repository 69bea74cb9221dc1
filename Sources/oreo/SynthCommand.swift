import ArgumentParser
import Format

/// `oreo synth`: writes a dataset of synthetic trajectories (for benchmarks, tests and trying the format).
struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a dataset of synthetic random trajectories.",
        discussion:
            "Token ids follow a Zipf-like phrase distribution so compression ratios resemble real text. Deterministic for a seed."
    )

    @Option(name: .shortAndLong, help: "Output dataset directory.") var out: String
    @Option(help: "Number of trajectories.") var trajectories = 10_000
    @Option(help: "Mean tokens per trajectory.") var meanTokens = 256
    @Flag(help: "Every trajectory exactly --mean-tokens long (equal micro-batches, for benchmarks).")
    var fixedLength = false
    @Option(help: "Vocabulary size (ids are u16 up to 65536, u32 above).") var vocab = 50_257
    @Option(help: "Block compression: raw, zstd, zstd-N.") var compression = "zstd-3"
    @Option(help: "Tokens per shard before a new shard starts.") var shardTokens = 16_000_000
    @Option(help: "Random seed.") var seed: UInt64 = 1

    func run() throws {
        guard let c = Compression(parsing: compression) else {
            throw ValidationError("unknown compression '\(compression)' (use raw, zstd or zstd-1 .. zstd-22)")
        }
        guard trajectories >= 0, meanTokens >= 2, vocab >= 2 else { throw ValidationError("counts must be positive") }
        var gen = SyntheticTrajectories(vocabSize: vocab, meanTokens: meanTokens, seed: seed)
        gen.fixedLength = fixedLength
        let w = try DatasetWriter(
            directory: out, options: ShardOptions(vocabSize: vocab, compression: c),
            shardTokens: UInt64(shardTokens), properties: ["generator": "synthetic seed \(seed)"])
        let progress = Progress("synth", total: Double(trajectories), unit: "trajectories")
        for i in 0..<trajectories {
            try w.append(gen.next(), source: "synthetic")
            if i % 1024 == 0 { progress.update(Double(i)) }
        }
        let m = try w.finish()
        progress.finish(Double(trajectories))
        print(
            "wrote \(m.counts.trajectories) trajectories, \(m.counts.tokens) tokens in \(m.shards.count) shard(s) to \(out)"
        )
    }
}
