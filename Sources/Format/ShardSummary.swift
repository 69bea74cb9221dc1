import Support

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
