/// Little-endian encoder for footers and small binary structures.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    /// A string as u32 length + UTF-8 bytes.
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u32(UInt32(utf8.count))
        raw(utf8)
    }
}

/// Bounds-checked little-endian decoder over untrusted bytes: every read past the end throws.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position = 0
    let fail: (String) -> FormatError

    init(_ bytes: UnsafeRawBufferPointer, fail: @escaping (String) -> FormatError) {
        self.bytes = bytes
        self.fail = fail
    }

    var remaining: Int { bytes.count - position }

    mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else {
            throw fail("\(what) needs \(n) bytes at footer position \(position), only \(remaining) left")
        }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
        position += n
        return slice
    }

    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what)[0] }
    mutating func u16(_ what: String) throws -> UInt16 {
        UInt16(littleEndian: try take(2, what).loadUnaligned(as: UInt16.self))
    }
    mutating func u32(_ what: String) throws -> UInt32 {
        UInt32(littleEndian: try take(4, what).loadUnaligned(as: UInt32.self))
    }
    mutating func u64(_ what: String) throws -> UInt64 {
        UInt64(littleEndian: try take(8, what).loadUnaligned(as: UInt64.self))
    }

    /// A u64 that must fit in `Int` and be at most `limit`.
    mutating func count(_ what: String, limit: UInt64) throws -> Int {
        let v = try u64(what)
        guard v <= limit else { throw fail("\(what) is \(v), more than the limit \(limit)") }
        return Int(v)
    }

    /// A u32-length-prefixed UTF-8 string of at most `limit` bytes.
    mutating func string(_ what: String, limit: Int = 1 << 16) throws -> String {
        let n = Int(try u32(what + " length"))
        guard n <= limit else { throw fail("\(what) length \(n) exceeds \(limit)") }
        let raw = try take(n, what)
        guard let s = String(validating: raw, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
        return s
    }
}
