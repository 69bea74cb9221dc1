/// A strict (RFC 8259), zero-copy JSON parser for one JSONL line: values are byte ranges into the line, so
/// field text can be tokenized straight from the mapped input. Node storage is reused from line to line.
///
/// Untrusted input: every byte is checked (string escapes, control characters, UTF-8 validity, number
/// grammar) and nesting is capped; errors carry the byte offset.
public struct JSONScanner {
    /// What a node holds.
    public enum Kind: UInt8 { case object, array, string, number, `true`, `false`, null }

    /// One value: its kind, byte range (strings: the content between the quotes) and tree links.
    public struct Node {
        public var kind: Kind
        public var start: Int
        public var end: Int
        /// Strings: whether the content holds a backslash escape (then it must be unescaped before use).
        public var escaped = false
        /// Index of the first child (arrays: elements; objects: key, value, key, value ...), or -1.
        public var firstChild = -1
        /// Index of the next sibling, or -1.
        public var next = -1
        /// Number of children.
        public var count = 0
    }

    /// A parse failure: byte offset in the line and the reason.
    public struct Failure: Error {
        /// Byte offset in the line.
        public let offset: Int
        /// What is wrong.
        public let reason: String
    }

    /// Deepest nesting accepted.
    public static let maxDepth = 64

    /// Nodes of the last parsed line, root first.
    public private(set) var nodes: [Node] = []
    private var b = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
    private var i = 0

    /// An empty scanner; its node storage grows to the largest line and is then reused.
    public init() {}

    /// Parses `line` (one JSON value, surrounding whitespace allowed); returns the root node's index (0).
    public mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(Failure) -> Int {
        nodes.removeAll(keepingCapacity: true)
        b = line
        i = 0
        skipSpace()
        let root = try value(depth: 0)
        skipSpace()
        if i != b.count { throw Failure(offset: i, reason: "unexpected characters after the JSON value") }
        return root
    }

    /// The node at `index`.
    public subscript(index: Int) -> Node { nodes[index] }

    /// The value of member `key` (ASCII) of object node `object`, or nil. Duplicate keys: the last one wins,
    /// as in Python's json module.
    public func member(_ object: Int, _ key: StaticString) -> Int? {
        let o = nodes[object]
        guard o.kind == .object else { return nil }
        var found: Int?
        var k = o.firstChild
        while k >= 0 {
            let v = nodes[k].next
            if !nodes[k].escaped && keyEquals(nodes[k], key) { found = v }
            k = nodes[v].next
        }
        return found
    }

    /// Children of an array or object node, in order.
    public func children(_ index: Int) -> [Int] {
        var out: [Int] = []
        var k = nodes[index].firstChild
        while k >= 0 { out.append(k); k = nodes[k].next }
        return out
    }

    /// The keys of an object (unescaped keys are compared raw; escaped ones are reported as such).
    public func keys(_ object: Int) -> [String] {
        var out: [String] = []
        var k = nodes[object].firstChild
        while k >= 0 {
            out.append(String(decoding: UnsafeBufferPointer(rebasing: b[nodes[k].start..<nodes[k].end]), as: UTF8.self))
            k = nodes[nodes[k].next].next
        }
        return out
    }

    private func keyEquals(_ n: Node, _ key: StaticString) -> Bool {
        guard n.end - n.start == key.utf8CodeUnitCount else { return false }
        let k = key.utf8Start
        for j in 0..<key.utf8CodeUnitCount where b[n.start + j] != k[j] { return false }
        return true
    }

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func add(_ n: Node) -> Int {
        nodes.append(n)
        return nodes.count - 1
    }

    private mutating func value(depth: Int) throws(Failure) -> Int {
        guard i < b.count else { throw Failure(offset: i, reason: "unexpected end of line, expected a value") }
        switch b[i] {
        case UInt8(ascii: "{"): return try container(depth: depth, object: true)
        case UInt8(ascii: "["): return try container(depth: depth, object: false)
        case UInt8(ascii: "\""): return try string()
        case UInt8(ascii: "t"): return try literal("true", .true)
        case UInt8(ascii: "f"): return try literal("false", .false)
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw Failure(offset: i, reason: "unexpected character '\(printable(b[i]))', expected a value")
        }
    }

    private mutating func literal(_ word: StaticString, _ kind: Kind) throws(Failure) -> Int {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { throw Failure(offset: i, reason: "invalid literal, expected '\(word)'") }
        for j in 0..<n where b[i + j] != word.utf8Start[j] {
            throw Failure(offset: i + j, reason: "invalid literal, expected '\(word)'")
        }
        let node = add(Node(kind: kind, start: i, end: i + n))
        i += n
        return node
    }

    private mutating func container(depth: Int, object: Bool) throws(Failure) -> Int {
        guard depth < JSONScanner.maxDepth else { throw Failure(offset: i, reason: "nesting deeper than \(JSONScanner.maxDepth)") }
        let open = i
        let me = add(Node(kind: object ? .object : .array, start: i, end: i))
        i += 1
        skipSpace()
        let close = object ? UInt8(ascii: "}") : UInt8(ascii: "]")
        var previous = -1
        var count = 0
        func link(_ child: Int) {
            if previous < 0 { nodes[me].firstChild = child } else { nodes[previous].next = child }
            previous = child
        }
        if i < b.count && b[i] == close {
            i += 1
        } else {
            while true {
                if object {
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else {
                        throw Failure(offset: i, reason: i < b.count ? "expected a string key" : "unterminated object opened at \(open)")
                    }
                    link(try string())
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw Failure(offset: i, reason: "expected ':' after the key") }
                    i += 1
                    skipSpace()
                }
                link(try value(depth: depth + 1))
                count += 1
                skipSpace()
                guard i < b.count else {
                    throw Failure(offset: i, reason: "unterminated \(object ? "object" : "array") opened at byte \(open + 1)")
                }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    skipSpace()
                    continue
                }
                if b[i] == close { i += 1; break }
                throw Failure(offset: i, reason: "expected ',' or '\(object ? "}" : "]")'")
            }
        }
        nodes[me].end = i
        nodes[me].count = count
        return me
    }

    private mutating func string() throws(Failure) -> Int {
        let open = i
        i += 1
        let start = i
        var escaped = false
        let raw = UnsafeRawPointer(b.baseAddress)
        while true {
            // Eight plain bytes at a time: none is '"', '\\', a control character or non-ASCII.
            if let raw {
                while i + 8 <= b.count {
                    let w = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if Self.hasSpecialByte(w) { break }
                    i += 8
                }
            }
            guard i < b.count else { throw Failure(offset: open, reason: "unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw Failure(offset: i, reason: "control character 0x\(String(c, radix: 16)) inside a string (must be escaped)") }
            if c == UInt8(ascii: "\\") {
                escaped = true
                guard i + 1 < b.count else { throw Failure(offset: i, reason: "unterminated escape") }
                switch b[i + 1] {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    guard i + 6 <= b.count, (2..<6).allSatisfy({ hexValue(b[i + $0]) != nil }) else {
                        throw Failure(offset: i, reason: "invalid \\u escape (needs 4 hex digits)")
                    }
                    i += 6
                default:
                    throw Failure(offset: i, reason: "invalid escape '\\\(printable(b[i + 1]))'")
                }
                continue
            }
            if c < 0x80 { i += 1; continue }
            let n = utf8SequenceLength(b, i)
            if n == 0 { throw Failure(offset: i, reason: "invalid UTF-8 byte sequence") }
            i += n
        }
        let node = add(Node(kind: .string, start: start, end: i, escaped: escaped))
        i += 1
        return node
    }

    /// Whether any byte of `w` is a quote, a backslash, below 0x20 or at least 0x80. SWAR: `(x - 0x01..) & ~x`
    /// marks zero bytes; a borrow can only mark a byte above one that is itself marked, so "any" is exact.
    @inline(__always) public static func hasSpecialByte(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, high: UInt64 = 0x8080_8080_8080_8080
        let quote = w ^ (ones &* 0x22), slash = w ^ (ones &* 0x5C)
        let zeroQuote = (quote &- ones) & ~quote
        let zeroSlash = (slash &- ones) & ~slash
        let control = (w &- ones &* 0x20) & ~w  // high bit set where a byte is below 0x20 (or >= 0x80)
        return (zeroQuote | zeroSlash | control | w) & high != 0
    }

    private mutating func number() throws(Failure) -> Int {
        let start = i
        if b[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        guard i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else {
            throw Failure(offset: i, reason: "invalid number: expected a digit")
        }
        if b[i] == UInt8(ascii: "0") {
            i += 1
            if i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") {
                throw Failure(offset: i, reason: "invalid number: leading zero")
            }
        } else {
            _ = digits()
        }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw Failure(offset: i, reason: "invalid number: expected a digit after '.'") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw Failure(offset: i, reason: "invalid number: expected exponent digits") }
        }
        return add(Node(kind: .number, start: start, end: i))
    }
}

/// Length of the valid UTF-8 sequence starting at `i` (2-4), or 0 when it is invalid (overlong forms,
/// surrogates, code points above U+10FFFF, truncation).
func utf8SequenceLength(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
    let c0 = b[i]
    func cont(_ k: Int) -> Bool { i + k < b.count && b[i + k] & 0xC0 == 0x80 }
    switch c0 {
    case 0xC2...0xDF:
        return cont(1) ? 2 : 0
    case 0xE0...0xEF:
        guard cont(1), cont(2) else { return 0 }
        let c1 = b[i + 1]
        if c0 == 0xE0 && c1 < 0xA0 { return 0 }  // overlong
        if c0 == 0xED && c1 >= 0xA0 { return 0 }  // UTF-16 surrogate
        return 3
    case 0xF0...0xF4:
        guard cont(1), cont(2), cont(3) else { return 0 }
        let c1 = b[i + 1]
        if c0 == 0xF0 && c1 < 0x90 { return 0 }  // overlong
        if c0 == 0xF4 && c1 >= 0x90 { return 0 }  // above U+10FFFF
        return 4
    default:
        return 0
    }
}

/// The value of an ASCII hex digit, or nil.
func hexValue(_ c: UInt8) -> UInt32? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(c - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(c - UInt8(ascii: "A") + 10)
    default: nil
    }
}

/// A byte as it can be shown in a message.
func printable(_ c: UInt8) -> String {
    c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
}
