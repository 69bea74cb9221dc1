import Support

/// How column blocks are stored.
public enum Compression: Sendable, Equatable, CustomStringConvertible {
    /// Stored as is; readers use the bytes straight from the mapping.
    case none
    /// zstd at the given level (1-19; 3 is a good default).
    case zstd(level: Int)

    /// "raw" or "zstd-N".
    public var description: String {
        switch self {
        case .none: "raw"
        case .zstd(let level): "zstd-\(level)"
        }
    }

    /// Parses "raw", "none", "zstd" (level 3) or "zstd-N".
    public init?(parsing s: String) {
        if s == "raw" || s == "none" { self = .none; return }
        if s == "zstd" { self = .zstd(level: 3); return }
        guard s.hasPrefix("zstd-"), let l = Int(s.dropFirst(5)), (1...22).contains(l) else { return nil }
        self = .zstd(level: l)
    }
}

/// Settings shared by every shard of a dataset.
public struct ShardOptions: Sendable, Equatable {
    /// Vocabulary size; token ids must be below it, and it picks the id dtype.
    public var vocabSize: Int
    /// Block compression.
    public var compression: Compression = .zstd(level: 3)
    /// Target raw bytes per block (blocks end at trajectory boundaries, so they can be larger).
    public var blockBytes: Int = 1 << 20
    /// Names of optional per-token f32 columns (without the `token.` prefix), e.g. `behavior_logprob`.
    public var tokenColumns: [String] = []

    /// Options for a vocabulary; everything else default.
    public init(vocabSize: Int, compression: Compression = .zstd(level: 3), blockBytes: Int = 1 << 20,
                tokenColumns: [String] = []) {
        self.vocabSize = vocabSize; self.compression = compression
        self.blockBytes = blockBytes; self.tokenColumns = tokenColumns
    }

    /// Token id dtype: u16 when the vocabulary fits, else u32.
    public var tokenDType: DType { DType.forVocabulary(vocabSize) }
}

/// One trajectory to write: prompt + response tokens, reward, steps and provenance.
public struct TrajectoryRecord: Sendable {
    /// Prompt tokens followed by response tokens.
    public var tokens: [UInt32]
    /// How many of `tokens` belong to the prompt.
    public var promptLength: Int
    /// Terminal reward (usually 0 or 1).
    public var reward: Float
    /// Trajectories sampled from the same prompt share a group id.
    public var group: UInt64
    /// End of each step in tokens from the trajectory start (exclusive, strictly increasing, after the prompt).
    public var stepEnds: [UInt32]
    /// Index into the shard's source-file table (see `ShardWriter.sourceIndex`).
    public var sourceFile: UInt32
    /// 1-based line of the source file.
    public var sourceLine: UInt64
    /// Flag bits.
    public var flags: TrajectoryFlags
    /// Metadata bytes (JSON by convention).
    public var meta: [UInt8]
    /// Optional per-token f32 columns, by name (each as long as `tokens`).
    public var tokenValues: [String: [Float]]

    /// A trajectory with the given parts; optional parts default to empty.
    public init(tokens: [UInt32], promptLength: Int, reward: Float, group: UInt64 = 0, stepEnds: [UInt32] = [],
                sourceFile: UInt32 = 0, sourceLine: UInt64 = 0, flags: TrajectoryFlags = [], meta: [UInt8] = [],
                tokenValues: [String: [Float]] = [:]) {
        self.tokens = tokens; self.promptLength = promptLength; self.reward = reward; self.group = group
        self.stepEnds = stepEnds; self.sourceFile = sourceFile; self.sourceLine = sourceLine
        self.flags = flags; self.meta = meta; self.tokenValues = tokenValues
    }
}

/// What a finished shard holds; goes into the manifest.
public struct ShardSummary: Sendable, Equatable {
    /// File name (no directory).
    public var file: String
    /// Counts.
    public var trajectories: UInt64, steps: UInt64, tokens: UInt64
    /// File length in bytes.
    public var bytes: UInt64
    /// XXH3-64 of the whole file.
    public var checksum: UInt64
}

/// Accumulates one column's current block and its directory.
struct ColumnBuilder {
    var name: String
    var level: Level
    var dtype: DType
    var count: UInt64 = 0
    var blockFirst: UInt64 = 0
    var buffer: [UInt8] = []
    var blocks: [BlockEntry] = []
    var compress: Bool

    mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) }
        count += 1
    }

    mutating func append(_ v: Float) { append(v.bitPattern) }

    /// Appends a whole array of little-endian elements at once (this module only targets little-endian CPUs).
    mutating func appendAll<T: BitwiseCopyable>(_ values: [T]) {
        values.withUnsafeBytes { buffer.append(contentsOf: $0) }
        count += UInt64(values.count)
    }

    /// Appends elements `from ..< to` of `values`.
    mutating func append<T: BitwiseCopyable>(_ values: [T], _ from: Int, _ to: Int) {
        let size = MemoryLayout<T>.stride
        values.withUnsafeBytes { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[(from * size)..<(to * size)])) }
        count += UInt64(to - from)
    }

    var descriptor: ColumnDescriptor {
        ColumnDescriptor(name: name, level: level, dtype: dtype, count: count, blocks: blocks)
    }
}

/// Writes the block container shared by shards and sidecar column files.
///
/// Blocks are cut only at trajectory boundaries, so one trajectory's values in any column lie in one block;
/// memory stays at about one block per column whatever the shard size.
final class BlockFileWriter {
    let out: AtomicOutput
    var columns: [ColumnBuilder] = []
    let compression: Compression
    let blockBytes: Int
    private let compressor: ZstdCompressor?
    private var scratch: [UInt8] = []
    private let magic: [UInt8]

    init(path: String, magic: [UInt8], compression: Compression, blockBytes: Int) throws {
        guard blockBytes >= 64 else {
            throw FormatError(.invalidArgument, path: path, "block size \(blockBytes) is below 64 bytes")
        }
        self.magic = magic
        self.compression = compression
        self.blockBytes = blockBytes
        if case .zstd(let level) = compression { compressor = ZstdCompressor(level: level) } else { compressor = nil }
        out = try AtomicOutput(path: path)
        var h = ByteWriter()
        h.raw(magic); h.u32(formatVersion); h.u32(0); h.raw([UInt8](repeating: 0, count: 16))
        try out.write(h.bytes)
    }

    func addColumn(_ name: String, _ level: Level, _ dtype: DType, compressible: Bool = true) -> Int {
        columns.append(ColumnBuilder(name: name, level: level, dtype: dtype,
                                     compress: compressible && compression != .none))
        return columns.count - 1
    }

    /// Writes every column whose block reached the target size (call at trajectory boundaries only).
    func flushFull() throws {
        for i in columns.indices where columns[i].buffer.count >= blockBytes { try flush(i) }
    }

    func flush(_ i: Int) throws {
        let elements = columns[i].count - columns[i].blockFirst
        guard elements > 0 else { return }
        try out.pad(to: Container.blockAlignment)
        let offset = out.written
        var codec = Codec.raw
        var stored: Int = columns[i].buffer.count
        if columns[i].compress, let compressor {
            let n = columns[i].buffer.withUnsafeBytes { compressor.compress($0, into: &scratch) }
            // Incompressible blocks (random floats) stay raw: smaller and readable without a copy.
            if let n, n < stored { codec = .zstd; stored = n }
        }
        let sum: UInt64
        if codec == .zstd {
            sum = scratch.withUnsafeBytes { Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[0..<stored])) }
            try scratch.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<stored])) }
        } else {
            sum = Checksum.xxh3(columns[i].buffer)
            try out.write(columns[i].buffer)
        }
        columns[i].blocks.append(BlockEntry(offset: offset, storedLength: UInt64(stored),
                                            firstElement: columns[i].blockFirst, elementCount: elements,
                                            codec: codec, checksum: sum))
        columns[i].blockFirst = columns[i].count
        columns[i].buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes all columns, writes the footer (with the column directory filled in) and tail, and renames the
    /// file into place.
    func finish(footer: Footer) throws -> (bytes: UInt64, checksum: UInt64) {
        for i in columns.indices { try flush(i) }
        var footer = footer
        footer.columns = columns.map(\.descriptor)
        try out.pad(to: Container.blockAlignment)
        let footerBytes = footer.encode()
        let footerOffset = out.written
        try out.write(footerBytes)
        var t = ByteWriter()
        let fileLength = out.written + UInt64(Container.tailSize)
        t.u64(footerOffset); t.u64(UInt64(footerBytes.count)); t.u64(Checksum.xxh3(footerBytes))
        t.u64(fileLength); t.u32(formatVersion); t.u32(0); t.raw(magic)
        try out.write(t.bytes)
        let checksum = out.checksum.digest
        try out.commit()
        return (fileLength, checksum)
    }
}

/// Streams trajectories into one shard file, in constant memory, atomically.
///
/// The shard appears under its final name only after `finish()`; until then it is `<name>.tmp-<pid>`.
public final class ShardWriter {
    /// Final path of the shard.
    public let path: String
    /// Options the shard is written with.
    public let options: ShardOptions
    private let file: BlockFileWriter
    private var sources: [String] = []
    private var sourceIndexByName: [String: UInt32] = [:]
    private var trajectories: UInt64 = 0, steps: UInt64 = 0, tokens: UInt64 = 0, metaBytes: UInt64 = 0
    private let cTokOff: Int, cStepOff: Int, cMetaOff: Int, cPrompt: Int, cReward: Int, cGroup: Int
    private let cSource: Int, cLine: Int, cFlags: Int, cStepEnd: Int, cMeta: Int, cIDs: Int
    private var cExtra: [(name: String, column: Int)] = []
    private var finished = false
    private var narrow: [UInt16] = []
    private var scratchOffsets: [UInt64] = []

    /// Creates `<path>.tmp-<pid>` and prepares the columns.
    public init(path: String, options: ShardOptions) throws {
        guard options.vocabSize > 0, options.vocabSize <= Int(UInt32.max) else {
            throw FormatError(.invalidArgument, path: path, "vocabulary size \(options.vocabSize) is out of range")
        }
        for name in options.tokenColumns {
            guard !name.isEmpty, name != "ids", name.utf8.count <= 200, !name.contains("/") else {
                throw FormatError(.invalidArgument, path: path, "invalid token column name '\(name)'")
            }
        }
        guard Set(options.tokenColumns).count == options.tokenColumns.count else {
            throw FormatError(.invalidArgument, path: path, "duplicate token column names")
        }
        self.path = path
        self.options = options
        file = try BlockFileWriter(path: path, magic: Container.magic, compression: options.compression,
                                   blockBytes: options.blockBytes)
        // Offsets stay raw so readers index them straight from the mapping.
        cTokOff = file.addColumn(ColumnName.tokenOffsets, .offsets, .u64, compressible: false)
        cStepOff = file.addColumn(ColumnName.stepOffsets, .offsets, .u64, compressible: false)
        cMetaOff = file.addColumn(ColumnName.metaOffsets, .offsets, .u64, compressible: false)
        cPrompt = file.addColumn(ColumnName.promptLength, .trajectory, .u32)
        cReward = file.addColumn(ColumnName.reward, .trajectory, .f32)
        cGroup = file.addColumn(ColumnName.group, .trajectory, .u64)
        cSource = file.addColumn(ColumnName.sourceFile, .trajectory, .u32)
        cLine = file.addColumn(ColumnName.sourceLine, .trajectory, .u64)
        cFlags = file.addColumn(ColumnName.flags, .trajectory, .u32)
        cStepEnd = file.addColumn(ColumnName.stepEnd, .step, .u32)
        cMeta = file.addColumn(ColumnName.meta, .metaByte, .u8)
        cIDs = file.addColumn(ColumnName.tokenIDs, .token, options.tokenDType)
        for name in options.tokenColumns {
            cExtra.append((name, file.addColumn(ColumnName.tokenPrefix + name, .token, .f32)))
        }
        for c in [cTokOff, cStepOff, cMetaOff] { file.columns[c].append(UInt64(0)) }
    }

    /// Index of a source file name in this shard's table (added on first use).
    public func sourceIndex(_ name: String) -> UInt32 {
        if let i = sourceIndexByName[name] { return i }
        let i = UInt32(sources.count)
        sources.append(name)
        sourceIndexByName[name] = i
        return i
    }

    /// Trajectories appended so far.
    public var trajectoryCount: UInt64 { trajectories }
    /// Tokens appended so far.
    public var tokenCount: UInt64 { tokens }

    /// Validates and appends one trajectory; an invalid record throws and leaves the shard unchanged.
    public func append(_ t: TrajectoryRecord) throws {
        precondition(!finished, "append after finish")
        try validate(t)
        let n = t.tokens.count
        file.columns[cPrompt].append(UInt32(t.promptLength))
        file.columns[cReward].append(t.reward)
        file.columns[cGroup].append(t.group)
        file.columns[cSource].append(t.sourceFile)
        file.columns[cLine].append(t.sourceLine)
        file.columns[cFlags].append(t.flags.rawValue)
        file.columns[cStepEnd].appendAll(t.stepEnds)
        file.columns[cMeta].appendAll(t.meta)
        if options.tokenDType == .u16 {
            narrow.removeAll(keepingCapacity: true)
            narrow.reserveCapacity(n)
            for id in t.tokens { narrow.append(UInt16(truncatingIfNeeded: id)) }
            file.columns[cIDs].appendAll(narrow)
        } else {
            file.columns[cIDs].appendAll(t.tokens)
        }
        for (name, c) in cExtra { file.columns[c].appendAll(t.tokenValues[name]!) }
        trajectories += 1
        tokens += UInt64(n)
        steps += UInt64(t.stepEnds.count)
        metaBytes += UInt64(t.meta.count)
        file.columns[cTokOff].append(tokens)
        file.columns[cStepOff].append(steps)
        file.columns[cMetaOff].append(metaBytes)
        try file.flushFull()
    }

    /// Validates and appends trajectories `range` of `batch`, all from entry `sourceFile` of the source table;
    /// an invalid trajectory throws and leaves the shard unchanged. Blocks are cut and written where appending
    /// the trajectories one at a time would cut them, so the file is the same byte for byte.
    public func append(_ batch: TrajectoryBatch, _ range: Range<Int>, sourceFile: UInt32 = 0) throws {
        precondition(!finished, "append after finish")
        guard !range.isEmpty else { return }
        try validate(batch, range, sourceFile: sourceFile)
        let lo = range.lowerBound, hi = range.upperBound
        let t0 = lo == 0 ? 0 : batch.tokenEnd[lo - 1], s0 = lo == 0 ? 0 : batch.stepEnd[lo - 1]
        let m0 = lo == 0 ? 0 : batch.metaEnd[lo - 1]
        // Values the batch does not hold as such: running offsets, source indices, narrowed ids.
        scratchOffsets.removeAll(keepingCapacity: true)
        for k in range { scratchOffsets.append(tokens + UInt64(batch.tokenEnd[k] - t0)) }
        for k in range { scratchOffsets.append(steps + UInt64(batch.stepEnd[k] - s0)) }
        for k in range { scratchOffsets.append(metaBytes + UInt64(batch.metaEnd[k] - m0)) }
        let sourceIndices = [UInt32](repeating: sourceFile, count: hi - lo)
        let t1 = batch.tokenEnd[hi - 1], narrowIDs = options.tokenDType == .u16
        if narrowIDs {
            narrow.removeAll(keepingCapacity: true)
            for id in batch.tokens[t0..<t1] { narrow.append(UInt16(truncatingIfNeeded: id)) }
        }
        // Per column: element size, the element where trajectory `lo` starts, where trajectory k's end, and
        // how to append elements [from, to).
        typealias Part = (column: Int, size: Int, start: Int, end: (Int) -> Int, put: (Int, Int) -> Void)
        let n = hi - lo, file = self.file
        func part<T: BitwiseCopyable>(_ c: Int, _ values: [T], start: Int, end: @escaping (Int) -> Int) -> Part {
            (c, MemoryLayout<T>.stride, start, end, { file.columns[c].append(values, $0, $1) })
        }
        func fixed<T: BitwiseCopyable>(_ c: Int, _ values: [T], _ first: Int) -> Part {
            part(c, values, start: first, end: { $0 - lo + first + 1 })
        }
        let offsets = scratchOffsets, narrowed = narrow
        let parts: [Part] = [
            fixed(cTokOff, offsets, 0), fixed(cStepOff, offsets, n), fixed(cMetaOff, offsets, 2 * n),
            fixed(cPrompt, batch.promptLength, lo), fixed(cReward, batch.reward, lo), fixed(cGroup, batch.group, lo),
            fixed(cSource, sourceIndices, 0), fixed(cLine, batch.sourceLine, lo), fixed(cFlags, batch.flags, lo),
            part(cStepEnd, batch.stepEnds, start: s0, end: { batch.stepEnd[$0] }),
            part(cMeta, batch.meta, start: m0, end: { batch.metaEnd[$0] }),
            narrowIDs ? part(cIDs, narrowed, start: 0, end: { batch.tokenEnd[$0] - t0 })
                      : part(cIDs, batch.tokens, start: t0, end: { batch.tokenEnd[$0] }),
        ]
        // Flushes happen after the trajectory that fills a block, in column order among one trajectory's.
        var flushes: [(k: Int, part: Int)] = []
        for (p, part) in parts.enumerated() {
            var fill = file.columns[part.column].buffer.count, previous = part.start
            for k in range {
                let e = part.end(k)
                fill += (e - previous) * part.size
                previous = e
                if fill >= file.blockBytes { flushes.append((k, p)); fill = 0 }
            }
        }
        flushes.sort { ($0.k, parts[$0.part].column) < ($1.k, parts[$1.part].column) }
        var position = parts.map(\.start)
        for (k, p) in flushes {
            let e = parts[p].end(k)
            parts[p].put(position[p], e)
            position[p] = e
            try file.flush(parts[p].column)
        }
        for (p, part) in parts.enumerated() where part.end(hi - 1) > position[p] { part.put(position[p], part.end(hi - 1)) }
        trajectories += UInt64(n)
        tokens += UInt64(t1 - t0)
        steps += UInt64(batch.stepEnd[hi - 1] - s0)
        metaBytes += UInt64(batch.metaEnd[hi - 1] - m0)
    }

    private func validate(_ batch: TrajectoryBatch, _ range: Range<Int>, sourceFile: UInt32) throws {
        func bad(_ k: Int, _ reason: String) -> FormatError {
            FormatError(.invalidArgument, path: path, "trajectory \(trajectories + UInt64(k - range.lowerBound)): \(reason)")
        }
        guard range.lowerBound >= 0, range.upperBound <= batch.count else {
            throw FormatError(.invalidArgument, path: path, "trajectories \(range) are not all in a batch of \(batch.count)")
        }
        guard cExtra.isEmpty else {
            throw FormatError(.invalidArgument, path: path, "the shard has per-token value columns, which a batch does not carry")
        }
        guard sources.isEmpty ? sourceFile == 0 : Int(sourceFile) < sources.count else {
            throw bad(range.lowerBound, "source file index \(sourceFile) is not in the shard's table")
        }
        let lo = range.lowerBound
        var t = lo == 0 ? 0 : batch.tokenEnd[lo - 1], s = lo == 0 ? 0 : batch.stepEnd[lo - 1]
        var m = lo == 0 ? 0 : batch.metaEnd[lo - 1]
        let t0 = t
        for k in range {
            let te = batch.tokenEnd[k], se = batch.stepEnd[k], me = batch.metaEnd[k]
            guard te >= t, se >= s, me >= m, te <= batch.tokens.count, se <= batch.stepEnds.count, me <= batch.meta.count else {
                throw bad(k, "its ends in the batch's arrays are out of order or out of range")
            }
            let n = te - t
            guard n <= Int(UInt32.max) else { throw bad(k, "\(n) tokens exceed 2^32-1") }
            let prompt = batch.promptLength[k]
            guard Int(prompt) <= n else { throw bad(k, "prompt length \(prompt) outside 0...\(n)") }
            var previous = prompt
            let stepsBad = batch.stepEnds.withUnsafeBufferPointer { ends -> Int? in
                for j in s..<se {
                    if ends[j] <= previous || Int(ends[j]) > n { return j }
                    previous = ends[j]
                }
                return nil
            }
            if let j = stepsBad {
                throw bad(k, "step \(j - s) ends at \(batch.stepEnds[j]): step ends must increase, follow the prompt and stay within \(n) tokens")
            }
            guard batch.reward[k].isFinite else { throw bad(k, "reward \(batch.reward[k]) is not finite") }
            (t, s, m) = (te, se, me)
        }
        let limit = UInt32(truncatingIfNeeded: options.vocabSize)
        let maxID = batch.tokens.withUnsafeBufferPointer { ids in
            var m: UInt32 = 0
            for id in UnsafeBufferPointer(rebasing: ids[t0..<t]) { m = max(m, id) }
            return m
        }
        if maxID >= limit, let i = batch.tokens[t0..<t].firstIndex(where: { $0 >= limit }) {
            var k = lo
            while batch.tokenEnd[k] <= i { k += 1 }
            let start = k == 0 ? 0 : batch.tokenEnd[k - 1]
            throw bad(k, "token \(i - start) has id \(batch.tokens[i]), not below the vocabulary size \(options.vocabSize)")
        }
    }

    private func validate(_ t: TrajectoryRecord) throws {
        func bad(_ reason: String) -> FormatError {
            FormatError(.invalidArgument, path: path, "trajectory \(trajectories): \(reason)")
        }
        let n = t.tokens.count
        guard n <= Int(UInt32.max) else { throw bad("\(n) tokens exceed 2^32-1") }
        guard t.promptLength >= 0, t.promptLength <= n else {
            throw bad("prompt length \(t.promptLength) outside 0...\(n)")
        }
        let limit = UInt32(truncatingIfNeeded: options.vocabSize)
        var maxID: UInt32 = 0
        for id in t.tokens { maxID = max(maxID, id) }
        if maxID >= limit, let i = t.tokens.firstIndex(where: { $0 >= limit }) {
            throw bad("token \(i) has id \(t.tokens[i]), not below the vocabulary size \(options.vocabSize)")
        }
        var previous = UInt32(t.promptLength)
        for (k, e) in t.stepEnds.enumerated() {
            guard e > previous, Int(e) <= n else {
                throw bad("step \(k) ends at \(e): step ends must increase, follow the prompt and stay within \(n) tokens")
            }
            previous = e
        }
        guard sources.isEmpty ? t.sourceFile == 0 : Int(t.sourceFile) < sources.count else {
            throw bad("source file index \(t.sourceFile) is not in the shard's table")
        }
        guard t.reward.isFinite else { throw bad("reward \(t.reward) is not finite") }
        for (name, _) in cExtra {
            guard let v = t.tokenValues[name] else { throw bad("missing values for token column '\(name)'") }
            guard v.count == n else { throw bad("token column '\(name)' has \(v.count) values for \(n) tokens") }
        }
        for key in t.tokenValues.keys where !options.tokenColumns.contains(key) {
            throw bad("token column '\(key)' is not declared in the shard options")
        }
    }

    /// Writes the footer and renames the shard into place; returns its summary for the manifest.
    public func finish() throws -> ShardSummary {
        precondition(!finished, "finish twice")
        finished = true
        if sources.isEmpty { sources = [""] }
        let (bytes, checksum) = try file.finish(footer: Footer(
            trajectories: trajectories, steps: steps, tokens: tokens, metaBytes: metaBytes,
            vocabSize: UInt64(options.vocabSize), sources: sources, columns: []))
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return ShardSummary(file: name, trajectories: trajectories, steps: steps, tokens: tokens,
                            bytes: bytes, checksum: checksum)
    }

    /// Deletes the temporary file without producing a shard.
    public func abandon() {
        finished = true
        file.out.abandon()
    }
}
