/// Writes one per-token f32 column for an existing shard into a sidecar file, so a later stage (reference
/// log-probs after ingest) adds a column without rewriting the token data.
public final class SidecarWriter {
    /// Final path of the sidecar.
    public let path: String
    /// Column name without the `token.` prefix.
    public let name: String
    private let file: BlockFileWriter
    private let column: Int
    private let tokenOffsets: OffsetColumn
    private var trajectories = 0
    private let producer: String

    /// Starts a sidecar for `shard`, holding column `token.<name>`; `producer` names what computes the values.
    public init(
        path: String, shard: Shard, name: String, compression: Compression = .zstd(level: 3),
        blockBytes: Int = 1 << 20, producer: String = ""
    ) throws {
        guard !name.isEmpty, name != "ids", name.utf8.count <= 200, !name.contains("/") else {
            throw FormatError(.invalidArgument, path: path, "invalid token column name '\(name)'")
        }
        guard shard.handles[ColumnName.tokenPrefix + name] == nil else {
            throw FormatError(.invalidArgument, path: path, "shard \(shard.path) already has column '\(name)'")
        }
        self.path = path
        self.name = name
        self.producer = producer
        tokenOffsets = shard.tokenOffsets
        file = try BlockFileWriter(
            path: path, magic: Container.sidecarMagic, compression: compression,
            blockBytes: blockBytes)
        column = file.addColumn(ColumnName.tokenPrefix + name, .token, .f32)
    }

    /// Appends the values of the next trajectory (one per token, prompt included).
    public func append(_ values: [Float]) throws {
        guard trajectories < tokenOffsets.count - 1 else {
            throw FormatError(.invalidArgument, path: path, "more trajectories than the shard holds")
        }
        let expected = try tokenOffsets.range(trajectories).count
        guard values.count == expected else {
            throw FormatError(
                .invalidArgument, path: path,
                "trajectory \(trajectories) has \(expected) tokens, got \(values.count) values")
        }
        for v in values { file.columns[column].append(v) }
        trajectories += 1
        try file.flushFull()
    }

    /// Writes the footer and renames the sidecar into place; returns (bytes, checksum).
    public func finish() throws -> (bytes: UInt64, checksum: UInt64) {
        guard trajectories == tokenOffsets.count - 1 else {
            throw FormatError(
                .invalidArgument, path: path,
                "sidecar has \(trajectories) of \(tokenOffsets.count - 1) trajectories")
        }
        return try file.finish(
            footer: Footer(
                trajectories: UInt64(trajectories), steps: 0, tokens: tokenOffsets.total,
                metaBytes: 0, vocabSize: 0, sources: SidecarWriter.sources(producer), columns: []))
    }

    /// A sidecar's footer names what computed its values in its source list (empty when not told), so that
    /// a later run reuses only sidecars of the same producer.
    static func sources(_ producer: String) -> [String] { producer.isEmpty ? [] : ["producer: " + producer] }
}
