import Synchronization

/// A column resolved to the file that stores it.
struct ResolvedColumn: Sendable {
    let file: BlockFile
    let descriptor: ColumnDescriptor
    /// Block boundaries as element indices, for binary search.
    let blockStarts: [UInt64]
}

/// An opened, validated shard plus any sidecar column files: immutable and shareable between threads.
///
/// Reading goes through a `ShardCursor` (one per thread), which owns the decompression context and a small
/// block cache.
public final class Shard: Sendable {
    /// The shard file.
    public let main: BlockFile
    /// Sidecar files (one per added column).
    public let sidecars: [BlockFile]
    /// First token of each trajectory, plus the total: [T+1].
    public let tokenOffsets: [UInt64]
    /// First step of each trajectory, plus the total: [T+1].
    public let stepOffsets: [UInt64]
    /// First metadata byte of each trajectory, plus the total: [T+1].
    public let metaOffsets: [UInt64]
    let columns: [ResolvedColumn]
    let handles: [String: Int]
    // Blocks whose checksum (and id range) passed in this process, shared by all cursors: later epochs and
    // other threads skip re-hashing them.
    private let verifiedBlocks: Mutex<Set<Int>>

    /// The shard's path.
    public var path: String { main.path }
    // Hot-path facts as plain stored values (no footer copies or dictionary lookups per trajectory).
    /// Number of trajectories.
    public let trajectoryCount: Int
    /// Number of tokens.
    public let tokenCount: Int
    /// Number of steps.
    public let stepCount: Int
    /// Vocabulary size the ids were checked against.
    public let vocabSize: Int
    /// Token id dtype.
    public let tokenDType: DType
    /// All column descriptors with the file each is stored in.
    public var columnList: [(file: String, column: ColumnDescriptor)] {
        columns.map { ($0.file.path, $0.descriptor) }
    }
    /// Names of the optional per-token f32 columns (without the `token.` prefix).
    public var tokenValueColumns: [String] {
        columns.map(\.descriptor).filter { $0.level == .token && $0.name != ColumnName.tokenIDs }
            .map { String($0.name.dropFirst(ColumnName.tokenPrefix.count)) }
    }

    static let required: [(String, Level, [DType])] = [
        (ColumnName.tokenOffsets, .offsets, [.u64]), (ColumnName.stepOffsets, .offsets, [.u64]),
        (ColumnName.metaOffsets, .offsets, [.u64]), (ColumnName.promptLength, .trajectory, [.u32]),
        (ColumnName.reward, .trajectory, [.f32]), (ColumnName.group, .trajectory, [.u64]),
        (ColumnName.sourceFile, .trajectory, [.u32]), (ColumnName.sourceLine, .trajectory, [.u64]),
        (ColumnName.flags, .trajectory, [.u32]), (ColumnName.stepEnd, .step, [.u32]),
        (ColumnName.meta, .metaByte, [.u8]), (ColumnName.tokenIDs, .token, [.u16, .u32]),
    ]

    /// Opens and validates a shard and its sidecar column files.
    public init(path: String, sidecars sidecarPaths: [String] = []) throws {
        let main = try BlockFile(path: path, magic: Container.magic)
        self.main = main
        let f = main.footer
        for (name, level, dtypes) in Shard.required {
            guard let c = main.column(name) else {
                throw FormatError(.missingColumn, path: path, column: name, "required column is missing")
            }
            guard c.level == level, dtypes.contains(c.dtype) else {
                throw FormatError(.inconsistent, path: path, column: name, "has level \(c.level) and dtype \(c.dtype)")
            }
        }
        let ids = main.column(ColumnName.tokenIDs)!
        if f.vocabSize == 0 || f.vocabSize > UInt64(UInt32.max) || ids.dtype != DType.forVocabulary(Int(f.vocabSize)) {
            throw FormatError(
                .inconsistent, path: path, column: ColumnName.tokenIDs,
                "dtype \(ids.dtype) does not fit the vocabulary size \(f.vocabSize)")
        }
        for c in f.columns where c.level == .token && c.name != ColumnName.tokenIDs && c.dtype != .f32 {
            throw FormatError(.inconsistent, path: path, column: c.name, "per-token value columns must be f32")
        }
        trajectoryCount = Int(f.trajectories)
        tokenCount = Int(f.tokens)
        stepCount = Int(f.steps)
        vocabSize = Int(f.vocabSize)
        tokenDType = ids.dtype
        tokenOffsets = try Shard.loadOffsets(main, ColumnName.tokenOffsets, total: f.tokens)
        stepOffsets = try Shard.loadOffsets(main, ColumnName.stepOffsets, total: f.steps)
        metaOffsets = try Shard.loadOffsets(main, ColumnName.metaOffsets, total: f.metaBytes)

        var sidecars: [BlockFile] = []
        for p in sidecarPaths {
            let s = try BlockFile(path: p, magic: Container.sidecarMagic)
            guard s.footer.trajectories == f.trajectories, s.footer.tokens == f.tokens else {
                throw FormatError(
                    .inconsistent, path: p,
                    "sidecar holds \(s.footer.trajectories) trajectories / \(s.footer.tokens) tokens, shard \(path) holds \(f.trajectories) / \(f.tokens)"
                )
            }
            for c in s.footer.columns
            where c.level != .token || c.dtype != .f32
                || !c.name.hasPrefix(ColumnName.tokenPrefix) || c.name == ColumnName.tokenIDs
            {
                throw FormatError(.inconsistent, path: p, column: c.name, "a sidecar holds only per-token f32 columns")
            }
            sidecars.append(s)
        }
        self.sidecars = sidecars

        var columns: [ResolvedColumn] = []
        var handles: [String: Int] = [:]
        for file in [main] + sidecars {
            for c in file.footer.columns {
                guard handles[c.name] == nil else {
                    throw FormatError(
                        .inconsistent, path: file.path, column: c.name, "column also stored in another file")
                }
                let parents: [UInt64]? =
                    switch c.level {
                    case .token: tokenOffsets
                    case .step: stepOffsets
                    case .metaByte: metaOffsets
                    case .trajectory, .offsets: nil
                    }
                // Ragged blocks must start at trajectory boundaries so one trajectory never spans two blocks.
                if let parents {
                    for (bi, b) in c.blocks.enumerated() where !Shard.contains(parents, b.firstElement) {
                        throw FormatError(
                            .inconsistent, path: file.path, column: c.name, block: bi, offset: b.offset,
                            "block starts at element \(b.firstElement), inside a trajectory")
                    }
                }
                handles[c.name] = columns.count
                columns.append(ResolvedColumn(file: file, descriptor: c, blockStarts: c.blocks.map(\.firstElement)))
            }
        }
        self.columns = columns
        self.handles = handles
        verifiedBlocks = Mutex([])
    }

    func isVerified(_ column: Int, _ block: Int) -> Bool {
        verifiedBlocks.withLock { $0.contains(column << 40 | block) }
    }

    func markVerified(_ column: Int, _ block: Int) {
        _ = verifiedBlocks.withLock { $0.insert(column << 40 | block) }
    }

    private static func loadOffsets(_ file: BlockFile, _ name: String, total: UInt64) throws -> [UInt64] {
        let v = try file.readWholeColumn(name, as: UInt64.self)
        guard v.first == 0, v.last == total else {
            throw FormatError(
                .inconsistent, path: file.path, column: name,
                "offsets run from \(v.first ?? 0) to \(v.last ?? 0), expected 0 to \(total)")
        }
        for i in 1..<v.count where v[i] < v[i - 1] {
            throw FormatError(.inconsistent, path: file.path, column: name, "offset \(i) decreases")
        }
        return v
    }

    private static func contains(_ sorted: [UInt64], _ value: UInt64) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] == value
    }

    /// A new cursor for reading this shard on the calling thread.
    public func cursor(cacheBlocks: Int = 4) -> ShardCursor { ShardCursor(shard: self, cacheBlocks: cacheBlocks) }
}
