/// Version of the on-disk shard and manifest format this build writes and reads.
public let formatVersion: UInt32 = 1

/// Element type of a column.
public enum DType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case u8 = 1, u16 = 2, u32 = 3, u64 = 4, f32 = 5

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .u8: 1
        case .u16: 2
        case .u32, .f32: 4
        case .u64: 8
        }
    }

    /// Name used in manifests and by `oreo inspect`.
    public var description: String {
        switch self {
        case .u8: "u8"
        case .u16: "u16"
        case .u32: "u32"
        case .u64: "u64"
        case .f32: "f32"
        }
    }

    /// Parses a manifest name ("u16", "f32", ...).
    public init?(name: String) {
        guard let d = DType.allCases.first(where: { $0.description == name }) else { return nil }
        self = d
    }

    /// The narrowest token id type for a vocabulary: u16 when every id fits (vocab <= 65536), else u32.
    public static func forVocabulary(_ vocabSize: Int) -> DType { vocabSize <= 65536 ? .u16 : .u32 }
}

/// Which ragged level a column belongs to; fixes how many elements it must hold.
public enum Level: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// One element per trajectory.
    case trajectory = 1
    /// Offsets into a child level: one element per trajectory plus one.
    case offsets = 2
    /// One element per reasoning step.
    case step = 3
    /// One element per token (prompt and response).
    case token = 4
    /// Free-form metadata bytes.
    case metaByte = 5

    /// Name used in manifests.
    public var description: String {
        switch self {
        case .trajectory: "trajectory"
        case .offsets: "offsets"
        case .step: "step"
        case .token: "token"
        case .metaByte: "meta"
        }
    }

    /// Parses a manifest name.
    public init?(name: String) {
        guard let l = Level.allCases.first(where: { $0.description == name }) else { return nil }
        self = l
    }
}

/// How a block's bytes are stored.
public enum Codec: UInt8, Sendable, CustomStringConvertible {
    case raw = 0, zstd = 1
    /// Name for listings.
    public var description: String { self == .raw ? "raw" : "zstd" }
}

/// The standard column names of a shard.
public enum ColumnName {
    /// u64 [T+1]: first token of each trajectory.
    public static let tokenOffsets = "traj.token_offsets"
    /// u64 [T+1]: first step of each trajectory.
    public static let stepOffsets = "traj.step_offsets"
    /// u64 [T+1]: first metadata byte of each trajectory.
    public static let metaOffsets = "traj.meta_offsets"
    /// u32 [T]: prompt length in tokens.
    public static let promptLength = "traj.prompt_len"
    /// f32 [T]: terminal reward.
    public static let reward = "traj.reward"
    /// u64 [T]: group (prompt) id shared by trajectories of the same prompt.
    public static let group = "traj.group"
    /// u32 [T]: index into the shard's source-file table.
    public static let sourceFile = "traj.source"
    /// u64 [T]: 1-based line in the source file.
    public static let sourceLine = "traj.line"
    /// u32 [T]: flag bits (`TrajectoryFlags`).
    public static let flags = "traj.flags"
    /// u32 [S]: end of each step, in tokens from the start of its trajectory (exclusive).
    public static let stepEnd = "step.end"
    /// u8 [M]: metadata bytes (JSON by convention).
    public static let meta = "traj.meta"
    /// u16 or u32 [N]: token ids.
    public static let tokenIDs = "token.ids"
    /// Prefix of optional per-token f32 columns (`token.ref_logprob`, ...).
    public static let tokenPrefix = "token."
}

/// Per-trajectory flag bits.
public struct TrajectoryFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    /// Creates flags from raw bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The response was cut at the maximum length during ingest.
    public static let truncated = TrajectoryFlags(rawValue: 1)
    /// An EOS token was appended to the response during ingest.
    public static let eosAppended = TrajectoryFlags(rawValue: 2)
}

/// One stored block of a column.
public struct BlockEntry: Sendable, Equatable {
    /// Byte offset of the stored bytes in the file.
    public var offset: UInt64
    /// Stored (possibly compressed) length in bytes.
    public var storedLength: UInt64
    /// Index of the block's first element within the column.
    public var firstElement: UInt64
    /// Number of elements in the block.
    public var elementCount: UInt64
    /// How the bytes are stored.
    public var codec: Codec
    /// XXH3-64 of the stored bytes.
    public var checksum: UInt64
}

/// A column's name, type, level and blocks, as the footer lists them.
public struct ColumnDescriptor: Sendable, Equatable {
    /// Column name (`token.ids`, `traj.reward`, ...).
    public var name: String
    /// Ragged level.
    public var level: Level
    /// Element type.
    public var dtype: DType
    /// Total elements.
    public var count: UInt64
    /// Blocks in element order.
    public var blocks: [BlockEntry]

    /// Raw (uncompressed) bytes of the column.
    public var rawBytes: UInt64 { count * UInt64(dtype.size) }
    /// Stored bytes of the column.
    public var storedBytes: UInt64 { blocks.reduce(0) { $0 + $1.storedLength } }
}

/// The fixed parts of the container: magic, version, header and tail sizes.
enum Container {
    static let magic: [UInt8] = Array("OREOSHRD".utf8)
    static let sidecarMagic: [UInt8] = Array("OREOCOLS".utf8)
    static let headerSize = 32
    static let tailSize = 48
    static let blockAlignment = 64
    /// Footers above this size are refused before parsing (a shard of 4 GiB blocks has a few KB of footer).
    static let maxFooter: UInt64 = 256 << 20
    static let maxColumns = 4096
    static let maxSources = 1 << 20
}

/// The decoded footer of a shard or sidecar file.
public struct Footer: Sendable, Equatable {
    /// Number of trajectories.
    public var trajectories: UInt64
    /// Number of steps.
    public var steps: UInt64
    /// Number of tokens.
    public var tokens: UInt64
    /// Number of metadata bytes.
    public var metaBytes: UInt64
    /// Vocabulary size the token ids were checked against (0 when unknown).
    public var vocabSize: UInt64
    /// Source files, indexed by `traj.source`.
    public var sources: [String]
    /// Columns in the file.
    public var columns: [ColumnDescriptor]

    /// Expected element count of a column at `level`.
    public func expectedCount(_ level: Level) -> UInt64 {
        switch level {
        case .trajectory: trajectories
        case .offsets: trajectories + 1
        case .step: steps
        case .token: tokens
        case .metaByte: metaBytes
        }
    }

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.u64(trajectories)
        w.u64(steps)
        w.u64(tokens)
        w.u64(metaBytes)
        w.u64(vocabSize)
        w.u32(UInt32(sources.count))
        for s in sources { w.string(s) }
        w.u32(UInt32(columns.count))
        for c in columns {
            w.string(c.name)
            w.u8(c.level.rawValue)
            w.u8(c.dtype.rawValue)
            w.u64(c.count)
            w.u64(UInt64(c.blocks.count))
            for b in c.blocks {
                w.u64(b.offset)
                w.u64(b.storedLength)
                w.u64(b.firstElement)
                w.u64(b.elementCount)
                w.u8(b.codec.rawValue)
                w.u64(b.checksum)
            }
        }
        return w.bytes
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Footer {
        var r = ByteReader(bytes) { FormatError(.corruptFooter, path: path, $0) }
        let limit = UInt64(1) << 48
        let trajectories = try r.u64("trajectory count")
        let steps = try r.u64("step count")
        let tokens = try r.u64("token count")
        let metaBytes = try r.u64("metadata byte count")
        let vocab = try r.u64("vocabulary size")
        for (v, what) in [
            (trajectories, "trajectory count"), (steps, "step count"), (tokens, "token count"),
            (metaBytes, "metadata byte count"), (vocab, "vocabulary size"),
        ] where v > limit {
            throw FormatError(.corruptFooter, path: path, "\(what) \(v) is absurd")
        }
        let nSources = Int(try r.u32("source count"))
        guard nSources <= Container.maxSources else {
            throw FormatError(.corruptFooter, path: path, "source count \(nSources) is absurd")
        }
        var sources: [String] = []
        for i in 0..<nSources { sources.append(try r.string("source \(i)")) }
        let nColumns = Int(try r.u32("column count"))
        guard nColumns <= Container.maxColumns else {
            throw FormatError(.corruptFooter, path: path, "column count \(nColumns) is absurd")
        }
        var columns: [ColumnDescriptor] = []
        for i in 0..<nColumns {
            let name = try r.string("column \(i) name", limit: 256)
            guard let level = Level(rawValue: try r.u8("level")) else {
                throw FormatError(.corruptFooter, path: path, column: name, "unknown level")
            }
            guard let dtype = DType(rawValue: try r.u8("dtype")) else {
                throw FormatError(.corruptFooter, path: path, column: name, "unknown dtype")
            }
            let count = try r.u64("element count")
            // Each block entry takes 41 bytes, so the remaining footer bounds the block count.
            let nBlocks = try r.count("block count", limit: UInt64(r.remaining / 41))
            var blocks: [BlockEntry] = []
            blocks.reserveCapacity(nBlocks)
            for _ in 0..<nBlocks {
                let offset = try r.u64("block offset")
                let stored = try r.u64("block length")
                let first = try r.u64("block first element")
                let n = try r.u64("block element count")
                guard let codec = Codec(rawValue: try r.u8("codec")) else {
                    throw FormatError(.corruptFooter, path: path, column: name, block: blocks.count, "unknown codec")
                }
                let sum = try r.u64("block checksum")
                blocks.append(
                    BlockEntry(
                        offset: offset, storedLength: stored, firstElement: first,
                        elementCount: n, codec: codec, checksum: sum))
            }
            columns.append(ColumnDescriptor(name: name, level: level, dtype: dtype, count: count, blocks: blocks))
        }
        guard r.remaining == 0 else {
            throw FormatError(.corruptFooter, path: path, "\(r.remaining) unexpected bytes after the column directory")
        }
        return Footer(
            trajectories: trajectories, steps: steps, tokens: tokens, metaBytes: metaBytes,
            vocabSize: vocab, sources: sources, columns: columns)
    }
}
