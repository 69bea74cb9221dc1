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
        if s == "raw" || s == "none" {
            self = .none
            return
        }
        if s == "zstd" {
            self = .zstd(level: 3)
            return
        }
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
    /// Target raw bytes per block of the per-trajectory columns (offsets, rewards, groups, ...; at most
    /// `blockBytes`): small, so that reading a few trajectories' scalars checks and decodes little.
    public var trajectoryBlockBytes: Int = 64 << 10
    /// Names of optional per-token f32 columns (without the `token.` prefix), e.g. `behavior_logprob`.
    public var tokenColumns: [String] = []

    /// Options for a vocabulary; everything else default.
    public init(
        vocabSize: Int, compression: Compression = .zstd(level: 3), blockBytes: Int = 1 << 20,
        trajectoryBlockBytes: Int = 64 << 10, tokenColumns: [String] = []
    ) {
        self.trajectoryBlockBytes = trajectoryBlockBytes
        self.vocabSize = vocabSize
        self.compression = compression
        self.blockBytes = blockBytes
        self.tokenColumns = tokenColumns
    }

    /// Token id dtype: u16 when the vocabulary fits, else u32.
    public var tokenDType: DType { DType.forVocabulary(vocabSize) }
}
