/// The processes of one job and what they do together: the ranks of an MPI job, or this process alone.
///
/// Training, scoring and sampling take one so that nothing assumes a single process: with `SingleProcess`
/// every operation is the identity. Every rank must make the same calls in the same order.
public protocol Collective: AnyObject, Sendable {
    /// This process's index, 0..<size, and the number of processes.
    var rank: Int { get }
    var size: Int { get }
    /// Sums `count` floats at `buffer` over all ranks, in place, in calls of at most `bucket` elements.
    func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int, bucket: Int) throws
    /// Sums `count` doubles at `buffer` over all ranks, in place.
    func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws
    /// Every rank's bytes, in rank order.
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Rank `root` gets every rank's bytes in rank order; the others get nil.
    func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]?
    /// `root`'s bytes on every rank.
    func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8]
    /// `root`'s `bytes` bytes at `buffer` into every rank's `buffer`, in place.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws
}

extension Collective {
    /// Whether this process writes the job's outputs (rank 0).
    public var isRoot: Bool { rank == 0 }

    /// How many ranks failed a step that every rank ran on its own (0 = all went on), so that a failure on
    /// one rank ends the job on all of them at the same point instead of leaving the others waiting.
    public func failures(_ failed: Bool) throws -> Int {
        var n = failed ? 1.0 : 0.0
        try sum(&n, count: 1)
        return Int(n)
    }
}

/// This process alone: rank 0 of 1, every collective the identity.
public final class SingleProcess: Collective {
    /// The one process.
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ buffer: UnsafeMutablePointer<Float>, count: Int, bucket: Int) throws {}
    public func sum(_ buffer: UnsafeMutablePointer<Double>, count: Int) throws {}
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]? { [bytes] }
    public func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] { bytes }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
}

/// Another rank failed a step all ranks ran on their own; that rank reports it, this one ends quietly.
public struct PeerFailure: Error, CustomStringConvertible {
    /// How many ranks failed.
    public let ranks: Int
    /// Creates the error.
    public init(ranks: Int) { self.ranks = ranks }
    public var description: String { "\(ranks) other rank(s) failed" }
}

/// An error every rank raises at the same point with the same message (a non-finite loss after the sums):
/// rank 0 reports it and every rank ends normally, without aborting the job.
public protocol CollectiveError: Error {}

/// Fixed-width little-endian words in byte arrays: what ranks exchange (plans, indices, values).
extension Array where Element == UInt8 {
    /// Appends `v` as 8 little-endian bytes.
    public mutating func appendWord(_ v: UInt64) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    /// Appends `v` as 4 little-endian bytes.
    public mutating func appendWord(_ v: UInt32) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    /// The 8 little-endian bytes at `at`.
    public func word64(at: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(self[at + k]) << (8 * UInt64(k)) }
        return v
    }

    /// The 4 little-endian bytes at `at`.
    public func word32(at: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(self[at + k]) << (8 * UInt32(k)) }
        return v
    }
}
