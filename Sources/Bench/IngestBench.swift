import Foundation
import Format
import Ingest
import Tokenizers

/// `Bench ingest`: end-to-end JSONL -> shards throughput (1 and 2 threads), against the tokenizer alone on the
/// same text in the same run (what the JSON parsing, step finding and shard writing add).
func runIngestBench(args: [String]) throws {
    var fixtures = "Tests/Fixtures/generated/tokenizers"
    var megabytes = 64
    var name = "cl100k"
    var threadCounts = [1, 2]
    var repeats = 3
    var it = args.makeIterator()
    while let a = it.next() {
        switch a {
        case "--fixtures": fixtures = it.next() ?? fixtures
        case "--mb": megabytes = Int(it.next() ?? "") ?? megabytes
        case "--tokenizer": name = it.next() ?? name
        case "--threads": threadCounts = (it.next() ?? "").split(separator: ",").compactMap { Int($0) }
        case "--repeat": repeats = max(1, Int(it.next() ?? "") ?? repeats)
        default:
            throw BenchError.usage("ingest [--fixtures DIR] [--mb N] [--tokenizer NAME] [--threads 1,2] [--repeat N]")
        }
    }
    guard let text = FileManager.default.contents(atPath: fixtures + "/bench.txt") else {
        print("ingest bench: no \(fixtures)/bench.txt; run python3 scripts/oracles/gen_tokenizer_fixtures.py")
        return
    }
    let tok = try Tokenizer.load(path: "\(fixtures)/\(name).tokenizer.json")
    let vocab = IngestVocabulary(tok)
    // JSONL lines cut from the benchmark text: a prompt, a multi-line response, a reward.
    let source = String(decoding: text, as: UTF8.self).split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    let dir = NSTemporaryDirectory() + "oreo-bench-ingest"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var jsonl = Data()
    var plain: [UInt8] = []
    var k = 0
    while jsonl.count < megabytes << 20 {
        let prompt = source[k % source.count]
        let steps = (1...6).map { source[(k + $0) % source.count] }
        let line = try JSONSerialization.data(
            withJSONObject: [
                "prompt": prompt, "response": steps.joined(separator: "\n"),
                "reward": k % 2,
            ], options: [.withoutEscapingSlashes])
        jsonl.append(line)
        jsonl.append(0x0A)
        plain += Array(prompt.utf8) + Array(steps.joined(separator: "\n").utf8)
        k += 7
    }
    let input = dir + "/in.jsonl"
    FileManager.default.createFile(atPath: input, contents: jsonl)
    let mb = Double(jsonl.count) / 1e6
    print(
        "== ingest: \(String(format: "%.1f", mb)) MB of JSONL (\(k / 7) lines, text from \(fixtures)/bench.txt), tokenizer \(name)"
    )

    // Baseline: the same texts through the encoder alone, one thread.
    var encoder = tok.makeEncoder()
    var ids: [UInt32] = []
    ids.reserveCapacity(plain.count)
    let tokTime = try threadSeconds { try plain.withUnsafeBytes { try encoder.encode(bytes: $0, into: &ids) } }
    let tokRate = Double(plain.count) / tokTime / 1e6
    var table = Table(
        "threads", "JSONL MB/s (wall)", "JSONL MB/s per CPU s", "Mtok/s (wall)", "text MB/s per CPU s",
        "vs tokenizer alone")
    // Each figure is the median of `repeats` runs: the machine is shared, so single runs swing widely.
    for threads in threadCounts {
        var walls: [Double] = [], cpus: [Double] = []
        var tokens = 0.0
        for r in 0..<repeats {
            var job = IngestJob(
                inputs: [input], output: dir + "/ds\(threads)-\(r)", vocab: vocab, options: IngestOptions())
            job.threads = threads
            var summary: IngestSummary?
            var t = 0.0
            let cpu = try processSeconds { t = try seconds { summary = try job.run() } }
            tokens = Double(summary!.manifest.counts.tokens)
            walls.append(t)
            cpus.append(cpu)
            try? FileManager.default.removeItem(atPath: dir + "/ds\(threads)-\(r)")
        }
        let t = walls.sorted()[repeats / 2], cpu = cpus.sorted()[repeats / 2]
        let textRate = Double(plain.count) / cpu / 1e6
        table.add(
            "\(threads)", fmt(mb / t, 1), fmt(mb / cpu, 1), fmt(tokens / t / 1e6), fmt(textRate, 1),
            fmt(textRate / tokRate) + "x")
    }
    print(
        "baseline: tokenizer alone on the same prompt + response text, 1 thread: \(fmt(tokRate, 1)) MB/s; medians of \(repeats) runs"
    )
    table.print()
    print("target: >= 80 MB/s of JSONL on 2 cores (wall time, whatever else runs on the machine)")
    try? FileManager.default.removeItem(atPath: dir)
}
