/// A u64 offsets column ([T+1]: where each trajectory's tokens, steps or metadata start, then the total) read in
/// place from the file mapping, so that opening a shard costs no memory per trajectory.
///
/// oreo writes offset columns raw (uncompressed, 64-byte aligned), which map as `UInt64` without a copy. A file
/// whose offsets are compressed (oreo never writes one, but the format allows it) has the column decoded once
/// into memory this value owns. Values are untrusted until used: `range(_:)` checks each pair it reads, and the
/// block checksums are checked by the cursor the first time it reads a block.
public struct OffsetColumn: @unchecked Sendable {
    // @unchecked: the pointers are into a read-only mapping or into a buffer no one writes after decoding,
    // both kept alive by `owner`.
    private let owner: AnyObject
    /// First element of each block: [blocks].
    let blockStarts: [Int]
    /// k when every block but the last holds 2^k elements, else -1.
    private let blockShift: Int
    private let bases: [UnsafeRawPointer]
    /// Elements: trajectories + 1.
    public let count: Int
    /// The last value (tokens, steps or metadata bytes in the shard).
    public let total: UInt64
    /// The file and column, for errors.
    let path: String, name: String

    /// Maps column `name` of `file` (which must hold `total` child elements); checks the first and last values.
    init(_ file: BlockFile, _ name: String, total: UInt64) throws {
        guard let c = file.column(name) else {
            throw FormatError(.missingColumn, path: file.path, column: name, "required column is missing")
        }
        guard c.dtype == .u64, c.count >= 1 else {
            throw FormatError(
                .inconsistent, path: file.path, column: name, "has dtype \(c.dtype) and \(c.count) elements")
        }
        path = file.path
        self.name = name
        count = Int(c.count)
        self.total = total
        blockStarts = c.blocks.map { Int($0.firstElement) }
        // Writers cut offsets every 2^k elements (a fixed byte target, 8 bytes per trajectory): then the block of
        // element i is i >> k, without a search (this runs several times per trajectory read).
        let n = Int(c.blocks[0].elementCount)
        let uniform = n > 0 && n & (n - 1) == 0 && c.blocks.dropLast().allSatisfy { Int($0.elementCount) == n }
        blockShift = uniform ? n.trailingZeroBitCount : -1
        if c.blocks.allSatisfy({ $0.codec == .raw }) {
            owner = file.file
            bases = c.blocks.map { UnsafeRawPointer(file.file.bytes.baseAddress! + Int($0.offset)) }
        } else {
            let buffer = BlockBuffer(count: count * 8)
            let decompressor = ZstdDecompressor()
            for (bi, b) in c.blocks.enumerated() {
                let stored = try file.verifiedStoredBytes(column: c, block: bi)
                let target = UnsafeMutableRawBufferPointer(
                    start: buffer.pointer + Int(b.firstElement) * 8, count: Int(b.elementCount) * 8)
                switch b.codec {
                case .raw: target.copyMemory(from: stored)
                case .zstd:
                    if let err = decompressor.decompress(stored, into: target) {
                        throw FormatError(.corruptBlock, path: path, column: name, block: bi, offset: b.offset, err)
                    }
                }
            }
            owner = buffer
            bases = c.blocks.map { UnsafeRawPointer(buffer.pointer + Int($0.firstElement) * 8) }
        }
        // Read in place, the ends are checked with their blocks (a cold open reads no column page); decoded, now.
        if owner !== file.file {
            try checkEnds(block: 0)
            try checkEnds(block: blockStarts.count - 1)
        }
    }

    /// Checks the column's first value (0) when `block` is its first block, and its last (the total) when it is
    /// its last: the cursor calls this when it checks the block's checksum, before using any of its values.
    func checkEnds(block k: Int) throws {
        if k == 0, self[0] != 0 {
            throw FormatError(.inconsistent, path: path, column: name, "offsets start at \(self[0]), expected 0")
        }
        if k == blockStarts.count - 1, self[count - 1] != total {
            throw FormatError(
                .inconsistent, path: path, column: name, "offsets end at \(self[count - 1]), expected \(total)")
        }
    }

    /// The block holding element `i` (0..<count).
    @inline(__always) func block(of i: Int) -> Int {
        if blockStarts.count == 1 { return 0 }
        if blockShift >= 0 { return min(i >> blockShift, blockStarts.count - 1) }
        var lo = 0, hi = blockStarts.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if blockStarts[mid] <= i { lo = mid } else { hi = mid }
        }
        return lo
    }

    /// Element `i` (0..<count), as stored.
    @inline(__always) subscript(i: Int) -> UInt64 { self[i, inBlock: block(of: i)] }

    /// Element `i`, which block `k` holds.
    @inline(__always) subscript(i: Int, inBlock k: Int) -> UInt64 {
        UInt64(littleEndian: bases[k].load(fromByteOffset: (i - blockStarts[k]) * 8, as: UInt64.self))
    }

    /// The first trajectory whose first child element is at or after `value` (`count - 1` when none is): a binary
    /// search that touches a few pages. Values are as stored (a damaged block gives a wrong answer, never a read
    /// outside the mapping; the cursor refuses the block when it reads it).
    public func firstStarting(atOrAfter value: UInt64) -> Int {
        var lo = 0, hi = count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The child elements of trajectory `i` (0..<count-1), after checking that the pair is ordered and in range.
    @inline(__always) public func range(_ i: Int) throws -> Range<Int> {
        try range(i, blocks: block(of: i), block(of: i + 1))
    }

    /// `range(i)` when the blocks of elements i and i + 1 are known.
    @inline(__always) func range(_ i: Int, blocks k: Int, _ k2: Int) throws -> Range<Int> {
        let a = self[i, inBlock: k], b = self[i + 1, inBlock: k2]
        guard a <= b, b <= total else {
            throw FormatError(
                .inconsistent, path: path, column: name,
                "offsets \(i) and \(i + 1) are \(a) and \(b): decreasing or past the total \(total)")
        }
        return Int(a)..<Int(b)
    }
}
