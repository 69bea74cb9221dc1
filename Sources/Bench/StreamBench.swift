import Checkpoint
import Foundation
import Format
import Models
import Runs
import Support
import Train

/// `Bench stream`: what opening and streaming a dataset costs as it grows. For datasets of 0.1 GB and 8 GB
/// (synthetic, written here; `--gb` picks the sizes) and a logical 1 TB one (a manifest listing ~80,000 hard links to the small
/// dataset's shards), it runs `oreo train` (SFT, a tiny model, 20 steps), `oreo score` (a 2,000-trajectory
/// prefix) and `oreo verify` as child processes and prints their peak anonymous memory (RssAnon), train's time
/// to its first step warm, and the bytes a cold train reads from disk before its first step (/proc/PID/io,
/// after evicting the files from the page cache). Then the loader's steady-state rate, against reading the same
/// token blocks directly.
func runStreamBench(args: [String]) throws {
    var dir = NSTemporaryDirectory() + "oreo-bench-stream"
    var sizes = [0.1, 8.0]
    var logicalShards = 80_000
    var cap = 120.0
    var it = args.makeIterator()
    while let a = it.next() {
        switch a {
        case "--dir": dir = it.next() ?? dir
        case "--gb": sizes = (it.next() ?? "").split(separator: ",").compactMap { Double($0) }
        case "--logical-shards": logicalShards = Int(it.next() ?? "") ?? logicalShards
        case "--timeout": cap = Double(it.next() ?? "") ?? cap
        default:
            throw BenchError.usage("stream [--dir DIR] [--gb 0.1,8] [--logical-shards 80000] [--timeout SECONDS]")
        }
    }
    guard let small = sizes.min(), small > 0 else { throw BenchError.usage("stream: --gb needs a positive size") }
    let oreo = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path + "/oreo"
    guard FileManager.default.isExecutableFile(atPath: oreo) else {
        throw BenchError.usage("stream: build the oreo executable first (\(oreo) is missing)")
    }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    print(
        "== stream: datasets of \(sizes.map { "\($0) GB" }.joined(separator: ", ")) and a logical one of \(logicalShards) shards, in \(dir)"
    )

    // Shards of ~16M tokens (~13 MB), so the logical dataset of 80,000 links is ~1 TB.
    var datasets: [(name: String, path: String)] = []
    for gb in sizes.sorted() {
        let path = dir + "/synth-\(gb)gb"
        try synthesize(path, bytes: UInt64(gb * 1e9))
        datasets.append(("\(gb) GB", path))
    }
    let logical = dir + "/logical"
    let logicalBytes = try linkLogical(from: dir + "/synth-\(small)gb", to: logical, shards: logicalShards)
    datasets.append((String(format: "%.2f TB logical", Double(logicalBytes) / 1e12), logical))
    let model = dir + "/model"
    try writeTinyModel(model)

    let run = dir + "/run"
    func train(_ data: String, steps: Int) -> [String] {
        [
            "train", "--method", "sft", "--model", model, "--data", data, "--out", run, "--max-steps", "\(steps)",
            "--tokens-per-micro-batch", "2048",
        ]
    }
    // One run first, unmeasured: the first process after writing the datasets pays for loading the libraries.
    _ = try Child.run(oreo, train(datasets[0].path, steps: 1), cap: cap)
    var table = Table(
        "dataset", "trajectories", "shards", "train RssAnon MiB", "train 1st step s", "cold read before step",
        "score RssAnon MiB", "verify RssAnon MiB")
    for (name, path) in datasets {
        let m = try Manifest.read(directory: path)
        try? FileManager.default.removeItem(atPath: run)
        let trainArgs = train(path, steps: 20)
        let warm = try Child.run(oreo, trainArgs, cap: cap, firstStepFile: run + "/metrics.jsonl")
        try? FileManager.default.removeItem(atPath: run)
        let distinct = distinctFiles(path, manifest: m)
        let files = Array(distinct.keys)
        evict(files)
        let stillCached = residentBytes(files)
        let cold = try Child.run(
            oreo, trainArgs, cap: cap, firstStepFile: run + "/metrics.jsonl", atFirstStep: { residentBytes(files) })
        try? FileManager.default.removeItem(atPath: run)
        let score = try Child.run(
            oreo, ["score", "--model", model, "--data", path, "--max-trajectories", "2000", "--column", "bench"],
            cap: cap)
        let verify = try Child.run(oreo, ["verify", path], cap: min(cap, 15))
        let physical = distinct.values.reduce(0, +)
        let logicalBytes = m.shards.reduce(UInt64(0)) { $0 + $1.bytes }
        func step(_ c: Child.Result) -> String { c.firstStep.map { fmt($0, 2) } ?? "none in \(fmt(c.seconds, 0)) s" }
        table.add(
            name, "\(m.counts.trajectories)", "\(m.shards.count)", fmt(warm.peakAnonMiB, 0), step(warm),
            cold.readBeforeStep.map { read in
                var text =
                    "\(fmt(Double(read) / 1e6, 1)) MB (\(fmt(100 * Double(read) / Double(max(1, logicalBytes)), 3))%"
                if physical != logicalBytes {
                    text += "; \(fmt(100 * Double(read) / Double(max(1, physical)), 1))% of the linked files"
                }
                text += "; \(fmt(Double(cold.firstStepProbe ?? 0) / 1e6, 1)) MB of its pages cached"
                if stillCached > 0 { text += ", \(fmt(Double(stillCached) / 1e6, 1)) MB not evicted" }
                return text + ")"
            } ?? "-",
            fmt(score.peakAnonMiB, 0), fmt(verify.peakAnonMiB, 0) + (verify.capped ? " (cut)" : ""))
    }
    table.print()
    print(
        "cold read: bytes the train process read from disk (/proc/PID/io read_bytes) before its first step, after the dataset's files were dropped from the page cache, against the dataset's bytes (for the logical dataset also against the distinct files its shards link to); then the dataset's pages in the page cache at that moment (mincore)"
    )

    // The loader's steady state on the smallest dataset, against a direct pass over the same token blocks.
    let d = try Dataset(directory: dir + "/synth-\(small)gb")
    var config = LoaderConfig()
    config.tokensPerMicroBatch = 4096
    let loader = try DataLoader(dataset: d, config: config, selection: .all, sequenceLimit: 4096)
    let batch = TrainingBatch()
    var tokens = 0, trajectories = 0
    let loaderTime = try seconds {
        for _ in 0..<2000 {
            try loader.next(into: batch)
            tokens += batch.packed.tokens.count
            trajectories += batch.trajectories.count
        }
    }
    let buffer = UnsafeMutablePointer<UInt32>.allocate(capacity: 1 << 20)
    defer { buffer.deallocate() }
    var direct = 0
    let directTime = try seconds {
        var shard = 0
        while direct < tokens && shard < d.shardCount {
            let s = try d.shard(shard)
            let c = s.cursor(cacheBlocks: 1)
            for i in 0..<s.trajectoryCount where direct < tokens {
                let t = try c.tokens(i)
                t.copy(into: buffer)
                direct += t.count
            }
            shard += 1
        }
    }
    var t2 = Table("loader (shuffled windows, 4096-token micro-batches)", "trajectories/s", "Mtok/s", "vs direct")
    t2.add("DataLoader.next", fmt(Double(trajectories) / loaderTime, 0), fmt(Double(tokens) / loaderTime / 1e6), "")
    t2.add(
        "direct: ShardCursor.tokens in file order", "", fmt(Double(direct) / directTime / 1e6),
        fmt((Double(tokens) / loaderTime) / (Double(direct) / directTime)))
    t2.print()
}

/// Writes a synthetic dataset of about `bytes` bytes at `path` unless a complete one is there.
private func synthesize(_ path: String, bytes: UInt64) throws {
    if let m = try? Manifest.read(directory: path), m.complete { return }
    try? FileManager.default.removeItem(atPath: path)
    let w = try DatasetWriter(
        directory: path, options: ShardOptions(vocabSize: 50_257, compression: .zstd(level: 3)),
        shardTokens: 16_000_000)
    var gen = SyntheticTrajectories(vocabSize: 50_257, meanTokens: 256, seed: 7)
    var n = 0
    while true {
        for _ in 0..<10_000 { try w.append(gen.next()) }
        n += 10_000
        let written = w.manifest.shards.reduce(UInt64(0)) { $0 + $1.bytes }
        if written + UInt64(n % 60_000) * 200 >= bytes { break }
    }
    _ = try w.finish()
}

/// A dataset at `to` whose manifest lists `shards` hard links to the shards of `from`, round-robin (a file may
/// hold at most 65,000 links on ext4, so several real shards share the load). Returns its logical size.
private func linkLogical(from: String, to: String, shards: Int) throws -> UInt64 {
    let source = try Manifest.read(directory: from)
    if let m = try? Manifest.read(directory: to), m.complete, m.shards.count == shards {
        return m.shards.reduce(0) { $0 + $1.bytes }
    }
    try? FileManager.default.removeItem(atPath: to)
    try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: true)
    var m = source
    m.shards = []
    m.counts.trajectories = 0
    m.counts.steps = 0
    m.counts.tokens = 0
    // The logical dataset's statistics: each linked shard counted as many times as it is listed.
    let perShard = try source.shards.map { try ShardStats(shard: Shard(path: from + "/" + $0.file)) }
    m.stats = ShardStats()
    for k in 0..<shards {
        var e = source.shards[k % source.shards.count]
        let name = String(format: "shard-%06d.oreo", k)
        guard link(from + "/" + e.file, to + "/" + name) == 0 else {
            throw BenchError.usage("stream: cannot link \(name): \(String(cString: strerror(errno)))")
        }
        e.file = name
        m.shards.append(e)
        m.counts.trajectories += e.trajectories
        m.counts.steps += e.steps
        m.counts.tokens += e.tokens
        m.stats?.add(perShard[k % source.shards.count])
    }
    try m.write(directory: to)
    return m.shards.reduce(0) { $0 + $1.bytes }
}

/// A tiny Llama over the synthetic vocabulary, saved as a safetensors checkpoint.
private func writeTinyModel(_ path: String) throws {
    let config = ModelConfig(
        family: .llama, vocabSize: 50_257, hiddenSize: 64, layers: 2, heads: 4, kvHeads: 2, intermediateSize: 128,
        maxPositions: 2048, tieWordEmbeddings: true)
    let model = try TransformerModel(config: config, maxTokens: 64)
    model.initializeRandomly(seed: 1)
    try ModelCheckpoint.save(model, directory: path)
}

/// The distinct files of a dataset (hard links counted once) and their total size.
private func distinctFiles(_ path: String, manifest m: Manifest) -> [String: UInt64] {
    var seen: [UInt64: (String, UInt64)] = [:]
    for e in m.shards {
        var st = stat()
        let p = path + "/" + e.file
        if stat(p, &st) == 0 { seen[UInt64(st.st_ino)] = (p, UInt64(st.st_size)) }
    }
    return Dictionary(uniqueKeysWithValues: seen.values.map { ($0.0, $0.1) })
}

/// Drops `files` from the page cache, so the next reader reads them from disk.
private func evict(_ files: [String]) {
    for file in files {
        let fd = open(file, O_RDONLY)
        guard fd >= 0 else { continue }
        fdatasync(fd)
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
    }
}

/// Bytes of `files` in the page cache (mincore over a fresh mapping of each).
private func residentBytes(_ files: [String]) -> UInt64 {
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    var total: UInt64 = 0
    for file in files {
        let fd = open(file, O_RDONLY)
        guard fd >= 0 else { continue }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { continue }
        let size = Int(st.st_size)
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { continue }
        defer { munmap(p, size) }
        var vec = [UInt8](repeating: 0, count: (size + page - 1) / page)
        guard mincore(p, size, &vec) == 0 else { continue }
        total += UInt64(vec.reduce(0) { $0 + Int($1 & 1) } * page)
    }
    return total
}

/// A child `oreo` process watched from outside: peak anonymous memory, disk reads, time to its first step.
private enum Child {
    struct Result {
        var peakAnonMiB = 0.0
        var seconds = 0.0
        var firstStep: Double?
        var readBeforeStep: UInt64?
        /// What `atFirstStep` returned.
        var firstStepProbe: UInt64?
        var capped = false
    }

    /// Runs `oreo args`, polling /proc every 20 ms (and calling `atFirstStep` when `firstStepFile` gets its first
    /// line); stops it after `cap` seconds.
    static func run(
        _ oreo: String, _ args: [String], cap: Double, firstStepFile: String? = nil,
        atFirstStep: () -> UInt64? = { nil }
    ) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oreo)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let start = Date()
        try p.run()
        var r = Result()
        let pid = p.processIdentifier
        while p.isRunning {
            let elapsed = Date().timeIntervalSince(start)
            if let kb = procField("/proc/\(pid)/status", "RssAnon:") { r.peakAnonMiB = max(r.peakAnonMiB, kb / 1024) }
            if r.firstStep == nil, let f = firstStepFile, let text = try? String(contentsOfFile: f, encoding: .utf8),
                text.contains("\n")
            {
                r.firstStep = elapsed
                r.readBeforeStep = procField("/proc/\(pid)/io", "read_bytes:").map { UInt64($0) }
                r.firstStepProbe = atFirstStep()
            }
            if elapsed > cap {
                r.capped = true
                p.terminate()
                break
            }
            usleep(20_000)
        }
        p.waitUntilExit()
        r.seconds = Date().timeIntervalSince(start)
        return r
    }

    /// The number after `key` in a /proc file ("RssAnon:   1234 kB" gives 1234).
    static func procField(_ file: String, _ key: String) -> Double? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            return Double(line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }
}
