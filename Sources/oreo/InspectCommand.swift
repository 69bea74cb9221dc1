import ArgumentParser
import Foundation
import Format
import Infer
import Ingest
import Tokenizers

/// `oreo inspect`: what a dataset or shard holds, column by column, and its first rows.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a dataset's or shard's counts, columns (dtype, blocks, compression) and first rows.")

    @Argument(help: "A dataset directory or a single shard file.") var path: String
    @Option(help: "How many trajectories to print.") var rows = 3
    @Option(help: "How many token ids to print per trajectory.") var tokens = 24
    @Flag(help: "Accept a dataset whose writer has not finished.") var allowIncomplete = false
    @Option(
        help:
            "A tokenizer.json (or a .gguf file's tokenizer) to show the rows as text (checked against the dataset's fingerprint)."
    )
    var tokenizer: String?

    func run() throws {
        var decoder: Tokenizer?
        if let tokenizer { decoder = try GGUFTokenizer.load(path: tokenizer) }
        // Shards are opened one at a time (a dataset may list more than a process can map at once).
        let shards: ShardList
        if isDirectory(path) {
            let d = try Dataset(directory: path, allowIncomplete: allowIncomplete)
            let m = d.manifest
            print("dataset \(path) (\(m.complete ? "complete" : "INCOMPLETE"), format v\(m.version), \(m.createdBy))")
            print(
                "  \(m.counts.trajectories) trajectories, \(m.counts.steps) steps, \(m.counts.tokens) tokens in \(m.shards.count) shard(s)"
            )
            print("  token ids \(m.tokenDType), vocabulary \(m.vocabSize), compression \(m.compression)")
            if let t = m.tokenizer { print("  tokenizer \(t.source) (fingerprint \(t.fingerprint))") }
            if let decoder, let t = m.tokenizer, t.fingerprint != String(decoder.fingerprint, radix: 16) {
                print("  warning: --tokenizer \(decoder.path) is not the tokenizer this dataset was made with")
            }
            if !m.tokenColumns.isEmpty { print("  per-token columns: \(m.tokenColumns.joined(separator: ", "))") }
            for (k, v) in m.properties.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
            shards = ShardList(count: d.shardCount, open: d.shard)
        } else {
            let shard = try Shard(path: path)
            shards = ShardList(count: 1) { _ in shard }
        }
        try printColumns(shards)
        try printStatistics(shards)
        try printRows(shards, decoder)
    }

    private func printColumns(_ shards: ShardList) throws {
        struct Agg {
            var level = "", dtype = "", count: UInt64 = 0, blocks = 0, raw: UInt64 = 0, stored: UInt64 = 0, zstd = 0
        }
        var order: [String] = []
        var agg: [String: Agg] = [:]
        for k in 0..<shards.count {
            for (_, c) in try shards.open(k).columnList {
                if agg[c.name] == nil {
                    order.append(c.name)
                    agg[c.name] = Agg(level: c.level.description, dtype: c.dtype.description)
                }
                agg[c.name]!.count += c.count
                agg[c.name]!.blocks += c.blocks.count
                agg[c.name]!.raw += c.rawBytes
                agg[c.name]!.stored += c.storedBytes
                agg[c.name]!.zstd += c.blocks.filter { $0.codec == .zstd }.count
            }
        }
        print("")
        print(
            pad("column", 22) + pad("level", 11) + pad("dtype", 6) + lpad("elements", 12) + lpad("blocks", 8)
                + lpad("raw", 11) + lpad("stored", 11) + lpad("ratio", 7) + "  codec")
        for name in order {
            let a = agg[name]!
            let ratio = a.stored > 0 ? Double(a.raw) / Double(a.stored) : 1
            let codec = a.zstd == 0 ? "raw" : a.zstd == a.blocks ? "zstd" : "zstd \(a.zstd)/\(a.blocks)"
            print(
                pad(name, 22) + pad(a.level, 11) + pad(a.dtype, 6) + lpad("\(a.count)", 12) + lpad("\(a.blocks)", 8)
                    + lpad(bytes(a.raw), 11) + lpad(bytes(a.stored), 11) + lpad(String(format: "%.2f", ratio), 7) + "  "
                    + codec)
        }
    }

    private func printStatistics(_ shards: ShardList) throws {
        var n = 0, positive = 0, truncated = 0, promptTokens = 0, responseTokens = 0
        var groups = Set<UInt64>()
        for k in 0..<shards.count {
            let s = try shards.open(k)
            let c = s.cursor()
            for i in 0..<s.trajectoryCount {
                let t = try c.trajectory(i)
                n += 1
                if t.reward > 0 { positive += 1 }
                if t.flags.contains(.truncated) { truncated += 1 }
                promptTokens += t.promptLength
                responseTokens += t.responseLength
                groups.insert(t.group)
            }
        }
        guard n > 0 else {
            print("\n(no trajectories)")
            return
        }
        print("")
        print(
            String(
                format:
                    "reward > 0: %d of %d (%.1f%%); %d groups; mean prompt %.1f, mean response %.1f tokens; %d truncated",
                positive, n, 100 * Double(positive) / Double(n), groups.count,
                Double(promptTokens) / Double(n), Double(responseTokens) / Double(n), truncated))
    }

    private func printRows(_ shards: ShardList, _ decoder: Tokenizer?) throws {
        var printed = 0
        for k in 0..<shards.count where printed < rows {
            let s = try shards.open(k)
            let c = s.cursor()
            for i in 0..<s.trajectoryCount where printed < rows {
                let t = try c.trajectory(i)
                print("")
                print(
                    "#\(printed) \(t.sourceFile.isEmpty ? "" : "\(t.sourceFile):\(t.sourceLine) ")reward \(t.reward) group \(t.group) prompt \(t.promptLength) + response \(t.responseLength) tokens, \(t.stepEnds.count) steps\(t.flags.isEmpty ? "" : " flags \(t.flags.rawValue)")"
                )
                let ids = t.tokens.prefix(tokens).map(String.init).joined(separator: " ")
                print("   ids: \(ids)\(t.tokens.count > tokens ? " ..." : "")")
                if !t.stepEnds.isEmpty {
                    print("   step ends: \(t.stepEnds.prefix(16).map(String.init).joined(separator: " "))")
                }
                if let decoder {
                    let ids = t.tokens.array
                    let prompt = try decoder.decode(Array(ids[..<t.promptLength]))
                    print("   prompt:   \(String(decoding: prompt, as: UTF8.self).debugDescription)")
                    var start = t.promptLength
                    for (k, end) in t.stepEnds.enumerated() {
                        let step = try decoder.decode(Array(ids[start..<Int(end)]))
                        print(
                            "   step \(k + 1):".padding(toLength: 13, withPad: " ", startingAt: 0)
                                + String(decoding: step, as: UTF8.self).debugDescription)
                        start = Int(end)
                    }
                    if start < ids.count {
                        let rest = try decoder.decode(Array(ids[start...]))
                        print("   response: \(String(decoding: rest, as: UTF8.self).debugDescription)")
                    }
                }
                if !t.meta.isEmpty { print("   meta: \(String(decoding: Array(t.meta.prefix(200)), as: UTF8.self))") }
                printed += 1
            }
        }
    }
}

private func pad(_ s: String, _ n: Int) -> String {
    s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count)
}
private func lpad(_ s: String, _ n: Int) -> String {
    s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s
}
private func bytes(_ b: UInt64) -> String {
    let x = Double(b)
    let gib = 1_073_741_824.0, mib = 1_048_576.0
    return x >= gib
        ? String(format: "%.2f GiB", x / gib)
        : x >= mib
            ? String(format: "%.2f MiB", x / mib)
            : x >= 1024 ? String(format: "%.1f KiB", x / 1024) : "\(b) B"
}

/// The shards `inspect` reads: a count and how to open each.
struct ShardList {
    /// Number of shards.
    let count: Int
    /// Opens shard `k`.
    let open: (Int) throws -> Shard
}
