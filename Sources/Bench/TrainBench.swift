import CAllocCounter
import COpenBLAS
import Checkpoint
import Format
import Foundation
import Support
import Train

/// One benchmarked training configuration.
struct TrainBenchCase {
    let name: String
    let config: ModelConfig
    let batch: Int, seq: Int

    static let all = [
        TrainBenchCase(
            name: "gpt2-124m",
            config: ModelConfig(
                family: .gpt2, vocabSize: 50257, hiddenSize: 768, layers: 12,
                heads: 12, maxPositions: 1024), batch: 4, seq: 256),
        TrainBenchCase(
            name: "smollm2-135m",
            config: ModelConfig(
                family: .llama, vocabSize: 49152, hiddenSize: 576, layers: 30,
                heads: 9, kvHeads: 3, intermediateSize: 1536, maxPositions: 2048,
                ropeTheta: 1e5, tieWordEmbeddings: true), batch: 4, seq: 256),
        TrainBenchCase(
            name: "tiny-llama-5m",
            config: ModelConfig(
                family: .llama, vocabSize: 8192, hiddenSize: 256, layers: 4,
                heads: 4, kvHeads: 2, intermediateSize: 768, maxPositions: 512,
                tieWordEmbeddings: true), batch: 4, seq: 256),
    ]

    /// Model FLOPs per token: 6 N (forward + backward of every parameter's matmul) + 6 L C T for causal attention.
    func flopsPerToken(parameters: Int) -> Double {
        6 * Double(parameters) + 6 * Double(config.layers * config.heads * config.headDim * seq)
    }
}

/// What one side measured for one case.
struct TrainBenchResult {
    var ms = Double.nan, cpuMs = Double.nan, fwd = Double.nan, bwd = Double.nan, opt = Double.nan
    var allocationsPerStep = Double.nan
    var note = ""
}

/// Training-step benchmark: ms per step, tokens/s and MFU (against an sgemm rate measured in the same run, same
/// threads) for GPT-2-124M, SmolLM2-135M and a tiny Llama at batch 4 x 256, with PyTorch running the same step
/// (scripts/oracles/bench_peer_train.py) right after each.
///
/// Options: --model NAME (default all), --steps N (timed steps, default 5), --threads T (default 2),
/// --no-torch, --sgemm (only compare OpenBLAS threads with oreo's pool), --layers L (override, for quick
/// runs), --logit-cache-mb M (0: recompute the LM head's logits), --precision bf16 (each case in fp32, then
/// in bf16 with PyTorch autocast bf16 beside it; MFU of bf16 rows against oneDNN's bf16 rate). With --threads 1 the figures are this
/// thread's CPU time (and PyTorch's process CPU time), which other processes on a shared machine distort least.
func runTrainBench(args: [String]) {
    func opt(_ name: String) -> String? {
        guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
        return args[i + 1]
    }
    let steps = opt("--steps").flatMap(Int.init) ?? 5
    let threads = opt("--threads").flatMap(Int.init) ?? 2
    let cpuClock = threads == 1
    BLASRuntime.setThreads(threads)
    if args.contains("--sgemm") {
        compareSgemmThreading(threads: threads)
        return
    }
    var cases = TrainBenchCase.all
    if let m = opt("--model"), m != "all" { cases = cases.filter { $0.name.hasPrefix(m) } }
    if let l = opt("--layers").flatMap(Int.init) {
        cases = cases.map {
            var c = $0.config
            c.layers = l
            return TrainBenchCase(name: $0.name + "-L\(l)", config: c, batch: $0.batch, seq: $0.seq)
        }
    }
    print(
        "== train: \(threads) thread(s), \(steps) timed steps after 1 warm-up; \(cpuClock ? "CPU time of this thread (PyTorch: process CPU time)" : "wall time")"
    )
    print("machine load before: \(loadAverage())")
    let precisions: [Precision] = opt("--precision") == "bf16" ? [.fp32, .bf16] : [.fp32]
    if precisions.contains(.bf16) {
        do { try Precision.bf16.checkSupported() } catch {
            print("\(error)")
            return
        }
    }
    var rows: [(TrainBenchCase, Precision, Int, Double, TrainBenchResult, TrainBenchResult)] = []
    for c in cases {
        for precision in precisions {
            var load = MachineLoad()
            let peakOf = { precision == .bf16 ? measureBF16Peak() : measureSgemmPeak(cpuClock: cpuClock) }
            let peakBefore = peakOf()
            let (n, ours) = runOreo(
                c, steps: steps, cpuClock: cpuClock, logitCacheMB: opt("--logit-cache-mb").flatMap(Int.init),
                precision: precision)
            let peak = max(peakBefore, peakOf())
            print("  \(c.name) \(precision): during oreo's steps and the GEMM runs, \(load.othersSummary())")
            load = MachineLoad()
            let torch =
                args.contains("--no-torch")
                ? TrainBenchResult(note: "not run")
                : runTorch(c, steps: steps, threads: threads, precision: precision)
            if !args.contains("--no-torch") { print("  \(c.name): during PyTorch's steps, \(load.othersSummary())") }
            rows.append((c, precision, n, peak, ours, torch))
        }
    }
    print("machine load after: \(loadAverage())")
    var t = Table(
        "model", "precision", "params", "tokens/step", "oreo ms/step", "fwd/bwd/opt ms", "tokens/s", "peak GFLOP/s",
        "MFU", "allocs/step", "torch ms/step", "torch tokens/s", "oreo/torch")
    func perSecond(_ r: TrainBenchResult, _ c: TrainBenchCase) -> Double {
        Double(c.batch * c.seq) / ((cpuClock ? r.cpuMs : r.ms) / 1000)
    }
    for (c, precision, n, peak, o, p) in rows {
        let tps = perSecond(o, c), ptps = perSecond(p, c)
        let mfu = c.flopsPerToken(parameters: n) * tps / (peak * 1e9)
        t.add(
            c.name, precision.rawValue, String(format: "%.1fM", Double(n) / 1e6), "\(c.batch)x\(c.seq)",
            fmt(cpuClock ? o.cpuMs : o.ms, 0), "\(fmt(o.fwd, 0))/\(fmt(o.bwd, 0))/\(fmt(o.opt, 0))", fmt(tps, 1),
            fmt(peak, 1), fmt(100 * mfu, 1) + "%", fmt(o.allocationsPerStep, 0),
            ptps.isNaN ? p.note : fmt(cpuClock ? p.cpuMs : p.ms, 0), ptps.isNaN ? "-" : fmt(ptps, 1),
            ptps.isNaN ? "-" : fmt(tps / ptps, 2) + "x")
    }
    t.print()
    print("peak: sgemm (fp32 rows) or oneDNN bf16 (bf16 rows) on training shapes, measured around each case")
    for (c, precision, n, peak, o, p) in rows where c.name.hasPrefix("gpt2-124m") {
        let tps = perSecond(o, c), ptps = perSecond(p, c)
        let mfu = c.flopsPerToken(parameters: n) * tps / (peak * 1e9)
        var line =
            "targets (\(c.name), \(precision)): MFU >= 70% of the measured peak: \(fmt(100 * mfu, 1))% \(verdict(mfu, atLeast: 0.7))"
        if !ptps.isNaN {
            line += "; tokens/s >= 2.5x PyTorch: \(fmt(tps / ptps, 2))x \(verdict(tps / ptps, atLeast: 2.5))"
        }
        if precision == .bf16, let f = rows.first(where: { $0.0.name == c.name && $0.1 == .fp32 }) {
            let ratio = tps / perSecond(f.4, c)
            line += "; bf16 >= 1.8x oreo fp32: \(fmt(ratio, 2))x \(verdict(ratio, atLeast: 1.8))"
        }
        line +=
            "; allocations per step after the first: \(fmt(o.allocationsPerStep, 0)) \(o.allocationsPerStep == 0 ? "ok" : "BELOW TARGET")"
        print(line)
    }
}

/// How much of the machine other processes used while something ran: /proc/stat's busy time minus this
/// process's and its children's CPU time, as a fraction of all cores.
struct MachineLoad {
    private var busy0 = 0.0, total0 = 0.0, own0 = 0.0

    private static func stat() -> (busy: Double, total: Double) {
        guard let line = (try? String(contentsOfFile: "/proc/stat", encoding: .utf8))?.split(separator: "\n").first
        else { return (0, 0) }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 5 else { return (0, 0) }
        let total = v.reduce(0, +)
        return (total - v[3] - v[4], total)  // idle and iowait are not busy
    }

    private static func ownSeconds() -> Double {
        var me = rusage(), kids = rusage()
        getrusage(RUSAGE_SELF.rawValue, &me)
        getrusage(RUSAGE_CHILDREN.rawValue, &kids)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(me.ru_utime) + s(me.ru_stime) + s(kids.ru_utime) + s(kids.ru_stime)
    }

    /// Starts a measurement.
    init() {
        (busy0, total0) = Self.stat()
        own0 = Self.ownSeconds()
    }

    /// Other processes' share of all cores since init, e.g. "others 35% of 2 cores".
    func othersSummary() -> String {
        let (b, t) = Self.stat()
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        let ticks = max(t - total0, 1)  // jiffies over all cores
        let seconds = ticks / 100 / cores  // USER_HZ = 100
        let others = max(0, (b - busy0) / 100 - (Self.ownSeconds() - own0))
        return String(format: "others used %.0f%% of %.0f cores", 100 * others / max(seconds * cores, 1e-9), cores)
    }
}

/// The 1-, 5- and 15-minute load averages (runnable processes; 2 means both cores busy).
func loadAverage() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(
        separator: " ") ?? "?"
}

private func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

/// Milliseconds on the wall clock and on `clock` spent in `body`.
private func timed(_ clock: clockid_t, _ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
    var c0 = timespec(), c1 = timespec()
    clock_gettime(clock, &c0)
    let w0 = DispatchTime.now().uptimeNanoseconds
    try body()
    let w1 = DispatchTime.now().uptimeNanoseconds
    clock_gettime(clock, &c1)
    let cpu = Double(c1.tv_sec - c0.tv_sec) * 1e3 + Double(c1.tv_nsec - c0.tv_nsec) / 1e6
    return (Double(w1 - w0) / 1e6, cpu)
}

/// oreo's step on `c`: random tokens, mean NLL, clip, AdamW. Returns the parameter count and medians.
private func runOreo(
    _ c: TrainBenchCase, steps: Int, cpuClock: Bool, logitCacheMB: Int?, precision: Precision = .fp32
) -> (Int, TrainBenchResult) {
    var r = TrainBenchResult()
    let model: TransformerModel
    do {
        model = try TransformerModel(
            config: c.config, maxTokens: c.batch * c.seq,
            logitCacheBytes: logitCacheMB.map { $0 << 20 } ?? 1 << 30)
        try model.setPrecision(precision)
    } catch {
        r.note = "\(error)"
        print("\(c.name): \(error)")
        return (0, r)
    }
    model.initializeRandomly(seed: 1)
    let opt = AdamW(layout: model.layout, config: AdamWConfig(beta1: 0.9, beta2: 0.95, weightDecay: 0.1))
    var rng = SplitMix64(seed: 2)
    let v = UInt64(c.config.vocabSize)
    let b = PackedBatch(sequences: (0..<c.batch).map { _ in (0..<c.seq).map { _ in Int32(rng.next() % v) } })
    let k = b.targets.filter { $0 >= 0 }.count
    let dl = b.targets.map { $0 >= 0 ? -1 / Float(k) : 0 }
    var lp: [Float] = []
    // reserved so that recording times does not allocate inside the counted steps
    var walls = [Double](), cpus = [Double](), fwd = [Double](), bwd = [Double](), upd = [Double]()
    walls.reserveCapacity(steps)
    cpus.reserveCapacity(steps)
    fwd.reserveCapacity(steps)
    bwd.reserveCapacity(steps)
    upd.reserveCapacity(steps)
    let clock = cpuClock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID
    var allocations: Int64 = 0, mainAllocations: Int64 = 0, mainCPU0 = 0.0
    do {
        for s in 0...steps {
            if s == 1 {
                oreo_alloc_count_all_begin()
                oreo_alloc_count_begin()
                ComputePool.shared.collectStatistics = true
                mainCPU0 = threadCPUSeconds()
            }
            var f = (0.0, 0.0), g = (0.0, 0.0), u = (0.0, 0.0)
            let total = try timed(clock) {
                f = try timed(clock) { try model.forward(b, logProbs: &lp) }
                g = try timed(clock) {
                    model.zeroGradients()
                    try model.backward(dLogProbs: dl)
                }
                u = timed(clock) {
                    let coef = clipCoefficient(norm: gradientNorm(model.gradients), maxNorm: 1)
                    model.update(opt, lr: 1e-4, gradientScale: coef)
                }
            }
            if s == steps {
                allocations = oreo_alloc_count_all_end()
                mainAllocations = oreo_alloc_count_end()
            }
            if s == steps && ComputePool.shared.threads > 1 {
                let st = ComputePool.shared.statistics()
                ComputePool.shared.collectStatistics = false
                let k = Double(steps), mainCPU = threadCPUSeconds() - mainCPU0
                oreo_alloc_count_pause()
                let serial = (mainCPU - st.taskSeconds[0] - st.waitCPUSeconds) / k
                print(
                    String(
                        format:
                            "  %@: per step: CPU s in parallel tasks by thread %@; caller waiting for workers %.3f s (%.3f s CPU); caller's CPU outside tasks %.3f s; %d dispatches; critical path (largest task share + serial CPU) %.2f s",
                        c.name, st.taskSeconds.map { String(format: "%.3f", $0 / k) }.joined(separator: " / "),
                        st.waitSeconds / k,
                        st.waitCPUSeconds / k, serial, st.dispatches / steps, (st.taskSeconds.max() ?? 0) / k + serial))
                oreo_alloc_count_resume()
            }
            var loss = 0.0
            for x in lp { loss -= Double(x) }
            oreo_alloc_count_pause()  // printing allocates: not part of the step
            print(
                String(
                    format: "  %@ step %d: %.0f ms wall, %.0f ms CPU (fwd %.0f, bwd %.0f, opt %.0f), loss %.4f", c.name,
                    s,
                    total.wall, total.cpu, cpuClock ? f.1 : f.0, cpuClock ? g.1 : g.0, cpuClock ? u.1 : u.0,
                    loss / Double(k)))
            oreo_alloc_count_resume()
            if s > 0 {
                walls.append(total.wall)
                cpus.append(total.cpu)
                fwd.append(cpuClock ? f.1 : f.0)
                bwd.append(cpuClock ? g.1 : g.0)
                upd.append(cpuClock ? u.1 : u.0)
            }
        }
    } catch {
        _ = oreo_alloc_count_all_end()
        _ = oreo_alloc_count_end()
        r.note = "\(error)"
        return (model.parameters.count, r)
    }
    r.ms = median(walls)
    r.cpuMs = median(cpus)
    r.fwd = median(fwd)
    r.bwd = median(bwd)
    r.opt = median(upd)
    r.allocationsPerStep = Double(allocations) / Double(max(steps, 1))
    print(
        "  \(c.name): heap allocations in \(steps) steps: \(allocations) (all threads), \(mainAllocations) (this thread)"
    )
    fflush(nil)
    return (model.parameters.count, r)
}

/// Best sgemm rate over training-like shapes (GPT-2 MLP and a square), in GFLOP/s, with the run's thread count:
/// OpenBLAS' own threads and oreo's pool (single-threaded OpenBLAS per block), whichever is faster. Wall time,
/// or this thread's CPU time when `cpuClock` (one thread: BLAS runs in the caller).
private func measureSgemmPeak(cpuClock: Bool) -> Double {
    var best = 0.0
    let threads = ComputePool.shared.threads
    for (m, nn, kk) in [(1024, 3072, 768), (1024, 768, 3072), (2048, 2048, 2048)] {
        let a = [Float](repeating: 0.01, count: m * kk), b = [Float](repeating: 0.02, count: kk * nn)
        var c = [Float](repeating: 0, count: m * nn)
        for pool in threads > 1 ? [false, true] : [false] {
            openblas_set_num_threads(Int32(pool ? 1 : threads))
            for rep in 0..<4 {
                let t = timed(CLOCK_THREAD_CPUTIME_ID) {
                    a.withUnsafeBufferPointer { ap in
                        b.withUnsafeBufferPointer { bp in
                            c.withUnsafeMutableBufferPointer { cp in
                                if pool {
                                    sgemm(
                                        false, false, m, nn, kk, 1, ap.baseAddress!, kk, bp.baseAddress!, nn, 0,
                                        cp.baseAddress!, nn)
                                } else {
                                    cblas_sgemm(
                                        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(nn), Int32(kk), 1,
                                        ap.baseAddress!, Int32(kk), bp.baseAddress!, Int32(nn), 0, cp.baseAddress!,
                                        Int32(nn))
                                }
                            }
                        }
                    }
                }
                if rep > 0 { best = max(best, 2 * Double(m * nn * kk) / ((cpuClock ? t.cpu : t.wall) / 1e3) / 1e9) }
            }
        }
    }
    openblas_set_num_threads(1)  // the pool's setting: no nested threads
    return best
}

/// The same step in PyTorch + HF transformers (scripts/oracles/bench_peer_train.py).
private func runTorch(_ c: TrainBenchCase, steps: Int, threads: Int, precision: Precision = .fp32) -> TrainBenchResult {
    var r = TrainBenchResult()
    let cfg: [String: Any] = [
        "family": c.config.family == .gpt2 ? "gpt2" : "llama", "vocab": c.config.vocabSize,
        "d": c.config.hiddenSize, "layers": c.config.layers, "heads": c.config.heads,
        "kv_heads": c.config.kvHeads, "ffn": c.config.intermediateSize,
        "positions": c.config.maxPositions, "tied": c.config.tieWordEmbeddings,
        "batch": c.batch, "seq": c.seq, "steps": steps, "threads": threads, "seed": 0,
        "precision": precision.rawValue,
    ]
    guard let json = try? JSONSerialization.data(withJSONObject: cfg) else { return r }
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/oracles/bench_peer_train.py").path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", script, String(decoding: json, as: UTF8.self)]
    let pipe = Pipe()
    p.standardOutput = pipe
    do { try p.run() } catch {
        r.note = "not run"
        return r
    }
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    for line in out.split(separator: "\n") {
        if line.hasPrefix("{"), let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
            r.ms = (o["ms"] as? Double) ?? .nan
            r.cpuMs = (o["cpu_ms"] as? Double) ?? .nan
            print(
                "  \(c.name): torch \(o["version"] ?? "?") \(precision.rawValue): median \(fmt(r.ms, 0)) ms wall, \(fmt(r.cpuMs, 0)) ms CPU per step"
            )
        } else {
            print(line)
        }
    }
    if p.terminationStatus != 0 { r.note = "failed (pip install torch transformers)" }
    return r
}

/// sgemm at the step's shapes: OpenBLAS' own threads against oreo's pool (single-threaded OpenBLAS per share),
/// alternating in the same run; medians of 5 (wall GFLOP/s).
func compareSgemmThreading(threads: Int) {
    let shapes: [(String, Bool, Bool, Int, Int, Int)] = [
        ("qkv fwd", false, true, 1024, 2304, 768), ("mlp down fwd", false, true, 1024, 768, 3072),
        ("dW fc", true, false, 3072, 768, 1024), ("dX fc", false, false, 1024, 768, 3072),
        ("lm head", false, true, 1024, 50257, 768), ("attention", false, true, 256, 256, 64),
    ]
    var t = Table("shape", "m x n x k", "OpenBLAS threads GFLOP/s", "oreo pool GFLOP/s", "pool / OpenBLAS")
    for (name, ta, tb, m, n, k) in shapes {
        let a = [Float](repeating: 0.01, count: m * k), b = [Float](repeating: 0.02, count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        var ob: [Double] = [], pool: [Double] = []
        let flops = 2 * Double(m * n * k)
        for _ in 0..<6 {
            openblas_set_num_threads(Int32(threads))
            let t0 = DispatchTime.now().uptimeNanoseconds
            cblas_sgemm(
                CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, Int32(m), Int32(n),
                Int32(k),
                1, a, Int32(ta ? m : k), b, Int32(tb ? k : n), 0, &c, Int32(n))
            ob.append(flops / Double(DispatchTime.now().uptimeNanoseconds - t0))
            openblas_set_num_threads(1)
            let t1 = DispatchTime.now().uptimeNanoseconds
            a.withUnsafeBufferPointer { ap in
                b.withUnsafeBufferPointer { bp in
                    c.withUnsafeMutableBufferPointer { cp in
                        sgemm(
                            ta, tb, m, n, k, 1, ap.baseAddress!, ta ? m : k, bp.baseAddress!, tb ? k : n, 0,
                            cp.baseAddress!, n)
                    }
                }
            }
            pool.append(flops / Double(DispatchTime.now().uptimeNanoseconds - t1))
        }
        let o = median(Array(ob.dropFirst())), p = median(Array(pool.dropFirst()))
        t.add(name, "\(m)x\(n)x\(k)", fmt(o, 1), fmt(p, 1), fmt(p / o, 2) + "x")
    }
    openblas_set_num_threads(1)
    t.print()
}
