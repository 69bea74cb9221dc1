import Support
import Format

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
    /// Whether the whole line is valid UTF-8, so strings need no check of their own (which only an invalid
    /// line then pays for, and which finds the same first error as always).
    private var lineIsUTF8 = false

    /// An empty scanner; its node storage grows to the largest line and is then reused.
    public init() {}

    /// Parses `line` (one JSON value, surrounding whitespace allowed); returns the root node's index (0).
    public mutating func parse(_ line: UnsafeBufferPointer<UInt8>) throws(Failure) -> Int {
        nodes.removeAll(keepingCapacity: true)
        b = line
        i = 0
        lineIsUTF8 = UTF8Scan.firstInvalidOffset(line) == nil
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

    /// Calls `body` with the raw bytes of each unescaped key of object node `object` and the index of its
    /// value, in order (escaped keys never equal a plain key, as in `member`).
    public func forEachMember(_ object: Int, _ body: (UnsafeBufferPointer<UInt8>, Int) -> Void) {
        guard nodes[object].kind == .object else { return }
        var k = nodes[object].firstChild
        while k >= 0 {
            let v = nodes[k].next
            if !nodes[k].escaped { body(UnsafeBufferPointer(rebasing: b[nodes[k].start..<nodes[k].end]), v) }
            k = nodes[v].next
        }
    }

    /// Children of an array or object node, in order.
    public func children(_ index: Int) -> [Int] {
        var out: [Int] = []
        var k = nodes[index].firstChild
        while k >= 0 {
            out.append(k)
            k = nodes[k].next
        }
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
        guard depth < JSONScanner.maxDepth else {
            throw Failure(offset: i, reason: "nesting deeper than \(JSONScanner.maxDepth)")
        }
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
                        throw Failure(
                            offset: i,
                            reason: i < b.count ? "expected a string key" : "unterminated object opened at \(open)")
                    }
                    link(try string())
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else {
                        throw Failure(offset: i, reason: "expected ':' after the key")
                    }
                    i += 1
                    skipSpace()
                }
                link(try value(depth: depth + 1))
                count += 1
                skipSpace()
                guard i < b.count else {
                    throw Failure(
                        offset: i, reason: "unterminated \(object ? "object" : "array") opened at byte \(open + 1)")
                }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    skipSpace()
                    continue
                }
                if b[i] == close {
                    i += 1
                    break
                }
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
        var run = i  // start of the current run of bytes that are neither quote, backslash nor control
        while true {
            let (stop, high) = Self.nextSpecialByte(b, from: i)
            // Runs end at ASCII bytes, so a run's UTF-8 can be checked on its own.
            if high && !lineIsUTF8, let bad = UTF8Scan.firstInvalidOffset(UnsafeBufferPointer(rebasing: b[run..<stop]))
            {
                throw Failure(offset: run + bad, reason: "invalid UTF-8 byte sequence")
            }
            i = stop
            guard i < b.count else { throw Failure(offset: open, reason: "unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 {
                throw Failure(
                    offset: i, reason: "control character 0x\(String(c, radix: 16)) inside a string (must be escaped)")
            }
            escaped = true  // a backslash
            guard i + 1 < b.count else { throw Failure(offset: i, reason: "unterminated escape") }
            switch b[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                i += 2
            case UInt8(ascii: "u"):
                guard JSONEscape.hex4(b, at: i + 2) != nil else {
                    throw Failure(offset: i, reason: "invalid \\u escape (needs 4 hex digits)")
                }
                i += 6
            default:
                throw Failure(offset: i, reason: "invalid escape '\\\(printable(b[i + 1]))'")
            }
            run = i
        }
        let node = add(Node(kind: .string, start: start, end: i, escaped: escaped))
        i += 1
        return node
    }

    /// The offset of the first quote, backslash or control byte (below 0x20) at or after `from` (`b.count`
    /// when there is none), and whether a byte of 0x80 or more may come before it (true may be a false alarm,
    /// false never misses one). Sixteen bytes at a time.
    public static func nextSpecialByte(_ b: UnsafeBufferPointer<UInt8>, from: Int) -> (offset: Int, high: Bool) {
        var j = from
        var seen = SIMD16<UInt8>()
        if let base = b.baseAddress {
            let raw = UnsafeRawPointer(base)
            typealias V = SIMD16<UInt8>
            // Vector operands and a bit cast for the test: the scalar overloads and `any` run lane by lane.
            while j + 16 <= b.count {
                let v = raw.loadUnaligned(fromByteOffset: j, as: V.self)
                seen |= v
                let special = (v .== V(repeating: 0x22)) .| (v .== V(repeating: 0x5C)) .| (v .< V(repeating: 0x20))
                let words = unsafeBitCast(special, to: SIMD2<UInt64>.self)
                if words[0] != 0 { return (j + words[0].trailingZeroBitCount >> 3, high(seen)) }
                if words[1] != 0 { return (j + 8 + words[1].trailingZeroBitCount >> 3, high(seen)) }
                j += 16
            }
        }
        var tail: UInt8 = 0
        while j < b.count {
            let c = b[j]
            if c == 0x22 || c == 0x5C || c < 0x20 { break }
            tail |= c
            j += 1
        }
        return (j, high(seen) || tail >= 0x80)
    }

    @inline(__always)
    private static func high(_ v: SIMD16<UInt8>) -> Bool {
        let words = unsafeBitCast(v, to: SIMD2<UInt64>.self)
        return (words[0] | words[1]) & 0x8080_8080_8080_8080 != 0
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

/// A byte as it can be shown in a message.
func printable(_ c: UInt8) -> String {
    c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
}
