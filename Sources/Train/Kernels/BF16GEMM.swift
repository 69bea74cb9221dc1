import CDNNL
import Synchronization

/// bf16 matrix products with f32 accumulation and f32 output, through oneDNN's matmul primitive.
///
/// Debian's OpenBLAS has no bf16 GEMM; oneDNN's brgemm kernels use AVX512_BF16 (`vdpbf16ps`) or AMX tiles. One
/// primitive is created per shape (transposes, sizes, strides, accumulate) the first time it is asked for and
/// reused; each runs on one thread of the compute pool, on its share of the output, as `sgemm` does, so there
/// is no second thread pool (oneDNN's OpenMP threads would spin against the pool's).
public final class BF16GEMM: @unchecked Sendable {
    // The engine and the cache are created once; the cache is behind a mutex, each execution set is used by one
    // thread at a time.
    /// The process's engine, or nil when the CPU has neither AVX512_BF16 nor AMX (bf16 would be emulated, slower
    /// than f32).
    public static let shared: BF16GEMM? = BF16GEMM()

    /// oneDNN's name for the instructions its bf16 kernels use ("avx512_core_bf16", "avx512_core_amx", ...).
    public let isa: String
    private let engine: dnnl_engine_t
    private let cache = Mutex<[Shape: Primitive]>([:])
    private let implementations = Mutex<Set<String>>([])

    private init?() {
        let isa = dnnl_get_effective_cpu_isa()
        guard isa.rawValue & dnnl_cpu_isa_avx512_core_bf16.rawValue == dnnl_cpu_isa_avx512_core_bf16.rawValue
        else { return nil }
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let e else { return nil }
        engine = e
        self.isa =
            isa.rawValue & dnnl_cpu_isa_avx512_core_amx.rawValue == dnnl_cpu_isa_avx512_core_amx.rawValue
            ? "avx512_core_amx" : "avx512_core_bf16"
    }

    /// One line for `oreo doctor`: oneDNN's version and the bf16 path it takes on this CPU (one small product is
    /// run to learn the kernel's name), or why `--precision bf16` is refused.
    public static var summary: String {
        let v = dnnl_version()!.pointee
        let version = "oneDNN \(v.major).\(v.minor).\(v.patch)"
        guard let engine = shared else {
            return "bf16: not available (\(version) finds neither AVX512_BF16 nor AMX; --precision bf16 is refused)"
        }
        let a = [BF16Bits](repeating: 0, count: 64 * 64)
        var c = [Float](repeating: 0, count: 64 * 64)
        bf16gemm(false, false, 64, 64, 64, a, 64, a, 64, accumulate: false, &c, 64)
        return "bf16: \(version), path \(engine.isa), kernel \(engine.implementationNames.joined(separator: ", "))"
    }

    /// The kernels oneDNN picked for the shapes run so far (e.g. "brg:avx512_core_bf16").
    public var implementationNames: [String] { implementations.withLock { $0.sorted() } }

    /// Who runs a product's threads: the compute pool (each of its threads one share, oneDNN single-threaded:
    /// the default), or oneDNN's own OpenMP threads on the whole product (measured by `Bench gemm`).
    public enum Threading: Sendable { case pool, openMP }
    /// The threading products use; set between steps.
    public nonisolated(unsafe) static var threading = Threading.pool

    /// Whether the product of two bf16 matrices is native on this CPU (`shared` is not nil).
    public static var isAvailable: Bool { shared != nil }

    /// One product's layout: what a primitive is specialised for.
    struct Shape: Hashable {
        let transA: Bool, transB: Bool
        let m: Int, n: Int, k: Int
        let lda: Int, ldb: Int, ldc: Int
        let accumulate: Bool
    }

    /// A primitive and the execution sets (memory objects, stream, scratchpad) threads take in turn.
    final class Primitive: @unchecked Sendable {
        let primitive: dnnl_primitive_t
        let descriptor: dnnl_primitive_desc_t
        let scratchBytes: Int
        let engine: dnnl_engine_t
        private let free = Mutex<[ExecutionSet]>([])

        init(_ s: Shape, engine: dnnl_engine_t) {
            self.engine = engine
            var a = dnnl_memory_desc_t(), b = dnnl_memory_desc_t(), c = dnnl_memory_desc_t()
            // Row-major with the stored row stride; a transposed operand is the same bytes read column-major.
            Self.describe(&a, s.m, s.k, s.transA ? [1, s.lda] : [s.lda, 1], dnnl_bf16)
            Self.describe(&b, s.k, s.n, s.transB ? [1, s.ldb] : [s.ldb, 1], dnnl_bf16)
            Self.describe(&c, s.m, s.n, [s.ldc, 1], dnnl_f32)
            var desc = dnnl_matmul_desc_t()
            Self.check(dnnl_matmul_desc_init(&desc, &a, &b, nil, &c), "matmul descriptor")
            var attr: dnnl_primitive_attr_t?
            Self.check(dnnl_primitive_attr_create(&attr), "attributes")
            defer { dnnl_primitive_attr_destroy(attr) }
            Self.check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode")
            if s.accumulate {
                var ops: dnnl_post_ops_t?
                Self.check(dnnl_post_ops_create(&ops), "post-ops")
                defer { dnnl_post_ops_destroy(ops) }
                Self.check(dnnl_post_ops_append_sum(ops, 1), "sum post-op")
                Self.check(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops")
            }
            var pd: dnnl_primitive_desc_t?
            Self.check(dnnl_primitive_desc_create(&pd, &desc, attr, engine, nil), "primitive descriptor")
            descriptor = pd!
            var p: dnnl_primitive_t?
            Self.check(dnnl_primitive_create(&p, pd), "primitive")
            primitive = p!
            scratchBytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0))
        }

        /// The implementation oneDNN chose.
        var implementation: String {
            var name: UnsafePointer<CChar>?
            guard dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &name) == dnnl_success,
                let name
            else { return "?" }
            return String(cString: name)
        }

        static func describe(
            _ md: inout dnnl_memory_desc_t, _ rows: Int, _ cols: Int, _ strides: [Int], _ type: dnnl_data_type_t
        ) {
            let dims: [dnnl_dim_t] = [dnnl_dim_t(rows), dnnl_dim_t(cols)]
            let st: [dnnl_dim_t] = strides.map { dnnl_dim_t($0) }
            check(dnnl_memory_desc_init_by_strides(&md, 2, dims, type, st), "memory descriptor")
        }

        static func check(_ status: dnnl_status_t, _ what: String) {
            // Shapes and strides come from the model's layout, never from files: a failure is a bug.
            precondition(status == dnnl_success, "oneDNN: creating the \(what) failed (status \(status.rawValue))")
        }

        /// Runs the product on the calling thread.
        func run(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ c: UnsafeMutableRawPointer, threads: Int) {
            let set = free.withLock { $0.popLast() } ?? ExecutionSet(self)
            set.run(self, a, b, c, threads: threads)
            free.withLock { $0.append(set) }
        }

        deinit {
            dnnl_primitive_destroy(primitive)
            dnnl_primitive_desc_destroy(descriptor)
        }
    }

    /// Memory objects, a stream and a scratchpad for one thread's execution of a primitive.
    final class ExecutionSet: @unchecked Sendable {
        let stream: dnnl_stream_t
        let src: dnnl_memory_t, weights: dnnl_memory_t, dst: dnnl_memory_t, scratch: dnnl_memory_t
        let scratchpad: UnsafeMutableRawPointer

        init(_ p: Primitive) {
            var s: dnnl_stream_t?
            Primitive.check(dnnl_stream_create(&s, p.engine, dnnl_stream_default_flags.rawValue), "stream")
            stream = s!
            func memory(_ query: dnnl_query_t) -> dnnl_memory_t {
                var m: dnnl_memory_t?
                Primitive.check(
                    dnnl_memory_create(&m, dnnl_primitive_desc_query_md(p.descriptor, query, 0), p.engine, nil),
                    "memory")
                return m!
            }
            src = memory(dnnl_query_src_md)
            weights = memory(dnnl_query_weights_md)
            dst = memory(dnnl_query_dst_md)
            scratch = memory(dnnl_query_scratchpad_md)
            scratchpad = UnsafeMutableRawPointer.allocate(byteCount: max(64, p.scratchBytes), alignment: 64)
            Primitive.check(dnnl_memory_set_data_handle_v2(scratch, scratchpad, stream), "scratchpad")
        }

        func run(
            _ p: Primitive, _ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ c: UnsafeMutableRawPointer, threads: Int
        ) {
            dnnl_memory_set_data_handle_v2(src, UnsafeMutableRawPointer(mutating: a), stream)
            dnnl_memory_set_data_handle_v2(weights, UnsafeMutableRawPointer(mutating: b), stream)
            dnnl_memory_set_data_handle_v2(dst, c, stream)
            var args = (
                dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: src),
                dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: weights),
                dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: dst),
                dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: scratch)
            )
            omp_set_num_threads(Int32(threads))
            let status = withUnsafePointer(to: &args) {
                $0.withMemoryRebound(to: dnnl_exec_arg_t.self, capacity: 4) {
                    dnnl_primitive_execute(p.primitive, stream, 4, $0)
                }
            }
            precondition(status == dnnl_success, "oneDNN: matmul failed (status \(status.rawValue))")
            dnnl_stream_wait(stream)
        }

        deinit {
            for m in [src, weights, dst, scratch] { dnnl_memory_destroy(m) }
            dnnl_stream_destroy(stream)
            scratchpad.deallocate()
        }
    }

    /// The primitive for `s`, created on first use.
    func primitive(_ s: Shape) -> Primitive {
        if let p = cache.withLock({ $0[s] }) { return p }
        let p = Primitive(s, engine: engine)
        let name = p.implementation
        implementations.withLock { _ = $0.insert(name) }
        return cache.withLock { c in
            if let q = c[s] { return q }
            c[s] = p
            return p
        }
    }
}

/// Row-major `C = op(A) op(B)` (or `C += ...` with `accumulate`), A and B bf16, C f32 with f32 accumulation; split
/// over the compute pool like `sgemm`, each share one oneDNN primitive run on one thread.
///
/// Shapes: op(A) [m, k], op(B) [k, n], C [m, n]; lda/ldb/ldc are the row strides of A, B, C as stored.
/// Requires `BF16GEMM.shared` (the caller refuses bf16 on CPUs without it).
public func bf16gemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
    _ a: UnsafePointer<BF16Bits>, _ lda: Int, _ b: UnsafePointer<BF16Bits>, _ ldb: Int,
    accumulate: Bool, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        if !accumulate { for r in 0..<m { (c + r * ldc).update(repeating: 0, count: n) } }
        return
    }
    guard let engine = BF16GEMM.shared else { preconditionFailure("bf16gemm on a CPU without native bf16") }
    let g = BF16Product(
        engine: Unmanaged.passUnretained(engine), transA: transA, transB: transB, m: m, n: n, k: k, a: a, lda: lda,
        b: b, ldb: ldb, accumulate: accumulate, c: c, ldc: ldc)
    if BF16GEMM.threading == .openMP {
        g.run(byRows: true, 0, m, threads: ComputePool.shared.threads)
        return
    }
    splitProduct(
        m, n, k, g, rows: { raw, lo, hi in raw.load(as: BF16Product.self).run(byRows: true, lo, hi) },
        columns: { raw, lo, hi in raw.load(as: BF16Product.self).run(byRows: false, lo, hi) })
}

/// One bf16gemm call's operands, for the pool.
private struct BF16Product {
    let engine: Unmanaged<BF16GEMM>
    let transA: Bool, transB: Bool
    let m: Int, n: Int, k: Int
    let a: UnsafePointer<BF16Bits>, lda: Int
    let b: UnsafePointer<BF16Bits>, ldb: Int
    let accumulate: Bool
    let c: UnsafeMutablePointer<Float>, ldc: Int

    /// The product restricted to rows [lo, hi) of C (byRows) or columns [lo, hi).
    func run(byRows: Bool, _ lo: Int, _ hi: Int, threads: Int = 1) {
        let (mm, nn) = byRows ? (hi - lo, n) : (m, hi - lo)
        let ap = byRows ? (transA ? a + lo : a + lo * lda) : a
        let bp = byRows ? b : (transB ? b + lo * ldb : b + lo)
        let cp = byRows ? c + lo * ldc : c + lo
        let shape = BF16GEMM.Shape(
            transA: transA, transB: transB, m: mm, n: nn, k: k, lda: lda, ldb: ldb, ldc: ldc, accumulate: accumulate)
        engine.takeUnretainedValue().primitive(shape).run(
            UnsafeRawPointer(ap), UnsafeRawPointer(bp), UnsafeMutableRawPointer(cp), threads: threads)
    }
}
