import Support

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
        file = try BlockFileWriter(
            path: path, magic: Container.magic, compression: options.compression,
            blockBytes: options.blockBytes)
        // Offsets stay raw so readers index them straight from the mapping. Per-trajectory columns get smaller
        // blocks: a reader checks a whole block before using it, and a loader reads the scalars of a few thousand
        // trajectories at a time.
        let small = options.trajectoryBlockBytes
        cTokOff = file.addColumn(ColumnName.tokenOffsets, .offsets, .u64, compressible: false, blockBytes: small)
        cStepOff = file.addColumn(ColumnName.stepOffsets, .offsets, .u64, compressible: false, blockBytes: small)
        cMetaOff = file.addColumn(ColumnName.metaOffsets, .offsets, .u64, compressible: false, blockBytes: small)
        cPrompt = file.addColumn(ColumnName.promptLength, .trajectory, .u32, blockBytes: small)
        cReward = file.addColumn(ColumnName.reward, .trajectory, .f32, blockBytes: small)
        cGroup = file.addColumn(ColumnName.group, .trajectory, .u64, blockBytes: small)
        cSource = file.addColumn(ColumnName.sourceFile, .trajectory, .u32, blockBytes: small)
        cLine = file.addColumn(ColumnName.sourceLine, .trajectory, .u64, blockBytes: small)
        cFlags = file.addColumn(ColumnName.flags, .trajectory, .u32, blockBytes: small)
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
            narrowIDs
                ? part(cIDs, narrowed, start: 0, end: { batch.tokenEnd[$0] - t0 })
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
                if fill >= file.columns[part.column].blockBytes {
                    flushes.append((k, p))
                    fill = 0
                }
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
        for (p, part) in parts.enumerated() where part.end(hi - 1) > position[p] {
            part.put(position[p], part.end(hi - 1))
        }
        trajectories += UInt64(n)
        tokens += UInt64(t1 - t0)
        steps += UInt64(batch.stepEnd[hi - 1] - s0)
        metaBytes += UInt64(batch.metaEnd[hi - 1] - m0)
    }

    private func validate(_ batch: TrajectoryBatch, _ range: Range<Int>, sourceFile: UInt32) throws {
        func bad(_ k: Int, _ reason: String) -> FormatError {
            FormatError(
                .invalidArgument, path: path, "trajectory \(trajectories + UInt64(k - range.lowerBound)): \(reason)")
        }
        guard range.lowerBound >= 0, range.upperBound <= batch.count else {
            throw FormatError(
                .invalidArgument, path: path, "trajectories \(range) are not all in a batch of \(batch.count)")
        }
        guard cExtra.isEmpty else {
            throw FormatError(
                .invalidArgument, path: path, "the shard has per-token value columns, which a batch does not carry")
        }
        let lo = range.lowerBound
        var t = lo == 0 ? 0 : batch.tokenEnd[lo - 1], s = lo == 0 ? 0 : batch.stepEnd[lo - 1]
        var m = lo == 0 ? 0 : batch.metaEnd[lo - 1]
        let rules = TrajectoryRules(vocabSize: options.vocabSize, sourceCount: sources.count)
        for k in range {
            let te = batch.tokenEnd[k], se = batch.stepEnd[k], me = batch.metaEnd[k]
            guard te >= t, se >= s, me >= m, te <= batch.tokens.count, se <= batch.stepEnds.count,
                me <= batch.meta.count
            else {
                throw bad(k, "its ends in the batch's arrays are out of order or out of range")
            }
            let reason = batch.tokens.withUnsafeBufferPointer { ids in
                batch.stepEnds.withUnsafeBufferPointer { ends in
                    rules.problem(
                        tokens: UnsafeBufferPointer(rebasing: ids[t..<te]), promptLength: Int(batch.promptLength[k]),
                        stepEnds: UnsafeBufferPointer(rebasing: ends[s..<se]), sourceFile: sourceFile,
                        reward: batch.reward[k])
                }
            }
            if let reason { throw bad(k, reason) }
            (t, s, m) = (te, se, me)
        }
    }

    private func validate(_ t: TrajectoryRecord) throws {
        func bad(_ reason: String) -> FormatError {
            FormatError(.invalidArgument, path: path, "trajectory \(trajectories): \(reason)")
        }
        let rules = TrajectoryRules(vocabSize: options.vocabSize, sourceCount: sources.count)
        let reason = t.tokens.withUnsafeBufferPointer { ids in
            t.stepEnds.withUnsafeBufferPointer { ends in
                rules.problem(
                    tokens: ids, promptLength: t.promptLength, stepEnds: ends, sourceFile: t.sourceFile,
                    reward: t.reward)
            }
        }
        if let reason { throw bad(reason) }
        let n = t.tokens.count
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
        let (bytes, checksum) = try file.finish(
            footer: Footer(
                trajectories: trajectories, steps: steps, tokens: tokens, metaBytes: metaBytes,
                vocabSize: UInt64(options.vocabSize), sources: sources, columns: []))
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return ShardSummary(
            file: name, trajectories: trajectories, steps: steps, tokens: tokens,
            bytes: bytes, checksum: checksum)
    }

    /// Deletes the temporary file without producing a shard.
    public func abandon() {
        finished = true
        file.out.abandon()
    }
}
