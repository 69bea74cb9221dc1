import Foundation
import Support

extension JSONScanner {
    /// Calls `body` with the UTF-8 bytes of string node `n`: the line's own bytes when the string has no
    /// escapes, else the unescaped text in `scratch`. Fails on a lone UTF-16 surrogate escape.
    public func withText<R>(_ n: Int, in line: UnsafeBufferPointer<UInt8>, scratch: inout [UInt8],
                     _ body: (UnsafeBufferPointer<UInt8>) throws -> R) throws -> R {
        let node = nodes[n]
        guard node.kind == .string else { throw Failure(offset: node.start, reason: "expected a string") }
        let raw = UnsafeBufferPointer(rebasing: line[node.start..<node.end])
        if !node.escaped { return try body(raw) }
        try unescape(node, raw, &scratch)
        return try scratch.withUnsafeBufferPointer { try body($0) }
    }

    private func unescape(_ node: Node, _ raw: UnsafeBufferPointer<UInt8>, _ scratch: inout [UInt8]) throws(Failure) {
        scratch.removeAll(keepingCapacity: true)
        var i = 0
        while i < raw.count {
            // Copy everything up to the next backslash in one go.
            let rest = raw.count - i
            let hit = memchr(raw.baseAddress! + i, 0x5C, rest)
            let plain = hit.map { UnsafeRawPointer($0) - UnsafeRawPointer(raw.baseAddress! + i) } ?? rest
            if plain > 0 {
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: raw[i..<(i + plain)]))
                i += plain
                if i >= raw.count { break }
            }
            let e = raw[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "b"): scratch.append(0x08)
            case UInt8(ascii: "f"): scratch.append(0x0C)
            case UInt8(ascii: "n"): scratch.append(0x0A)
            case UInt8(ascii: "r"): scratch.append(0x0D)
            case UInt8(ascii: "t"): scratch.append(0x09)
            case UInt8(ascii: "u"):
                var v = hex4(raw, i)
                i += 4
                if (0xD800...0xDBFF).contains(v) {
                    guard i + 6 <= raw.count, raw[i] == UInt8(ascii: "\\"), raw[i + 1] == UInt8(ascii: "u"),
                          case let low = hex4(raw, i + 2), (0xDC00...0xDFFF).contains(low) else {
                        throw Failure(offset: node.start + i - 6, reason: "lone UTF-16 surrogate in a \\u escape")
                    }
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                } else if (0xDC00...0xDFFF).contains(v) {
                    throw Failure(offset: node.start + i - 6, reason: "lone UTF-16 surrogate in a \\u escape")
                }
                appendUTF8(v, &scratch)
            default: scratch.append(e)  // \" \\ \/
            }
        }
    }

    /// A non-negative or negative integer node, checked against Int64 overflow; nil for fractions/exponents.
    public func integer(_ n: Int, in line: UnsafeBufferPointer<UInt8>) -> Int64? {
        let node = nodes[n]
        guard node.kind == .number else { return nil }
        var i = node.start
        let negative = line[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        var v: Int64 = 0
        while i < node.end {
            let c = line[i]
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(Int64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        return negative ? -v : v
    }

    /// A number node as a Double (JSON numbers are always finite, but may overflow to infinity).
    public func double(_ n: Int, in line: UnsafeBufferPointer<UInt8>) -> Double? {
        let node = nodes[n]
        guard node.kind == .number else { return nil }
        var buf = [CChar](repeating: 0, count: node.end - node.start + 1)
        for k in 0..<(node.end - node.start) { buf[k] = CChar(bitPattern: line[node.start + k]) }
        return strtod(buf, nil)
    }

    /// The raw JSON text of node `n` (for storing metadata verbatim).
    public func rawBytes(_ n: Int, in line: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        let node = nodes[n]
        // Strings' ranges exclude the quotes; include them so the stored text is valid JSON.
        return node.kind == .string ? Array(line[(node.start - 1)...node.end]) : Array(line[node.start..<node.end])
    }
}

private func hex4(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 << 4 | (hexValue(b[i + $1]) ?? 0) }
}

/// Appends the UTF-8 encoding of scalar value `v` (already checked to be a valid scalar).
func appendUTF8(_ v: UInt32, _ out: inout [UInt8]) {
    switch v {
    case 0..<0x80: out.append(UInt8(v))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | v >> 6)); out.append(UInt8(0x80 | v & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | v >> 12)); out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
    default:
        out.append(UInt8(0xF0 | v >> 18)); out.append(UInt8(0x80 | v >> 12 & 0x3F))
        out.append(UInt8(0x80 | v >> 6 & 0x3F)); out.append(UInt8(0x80 | v & 0x3F))
    }
}
