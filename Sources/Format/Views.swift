#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// A decompressed block: 64-byte aligned memory owned by the views that point into it.
///
/// Large buffers are mappings of a power-of-two size, recycled through a small process-wide pool. Taken from the
/// malloc heap they made a pass over many shards (`oreo verify`) grow: glibc raises its mmap threshold after the
/// first large free, then serves later megabyte blocks from a heap it rarely shrinks. Mapped afresh each time,
/// every new cursor paid a page fault per 4 KiB; the pool keeps a few megabytes of touched pages for the next.
final class BlockBuffer {
    let pointer: UnsafeMutableRawPointer
    let capacity: Int
    var count: Int
    private let mapped: Bool

    init(count: Int) {
        self.count = count
        if count >= BlockBuffer.mapThreshold {
            // A power of two, so that a spare buffer fits the next block (blocks are cut a little past their
            // target); pages never written cost nothing.
            let size = 1 << (Int.bitWidth - (count - 1).leadingZeroBitCount)
            if let p = BlockBuffer.pool.withLock({ $0.take(size) }).flatMap(UnsafeMutableRawPointer.init(bitPattern:))
                ?? BlockBuffer.map(size)
            {
                pointer = p
                capacity = size
                mapped = true
                return
            }
        }
        capacity = max(count, 1)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
        mapped = false
    }

    deinit {
        guard mapped else { return pointer.deallocate() }
        // The pool holds addresses (plain integers), which cross into the lock freely.
        let (address, size) = (UInt(bitPattern: pointer), capacity)
        if !BlockBuffer.pool.withLock({ $0.put(address, size) }) { munmap(pointer, size) }
    }

    private static func map(_ size: Int) -> UnsafeMutableRawPointer? {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        return p == MAP_FAILED ? nil : p
    }

    private static let mapThreshold = 64 << 10
    private static let pool = Mutex(BufferPool())
}

/// Freed block mappings by size, up to `limit` bytes in all.
private struct BufferPool: ~Copyable {
    private var free: [Int: [UInt]] = [:]
    private var bytes = 0
    static let limit = 16 << 20

    mutating func take(_ size: Int) -> UInt? {
        guard let p = free[size]?.popLast() else { return nil }
        bytes -= size
        return p
    }

    /// Keeps the mapping at address `p` (of `size` bytes) for reuse; false when the pool is full.
    mutating func put(_ p: UInt, _ size: Int) -> Bool {
        guard bytes + size <= BufferPool.limit else { return false }
        free[size, default: []].append(p)
        bytes += size
        return true
    }
}

/// A read-only, zero-copy view of a run of column elements.
///
/// The view keeps its storage alive (the file mapping for raw blocks, the decompressed block otherwise), so it
/// stays valid after the cursor that produced it moves on or is released.
public struct ColumnSlice<Element: BitwiseCopyable>: RandomAccessCollection {
    @usableFromInline let owner: AnyObject?
    /// First element (nil when empty).
    public let base: UnsafePointer<Element>?
    /// Number of elements.
    public let count: Int

    @usableFromInline init(owner: AnyObject?, base: UnsafeRawPointer?, count: Int) {
        self.owner = owner
        self.base = count == 0 ? nil : base?.assumingMemoryBound(to: Element.self)
        self.count = count
    }

    /// An empty slice.
    public static var empty: ColumnSlice { ColumnSlice(owner: nil, base: nil, count: 0) }

    /// 0.
    @inlinable public var startIndex: Int { 0 }
    /// `count`.
    @inlinable public var endIndex: Int { count }

    /// Element `i`; traps on an index outside `0..<count`, like `Array`.
    @inlinable public subscript(i: Int) -> Element {
        precondition(i >= 0 && i < count, "index \(i) out of range 0..<\(count)")
        return base![i]
    }

    /// Calls `body` with the elements as a buffer pointer, keeping the storage alive meanwhile.
    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R
    {
        try withExtendedLifetime(owner) { try body(UnsafeBufferPointer(start: base, count: count)) }
    }
}

/// Token ids of one trajectory, stored as u16 or u32 depending on the vocabulary, without copying.
public struct TokenSlice: RandomAccessCollection {
    /// Stored width of the ids.
    public let dtype: DType
    @usableFromInline let owner: AnyObject?
    @usableFromInline let base: UnsafeRawPointer?
    /// Number of tokens.
    public let count: Int

    /// 0.
    @inlinable public var startIndex: Int { 0 }
    /// `count`.
    @inlinable public var endIndex: Int { count }

    /// Token `i`, widened to u32; traps outside `0..<count`, like `Array`.
    @inlinable public subscript(i: Int) -> UInt32 {
        precondition(i >= 0 && i < count, "index \(i) out of range 0..<\(count)")
        return dtype == .u16
            ? UInt32(base!.load(fromByteOffset: i * 2, as: UInt16.self))
            : base!.load(fromByteOffset: i * 4, as: UInt32.self)
    }

    /// The ids as u16 (nil when stored as u32).
    @inlinable public var u16: ColumnSlice<UInt16>? {
        dtype == .u16 ? ColumnSlice(owner: owner, base: base, count: count) : nil
    }
    /// The ids as u32 (nil when stored as u16).
    @inlinable public var u32: ColumnSlice<UInt32>? {
        dtype == .u32 ? ColumnSlice(owner: owner, base: base, count: count) : nil
    }

    /// Widens the ids into `destination` (which must hold `count` elements); the batching fast path.
    public func copy(into destination: UnsafeMutablePointer<UInt32>) {
        withExtendedLifetime(owner) {
            guard let base else { return }
            if dtype == .u32 {
                destination.update(from: base.assumingMemoryBound(to: UInt32.self), count: count)
            } else {
                let src = base.assumingMemoryBound(to: UInt16.self)
                for i in 0..<count { destination[i] = UInt32(src[i]) }
            }
        }
    }

    /// The ids as a Swift array (copies; for tests and printing).
    public var array: [UInt32] { map { $0 } }
}

/// One trajectory read from a shard: zero-copy token, step and metadata views plus its scalars.
public struct TrajectoryView {
    /// Index within the shard.
    public let index: Int
    /// Prompt and response token ids.
    public let tokens: TokenSlice
    /// Prompt length in tokens.
    public let promptLength: Int
    /// Terminal reward.
    public let reward: Float
    /// Group (prompt) id.
    public let group: UInt64
    /// Step ends, in tokens from the trajectory start (exclusive).
    public let stepEnds: ColumnSlice<UInt32>
    /// Source file name as recorded at ingest.
    public let sourceFile: String
    /// 1-based source line.
    public let sourceLine: UInt64
    /// Flag bits.
    public let flags: TrajectoryFlags
    /// Metadata bytes.
    public let meta: ColumnSlice<UInt8>

    /// Response length in tokens.
    public var responseLength: Int { tokens.count - promptLength }
}

/// The per-trajectory scalars of one trajectory (no token data).
public struct TrajectoryScalars: Sendable, Equatable {
    /// Prompt + response tokens.
    public let tokenCount: Int
    /// Prompt length in tokens.
    public let promptLength: Int
    /// Terminal reward.
    public let reward: Float
    /// Group (prompt) id.
    public let group: UInt64
    /// Flag bits.
    public let flags: TrajectoryFlags
}
