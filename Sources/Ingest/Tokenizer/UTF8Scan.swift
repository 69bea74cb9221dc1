/// UTF-8 validation and scalar decoding over byte buffers, for the hot path.
///
/// Every function here reads only inside the buffer it is given; decoding assumes the buffer
/// passed `firstInvalidOffset` first, so a lead byte always has its continuation bytes.
enum UTF8Scan {
    /// Offset of the first byte that does not start or continue a valid UTF-8 sequence, or nil.
    static func firstInvalidOffset(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        let n = b.count
        var i = 0
        while i < n {
            // 32 ASCII bytes at a time: most text is ASCII.
            let raw = UnsafeRawPointer(b.baseAddress!)
            while i + 32 <= n {
                let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 16, as: UInt64.self)
                    | raw.loadUnaligned(fromByteOffset: i + 24, as: UInt64.self)
                if w & 0x8080_8080_8080_8080 != 0 { break }
                i += 32
            }
            if i + 8 <= n {
                let high = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080
                if high == 0 {
                    i += 8
                    continue
                }
                i += high.trailingZeroBitCount >> 3  // straight to the first non-ASCII byte
            }
            guard i < n else { break }
            let c0 = b[i]
            if c0 < 0x80 { i += 1; continue }
            let len: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c0 {
            case 0xC2...0xDF: len = 2
            case 0xE0: len = 3; lo = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: len = 3
            case 0xED: len = 3; hi = 0x9F  // no surrogates
            case 0xF0: len = 4; lo = 0x90
            case 0xF1...0xF3: len = 4
            case 0xF4: len = 4; hi = 0x8F  // nothing above U+10FFFF
            default: return i
            }
            guard i + len <= n else { return i }
            let c1 = b[i + 1]
            guard c1 >= lo && c1 <= hi else { return i }
            var k = 2
            while k < len {
                guard b[i + k] & 0xC0 == 0x80 else { return i }
                k += 1
            }
            i += len
        }
        return nil
    }

    /// The scalar starting at `i` and its length in bytes (valid UTF-8 assumed).
    @inline(__always)
    static func decode(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
        let c0 = UInt32(b[i])
        if c0 < 0x80 { return (c0, 1) }
        if c0 < 0xE0 { return ((c0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if c0 < 0xF0 {
            return ((c0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3)
        }
        return ((c0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6
                | UInt32(b[i + 3] & 0x3F), 4)
    }

    /// The scalar ending just before `end` and the offset where it starts (valid UTF-8 assumed).
    @inline(__always)
    static func decodeBefore(_ b: UnsafeBufferPointer<UInt8>, _ end: Int) -> (value: UInt32, start: Int) {
        var s = end - 1
        while s > 0 && b[s] & 0xC0 == 0x80 { s -= 1 }
        return (decode(b, s).value, s)
    }

    /// Class and byte length of the scalar at `i`, from `ct` (`ScalarClass.table`) when it covers it.
    @inline(__always)
    static func classAt(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ ct: UnsafePointer<UInt8>) -> (cls: UInt8, length: Int) {
        let c0 = b[i]
        if c0 < 0x80 { return (ct[Int(c0)], 1) }
        let (v, len) = decode(b, i)
        return (v < ScalarClass.tableLimit ? ct[Int(v)] : ScalarClass.compute(v), len)
    }
}
