import Format
import Foundation
import Support

extension JSONScanner {
    /// Calls `body` with the UTF-8 bytes of string node `n`: the line's own bytes when the string has no
    /// escapes, else the unescaped text in `scratch`. Fails on a lone UTF-16 surrogate escape.
    public func withText<R>(
        _ n: Int, in line: UnsafeBufferPointer<UInt8>, scratch: inout [UInt8],
        _ body: (UnsafeBufferPointer<UInt8>) throws -> R
    ) throws -> R {
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
            if e == UInt8(ascii: "u") {
                // The scanner checked the four hex digits; surrogate pairing is checked here.
                switch JSONEscape.unicode(raw, at: i) {
                case .scalar(let v, let next):
                    JSONEscape.appendUTF8(v, to: &scratch)
                    i = next
                case .failure(let why):
                    throw Failure(offset: node.start + i, reason: why.description)
                }
            } else {
                // The scanner accepted only valid escapes.
                scratch.append(JSONEscape.simple(e) ?? e)
                i += 2
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
