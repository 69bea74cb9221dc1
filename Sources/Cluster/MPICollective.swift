import CMPI
import Foundation
import Support

/// An MPI job's ranks over the MPI library the launcher provides, loaded at run time (`oreo` links no MPI).
///
/// Only the main thread calls MPI (MPI_THREAD_FUNNELED). Errors of the library end the job: an MPI call that
/// fails has no state worth keeping.
public final class MPICollective: Collective, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// The library's version line (Open MPI or MPICH).
    public let library: String

    fileprivate init(rank: Int, size: Int, library: String) {
        self.rank = rank
        self.size = size
        self.library = library
    }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == 0 else { throw ClusterError("rank \(rank): MPI \(what) failed (code \(rc))") }
    }

    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int, bucket: Int) throws {
        try check(oreo_mpi_allreduce_f32(buffer, Int64(count), Int64(bucket)), "all-reduce")
    }

    public func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {
        try check(oreo_mpi_allreduce_f64(buffer, Int64(count), 0), "all-reduce")
    }

    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var lengths = [Int64](repeating: 0, count: size)
        lengths[rank] = Int64(bytes.count)
        try check(oreo_mpi_allreduce_i64(&lengths, Int64(size), 0), "all-reduce")
        let longest = Int(lengths.max() ?? 0)
        guard longest < Int(Int32.max) / max(1, size) else { throw ClusterError("all-gather of \(longest) bytes") }
        var padded = bytes + [UInt8](repeating: 0, count: longest - bytes.count)
        var out = [UInt8](repeating: 0, count: longest * size)
        try check(oreo_mpi_allgather(&padded, Int32(longest), &out), "all-gather")
        return (0..<size).map { r in Array(out[r * longest..<r * longest + Int(lengths[r])]) }
    }

    public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        var lengths = [Int64](repeating: 0, count: size)
        lengths[rank] = Int64(bytes.count)
        try check(oreo_mpi_allreduce_i64(&lengths, Int64(size), 0), "all-reduce")
        let total = lengths.reduce(0, +)
        guard total < Int64(Int32.max) else { throw ClusterError("gather of \(total) bytes: more than 2 GB at once") }
        let counts = lengths.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(1, size) { displacements[r] = displacements[r - 1] + counts[r - 1] }
        var out = [UInt8](repeating: 0, count: rank == root ? Int(total) : 1)
        var data = bytes.isEmpty ? [0] : bytes
        try check(
            oreo_mpi_gatherv(&data, Int32(bytes.count), &out, counts, displacements, Int32(root)), "gather")
        guard rank == root else { return nil }
        return (0..<size).map { r in Array(out[Int(displacements[r])..<Int(displacements[r] + counts[r])]) }
    }

    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var n = [Int64(rank == root ? bytes.count : 0)]
        try check(oreo_mpi_allreduce_i64(&n, 1, 0), "all-reduce")
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(n[0]))
        if out.isEmpty { return out }
        try check(oreo_mpi_bcast(&out, n[0], Int32(root)), "broadcast")
        return out
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        try check(oreo_mpi_bcast(buffer, Int64(bytes), Int32(root)), "broadcast")
    }
}

/// An MPI failure (library missing, a collective that failed).
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    /// Creates the error.
    public init(_ description: String) { self.description = description }
}

/// How this process runs: alone, or as one rank of an MPI job when an MPI launcher started it.
public enum Cluster {
    /// Set when this process is a rank of an MPI job.
    nonisolated(unsafe) public private(set) static var mpi: MPICollective?
    /// The environment variable naming the MPI library to load instead of the launcher's usual one.
    public static let libraryVariable = "OREO_MPI_LIBRARY"

    /// Whether an MPI launcher (Open MPI's mpirun, MPICH's Hydra) started this process.
    public static var launchedByMPI: Bool { oreo_mpi_launcher() != 0 }

    /// Loads MPI and initializes it when launched by mpirun (the world as the collective), else this process.
    /// Finalizes at exit.
    public static func start() throws -> Collective {
        if let mpi { return mpi }
        guard launchedByMPI else { return SingleProcess() }
        let path = ProcessInfo.processInfo.environment[libraryVariable]
        guard oreo_mpi_load(path) == 0 else {
            throw ClusterError(
                "started by an MPI launcher, but \(String(cString: oreo_mpi_error())); install the MPI runtime (Debian: openmpi-bin) or name the library with \(libraryVariable)"
            )
        }
        var rank: Int32 = 0, size: Int32 = 0
        let rc = oreo_mpi_init(&rank, &size)
        guard rc == 0 else { throw ClusterError("MPI_Init_thread failed (code \(rc))") }
        let m = MPICollective(
            rank: Int(rank), size: Int(size), library: String(cString: oreo_mpi_library_version()))
        mpi = m
        atexit { _ = oreo_mpi_finalize() }
        return m
    }

    /// Ranks of this job on this machine (ranks whose host name is this one's), for the default thread count.
    public static func ranksOnThisNode(_ c: Collective) throws -> Int {
        guard c.size > 1 else { return 1 }
        let host = Array(ProcessInfo.processInfo.hostName.utf8)
        return try c.allGather(host).filter { $0 == host }.count
    }

    /// Compute threads for this rank: the machine's cores shared among the job's ranks on it (at least 1).
    public static func defaultThreads(_ c: Collective) throws -> Int {
        max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, try ranksOnThisNode(c)))
    }

    /// Ends this process after an error: alone, exits 1; as a rank of an MPI job, prints the message with the
    /// rank and aborts the whole job (MPI_Abort), so no other rank waits forever.
    public static func abort(_ message: String) -> Never {
        if let mpi {
            FileHandle.standardError.write(Data("oreo: rank \(mpi.rank) of \(mpi.size): \(message)\n".utf8))
            oreo_mpi_abort(1)
        }
        FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
        exit(1)
    }

    /// Ends an MPI rank normally (MPI_Finalize) with `code`.
    public static func finish(_ code: Int32) -> Never {
        _ = oreo_mpi_finalize()
        exit(code)
    }
}
