/// JSON text written by hand, so files come out byte-identical for the same content (key order as given,
/// no locale or platform differences in number formatting).
public enum JSONText {
    /// `s` as a JSON string literal (`jsonStringLiteral`).
    public static func string(_ s: String) -> String { jsonStringLiteral(s) }

    /// An object from key / already-encoded value pairs, in the order given.
    public static func object(_ members: [(String, String)]) -> String {
        "{" + members.map { string($0.0) + ": " + $0.1 }.joined(separator: ", ") + "}"
    }

    /// An array of already-encoded values.
    public static func array(_ items: [String]) -> String { "[" + items.joined(separator: ", ") + "]" }

    /// A finite double with up to `digits` decimals (trailing zeros dropped), or `null` when not finite.
    public static func number(_ x: Double, digits: Int = 6) -> String {
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
