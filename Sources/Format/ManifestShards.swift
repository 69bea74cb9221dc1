import Support

/// A manifest's shard list. Read from a file, it keeps where each entry starts in the mapped manifest (4 bytes a
/// shard, so a dataset of 80,000 shards does not hold 80,000 decoded entries) and decodes an entry when asked;
/// built or changed in memory, it is a plain array.
public struct ManifestShards: Sendable, Equatable, Codable, RandomAccessCollection, MutableCollection,
    RangeReplaceableCollection, ExpressibleByArrayLiteral
{
    private enum Storage: Sendable {
        case array([ShardEntry])
        /// The manifest's mapping (checked when read) and each entry's offset in it.
        case mapped(MappedFile, [UInt32])
    }
    private var storage: Storage

    /// An empty list.
    public init() { storage = .array([]) }
    /// A list of `entries`.
    public init(_ entries: [ShardEntry]) { storage = .array(entries) }
    /// A list of `elements`.
    public init(arrayLiteral elements: ShardEntry...) { storage = .array(elements) }
    /// Entries decoded on demand from `file`, each starting at one of `starts` (already checked as JSON).
    init(mapped file: MappedFile, starts: [UInt32]) { storage = .mapped(file, starts) }

    /// Always 0.
    public var startIndex: Int { 0 }
    /// The number of shards.
    public var endIndex: Int {
        switch storage {
        case .array(let a): a.count
        case .mapped(_, let starts): starts.count
        }
    }

    /// Entry `i`; setting one turns a mapped list into an array first.
    public subscript(i: Int) -> ShardEntry {
        get {
            switch storage {
            case .array(let a): return a[i]
            case .mapped(let file, let starts): return Self.decode(file, at: starts[i])
            }
        }
        set { withArray { $0[i] = newValue } }
    }

    /// Replaces `range` with `entries` (the list becomes an array).
    public mutating func replaceSubrange<C: Collection<ShardEntry>>(_ range: Range<Int>, with entries: C) {
        withArray { $0.replaceSubrange(range, with: entries) }
    }

    private mutating func withArray(_ body: (inout [ShardEntry]) -> Void) {
        var a: [ShardEntry]
        switch storage {
        case .array(let x): a = x
        case .mapped: a = Array(self)
        }
        // Drop the stored copy so that `a` is uniquely referenced while it changes.
        storage = .array([])
        body(&a)
        storage = .array(a)
    }

    /// Entry `i`, with a decoding error (a missing or mistyped field) thrown rather than trapped: for the first
    /// pass over a manifest just read.
    func checkedEntry(_ i: Int) throws -> ShardEntry {
        guard case .mapped(let file, let starts) = storage else { return self[i] }
        do { return try Self.entry(file, at: starts[i]) } catch let e as JSONFieldError {
            throw JSONFieldError(file: e.file, field: "shards[\(i)]" + (e.field.isEmpty ? "" : "." + e.field), e.reason)
        }
    }

    private static func entry(_ file: MappedFile, at start: UInt32) throws -> ShardEntry {
        let value = try StrictJSON.parseValue(file.bytes, at: Int(start), file: file.path)
        return try JSONValueDecoder().decode(ShardEntry.self, from: value, file: file.path)
    }

    private static func decode(_ file: MappedFile, at start: UInt32) -> ShardEntry {
        do { return try entry(file, at: start) } catch {
            // Every entry was decoded once when the manifest was read; failing now means the file was overwritten
            // in place under its mapping (writers replace it by renaming, which leaves the mapping intact).
            preconditionFailure("\(file.path) changed while it was open: \(error)")
        }
    }

    /// Decodes a JSON array of entries.
    public init(from decoder: any Decoder) throws { self.init(try [ShardEntry](from: decoder)) }
    /// Encodes a JSON array of entries.
    public func encode(to encoder: any Encoder) throws { try Array(self).encode(to: encoder) }

    /// Equal entries in the same order.
    public static func == (a: ManifestShards, b: ManifestShards) -> Bool { a.elementsEqual(b) }
}
