import Support

/// Reads trajectories from a `Shard` on one thread: decompresses only the blocks it touches and keeps the
/// last few of each column in a small cache.
public final class ShardCursor {
    /// The shard being read.
    public let shard: Shard
    private let decompressor = ZstdDecompressor()
    private let cacheBlocks: Int
    // Per column: small LRU of decompressed blocks, and which blocks have passed their checks.
    private var cache: [[(block: Int, buffer: BlockBuffer, tick: UInt64)]]
    private var verified: [[Bool]]
    private var tick: UInt64 = 0
    // Last block touched per column, in memory the cursor owns: the sequential fast path then pays neither
    // exclusivity checks nor reference counting beyond the view's own owner. `lastOwner` keeps the owners alive.
    private let last: UnsafeMutablePointer<LastHit>
    private var lastOwner: [AnyObject?]
    private let elementSize: [Int]
    private let tokenOffsets: OffsetColumn, stepOffsets: OffsetColumn, metaOffsets: OffsetColumn
    private let trajectoryCount: Int
    private let tokenDType: DType
    private let hasher = StreamingChecksum()
    private var spare: [BlockBuffer] = []
    private let hTokens: Int, hPrompt: Int, hReward: Int, hGroup: Int, hSource: Int, hLine: Int
    private let hFlags: Int, hStepEnd: Int, hMeta: Int
    private let hTokenOffsets: Int, hStepOffsets: Int, hMetaOffsets: Int

    init(shard: Shard, cacheBlocks: Int) {
        self.shard = shard
        self.cacheBlocks = max(1, cacheBlocks)
        cache = Array(repeating: [], count: shard.columns.count)
        verified = shard.columns.map { [Bool](repeating: false, count: $0.descriptor.blocks.count) }
        last = .allocate(capacity: max(1, shard.columns.count))
        last.initialize(repeating: LastHit(), count: max(1, shard.columns.count))
        lastOwner = Array(repeating: nil, count: shard.columns.count)
        elementSize = shard.columns.map { $0.descriptor.dtype.size }
        tokenOffsets = shard.tokenOffsets
        stepOffsets = shard.stepOffsets
        metaOffsets = shard.metaOffsets
        trajectoryCount = shard.trajectoryCount
        tokenDType = shard.tokenDType
        let h = shard.handles
        hTokens = h[ColumnName.tokenIDs]!
        hPrompt = h[ColumnName.promptLength]!
        hReward = h[ColumnName.reward]!
        hGroup = h[ColumnName.group]!
        hSource = h[ColumnName.sourceFile]!
        hLine = h[ColumnName.sourceLine]!
        hFlags = h[ColumnName.flags]!
        hStepEnd = h[ColumnName.stepEnd]!
        hMeta = h[ColumnName.meta]!
        hTokenOffsets = h[ColumnName.tokenOffsets]!
        hStepOffsets = h[ColumnName.stepOffsets]!
        hMetaOffsets = h[ColumnName.metaOffsets]!
    }

    deinit { last.deallocate() }

    /// Number of trajectories in the shard.
    public var count: Int { shard.trajectoryCount }

    /// Trajectory `i` (0-based), with its semantic checks applied.
    public func trajectory(_ i: Int) throws -> TrajectoryView {
        guard i >= 0, i < trajectoryCount else {
            throw FormatError(
                .invalidArgument, path: shard.path, "trajectory \(i) out of range 0..<\(shard.trajectoryCount)")
        }
        let tokRange = try tokenRange(i)
        let raw = try slice(hTokens, tokRange)
        let tokens = TokenSlice(dtype: tokenDType, owner: raw.owner, base: raw.base, count: tokRange.count)
        let prompt = Int(try scalar(hPrompt, i, as: UInt32.self))
        let steps: ColumnSlice<UInt32> = try typed(hStepEnd, try range(hStepOffsets, stepOffsets, i))
        let sourceIndex = Int(try scalar(hSource, i, as: UInt32.self))
        func bad(_ reason: String) -> FormatError {
            FormatError(.inconsistent, path: shard.path, "trajectory \(i): \(reason)")
        }
        guard prompt <= tokens.count else { throw bad("prompt length \(prompt) exceeds its \(tokens.count) tokens") }
        var previous = UInt32(prompt)
        for e in steps {
            guard e > previous, Int(e) <= tokens.count else { throw bad("step end \(e) out of order or past the end") }
            previous = e
        }
        guard sourceIndex < shard.main.footer.sources.count else {
            throw bad("source index \(sourceIndex) out of range")
        }
        return TrajectoryView(
            index: i, tokens: tokens, promptLength: prompt,
            reward: Float(bitPattern: try scalar(hReward, i, as: UInt32.self)),
            group: try scalar(hGroup, i, as: UInt64.self), stepEnds: steps,
            sourceFile: shard.main.footer.sources[sourceIndex], sourceLine: try scalar(hLine, i, as: UInt64.self),
            flags: TrajectoryFlags(rawValue: try scalar(hFlags, i, as: UInt32.self)),
            meta: try typed(hMeta, try range(hMetaOffsets, metaOffsets, i)))
    }

    /// Prompt length, token count, reward, group and flags of trajectory `i`, without decompressing its
    /// tokens (for planning passes over a whole dataset).
    public func scalars(_ i: Int) throws -> TrajectoryScalars {
        guard i >= 0, i < trajectoryCount else {
            throw FormatError(
                .invalidArgument, path: shard.path, "trajectory \(i) out of range 0..<\(shard.trajectoryCount)")
        }
        let tokens = try tokenRange(i).count
        let prompt = Int(try scalar(hPrompt, i, as: UInt32.self))
        guard prompt <= tokens else {
            throw FormatError(
                .inconsistent, path: shard.path, "trajectory \(i): prompt length \(prompt) exceeds its \(tokens) tokens"
            )
        }
        return TrajectoryScalars(
            tokenCount: tokens, promptLength: prompt,
            reward: Float(bitPattern: try scalar(hReward, i, as: UInt32.self)),
            group: try scalar(hGroup, i, as: UInt64.self),
            flags: TrajectoryFlags(rawValue: try scalar(hFlags, i, as: UInt32.self)))
    }

    /// Only the token ids of trajectory `i` (the batching fast path; no semantic checks of the other columns).
    public func tokens(_ i: Int) throws -> TokenSlice {
        guard i >= 0, i < trajectoryCount else {
            throw FormatError(
                .invalidArgument, path: shard.path, "trajectory \(i) out of range 0..<\(shard.trajectoryCount)")
        }
        let r = try tokenRange(i)
        let raw = try slice(hTokens, r)
        return TokenSlice(dtype: tokenDType, owner: raw.owner, base: raw.base, count: r.count)
    }

    /// The values of an optional per-token f32 column (name without `token.`) for trajectory `i`.
    public func tokenValues(_ name: String, trajectory i: Int) throws -> ColumnSlice<Float> {
        guard let h = shard.handles[ColumnName.tokenPrefix + name], name != "ids" else {
            throw FormatError(.missingColumn, path: shard.path, column: ColumnName.tokenPrefix + name, "no such column")
        }
        guard i >= 0, i < trajectoryCount else {
            throw FormatError(
                .invalidArgument, path: shard.path, "trajectory \(i) out of range 0..<\(shard.trajectoryCount)")
        }
        return try typed(h, try tokenRange(i))
    }

    /// Reads every block of every column, checking checksums, decompressed sizes and token ranges, then every
    /// trajectory's semantics. Throws the first problem found.
    public func verifyAll() throws {
        for h in shard.columns.indices {
            for b in shard.columns[h].descriptor.blocks.indices { _ = try block(h, b) }
        }
        for i in 0..<shard.trajectoryCount {
            _ = try trajectory(i)
            for name in shard.tokenValueColumns { _ = try tokenValues(name, trajectory: i) }
        }
    }

    private func tokenRange(_ i: Int) throws -> Range<Int> { try range(hTokenOffsets, tokenOffsets, i) }

    /// Trajectory `i`'s child elements from offsets column `h`, whose blocks are checked on first use.
    @inline(__always) private func range(_ h: Int, _ offsets: OffsetColumn, _ i: Int) throws -> Range<Int> {
        let k = offsets.block(of: i), k2 = offsets.block(of: i + 1)
        if !verified[h][k] { try verifyOffsets(h, k) }
        if k2 != k && !verified[h][k2] { try verifyOffsets(h, k2) }
        return try offsets.range(i, blocks: k, k2)
    }

    /// The offsets column with handle `h`, if it is one.
    private func offsetColumn(_ h: Int) -> OffsetColumn? {
        h == hTokenOffsets ? tokenOffsets : h == hStepOffsets ? stepOffsets : h == hMetaOffsets ? metaOffsets : nil
    }

    private func verifyOffsets(_ h: Int, _ bi: Int) throws {
        if !shard.isVerified(h, bi) {
            let col = shard.columns[h]
            try checkStored(h, bi, col.file.storedBytes(column: col.descriptor, block: bi))
            shard.markVerified(h, bi)
        }
        verified[h][bi] = true
    }

    /// Checks the stored bytes of block `bi` of column `h` (not token ids): checksum and padding, and for an
    /// offsets column its ends.
    private func checkStored(_ h: Int, _ bi: Int, _ stored: UnsafeRawBufferPointer) throws {
        try shard.columns[h].file.check(stored, column: shard.columns[h].descriptor, block: bi)
        try offsetColumn(h)?.checkEnds(block: bi)
    }

    private func typed<T: BitwiseCopyable>(_ h: Int, _ r: Range<Int>) throws -> ColumnSlice<T> {
        let s = try slice(h, r)
        return ColumnSlice(owner: s.owner, base: s.base, count: r.count)
    }

    private func scalar<T: FixedWidthInteger>(_ h: Int, _ i: Int, as: T.Type) throws -> T {
        let s = try slice(h, i..<(i + 1))
        return T(littleEndian: s.base!.loadUnaligned(as: T.self))
    }

    /// Locates elements `r` of column `h` (always inside one block) and returns a pointer to the first.
    private func slice(_ h: Int, _ r: Range<Int>) throws -> (owner: AnyObject?, base: UnsafeRawPointer?) {
        if r.isEmpty { return (nil, nil) }
        let hit = last[h]
        if r.lowerBound >= hit.first && r.upperBound <= hit.end, let base = hit.base, let owner = hit.owner {
            return (owner.takeUnretainedValue(), base + (r.lowerBound - hit.first) * hit.elementSize)
        }
        let col = shard.columns[h]
        let starts = col.blockStarts
        let first = UInt64(r.lowerBound)
        var lo = 0, hi = starts.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if starts[mid] <= first { lo = mid } else { hi = mid }
        }
        let b = col.descriptor.blocks[lo]
        guard UInt64(r.upperBound) <= b.firstElement + b.elementCount else {
            throw FormatError(
                .inconsistent, path: col.file.path, column: col.descriptor.name, block: lo,
                "elements \(r) cross a block boundary")
        }
        let (owner, base) = try block(h, lo)
        lastOwner[h] = owner
        last[h] = LastHit(
            first: Int(b.firstElement), end: Int(b.firstElement + b.elementCount), base: base,
            owner: Unmanaged.passUnretained(owner), elementSize: col.descriptor.dtype.size)
        return (owner, base + (r.lowerBound - Int(b.firstElement)) * col.descriptor.dtype.size)
    }

    /// The decoded bytes of block `bi` of column `h`: straight from the mapping when raw, else decompressed
    /// (and cached). Checks run once per block and cursor.
    private func block(_ h: Int, _ bi: Int) throws -> (AnyObject, UnsafeRawPointer) {
        let col = shard.columns[h]
        let d = col.descriptor
        let b = d.blocks[bi]
        tick &+= 1
        if b.codec == .raw {
            let p = UnsafeRawPointer(col.file.file.bytes.baseAddress! + Int(b.offset))
            if !verified[h][bi] {
                let stored = col.file.storedBytes(column: d, block: bi)
                if !shard.isVerified(h, bi) {
                    try verifyRawBlock(h, bi, stored)
                    shard.markVerified(h, bi)
                }
                verified[h][bi] = true
            }
            return (col.file.file, p)
        }
        if let k = cache[h].firstIndex(where: { $0.block == bi }) {
            cache[h][k].tick = tick
            return (cache[h][k].buffer, UnsafeRawPointer(cache[h][k].buffer.pointer))
        }
        // Blocks already checked in this process decompress to the same checked bytes: skip the checks.
        let known = shard.isVerified(h, bi)
        let stored = col.file.storedBytes(column: d, block: bi)
        if !known { try col.file.check(stored, column: d, block: bi) }
        let buffer = takeBuffer(count: Int(b.elementCount) * d.dtype.size)
        if let err = decompressor.decompress(
            stored, into: UnsafeMutableRawBufferPointer(start: buffer.pointer, count: buffer.count))
        {
            throw FormatError(.corruptBlock, path: col.file.path, column: d.name, block: bi, offset: b.offset, err)
        }
        if !known {
            try checkTokenRange(h, bi, UnsafeRawBufferPointer(start: buffer.pointer, count: buffer.count))
            shard.markVerified(h, bi)
        }
        verified[h][bi] = true
        if cache[h].count >= cacheBlocks,
            let oldest = cache[h].indices.min(by: { cache[h][$0].tick < cache[h][$1].tick })
        {
            var evicted = cache[h].remove(at: oldest).buffer
            if lastOwner[h] === evicted {
                last[h] = LastHit()
                lastOwner[h] = nil
            }
            // Reuse the memory when no view still holds it: fresh megabyte allocations cost page faults.
            if isKnownUniquelyReferenced(&evicted), spare.count < 4 { spare.append(evicted) }
        }
        cache[h].append((bi, buffer, tick))
        return (buffer, UnsafeRawPointer(buffer.pointer))
    }

    private func takeBuffer(count: Int) -> BlockBuffer {
        if let k = spare.firstIndex(where: { $0.capacity >= count }) {
            let b = spare.remove(at: k)
            b.count = count
            return b
        }
        return BlockBuffer(count: count)
    }

    /// Checks a raw block's checksum and, for token ids, their range, in one pass over cache-sized chunks (the
    /// block is read from memory once instead of twice).
    private func verifyRawBlock(_ h: Int, _ bi: Int, _ bytes: UnsafeRawBufferPointer) throws {
        let col = shard.columns[h]
        let b = col.descriptor.blocks[bi]
        guard h == hTokens else { return try checkStored(h, bi, bytes) }
        hasher.reset()
        let chunk = 32 << 10
        var start = 0
        var maxID: UInt32 = 0
        while start < bytes.count {
            let piece = UnsafeRawBufferPointer(rebasing: bytes[start..<min(bytes.count, start + chunk)])
            hasher.update(piece)
            maxID = max(maxID, ShardCursor.maxID(piece, tokenDType))
            start += chunk
        }
        guard hasher.digest == b.checksum else {
            throw FormatError(
                .checksumMismatch, path: col.file.path, column: col.descriptor.name, block: bi,
                offset: b.offset, "block checksum mismatch")
        }
        try col.file.checkPadding(column: col.descriptor, block: bi)
        try rangeError(h, bi, maxID)
    }

    /// Largest id in `bytes` (u16 or u32 elements).
    static func maxID(_ bytes: UnsafeRawBufferPointer, _ dtype: DType) -> UInt32 {
        if dtype == .u16 {
            // Reduce in u16: four times faster than widening each element first.
            var m: UInt16 = 0
            for v in bytes.bindMemory(to: UInt16.self) { m = max(m, v) }
            return UInt32(m)
        }
        var m: UInt32 = 0
        for v in bytes.bindMemory(to: UInt32.self) { m = max(m, v) }
        return m
    }

    private func rangeError(_ h: Int, _ bi: Int, _ maxID: UInt32) throws {
        let vocab = UInt32(truncatingIfNeeded: shard.vocabSize)
        if maxID >= vocab {
            let col = shard.columns[h]
            throw FormatError(
                .tokenOutOfRange, path: col.file.path, column: col.descriptor.name, block: bi,
                offset: col.descriptor.blocks[bi].offset,
                "token id \(maxID) is not below the vocabulary size \(vocab)")
        }
    }

    /// Token ids must stay below the vocabulary size: downstream embedding lookups index with them unchecked.
    private func checkTokenRange(_ h: Int, _ bi: Int, _ bytes: UnsafeRawBufferPointer) throws {
        guard h == hTokens, !bytes.isEmpty else { return }
        try rangeError(h, bi, ShardCursor.maxID(bytes, tokenDType))
    }
}

/// The block a cursor touched last in one column.
struct LastHit {
    var first = 0, end = 0
    var base: UnsafeRawPointer?
    var owner: Unmanaged<AnyObject>?
    var elementSize = 0
}
