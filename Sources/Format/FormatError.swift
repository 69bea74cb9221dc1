import Support

/// Everything that can be wrong with a shard, a sidecar or a manifest, with where it was found.
///
/// Readers never trap on hostile bytes: every check that fails becomes one of these, naming the file and,
/// where it applies, the column, block and byte offset.
public struct FormatError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of problem was found.
    public enum Kind: String, Sendable {
        case io, truncated, badMagic, unsupportedVersion, corruptFooter, checksumMismatch, corruptBlock
        case inconsistent, invalidArgument, tokenOutOfRange, missingColumn, manifest
    }

    /// The kind of problem.
    public var kind: Kind
    /// The file the problem is in.
    public var path: String
    /// The column, when the problem is inside one.
    public var column: String?
    /// The block index inside the column, when known.
    public var block: Int?
    /// The byte offset in the file, when known.
    public var offset: UInt64?
    /// What is wrong, in words.
    public var reason: String

    /// Builds an error; only `kind`, `path` and `reason` are required.
    public init(
        _ kind: Kind, path: String, column: String? = nil, block: Int? = nil, offset: UInt64? = nil,
        _ reason: String
    ) {
        self.kind = kind
        self.path = path
        self.column = column
        self.block = block
        self.offset = offset
        self.reason = reason
    }

    /// One line: `file: column 'x' block 3 at offset 1234: reason` (`no such file: file` for a missing one).
    public var description: String {
        if reason == FileReadError.missing && column == nil && offset == nil { return "no such file: \(path)" }
        var s = path
        if let column { s += ": column '\(column)'" }
        if let block { s += " block \(block)" }
        if let offset { s += " at offset \(offset)" }
        return s + ": " + reason
    }
}
