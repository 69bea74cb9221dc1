import Support


/// A parsed JSON document; strings stay UTF-8 bytes so a 150k-entry vocabulary never becomes Swift Strings.
enum JSONValue {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string([UInt8])
    case array([JSONValue])
    case object([(key: [UInt8], value: JSONValue)])

    /// The member named `key` of an object (first match), or nil.
    subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        let k = Array(key.utf8)
        return members.first { $0.key == k }?.value
    }

    var isNull: Bool { if case .null = self { return true } else { return false } }
    var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    var int: Int? { if case .int(let i) = self { return i } else { return nil } }
    var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    var bytes: [UInt8]? { if case .string(let s) = self { return s } else { return nil } }
    var string: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
    var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var members: [(key: [UInt8], value: JSONValue)]? { if case .object(let m) = self { return m } else { return nil } }
    /// The `type` member of an object, as tokenizer.json tags its components.
    var typeName: String { self["type"]?.string ?? "?" }
}

/// A strict JSON parser (RFC 8259) over bytes; nesting is capped since the input is untrusted.
struct JSONParser {
    /// What failed and where.
    struct Failure: Error {
        let offset: Int
        let reason: String
    }

    static let maxDepth = 256

    /// Parses a whole document.
    static func parse(_ b: UnsafeBufferPointer<UInt8>) throws(Failure) -> JSONValue {
        var p = JSONParser(b: b)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == b.count else { throw Failure(offset: p.i, reason: "trailing characters") }
        return v
    }

    let b: UnsafeBufferPointer<UInt8>
    var i = 0

    init(b: UnsafeBufferPointer<UInt8>) { self.b = b }

    mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    func failure(_ reason: String) -> Failure { Failure(offset: i, reason: reason) }

    mutating func expect(_ literal: StaticString, _ v: JSONValue) throws(Failure) -> JSONValue {
        let n = literal.utf8CodeUnitCount
        guard i + n <= b.count else { throw failure("truncated literal") }
        for k in 0..<n where b[i + k] != literal.utf8Start[k] { throw failure("bad literal") }
        i += n
        return v
    }

    mutating func value(depth: Int) throws(Failure) -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw failure("nesting deeper than \(JSONParser.maxDepth)") }
        guard i < b.count else { throw failure("unexpected end") }
        switch b[i] {
        case 0x7B: return try object(depth: depth)
        case 0x5B: return try array(depth: depth)
        case 0x22: return .string(try string())
        case 0x74: return try expect("true", .bool(true))
        case 0x66: return try expect("false", .bool(false))
        case 0x6E: return try expect("null", .null)
        default: return try number()
        }
    }

    mutating func object(depth: Int) throws(Failure) -> JSONValue {
        i += 1
        var members: [(key: [UInt8], value: JSONValue)] = []
        skipSpace()
        if i < b.count && b[i] == 0x7D { i += 1; return .object(members) }
        while true {
            skipSpace()
            guard i < b.count, b[i] == 0x22 else { throw failure("expected a key") }
            let key = try string()
            skipSpace()
            guard i < b.count, b[i] == 0x3A else { throw failure("expected ':'") }
            i += 1
            skipSpace()
            members.append((key, try value(depth: depth + 1)))
            skipSpace()
            guard i < b.count else { throw failure("unterminated object") }
            if b[i] == 0x2C { i += 1; continue }
            if b[i] == 0x7D { i += 1; return .object(members) }
            throw failure("expected ',' or '}'")
        }
    }

    mutating func array(depth: Int) throws(Failure) -> JSONValue {
        i += 1
        var items: [JSONValue] = []
        skipSpace()
        if i < b.count && b[i] == 0x5D { i += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard i < b.count else { throw failure("unterminated array") }
            if b[i] == 0x2C { i += 1; continue }
            if b[i] == 0x5D { i += 1; return .array(items) }
            throw failure("expected ',' or ']'")
        }
    }

    mutating func number() throws(Failure) -> JSONValue {
        let start = i
        var integral = true
        if i < b.count && b[i] == 0x2D { i += 1 }
        while i < b.count {
            let c = b[i]
            if c >= 0x30 && c <= 0x39 { i += 1; continue }
            if c == 0x2E || c == 0x65 || c == 0x45 || c == 0x2B || c == 0x2D { integral = false; i += 1; continue }
            break
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        if integral, let v = Int(text) { return .int(v) }
        guard let d = Double(text), i > start else { throw Failure(offset: start, reason: "bad number") }
        return .double(d)
    }

    mutating func hex4() throws(Failure) -> UInt32 {
        guard i + 4 <= b.count else { throw failure("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw failure("bad \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// A string's UTF-8 bytes with escapes resolved; the raw bytes must be valid UTF-8.
    mutating func string() throws(Failure) -> [UInt8] {
        i += 1
        let start = i
        // Fast path: no escapes.
        while i < b.count && b[i] != 0x22 && b[i] != 0x5C && b[i] >= 0x20 { i += 1 }
        var out = Array(b[start..<i])
        while true {
            guard i < b.count else { throw failure("unterminated string") }
            let c = b[i]
            if c == 0x22 { i += 1; break }
            if c < 0x20 { throw failure("control character in string") }
            if c != 0x5C {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < b.count else { throw failure("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case 0x22, 0x5C, 0x2F: out.append(e)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x75:
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00 {
                    guard i + 2 <= b.count, b[i] == 0x5C, b[i + 1] == 0x75 else { throw failure("lone surrogate") }
                    i += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw failure("bad surrogate pair") }
                    v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00)
                } else if v >= 0xDC00 && v < 0xE000 {
                    throw failure("lone surrogate")
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(v)!).utf8))
            default: throw failure("bad escape")
            }
        }
        let valid = out.withUnsafeBufferPointer { UTF8Scan.firstInvalidOffset($0) == nil }
        guard valid else { throw Failure(offset: start, reason: "string is not valid UTF-8") }
        return out
    }
}
