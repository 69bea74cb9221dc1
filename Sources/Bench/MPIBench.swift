import Cluster
import Foundation
import Support

/// `Bench mpi`: data-parallel OREO training of GPT-2-124M (policy + value, exact KL against a reference in
/// memory) by `oreo train`, 1 rank x 1 thread against `mpirun -np 2` x 1 thread, with the same global batch
/// (2 micro-batches of `--tokens` positions per step), and two independent 1-process runs at once (the ceiling
/// of two processes on this machine's memory system); the all-reduce's share of a 2-rank step (from
/// metrics.jsonl's allreduce_s); and the bandwidth of oreo's bucketed all-reduce of the same gradient buffers
/// next to one MPI_Allreduce of the whole buffer. Ends with a model of the efficiency on 8, 16 and 64 machines.
///
/// Options: --steps N (4; the first is left out of the rates) --tokens T (512) --layers L (12).
func runMPIBench(args: [String]) throws {
    func opt(_ name: String, _ def: Int) -> Int {
        guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return def }
        return v
    }
    if let i = args.firstIndex(of: "--allreduce-child"), i + 1 < args.count, let n = Int(args[i + 1]) {
        try allReduceChild(floats: n)
        return
    }
    let steps = max(2, opt("--steps", 4)), tokens = opt("--tokens", 512), layers = opt("--layers", 12)
    guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: FileManager.default.isExecutableFile)
    else {
        print("mpi bench: mpirun not found (Debian: openmpi-bin; scripts/setup.sh installs it)")
        return
    }
    let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let oreo = bin.appendingPathComponent("oreo").path
    let dir = NSTemporaryDirectory() + "oreo-bench-mpi-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = """
        {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, \
        "n_layer": \(layers), "n_head": 12, "n_positions": 1024, "n_inner": 3072, "layer_norm_epsilon": 1e-5, \
        "tie_word_embeddings": true}
        """
    try config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
    // trajectories of tokens / 2 positions: every micro-batch holds two, so the ranks' shares are equal
    let trajectories = (steps + 1) * 4
    let synth = Process()
    synth.executableURL = URL(fileURLWithPath: oreo)
    synth.arguments = [
        "synth", "--out", dir + "/data", "--trajectories", "\(trajectories)", "--mean-tokens", "\(tokens / 2)",
        "--fixed-length",
        "--seed", "5",
    ]
    synth.standardError = FileHandle.nullDevice
    synth.standardOutput = FileHandle.nullDevice
    try synth.run()
    synth.waitUntilExit()
    print(
        "model: GPT-2 \(layers) layers (random init), OREO policy + value + reference in memory; 2 micro-batches of \(tokens) positions per step, \(steps) steps (the first left out)"
    )
    /// Starts `oreo train` into `out`, alone (`ranks` nil) or under mpirun.
    func start(_ out: String, ranks: Int?) throws -> Process {
        let train = [
            oreo, "train", "--method", "oreo", "--init-config", dir + "/config.json", "--data", dir + "/data",
            "--out", out, "--max-steps", "\(steps)", "--micro-batches-per-step", "2", "--tokens-per-micro-batch",
            "\(tokens)", "--threads", "1", "--checkpoint-every", "0",
        ]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: ranks == nil ? oreo : mpirun)
        p.arguments =
            ranks.map { ["--allow-run-as-root", "--oversubscribe", "-np", "\($0)"] + train } ?? Array(train.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }
    /// tokens/s, seconds per step and all-reduce seconds per step of a finished run (first step left out).
    func rates(_ out: String) -> (tokensPerSecond: Double, step: Double, reduce: Double)? {
        guard let text = try? String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.dropFirst()
        guard !lines.isEmpty else { return nil }
        let tok = lines.reduce(0.0) { $0 + ($1["tokens"] as? Double ?? 0) }
        let secs = lines.reduce(0.0) {
            $0 + Double($1["tokens"] as? Double ?? 0) / ($1["tokens_per_s"] as? Double ?? 1)
        }
        let reduce = lines.reduce(0.0) { $0 + ($1["allreduce_s"] as? Double ?? 0) }
        return (tok / secs, secs / Double(lines.count), reduce / Double(lines.count))
    }
    var results: [String: (tokensPerSecond: Double, step: Double, reduce: Double)] = [:]
    // 1 process; 2 ranks; and, as the ceiling this machine allows two processes, two independent 1-process runs at
    // once (their tokens/s added): what is lost to sharing the memory system, not to MPI.
    for (name, ranks) in [("1 x 1", nil), ("2 x 1 (mpirun)", 2), ("2 independent 1 x 1 runs at once", 0)]
        as [(String, Int?)]
    {
        let outs = ranks == 0 ? [dir + "/solo-a", dir + "/solo-b"] : [dir + "/run"]
        let procs = try outs.map { try start($0, ranks: ranks == 0 ? nil : ranks) }
        for p in procs { p.waitUntilExit() }
        let got = outs.compactMap(rates)
        guard got.count == outs.count, procs.allSatisfy({ $0.terminationStatus == 0 }) else {
            print("mpi bench: the run '\(name)' failed")
            continue
        }
        results[name] = (got.reduce(0) { $0 + $1.tokensPerSecond }, got[0].step, got[0].reduce)
        for o in outs { try? FileManager.default.removeItem(atPath: o) }
    }
    var table = Table("processes x threads", "tokens/s", "s / step", "all-reduce s / step", "all-reduce share")
    for name in ["1 x 1", "2 x 1 (mpirun)", "2 independent 1 x 1 runs at once"] {
        guard let x = results[name] else { continue }
        let mpi = name.contains("mpirun")
        table.add(
            name, fmt(x.tokensPerSecond, 1), fmt(x.step, 2), mpi ? fmt(x.reduce, 3) : "-",
            mpi ? fmt(100 * x.reduce / x.step, 1) + "%" : "-")
    }
    table.print()
    if let two = results["2 x 1 (mpirun)"], let both = results["2 independent 1 x 1 runs at once"] {
        print(
            "2 ranks / 2 independent processes: \(fmt(two.tokensPerSecond / both.tokensPerSecond))x (the part of the scaling MPI and data parallelism cost)"
        )
    }
    if let one = results["1 x 1"], let two = results["2 x 1 (mpirun)"] {
        let ratio = two.tokensPerSecond / one.tokensPerSecond
        print("2 ranks / 1 rank tokens/s: \(fmt(ratio))x (target >= 1.8x) \(verdict(ratio, atLeast: 1.8))")
    }
    // The gradient buffers of the step: GPT-2's policy and value network (tied embeddings; the head is 768 floats).
    let d = 768, vocab = 50257, positions = 1024
    let perLayer = 12 * d * d + 13 * d
    let floats = 2 * (vocab * d + positions * d + layers * perLayer + 2 * d) + d
    let (bw, status) = try runChild(
        [
            "--allow-run-as-root", "--oversubscribe", "-np", "2", CommandLine.arguments[0], "mpi", "--allreduce-child",
            "\(floats)",
        ],
        executable: mpirun)
    guard let bw, let ours = bw["bucketed_s"], let mpi = bw["mpi_s"] else {
        print("mpi bench: the all-reduce run failed (status \(status))")
        return
    }
    let bytes = Double(floats) * 4
    // ring all-reduce "bus bandwidth": each rank sends and receives 2 (N-1)/N of the buffer
    func bus(_ s: Double) -> Double { bytes / s / 1e9 }
    var t2 = Table("all-reduce of \(fmt(bytes / 1e6, 0)) MB over 2 ranks (loopback)", "s", "GB/s (algorithm)")
    t2.add("oreo: buckets of \(1 << 22) floats", fmt(ours, 3), fmt(bus(ours), 2))
    t2.add("MPI_Allreduce, one call", fmt(mpi, 3), fmt(bus(mpi), 2))
    t2.print()
    print("oreo / MPI all-reduce bandwidth: \(fmt(mpi / ours))x")
    if let one = results["1 x 1"] {
        printScalingModel(gradientBytes: bytes, computeSeconds: one.step / 2)
    }
}

/// Under `mpirun -np 2`: times oreo's bucketed in-place sum and one MPI_Allreduce of `floats` floats (median of 3
/// after a warm-up); rank 0 prints {"bucketed_s", "mpi_s"}.
private func allReduceChild(floats: Int) throws {
    let c = try Cluster.start()
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: floats)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 1, count: floats)
    func time(bucket: Int) throws -> Double {
        try c.sum(buffer, count: floats, bucket: bucket)
        var t: [Double] = []
        for _ in 0..<3 {
            _ = try c.failures(false)  // a barrier
            let t0 = Date()
            try c.sum(buffer, count: floats, bucket: bucket)
            t.append(Date().timeIntervalSince(t0))
        }
        return t.sorted()[1]
    }
    let bucketed = try time(bucket: 1 << 22), whole = try time(bucket: floats)
    if c.isRoot { print("{\"bucketed_s\": \(bucketed), \"mpi_s\": \(whole)}") }
}

/// Efficiency of data-parallel steps on more machines: a ring all-reduce moves 2 (N-1)/N of the gradient bytes
/// over each machine's link (plus 2 (N-1) latencies of ~20 us) and does not overlap the compute of one
/// micro-batch per machine (`computeSeconds`, measured on one thread here).
private func printScalingModel(gradientBytes: Double, computeSeconds: Double) {
    print(
        "model: efficiency = compute / (compute + all-reduce), one micro-batch per machine; compute \(fmt(computeSeconds, 2)) s (1 thread here; a 16-core node ~8x faster: second figure)"
    )
    var t = Table(
        "machines", "link", "all-reduce s (f32)", "eff. f32", "eff. bf16 grads", "eff. f32, 16 cores",
        "eff. bf16, 16 cores")
    for n in [8, 16, 64] {
        for gbps in [10.0, 25.0, 100.0] {
            func reduce(_ bytes: Double) -> Double {
                2 * Double(n - 1) / Double(n) * bytes * 8 / (gbps * 1e9) + 2 * Double(n - 1) * 20e-6
            }
            let f32 = reduce(gradientBytes), bf16 = reduce(gradientBytes / 2)
            let fast = computeSeconds / 8
            t.add(
                "\(n)", "\(Int(gbps)) Gb/s", fmt(f32, 3), fmt(100 * computeSeconds / (computeSeconds + f32), 0) + "%",
                fmt(100 * computeSeconds / (computeSeconds + bf16), 0) + "%",
                fmt(100 * fast / (fast + f32), 0) + "%", fmt(100 * fast / (fast + bf16), 0) + "%")
        }
    }
    t.print()
}
