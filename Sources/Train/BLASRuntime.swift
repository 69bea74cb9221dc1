import COpenBLAS
#if canImport(Glibc)
    import Glibc
#endif

/// Chooses OpenBLAS' kernel family before the library initializes, and reports what it runs.
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` once, when the shared library loads, so the only way to change it
/// for a process that is already running is to exec the same binary again with the variable set.
/// This machine kind sets `OPENBLAS_CORETYPE=Haswell` (AVX2); on an AVX-512 CPU `SkylakeX` about
/// doubles sgemm (docs/cpu-performance.md).
public enum BLASRuntime {
    /// Environment variable a user sets to force a core type (`auto` keeps the automatic choice).
    public static let overrideVariable = "OREO_BLAS_CORETYPE"
    static let reexecMarker = "OREO_BLAS_REEXEC"

    /// The core type this process wants: the user's override, else SkylakeX when the CPU has AVX-512F.
    public static func preferredCoreType() -> String? {
        if let forced = getenv(overrideVariable).map({ String(cString: $0) }), !forced.isEmpty, forced != "auto" {
            return forced
        }
        return cpuHasAVX512() ? "SkylakeX" : nil
    }

    /// Re-executes the current binary once with the preferred `OPENBLAS_CORETYPE`, when it differs.
    /// Returns normally when no re-exec is needed or possible (the current kernels are then kept).
    public static func ensurePreferredKernels() {
        guard let want = preferredCoreType() else { return }
        let have = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) }
        if have == want || getenv(reexecMarker) != nil { return }
        setenv("OPENBLAS_CORETYPE", want, 1)
        setenv(reexecMarker, "1", 1)
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cargs.append(nil)
        execv("/proc/self/exe", &cargs)
        // exec failed: carry on with whatever kernels are loaded.
        for p in cargs { free(p) }
    }

    /// OpenBLAS' name for the kernel family in use (for example "SkylakeX" or "Haswell").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// Threads the kernels use (oreo's compute pool; each runs single-threaded OpenBLAS on its share).
    public static var threads: Int { ComputePool.shared.threads }

    /// Sets the number of compute threads (OpenBLAS itself stays single-threaded: no nested pools).
    public static func setThreads(_ n: Int) { ComputePool.shared.setThreads(n) }

    /// Sets the process's compute threads for all that follows (`--threads`): the pool's size (its workers are
    /// only started up to `n` when this comes first), the small-batch decoding kernels' and attention's.
    public static func configureThreads(_ n: Int) {
        let n = max(1, min(n, 64))
        if ComputePool.started { ComputePool.shared.setThreads(n) } else { ComputePool.initialThreads = n }
        smallBatchLinearThreads = n
    }

    /// Runs `body` with BLAS and the small-batch kernels on one thread each, and restores both afterwards: for
    /// callers that run several models side by side on threads of their own (nested pools oversubscribe cores).
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let blas = threads, small = smallBatchLinearThreads
        setThreads(1)
        smallBatchLinearThreads = 1
        defer {
            setThreads(blas)
            smallBatchLinearThreads = small
        }
        return try body()
    }

    /// One line for logs: kernel family, thread count and how it was chosen.
    public static var summary: String {
        let env = getenv("OPENBLAS_CORETYPE").map { String(cString: $0) } ?? "unset"
        return
            "OpenBLAS core \(coreName), \(threads) compute thread(s) with single-threaded BLAS each (OPENBLAS_CORETYPE=\(env), AVX-512: \(cpuHasAVX512() ? "yes" : "no"))"
    }

    /// Whether /proc/cpuinfo lists the avx512f flag.
    public static func cpuHasAVX512() -> Bool {
        guard let f = fopen("/proc/cpuinfo", "r") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 8192)
        while fgets(&line, Int32(line.count), f) != nil {
            let s = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if s.hasPrefix("flags") { return s.contains(" avx512f") }
        }
        return false
    }
}
