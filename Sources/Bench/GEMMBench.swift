import CAllocCounter
import Foundation
import Train

/// `Bench gemm`: bf16 matrix products (oneDNN, f32 accumulation) against OpenBLAS sgemm in the same run, at the
/// shapes of GPT-2-124M's linear layers at batch 4 x 256 (forward x W^T, dX = dY W, dW += dY^T X) and on a large
/// square one (the bf16 peak `Bench train` reports MFU against). bf16 runs two ways: on the compute pool's
/// threads (oneDNN single-threaded on each share: what training uses) and on oneDNN's own OpenMP threads.
/// Prints GFLOP/s (best of 5 after a warm-up), the ratio to sgemm, and heap allocations per bf16 call.
func runGEMMBench(args: [String]) {
    func opt(_ name: String) -> String? {
        guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
        return args[i + 1]
    }
    let threads = opt("--threads").flatMap(Int.init) ?? 2
    BLASRuntime.setThreads(threads)
    guard let engine = BF16GEMM.shared else {
        print("== gemm: this CPU has neither AVX512_BF16 nor AMX; bf16 products are not run")
        return
    }
    print("== gemm: \(threads) thread(s), oneDNN bf16 path \(engine.isa)")
    // (label, transA, transB, m, n, k)
    let shapes: [(String, Bool, Bool, Int, Int, Int)] = [
        ("qkv fwd  x W^T", false, true, 1024, 2304, 768),
        ("mlp up   x W^T", false, true, 1024, 3072, 768),
        ("mlp down x W^T", false, true, 1024, 768, 3072),
        ("mlp dX   dY W", false, false, 1024, 768, 3072),
        ("mlp dW   dY^T X", true, false, 3072, 768, 1024),
        ("square 2048", false, false, 2048, 2048, 2048),
    ]
    var table = Table(
        "product", "m x n x k", "sgemm GFLOP/s", "bf16 pool GFLOP/s", "bf16 OpenMP GFLOP/s", "pool/sgemm",
        "allocs/call")
    for (label, ta, tb, m, n, k) in shapes {
        let (lda, ldb) = (ta ? m : k, tb ? k : n)
        var af = [Float](repeating: 0, count: m * k), bf = [Float](repeating: 0, count: k * n)
        var rng = SystemRandomNumberGenerator()
        for i in af.indices { af[i] = Float.random(in: -1...1, using: &rng) }
        for i in bf.indices { bf[i] = Float.random(in: -1...1, using: &rng) }
        var ah = [BF16Bits](repeating: 0, count: m * k), bh = [BF16Bits](repeating: 0, count: k * n)
        roundToBF16(af, &ah, af.count)
        roundToBF16(bf, &bh, bf.count)
        var c = [Float](repeating: 0, count: m * n)
        let flops = 2 * Double(m * n * k)
        func best(_ body: () -> Void) -> Double {
            body()
            var t = Double.infinity
            for _ in 0..<5 { t = min(t, seconds(body)) }
            return flops / t / 1e9
        }
        let s = best {
            sgemm(ta, tb, m, n, k, 1, af, lda, bf, ldb, 0, &c, n)
        }
        BF16GEMM.threading = .pool
        let pool = best { bf16gemm(ta, tb, m, n, k, ah, lda, bh, ldb, accumulate: false, &c, n) }
        oreo_alloc_count_all_begin()
        bf16gemm(ta, tb, m, n, k, ah, lda, bh, ldb, accumulate: true, &c, n)
        bf16gemm(ta, tb, m, n, k, ah, lda, bh, ldb, accumulate: true, &c, n)
        _ = oreo_alloc_count_all_end()
        oreo_alloc_count_all_begin()
        bf16gemm(ta, tb, m, n, k, ah, lda, bh, ldb, accumulate: true, &c, n)
        let allocs = oreo_alloc_count_all_end()
        BF16GEMM.threading = .openMP
        let omp = best { bf16gemm(ta, tb, m, n, k, ah, lda, bh, ldb, accumulate: false, &c, n) }
        BF16GEMM.threading = .pool
        table.add(label, "\(m)x\(n)x\(k)", fmt(s, 0), fmt(pool, 0), fmt(omp, 0), fmt(pool / s, 2) + "x", "\(allocs)")
    }
    table.print()
    print("oneDNN kernels: \(engine.implementationNames.joined(separator: ", "))")
}

/// The best oneDNN bf16 rate (GFLOP/s, wall time, on the compute pool) over training shapes: GPT-2's MLP and a
/// square 2048 product.
func measureBF16Peak() -> Double {
    var best = 0.0
    for (m, n, k) in [(1024, 3072, 768), (1024, 768, 3072), (2048, 2048, 2048)] {
        let a = [BF16Bits](repeating: bf16(0.01), count: m * k), b = [BF16Bits](repeating: bf16(0.02), count: k * n)
        var c = [Float](repeating: 0, count: m * n)
        for rep in 0..<4 {
            let t = seconds { bf16gemm(false, false, m, n, k, a, k, b, n, accumulate: false, &c, n) }
            if rep > 0 { best = max(best, 2 * Double(m * n * k) / t / 1e9) }
        }
    }
    return best
}
