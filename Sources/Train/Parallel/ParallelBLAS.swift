import COpenBLAS

/// One sgemm call's operands (row-major; op = transpose where set).
private struct GEMM {
    let transA: Bool, transB: Bool
    let m: Int, n: Int, k: Int
    let alpha: Float, beta: Float
    let a: UnsafePointer<Float>, lda: Int
    let b: UnsafePointer<Float>, ldb: Int
    let c: UnsafeMutablePointer<Float>, ldc: Int

    /// The product restricted to rows [lo, hi) of C (byRows) or columns [lo, hi).
    func run(byRows: Bool, _ lo: Int, _ hi: Int) {
        let (mm, nn) = byRows ? (hi - lo, n) : (m, hi - lo)
        let ap = byRows ? (transA ? a + lo : a + lo * lda) : a
        let bp = byRows ? b : (transB ? b + lo * ldb : b + lo)
        let cp = byRows ? c + lo * ldc : c + lo
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(mm), Int32(nn), Int32(k), alpha, ap, Int32(lda), bp, Int32(ldb), beta, cp, Int32(ldc))
    }
}

/// Row-major `C = alpha op(A) op(B) + beta C` (op = transpose when `transA` / `transB`), split over the
/// compute pool into blocks of rows of C or of columns, whichever dimension is larger; each thread runs a
/// single-threaded sgemm on the blocks it claims. Products under ~4 MFLOP stay on the caller.
///
/// Shapes: op(A) [m, k], op(B) [k, n], C [m, n]; lda/ldb/ldc are the row strides of A, B, C as stored.
public func sgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
    _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
    _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    guard m > 0, n > 0 else { return }
    let g = GEMM(
        transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta, a: a, lda: lda,
        b: b, ldb: ldb, c: c, ldc: ldc)
    splitProduct(
        m, n, k, g, rows: { raw, lo, hi in raw.load(as: GEMM.self).run(byRows: true, lo, hi) },
        columns: { raw, lo, hi in raw.load(as: GEMM.self).run(byRows: false, lo, hi) })
}

/// Runs a product C [m, n] (inner size k) as blocks of rows of C or of columns, whichever dimension is larger,
/// over the compute pool: `rows(args, lo, hi)` computes rows [lo, hi), `columns` columns. Products under ~4
/// MFLOP stay on the caller.
func splitProduct<Args>(_ m: Int, _ n: Int, _ k: Int, _ args: Args, rows: PoolEntry, columns: PoolEntry) {
    let pool = ComputePool.shared
    // every block re-packs the operand it shares with the others: blocks of >= ~2048 rows or columns keep that
    // copy under a few percent of the block's arithmetic, and more blocks than threads let a thread that
    // finishes early (or a worker the OS scheduled late) take over the rest
    let chunks = min(4 * pool.threads, max(pool.threads, max(m, n) / 2048))
    if 2 * m * n * k < 4_000_000 {
        withUnsafePointer(to: args) { rows(UnsafeRawPointer($0), 0, m) }
    } else if n >= m {
        pool.parallelFor(n, grain: 32, chunks: chunks, args, columns)
    } else {
        pool.parallelFor(m, grain: 32, chunks: chunks, args, rows)
    }
}
