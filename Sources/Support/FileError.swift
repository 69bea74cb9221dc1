/// A file that could not be created, written, synced or renamed, with where it happened.
public struct FileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file the problem is in.
    public var path: String
    /// The byte offset in the file, when known.
    public var offset: UInt64?
    /// What is wrong, in words (usually the system's reason).
    public var reason: String

    /// Builds an error naming `path` and, where it applies, the byte offset.
    public init(path: String, offset: UInt64? = nil, _ reason: String) {
        self.path = path
        self.offset = offset
        self.reason = reason
    }

    /// One line: `file at offset 1234: reason`.
    public var description: String {
        var s = path
        if let offset { s += " at offset \(offset)" }
        return s + ": " + reason
    }
}
