import COpenBLAS
import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// The threads the kernels split their work over: the calling thread plus `threads - 1` persistent workers.
///
/// One pool per process, sized to the cores (2 here). BLAS runs single-threaded inside it (one sgemm per
/// thread on its share), so there is never a second, nested thread pool: OpenBLAS' own threads spin between
/// calls, allocate a job array per threaded call and collapse when other processes want the cores
/// (docs/cpu-performance.md). A dispatch allocates nothing: the task is a C function and a pointer to the
/// caller's arguments. Workers spin briefly, then yield, then sleep on a condition variable. A dispatch made
/// while the pool is busy (from a worker, or another thread) runs inline on the caller, so nesting cannot
/// deadlock.
public final class ComputePool: @unchecked Sendable {
    /// The process-wide pool the kernels use.
    public static let shared = ComputePool(threads: initialThreads)
    /// Threads `shared` starts with (the cores, unless `BLASRuntime.configureThreads` set it before first use:
    /// a pool never stops its workers, and idle ones still wake on every dispatch).
    nonisolated(unsafe) static var initialThreads = min(ProcessInfo.processInfo.activeProcessorCount, 64)
    /// Whether `shared` exists yet.
    nonisolated(unsafe) static var started = false

    /// Threads a dispatch uses (1 = everything runs on the caller).
    public private(set) var threads: Int
    private var workers: [pthread_t] = []
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Chunks of the current dispatch claimed so far: threads take chunks until none are left, so a worker the
    /// OS has not scheduled yet delays nothing (the caller takes its share).
    let cursor = Atomic<Int>(0)
    private var entry: PoolEntry?
    private var context: UnsafeRawPointer?
    private var taskThreads = 1
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var sleepers = 0
    /// Per thread: CPU nanoseconds inside tasks; 64: the caller's CPU nanoseconds waiting for workers;
    /// 65: dispatches; 66: the caller's wall nanoseconds waiting.
    private let counters = UnsafeMutablePointer<Int>.allocate(capacity: 67)
    /// Record where time goes (off by default: it reads the thread clock around every task).
    public var collectStatistics = false {
        didSet { counters.initialize(repeating: 0, count: 67) }
    }

    init(threads: Int) {
        Self.started = true
        self.threads = 1
        openblas_set_num_threads(1)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        counters.initialize(repeating: 0, count: 67)
        setThreads(threads)
    }

    /// Uses `n` threads from now on (workers are started as needed, never stopped). Call between steps.
    public func setThreads(_ n: Int) {
        let want = max(1, min(n, 64))
        while workers.count < want - 1 {
            let index = workers.count + 1
            let box = Unmanaged.passRetained(WorkerStart(pool: self, index: index)).toOpaque()
            var t = pthread_t()
            guard
                pthread_create(
                    &t, nil,
                    { raw in
                        let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                        start.pool.workerLoop(index: start.index)
                        return nil
                    }, box) == 0
            else {
                Unmanaged<WorkerStart>.fromOpaque(box).release()
                break
            }
            workers.append(t)
        }
        threads = min(want, workers.count + 1)
    }

    /// Runs entry(context, i, n) for i in 0..<n on n = min(`threads`, `limit`) threads (the caller runs i = 0)
    /// and returns when all are done; entry(context, 0, 1) on the caller alone when the pool is busy or n is 1.
    ///
    /// A C function and a pointer rather than a closure: handing a Swift closure to other threads means an
    /// escaping (heap-allocated) context on every call, and a training step must not allocate.
    public func run(_ entry: PoolEntry, _ context: UnsafeRawPointer, limit: Int = .max) {
        let n = min(threads, limit)
        guard n > 1, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            entry(context, 0, 1)
            return
        }
        self.entry = entry
        self.context = context
        taskThreads = n
        cursor.store(0, ordering: .relaxed)
        // every worker checks in, also those beyond `threads` after a setThreads down
        pending.store(workers.count, ordering: .relaxed)
        generation.add(1, ordering: .releasing)
        pthread_mutex_lock(&mutex)
        if sleepers > 0 { pthread_cond_broadcast(&wake) }
        pthread_mutex_unlock(&mutex)
        let stats = collectStatistics
        let t0 = stats ? Self.threadNanoseconds() : 0
        entry(context, 0, taskThreads)
        let w0 = stats ? DispatchTime.now().uptimeNanoseconds : 0
        let c0 = stats ? Self.threadNanoseconds() : 0
        if stats { counters[0] += c0 - t0 }
        var spins = 0
        while pending.load(ordering: .acquiring) > 0 {
            spins += 1
            if spins > 256 { sched_yield() }
        }
        if stats {
            counters[64] += Self.threadNanoseconds() - c0
            counters[65] += 1
            counters[66] += Int(DispatchTime.now().uptimeNanoseconds - w0)
        }
        self.entry = nil
        self.context = nil
        busy.store(false, ordering: .releasing)
    }

    /// Runs entry(&args, i, n) on n = min(`threads`, `limit`) threads (see `run(_:_:limit:)`); `args` holds
    /// what the entry needs, since a C function captures nothing.
    @inline(__always)
    public func run<Args>(_ args: Args, limit: Int = .max, _ entry: PoolEntry) {
        withUnsafePointer(to: args) { run(entry, UnsafeRawPointer($0), limit: limit) }
    }

    /// Splits 0..<count into `chunks` contiguous ranges (default: two per thread; boundaries multiples of
    /// `grain`) that the threads claim in turn, and calls entry(&args, lo, hi) for each non-empty range; one
    /// call entry(&args, 0, count) on the caller when there are fewer than `minPerThread` units for each of
    /// two threads.
    @inline(__always)
    public func parallelFor<Args>(
        _ count: Int, grain: Int = 1, minPerThread: Int = 1, chunks: Int = 0, _ args: Args,
        _ entry: PoolEntry
    ) {
        guard count > 0 else { return }
        withUnsafePointer(to: args) { a in
            guard splits(count, grain: grain, minPerThread: minPerThread) else {
                entry(UnsafeRawPointer(a), 0, count)
                return
            }
            let job = RangeJob(
                entry: entry, args: UnsafeRawPointer(a), count: count, grain: grain,
                chunks: chunks > 0 ? chunks : 2 * threads)
            run(job) { raw, _, n in
                let job = raw.load(as: RangeJob.self)
                ComputePool.shared.claim(job.chunks, inline: n == 1) { c in
                    let r = ComputePool.share(job.count, c, job.chunks, grain: job.grain)
                    if !r.isEmpty { job.entry(job.args, r.lowerBound, r.upperBound) }
                }
            }
        }
    }

    /// Inside a task: calls body(c) for chunks c claimed from this dispatch's cursor until all `count` are
    /// taken; `inline` (the task runs alone on its caller) takes them all in order without the cursor, which
    /// belongs to whatever dispatch holds the pool.
    @inline(__always) func claim(_ count: Int, inline: Bool, _ body: (Int) -> Void) {
        if inline {
            for c in 0..<count { body(c) }
            return
        }
        while true {
            let c = cursor.wrappingAdd(1, ordering: .relaxed).oldValue
            if c >= count { return }
            body(c)
        }
    }

    /// Since `collectStatistics` was set: CPU seconds each thread spent in tasks, the caller's CPU and wall
    /// seconds waiting for the workers to finish, and the number of parallel dispatches.
    public func statistics() -> (taskSeconds: [Double], waitCPUSeconds: Double, waitSeconds: Double, dispatches: Int) {
        (
            (0..<threads).map { Double(counters[$0]) / 1e9 }, Double(counters[64]) / 1e9, Double(counters[66]) / 1e9,
            counters[65]
        )
    }

    @inline(__always) static func threadNanoseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }

    /// Whether `count` units are worth splitting: more than one thread, and at least `minPerThread` (and
    /// `grain`) units for each of two threads.
    @inline(__always) public func splits(_ count: Int, grain: Int = 1, minPerThread: Int = 1) -> Bool {
        threads > 1 && count >= 2 * max(minPerThread, grain)
    }

    /// Part i of 0..<count cut into n contiguous parts (boundaries rounded to multiples of `grain`).
    @inline(__always) public static func share(_ count: Int, _ i: Int, _ n: Int, grain: Int) -> Range<Int> {
        let units = (count + grain - 1) / grain
        let lo = min(count, units * i / n * grain), hi = i == n - 1 ? count : min(count, units * (i + 1) / n * grain)
        return lo..<hi
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            var g = generation.load(ordering: .acquiring)
            while g == seen {
                spins += 1
                if spins < 2_000 {
                    // short spin: the next kernel usually follows within microseconds
                } else if spins < 2_200 {
                    sched_yield()
                } else {
                    pthread_mutex_lock(&mutex)
                    sleepers += 1
                    while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(&wake, &mutex) }
                    sleepers -= 1
                    pthread_mutex_unlock(&mutex)
                }
                g = generation.load(ordering: .acquiring)
            }
            seen = g
            if index < taskThreads, let e = entry, let c = context {
                let t0 = collectStatistics ? Self.threadNanoseconds() : 0
                e(c, index, taskThreads)
                if collectStatistics { counters[index] += Self.threadNanoseconds() - t0 }
            }
            pending.subtract(1, ordering: .releasing)
        }
    }
}

/// A pool task: a C function (it captures nothing) called with the caller's argument pointer and two integers:
/// (thread index, thread count) for `run`, (lo, hi) of a claimed range for `parallelFor`.
public typealias PoolEntry = @convention(c) (UnsafeRawPointer, Int, Int) -> Void

/// A range-splitting task: the user's entry and arguments, the unit count, the split granularity and the
/// number of chunks.
private struct RangeJob {
    let entry: PoolEntry
    let args: UnsafeRawPointer
    let count: Int
    let grain: Int
    let chunks: Int
}

/// What a new worker thread needs (passed through pthread_create's context pointer).
private final class WorkerStart {
    let pool: ComputePool
    let index: Int
    init(pool: ComputePool, index: Int) {
        self.pool = pool
        self.index = index
    }
}
