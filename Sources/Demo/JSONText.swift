/// JSON text written by hand, so files come out byte-identical for the same content (key order as given,
/// no locale or platform differences in number formatting).
enum JSONText {
    /// `s` as a JSON string literal (UTF-8 kept, quotes, backslashes and control characters escaped).
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20 || u.value == 0x2028 || u.value == 0x2029:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// An object from key / already-encoded value pairs, in the order given.
    static func object(_ members: [(String, String)]) -> String {
        "{" + members.map { string($0.0) + ": " + $0.1 }.joined(separator: ", ") + "}"
    }

    /// An array of already-encoded values.
    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }

    /// A finite double with up to `digits` decimals (trailing zeros dropped), or `null` when not finite.
    static func number(_ x: Double, digits: Int = 6) -> String {
        guard x.isFinite else { return "null" }
        if x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
        var scaled = (x * pow10(digits)).rounded() / pow10(digits)
        if scaled == 0 { scaled = 0 }  // no "-0"
        var s = "\(scaled)"
        if s.contains("e") { return s }
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    private static func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { a, _ in a * 10 } }
}
