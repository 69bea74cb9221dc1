import CXXHash

/// XXH3-64 checksums: the integrity check of every block, footer and file.
public enum Checksum {
    /// XXH3-64 of `bytes`.
    public static func xxh3(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return oreo_xxh3_64(nil, 0) }
        return oreo_xxh3_64(base, bytes.count)
    }

    /// XXH3-64 of an array of bytes.
    public static func xxh3(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { xxh3($0) }
    }

    /// Checksum as the manifest writes it: 16 lowercase hex digits.
    public static func hex(_ value: UInt64) -> String {
        let h = String(value, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h
    }
}

/// Incremental XXH3-64 over bytes written in pieces (a whole shard file while it is being written).
public final class StreamingChecksum {
    private let state: OpaquePointer

    /// Starts an empty digest.
    public init() {
        guard let s = oreo_xxh3_create() else { fatalError("out of memory allocating a 600-byte hash state") }
        state = s
    }

    deinit { oreo_xxh3_free(state) }

    /// Adds bytes to the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        oreo_xxh3_update(state, base, bytes.count)
    }

    /// Forgets everything added so far.
    public func reset() { oreo_xxh3_reset(state) }

    /// The digest of everything added so far.
    public var digest: UInt64 { oreo_xxh3_digest(state) }
}
