import Foundation

// The one reader for JSON files oreo does not write itself (tokenizer.json, tokenizer_config.json, config.json,
// safetensors headers and indexes) and for its own small JSON files. It depends on nothing else in this module.

/// A JSON value read by `StrictJSON`.
public enum JSONValue: Sendable, Equatable {
    /// null.
    case null
    /// true / false.
    case bool(Bool)
    /// A number (always finite).
    case number(JSONNumber)
    /// A string (valid Unicode: lone surrogates and invalid UTF-8 are refused while parsing).
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object with its members in file order (duplicate keys are refused while parsing).
    case object([(key: String, value: JSONValue)])

    /// Equality by structure (object members in order).
    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The member named `key` of an object, or nil (also for a non-object).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// Whether this is null.
    public var isNull: Bool { if case .null = self { return true } else { return false } }
    /// The boolean, if this is one.
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// The number, if this is one.
    public var number: JSONNumber? { if case .number(let n) = self { return n } else { return nil } }
    /// The exact integer this number spells (no fraction or exponent, within Int), if it is one.
    public var int: Int? { number?.int }
    /// This number as a Double, if it is one.
    public var double: Double? { number?.double }
    /// The string, if this is one.
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The elements, if this is an array.
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    /// The members in file order, if this is an object.
    public var members: [(key: String, value: JSONValue)]? {
        if case .object(let m) = self { return m } else { return nil }
    }

    /// What this value is, for messages ("a string", "the number 2.5").
    public var summary: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n.text
        case .string(let s): return s.count <= 40 ? s.debugDescription : "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

/// A JSON number: the literal as written and its value as a finite Double.
public struct JSONNumber: Sendable, Equatable, CustomStringConvertible {
    /// The literal, as written in the file.
    public let text: String
    /// Its value (numbers beyond Double's range are refused while parsing).
    public let double: Double
    /// Whether the literal has no fraction and no exponent.
    public let isIntegerLiteral: Bool

    /// The exact integer the literal spells, if it has no fraction or exponent and fits Int.
    public var int: Int? { isIntegerLiteral ? Int(text) : nil }
    /// The literal.
    public var description: String { text }
}

/// A JSON file that does not parse: where (byte offset, line and column, all from the file's start) and why.
public struct JSONSyntaxError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file, as named by the caller.
    public let file: String
    /// Byte offset of the problem (0-based).
    public let offset: Int
    /// 1-based line and byte column of `offset`.
    public let line: Int, column: Int
    /// What is wrong.
    public let reason: String

    /// Where and why, without the file: "byte 12 (line 2, column 3): reason".
    public var position: String { "byte \(offset) (line \(line), column \(column)): \(reason)" }
    /// One line naming the file, the position and the reason.
    public var description: String { "\(file): invalid JSON at \(position)" }
}

/// A JSON file that parses but does not have the expected structure: which file, which field and why.
public struct JSONFieldError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file, as named by the caller.
    public let file: String
    /// The field's path, dotted (array elements as `[i]`); empty for the top level.
    public let field: String
    /// What is wrong with it.
    public let reason: String

    /// Makes an error for `field` of `file`.
    public init(file: String, field: String, _ reason: String) {
        self.file = file
        self.field = field
        self.reason = reason
    }

    /// One line: `file: field "x.y": reason`.
    public var description: String { field.isEmpty ? "\(file): \(reason)" : "\(file): field \"\(field)\": \(reason)" }
}

/// RFC 8259 JSON for untrusted files: no NaN/Infinity, no numbers beyond Double's range, no duplicate keys, no
/// invalid UTF-8 or lone surrogates, no raw control characters, nothing after the value, bounded nesting.
public enum StrictJSON {
    /// Deepest nesting accepted by default (real files nest a few levels; recursion must stay bounded).
    public static let defaultMaxDepth = 128

    /// Parses `bytes` (one JSON value, surrounding whitespace allowed); `file` names it in errors.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, file: String,
        maxDepth: Int = defaultMaxDepth
    ) throws(JSONSyntaxError) -> JSONValue {
        var p = Parser(b: bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth)
        return try document(&p, bytes, file: file)
    }

    /// Checks that `bytes` is one strict JSON value, as `parse` would, without building it: memory stays
    /// proportional to the nesting and the widest object's keys, not to the file (a manifest of 80,000 shards).
    public static func validate(
        _ bytes: UnsafeRawBufferPointer, file: String, maxDepth: Int = defaultMaxDepth
    ) throws(JSONSyntaxError) {
        var p = Parser(b: bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth, build: false)
        _ = try document(&p, bytes, file: file)
    }

    /// Parses `bytes` as `parse` does, except for the array under the top-level key `key`: it comes back empty and
    /// is only checked, and the offset where each of its elements starts is returned instead (nil when there is no
    /// such array). A list of 80,000 entries then costs 4 bytes an entry until one is read with `parseValue(at:)`.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, file: String, deferring key: String, maxDepth: Int = defaultMaxDepth
    ) throws(JSONSyntaxError) -> (value: JSONValue, deferred: [UInt32]?) {
        guard bytes.count <= Int(UInt32.max) else {
            throw JSONSyntaxError(file: file, offset: 0, line: 1, column: 1, reason: "over 4 GiB")
        }
        var p = Parser(b: bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth)
        p.deferKey = key
        let v = try document(&p, bytes, file: file)
        return (v, p.deferred)
    }

    /// Runs `p` over all of `bytes`: one value, whitespace around it, nothing after.
    private static func document(_ p: inout Parser, _ bytes: UnsafeRawBufferPointer, file: String)
        throws(JSONSyntaxError) -> JSONValue
    {
        do throws(Parser.Failure) {
            p.skipSpace()
            let v = try p.value(depth: 0)
            p.skipSpace()
            guard p.i == p.b.count else {
                throw Parser.Failure(offset: p.i, reason: "unexpected characters after the JSON value")
            }
            return v
        } catch {
            throw syntaxError(bytes, file: file, error.offset, error.reason)
        }
    }

    /// Parses the one JSON value that starts at `offset` in `bytes` (what follows it is not looked at).
    public static func parseValue(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, file: String, maxDepth: Int = defaultMaxDepth
    ) throws(JSONSyntaxError) -> JSONValue {
        var p = Parser(b: bytes.bindMemory(to: UInt8.self), maxDepth: maxDepth)
        p.i = offset
        do throws(Parser.Failure) { return try p.value(depth: 0) } catch {
            throw syntaxError(bytes, file: file, error.offset, error.reason)
        }
    }

    /// Parses `data`; see `parse(_:file:maxDepth:)`.
    public static func parse(_ data: Data, file: String, maxDepth: Int = defaultMaxDepth) throws(JSONSyntaxError)
        -> JSONValue
    {
        let r: Result<JSONValue, JSONSyntaxError> = data.withUnsafeBytes { raw in
            do throws(JSONSyntaxError) { return .success(try parse(raw, file: file, maxDepth: maxDepth)) } catch {
                return .failure(error)
            }
        }
        return try r.get()
    }

    /// Parses `bytes`; see `parse(_:file:maxDepth:)`.
    public static func parse(_ bytes: [UInt8], file: String, maxDepth: Int = defaultMaxDepth) throws(JSONSyntaxError)
        -> JSONValue
    {
        let r: Result<JSONValue, JSONSyntaxError> = bytes.withUnsafeBytes { raw in
            do throws(JSONSyntaxError) { return .success(try parse(raw, file: file, maxDepth: maxDepth)) } catch {
                return .failure(error)
            }
        }
        return try r.get()
    }

    /// Decodes `T` from `data`: syntax errors give their position (`JSONSyntaxError`), structure errors the field
    /// and the value found there (`JSONFieldError`); errors `T` throws itself pass through.
    public static func decode<T: Decodable>(
        _ type: T.Type, from data: Data, file: String,
        options: JSONValueDecoder.Options = .init()
    ) throws -> T {
        try JSONValueDecoder(options: options).decode(T.self, from: try parse(data, file: file), file: file)
    }

    static func syntaxError(_ bytes: UnsafeRawBufferPointer, file: String, _ offset: Int, _ reason: String)
        -> JSONSyntaxError
    {
        // Line and column are counted only when there is an error to report.
        var line = 1, lineStart = 0
        for k in 0..<min(offset, bytes.count) where bytes[k] == 0x0A {
            line += 1
            lineStart = k + 1
        }
        return JSONSyntaxError(file: file, offset: offset, line: line, column: offset - lineStart + 1, reason: reason)
    }

    /// The recursive-descent parser; every read is bounds checked against `b.count`.
    struct Parser {
        struct Failure: Error {
            let offset: Int
            let reason: String
        }

        let b: UnsafeBufferPointer<UInt8>
        let maxDepth: Int
        /// False to check only: arrays and objects come back empty, and values other than keys are not kept.
        var build: Bool
        /// A top-level key whose array is checked but not built; its elements' start offsets go to `deferred`.
        var deferKey: String? = nil
        var deferred: [UInt32]? = nil
        var i = 0
        /// Unescaped string bytes, reused from string to string.
        var scratch: [UInt8] = []

        init(b: UnsafeBufferPointer<UInt8>, maxDepth: Int, build: Bool = true) {
            self.b = b
            self.maxDepth = maxDepth
            self.build = build
        }

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        func fail(_ reason: String, at offset: Int? = nil) -> Failure { Failure(offset: offset ?? i, reason: reason) }

        mutating func value(depth: Int) throws(Failure) -> JSONValue {
            guard i < b.count else { throw fail("unexpected end of input, expected a value") }
            switch b[i] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"):
                try literal("true")
                return .bool(true)
            case UInt8(ascii: "f"):
                try literal("false")
                return .bool(false)
            case UInt8(ascii: "n"):
                try literal("null")
                return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            case UInt8(ascii: "N"), UInt8(ascii: "I"):
                throw fail("NaN and Infinity are not JSON numbers")
            case let c: throw fail("unexpected character \(Self.printable(c)), expected a value")
            }
        }

        static func printable(_ c: UInt8) -> String {
            c >= 0x20 && c < 0x7F ? "'\(Character(Unicode.Scalar(c)))'" : "byte 0x" + String(c, radix: 16)
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let n = word.utf8CodeUnitCount
            for k in 0..<n where i + k >= b.count || b[i + k] != word.utf8Start[k] {
                throw fail("invalid literal, expected '\(word)'", at: i)
            }
            i += n
        }

        mutating func object(depth: Int) throws(Failure) -> JSONValue {
            guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            let open = i
            i += 1
            var members: [(key: String, value: JSONValue)] = []
            // Duplicate keys: a linear scan for small objects, a set once an object is large (vocabularies).
            var seen: Set<String>? = nil
            skipSpace()
            if i < b.count && b[i] == UInt8(ascii: "}") {
                i += 1
                return .object(members)
            }
            while true {
                skipSpace()
                guard i < b.count else { throw fail("unterminated object opened at byte \(open)") }
                guard b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let keyStart = i
                let key = try string()
                if members.count < 16 {
                    if members.contains(where: { $0.key == key }) {
                        throw fail("duplicate key \(key.debugDescription)", at: keyStart)
                    }
                    if members.count == 15 {
                        seen = Set(members.map(\.key))
                        seen!.insert(key)
                    }
                } else if seen!.insert(key).inserted == false {
                    throw fail("duplicate key \(key.debugDescription)", at: keyStart)
                }
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':' after the key") }
                i += 1
                skipSpace()
                let v: JSONValue
                if depth == 0, key == deferKey, i < b.count, b[i] == UInt8(ascii: "[") {
                    let wasBuilding = build
                    build = false
                    deferred = []
                    v = try array(depth: depth + 1, noting: true)
                    build = wasBuilding
                } else {
                    v = try value(depth: depth + 1)
                }
                members.append((key, build ? v : .null))
                skipSpace()
                guard i < b.count else { throw fail("unterminated object opened at byte \(open)") }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                if b[i] == UInt8(ascii: "}") {
                    i += 1
                    return .object(members)
                }
                throw fail("expected ',' or '}'")
            }
        }

        /// An array; `noting` appends where each element starts to `deferred`.
        mutating func array(depth: Int, noting: Bool = false) throws(Failure) -> JSONValue {
            guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
            let open = i
            i += 1
            var items: [JSONValue] = []
            skipSpace()
            if i < b.count && b[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            while true {
                skipSpace()
                if noting { deferred!.append(UInt32(i)) }
                let v = try value(depth: depth + 1)
                if build { items.append(v) }
                skipSpace()
                guard i < b.count else { throw fail("unterminated array opened at byte \(open)") }
                if b[i] == UInt8(ascii: ",") {
                    i += 1
                    continue
                }
                if b[i] == UInt8(ascii: "]") {
                    i += 1
                    return .array(items)
                }
                throw fail("expected ',' or ']'")
            }
        }

        mutating func number() throws(Failure) -> JSONNumber {
            let start = i
            if b[i] == UInt8(ascii: "-") { i += 1 }
            func isDigit(_ k: Int) -> Bool { k < b.count && b[k] >= UInt8(ascii: "0") && b[k] <= UInt8(ascii: "9") }
            guard isDigit(i) else {
                if i < b.count && b[i] == UInt8(ascii: "I") { throw fail("-Infinity is not a JSON number", at: start) }
                throw fail("invalid number: expected a digit")
            }
            if b[i] == UInt8(ascii: "0") {
                i += 1
                if isDigit(i) { throw fail("invalid number: leading zero") }
            } else {
                while isDigit(i) { i += 1 }
            }
            var integral = true
            if i < b.count && b[i] == UInt8(ascii: ".") {
                integral = false
                i += 1
                guard isDigit(i) else { throw fail("invalid number: expected a digit after '.'") }
                while isDigit(i) { i += 1 }
            }
            if i < b.count && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
                integral = false
                i += 1
                if i < b.count && (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")) { i += 1 }
                guard isDigit(i) else { throw fail("invalid number: expected exponent digits") }
                while isDigit(i) { i += 1 }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            let value: Double
            if integral && i - start <= 18, let v = Int64(text) {
                value = Double(v)
            } else {
                guard let d = Double(text), d.isFinite else {
                    throw fail(
                        "number \(text.count <= 40 ? text : String(text.prefix(40)) + "...") is out of range", at: start
                    )
                }
                value = d
            }
            return JSONNumber(text: text, double: value, isIntegerLiteral: integral)
        }

        /// A string (at its opening quote) with escapes resolved; its raw bytes must be valid UTF-8.
        mutating func string() throws(Failure) -> String {
            let open = i
            i += 1
            let start = i
            var high: UInt8 = 0
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") || c < 0x20 { break }
                high |= c
                i += 1
            }
            guard i < b.count else { throw fail("unterminated string", at: open) }
            if b[i] == UInt8(ascii: "\"") {
                // The common case: no escapes, so the string is the file's own bytes.
                let raw = UnsafeBufferPointer(rebasing: b[start..<i])
                i += 1
                if high < 0x80 { return String(decoding: raw, as: UTF8.self) }
                guard let s = String(validating: raw, as: UTF8.self) else { throw invalidUTF8(start, i - 1) }
                return s
            }
            scratch.removeAll(keepingCapacity: true)
            scratch.append(contentsOf: UnsafeBufferPointer(rebasing: b[start..<i]))
            while true {
                guard i < b.count else { throw fail("unterminated string", at: open) }
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    break
                }
                if c < 0x20 {
                    throw fail("control character 0x\(String(c, radix: 16)) inside a string (must be escaped)")
                }
                if c != UInt8(ascii: "\\") {
                    scratch.append(c)
                    i += 1
                    continue
                }
                guard i + 1 < b.count else { throw fail("unterminated escape") }
                let e = b[i + 1]
                if let byte = JSONEscape.simple(e) {
                    scratch.append(byte)
                    i += 2
                    continue
                }
                switch e {
                case UInt8(ascii: "u"):
                    switch JSONEscape.unicode(b, at: i) {
                    case .scalar(let v, let next):
                        JSONEscape.appendUTF8(v, to: &scratch)
                        i = next
                    case .failure(let why): throw fail(why.description)
                    }
                default: throw fail("invalid escape '\\\(Self.printable(e))'")
                }
            }
            guard let s = String(validating: scratch, as: UTF8.self) else { throw invalidUTF8(start, i - 1) }
            return s
        }

        /// The first invalid UTF-8 byte in `b[start..<end]` (escapes are ASCII, so raw bytes locate it).
        func invalidUTF8(_ start: Int, _ end: Int) -> Failure {
            var k = start
            while k < end {
                let n = JSONEscape.validUTF8Length(b, at: k, end: end)
                if n == 0 { return fail("invalid UTF-8 byte sequence in a string", at: k) }
                k += n
            }
            return fail("invalid UTF-8 in a string", at: start)
        }
    }
}

/// Decodes `Decodable` types from a parsed `JSONValue`; every error names the file, the field and what was there.
public struct JSONValueDecoder: Sendable {
    /// How keys and non-finite numbers are spelled in the file.
    public struct Options: Sendable {
        /// Keys are snake_case in the file, camelCase in Swift (Foundation's `convertFromSnakeCase`).
        public var convertFromSnakeCase = false
        /// Strings that stand for +infinity, -infinity and NaN in Double/Float fields, if any.
        public var nonFiniteStrings: (positiveInfinity: String, negativeInfinity: String, nan: String)? = nil
        /// Options; by default keys are as in Swift and numbers must be finite.
        public init(
            convertFromSnakeCase: Bool = false,
            nonFiniteStrings: (positiveInfinity: String, negativeInfinity: String, nan: String)? = nil
        ) {
            self.convertFromSnakeCase = convertFromSnakeCase
            self.nonFiniteStrings = nonFiniteStrings
        }
    }

    /// The spelling rules.
    public let options: Options

    /// A decoder with `options`.
    public init(options: Options = .init()) { self.options = options }

    /// Decodes `T` from `value`; `file` names the file in errors.
    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, file: String) throws -> T {
        try T(from: ValueDecoder(value: value, codingPath: [], file: file, options: options))
    }

    /// Foundation's snake_case to camelCase: `total_steps` -> `totalSteps`, leading/trailing underscores kept.
    static func camelCase(_ key: String) -> String {
        guard key.contains("_") else { return key }
        let leading = key.prefix { $0 == "_" }, trailing = key.reversed().prefix { $0 == "_" }
        let core = key.dropFirst(leading.count).dropLast(trailing.count)
        let words = core.split(separator: "_")
        guard let first = words.first else { return key }
        return String(leading) + first
            + words.dropFirst().map { $0.prefix(1).uppercased() + $0.dropFirst().lowercased() }.joined()
            + String(trailing)
    }

    static func path(_ p: [any CodingKey]) -> String {
        var s = ""
        for k in p {
            if let i = k.intValue { s += "[\(i)]" } else { s += (s.isEmpty ? "" : ".") + k.stringValue }
        }
        return s
    }

    struct Index: CodingKey {
        let intValue: Int?
        var stringValue: String { "\(intValue!)" }
        init(_ i: Int) { intValue = i }
        init?(intValue: Int) { self.intValue = intValue }
        init?(stringValue: String) { nil }
    }

    struct ValueDecoder: Decoder, SingleValueDecodingContainer {
        let value: JSONValue
        let codingPath: [any CodingKey]
        let file: String
        let options: Options
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func fail(_ reason: String) -> JSONFieldError {
            JSONFieldError(file: file, field: JSONValueDecoder.path(codingPath), reason)
        }
        func mismatch(_ expected: String) -> JSONFieldError { fail("expected \(expected), got \(value.summary)") }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let members) = value else { throw mismatch("an object") }
            var byKey: [String: JSONValue] = [:]
            for (k, v) in members { byKey[options.convertFromSnakeCase ? JSONValueDecoder.camelCase(k) : k] = v }
            return KeyedDecodingContainer(Keyed<Key>(members: byKey, decoder: self))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let items) = value else { throw mismatch("an array") }
            return Unkeyed(items: items, decoder: self)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

        func child(_ v: JSONValue, _ key: any CodingKey) -> ValueDecoder {
            ValueDecoder(value: v, codingPath: codingPath + [key], file: file, options: options)
        }

        func decodeNil() -> Bool { value.isNull }
        func decode(_ type: Bool.Type) throws -> Bool {
            guard case .bool(let b) = value else { throw mismatch("a boolean") }
            return b
        }
        func decode(_ type: String.Type) throws -> String {
            guard case .string(let s) = value else { throw mismatch("a string") }
            return s
        }
        func decode(_ type: Double.Type) throws -> Double {
            if case .number(let n) = value { return n.double }
            if case .string(let s) = value, let names = options.nonFiniteStrings {
                if s == names.positiveInfinity { return .infinity }
                if s == names.negativeInfinity { return -.infinity }
                if s == names.nan { return .nan }
            }
            throw mismatch("a number")
        }
        func decode(_ type: Float.Type) throws -> Float {
            let d = try decode(Double.self)
            guard !d.isFinite || Float(d).isFinite else {
                throw fail("\(value.summary) is out of range for a 32-bit float")
            }
            return Float(d)
        }
        func integer<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
            guard case .number(let n) = value, n.isIntegerLiteral else { throw mismatch("an integer") }
            guard let v = I(n.text) else { throw fail("\(n.text) is out of range for \(I.self)") }
            return v
        }
        func decode(_ type: Int.Type) throws -> Int { try integer(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let members: [String: JSONValue]
        let decoder: ValueDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }
        var allKeys: [Key] { members.keys.compactMap { Key(stringValue: $0) } }

        func contains(_ key: Key) -> Bool { members[key.stringValue] != nil }
        func value(_ key: Key) throws -> ValueDecoder {
            guard let v = members[key.stringValue] else {
                throw JSONFieldError(file: decoder.file, field: JSONValueDecoder.path(codingPath + [key]), "missing")
            }
            return decoder.child(v, key)
        }
        func decodeNil(forKey key: Key) throws -> Bool { try value(key).decodeNil() }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try value(key).decode(type) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try value(key).decode(type) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try value(key).decode(type) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try value(key).decode(type) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try value(key).decode(type) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try value(key).decode(type) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try value(key).decode(type) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try value(key).decode(type) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try value(key).decode(type) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try value(key).decode(type) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try value(key).decode(type) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try value(key).decode(type) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try value(key).decode(type) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try value(key).decode(type) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try T(from: value(key)) }
        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            try value(key).container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try value(key).unkeyedContainer()
        }
        func superDecoder() throws -> any Decoder { decoder }
        func superDecoder(forKey key: Key) throws -> any Decoder { try value(key) }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let items: [JSONValue]
        let decoder: ValueDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }
        var count: Int? { items.count }
        var isAtEnd: Bool { currentIndex >= items.count }
        var currentIndex = 0

        init(items: [JSONValue], decoder: ValueDecoder) {
            self.items = items
            self.decoder = decoder
        }

        mutating func next() throws -> ValueDecoder {
            guard !isAtEnd else {
                throw JSONFieldError(
                    file: decoder.file, field: JSONValueDecoder.path(codingPath),
                    "expected more than \(items.count) elements")
            }
            defer { currentIndex += 1 }
            return decoder.child(items[currentIndex], Index(currentIndex))
        }
        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, items[currentIndex].isNull else { return false }
            currentIndex += 1
            return true
        }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: next()) }
        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { try next() }
    }
}

/// JSON string escapes, decoded in one place for every JSON reader (`StrictJSON` and the JSONL scanner).
public enum JSONEscape {
    /// Why a `\u` escape is refused.
    public enum Problem: Sendable, CustomStringConvertible {
        /// Fewer than four hex digits.
        case badHex
        /// A high surrogate without a low one after it, or a low one on its own.
        case loneSurrogate

        /// The reason, for messages.
        public var description: String {
            switch self {
            case .badHex: return "invalid \\u escape (needs 4 hex digits)"
            case .loneSurrogate: return "lone UTF-16 surrogate in a \\u escape"
            }
        }
    }

    /// A decoded `\u` escape: the scalar value and the offset after the escape (and its low surrogate), or why not.
    public enum Decoded: Sendable {
        /// The scalar and where the input continues.
        case scalar(UInt32, next: Int)
        /// Why the escape is refused.
        case failure(Problem)
    }

    /// The byte a one-character escape (backslash then one of `"\/bfnrt`) stands for, or nil for `u` and
    /// anything else.
    @inlinable
    public static func simple(_ e: UInt8) -> UInt8? {
        switch e {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): return e
        case UInt8(ascii: "b"): return 0x08
        case UInt8(ascii: "f"): return 0x0C
        case UInt8(ascii: "n"): return 0x0A
        case UInt8(ascii: "r"): return 0x0D
        case UInt8(ascii: "t"): return 0x09
        default: return nil
        }
    }

    /// The value of an ASCII hex digit, or nil.
    @inlinable
    public static func hexValue(_ c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return UInt32(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return UInt32(c - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return UInt32(c - UInt8(ascii: "A") + 10)
        default: return nil
        }
    }

    /// The four hex digits at `b[at..<at+4]` as a number, or nil when there are not four.
    @inlinable
    public static func hex4(_ b: UnsafeBufferPointer<UInt8>, at: Int) -> UInt32? {
        guard at >= 0, at + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let d = hexValue(b[at + k]) else { return nil }
            v = v << 4 | d
        }
        return v
    }

    /// Decodes the escape `\uXXXX` whose backslash is at `b[at]`, joining a surrogate pair written as two escapes.
    @inlinable
    public static func unicode(_ b: UnsafeBufferPointer<UInt8>, at: Int) -> Decoded {
        guard var v = hex4(b, at: at + 2) else { return .failure(.badHex) }
        var next = at + 6
        if v >= 0xD800 && v < 0xDC00 {
            guard next + 6 <= b.count, b[next] == UInt8(ascii: "\\"), b[next + 1] == UInt8(ascii: "u"),
                let low = hex4(b, at: next + 2), low >= 0xDC00 && low < 0xE000
            else { return .failure(.loneSurrogate) }
            v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
            next += 6
        } else if v >= 0xDC00 && v < 0xE000 {
            return .failure(.loneSurrogate)
        }
        return .scalar(v, next: next)
    }

    /// Appends the UTF-8 encoding of scalar value `v` (a valid scalar: not a surrogate, at most 0x10FFFF).
    @inlinable
    public static func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
        switch v {
        case 0..<0x80: out.append(UInt8(v))
        case 0x80..<0x800:
            out.append(UInt8(0xC0 | v >> 6))
            out.append(UInt8(0x80 | v & 0x3F))
        case 0x800..<0x10000:
            out.append(UInt8(0xE0 | v >> 12))
            out.append(UInt8(0x80 | v >> 6 & 0x3F))
            out.append(UInt8(0x80 | v & 0x3F))
        default:
            out.append(UInt8(0xF0 | v >> 18))
            out.append(UInt8(0x80 | v >> 12 & 0x3F))
            out.append(UInt8(0x80 | v >> 6 & 0x3F))
            out.append(UInt8(0x80 | v & 0x3F))
        }
    }

    /// The length of the valid UTF-8 sequence at `b[at]` (not reaching `end`), or 0 when it is invalid.
    public static func validUTF8Length(_ b: UnsafeBufferPointer<UInt8>, at: Int, end: Int) -> Int {
        let c = b[at]
        if c < 0x80 { return 1 }
        func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            at + k < end && b[at + k] >= lo && b[at + k] <= hi
        }
        switch c {
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0
        case 0xE1...0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0
        default: return 0
        }
    }
}
