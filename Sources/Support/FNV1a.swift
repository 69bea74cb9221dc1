/// FNV-1a, 64-bit: the stable fingerprint of a tokenizer file's bytes that manifests record.
public enum FNV1a {
    /// Hash of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    /// Hash of a string's UTF-8 bytes.
    public static func hash(_ s: String) -> UInt64 {
        var s = s
        return s.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }

    /// The fingerprint as manifests write it (lowercase hex, no padding).
    public static func fingerprint(_ bytes: UnsafeRawBufferPointer) -> String { String(hash(bytes), radix: 16) }
}
