import CXXHash

/// XXH3-64 checksums: the integrity check of every block, footer and file.
public enum Checksum {
    /// XXH3-64 of `bytes`.
    public static func xxh3(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return XXH3_64bits(nil, 0) }
        return XXH3_64bits(base, bytes.count)
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
        state = XXH3_createState()
        XXH3_64bits_reset(state)
    }

    deinit { XXH3_freeState(state) }

    /// Adds bytes to the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        XXH3_64bits_update(state, base, bytes.count)
    }

    /// The digest of everything added so far.
    public var digest: UInt64 { XXH3_64bits_digest(state) }
}
