/// UTF-8 validation and scalar decoding over byte buffers, for the hot path.
///
/// Every function here reads only inside the buffer it is given; decoding assumes the buffer
/// passed `firstInvalidOffset` first, so a lead byte always has its continuation bytes.
public enum UTF8Scan {
    /// Offset of the first byte that does not start or continue a valid UTF-8 sequence, or nil.
    ///
    /// Sixteen bytes at a time, each checked against the three before it: a byte must be a continuation
    /// exactly when a lead byte one to three places back calls for it, lead bytes C0, C1 and F5-FF never
    /// occur, and the second byte after E0, ED, F0 and F4 stays in its narrower range (no overlong forms,
    /// surrogates or values above U+10FFFF). A block that passes is valid; the first block that does not,
    /// and the tail, go to the scalar check from the start of the character before them, which gives the
    /// exact offset (the same as a scalar pass over the whole buffer).
    @inlinable public static func firstInvalidOffset(_ b: UnsafeBufferPointer<UInt8>) -> Int? {
        let n = b.count
        guard n >= 32, let base = b.baseAddress else { return firstInvalidOffset(b, from: 0) }
        // Characters up to offset 3 or more the scalar way, so every block has three checked bytes before it.
        var i = 0
        while i < 3 {
            guard let len = sequenceLength(b, i) else { return i }
            i += len
        }
        let raw = UnsafeRawPointer(base)
        // Vector operands throughout, and the mask tested as two words: the scalar-operand overloads and
        // `any` compile to lane-by-lane loops here.
        typealias V = SIMD16<UInt8>
        func all(_ x: UInt8) -> V { V(repeating: x) }
        while i + 16 <= n {
            let v = raw.loadUnaligned(fromByteOffset: i, as: V.self)
            let p1 = raw.loadUnaligned(fromByteOffset: i - 1, as: V.self)
            let p2 = raw.loadUnaligned(fromByteOffset: i - 2, as: V.self)
            let p3 = raw.loadUnaligned(fromByteOffset: i - 3, as: V.self)
            let required = (p1 .>= all(0xC0)) .| (p2 .>= all(0xE0)) .| (p3 .>= all(0xF0))
            let continuation = SIMD16<Int8>(truncatingIfNeeded: v) .< SIMD16<Int8>(repeating: -64)  // 80...BF
            var bad = required .^ continuation
            bad = bad .| (v & all(0xFE) .== all(0xC0)) .| (v .>= all(0xF5))
            bad = bad .| ((p1 .== all(0xE0)) .& (v .< all(0xA0))) .| ((p1 .== all(0xED)) .& (v .> all(0x9F)))
            bad = bad .| ((p1 .== all(0xF0)) .& (v .< all(0x90))) .| ((p1 .== all(0xF4)) .& (v .> all(0x8F)))
            let words = unsafeBitCast(bad, to: SIMD2<UInt64>.self)
            if words[0] | words[1] != 0 { break }
            i += 16
        }
        // Bytes before `i` passed; restart at the character holding byte i - 1.
        var s = i - 1
        while b[s] & 0xC0 == 0x80 { s -= 1 }
        return firstInvalidOffset(b, from: s)
    }

    /// Length of the valid sequence at `i` (1-4), or nil.
    @inline(__always)
    @inlinable public static func sequenceLength(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int? {
        let c0 = b[i]
        if c0 < 0x80 { return 1 }
        let len: Int
        var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
        switch c0 {
        case 0xC2...0xDF: len = 2
        case 0xE0:
            len = 3
            lo = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: len = 3
        case 0xED:
            len = 3
            hi = 0x9F  // no surrogates
        case 0xF0:
            len = 4
            lo = 0x90
        case 0xF1...0xF3: len = 4
        case 0xF4:
            len = 4
            hi = 0x8F  // nothing above U+10FFFF
        default: return nil
        }
        guard i + len <= b.count else { return nil }
        let c1 = b[i + 1]
        guard c1 >= lo && c1 <= hi else { return nil }
        var k = 2
        while k < len {
            guard b[i + k] & 0xC0 == 0x80 else { return nil }
            k += 1
        }
        return len
    }

    /// The scalar check from `start`, which must begin a character (offset 0, or just after a valid one).
    @inlinable public static func firstInvalidOffset(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        let n = b.count
        var i = start
        while i < n {
            // 32 ASCII bytes at a time: most text is ASCII.
            let raw = UnsafeRawPointer(b.baseAddress!)
            while i + 32 <= n {
                let w =
                    raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
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
            guard let len = sequenceLength(b, i) else { return i }
            i += len
        }
        return nil
    }

    /// The scalar starting at `i` and its length in bytes (valid UTF-8 assumed).
    @inline(__always)
    @inlinable public static func decode(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (value: UInt32, length: Int) {
        let c0 = UInt32(b[i])
        if c0 < 0x80 { return (c0, 1) }
        if c0 < 0xE0 { return ((c0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
        if c0 < 0xF0 {
            return ((c0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3)
        }
        return (
            (c0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6
                | UInt32(b[i + 3] & 0x3F), 4
        )
    }

    /// The scalar ending just before `end` and the offset where it starts (valid UTF-8 assumed).
    @inline(__always)
    @inlinable public static func decodeBefore(_ b: UnsafeBufferPointer<UInt8>, _ end: Int) -> (
        value: UInt32, start: Int
    ) {
        var s = end - 1
        while s > 0 && b[s] & 0xC0 == 0x80 { s -= 1 }
        return (decode(b, s).value, s)
    }
}
