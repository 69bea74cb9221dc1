import Support

/// GPT-2's reversible byte <-> character mapping used by byte-level BPE vocabularies.
public enum ByteLevelMap {
    /// The character each byte is written as in vocab and merges strings.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            // Printable Latin-1 bytes stand for themselves; the rest get U+0100 upwards in byte order.
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar` for scalars below U+0144; -1 where a scalar is no byte.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The raw bytes a vocab string denotes, or nil when some character is not a mapped byte.
    public static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard s.value < 0x144 else { return nil }
            let b = scalarToByte[Int(s.value)]
            guard b >= 0 else { return nil }
            out.append(UInt8(b))
        }
        return out
    }

    /// The raw bytes a vocab string (as UTF-8) denotes, or nil when some character is not a mapped byte.
    static func bytes(utf8 s: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            let c = s[i]
            if c < 0x80 {
                guard c >= 0x21 && c <= 0x7E else { return nil }
                out.append(c)
                i += 1
            } else {
                // Mapped characters are all below U+0144: two-byte sequences.
                guard c >= 0xC2 && c <= 0xC5, i + 1 < s.count else { return nil }
                let v = Int(c & 0x1F) << 6 | Int(s[i + 1] & 0x3F)
                guard v < 0x144, scalarToByte[v] >= 0 else { return nil }
                out.append(UInt8(scalarToByte[v]))
                i += 2
            }
        }
        return out
    }

    /// The vocab string of raw bytes.
    public static func string(of bytes: [UInt8]) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(s)
    }
}
