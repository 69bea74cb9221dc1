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
    /// First token of each trajectory, plus the total: [T+1], read in place.
    public let tokenOffsets: OffsetColumn
    /// First step of each trajectory, plus the total: [T+1], read in place.
    public let stepOffsets: OffsetColumn
    /// First metadata byte of each trajectory, plus the total: [T+1], read in place.
    public let metaOffsets: OffsetColumn
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

    /// Opens and validates a shard and its sidecar column files from their headers, tails and footers: no
    /// column data is read until a cursor asks for it (and checks it then).
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
        tokenOffsets = try OffsetColumn(main, ColumnName.tokenOffsets, total: f.tokens)
        stepOffsets = try OffsetColumn(main, ColumnName.stepOffsets, total: f.steps)
        metaOffsets = try OffsetColumn(main, ColumnName.metaOffsets, total: f.metaBytes)

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
                // Ragged blocks must start at trajectory boundaries so that one trajectory never spans two blocks:
                // the cursor refuses a range that crosses a block when it reads one, and `oreo verify` reads all.
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

    /// A new cursor for reading this shard on the calling thread.
    public func cursor(cacheBlocks: Int = 4) -> ShardCursor { ShardCursor(shard: self, cacheBlocks: cacheBlocks) }
}
