import Foundation
import Format
import Support
import Testing

/// The one strict reader for JSON files oreo does not write itself.
@Suite struct StrictJSONTests {
    static func parse(_ text: String) throws(JSONSyntaxError) -> JSONValue {
        try StrictJSON.parse(Array(text.utf8), file: "t.json")
    }

    @Test func readsValuesInOrder() throws {
        let v = try Self.parse(
            #" {"a": [1, -2.5e1, true, false, null], "b": {"c": "d\u00e9\ud83d\ude00\n"}, "n": 12345678901234567890} "#)
        let a = try #require(v["a"]?.array)
        #expect(a.count == 5 && a[2] == .bool(true) && a[3] == .bool(false) && a[4] == .null)
        #expect(a[0].number?.text == "1" && a[0].double == 1 && a[0].number?.isIntegerLiteral == true)
        #expect(a[1].number?.text == "-2.5e1" && a[1].double == -25 && a[1].number?.isIntegerLiteral == false)
        #expect(v["b"]?["c"]?.string == "dé😀\n")
        #expect(v.members?.map(\.key) == ["a", "b", "n"])
        #expect(v["a"]?.array?[0].int == 1 && v["a"]?.array?[1].int == nil)
        // An integer literal beyond Int is still a finite number, just not an Int.
        #expect(v["n"]?.int == nil && v["n"]?.double == 12345678901234567890)
    }

    @Test(
        "each hostile input is refused with its byte offset, line, column and reason",
        arguments: [
            ("{\"a\": NaN}", 6, "NaN"),
            ("[Infinity]", 1, "Infinity"),
            ("[-Infinity]", 1, "Infinity"),
            ("{\"x\": 1e999}", 6, "out of range"),
            ("[-1e400]", 1, "out of range"),
            ("{\"a\": 1, \"a\": 2}", 9, "duplicate key \"a\""),
            ("[\"\\ud800\"]", 2, "lone UTF-16 surrogate"),
            ("[\"\\udc00x\"]", 2, "lone UTF-16 surrogate"),
            ("[\"a\tb\"]", 3, "control character"),
            ("{\"a\": 1} x", 9, "after the JSON value"),
            ("{\"a\": 1", 7, "unterminated object"),
            ("[01]", 2, "leading zero"),
            ("[1.]", 3, "digit after '.'"),
            ("[\"\\x\"]", 2, "invalid escape"),
            ("[\"\\u12\"]", 2, "4 hex digits"),
            ("{\n  \"a\": tru\n}", 9, "expected 'true'"),
        ])
    func refusals(text: String, offset: Int, reason: String) {
        do {
            _ = try Self.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.offset == offset, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
            #expect(error.description.hasPrefix("t.json: invalid JSON at byte \(offset) (line "), "\(error)")
        }
        // Checking without building refuses the same input with the same error.
        let e = Self.validationError(text)
        #expect(e?.offset == offset && e?.reason.contains(reason) == true, "\(String(describing: e))")
    }

    @Test func validateAcceptsWhatParseAccepts() throws {
        let text = #" {"a": [1, -2.5e1, true, false, null, {"k": [[]]}], "b": {"c": "d\u00e9\ud83d\ude00\n"}} "#
        _ = try Self.parse(text)
        #expect(Self.validationError(text) == nil)
    }

    /// `StrictJSON.parse(deferring:)` of `text`, with the deferred elements parsed one by one from their offsets.
    static func parseDeferring(_ text: String, _ key: String) -> Result<(JSONValue, [JSONValue]?), JSONSyntaxError> {
        Array(text.utf8).withUnsafeBytes { raw in
            do {
                let (v, starts) = try StrictJSON.parse(raw, file: "t.json", deferring: key)
                let items = try starts?.map { try StrictJSON.parseValue(raw, at: Int($0), file: "t.json") }
                return .success((v, items))
            } catch { return .failure(error as! JSONSyntaxError) }
        }
    }

    @Test func aDeferredArrayIsCheckedButBuiltOnlyElementByElement() throws {
        let text = #"{"a": 1, "list": [ {"x": [1, {"y": null}]} , "s",3 ], "b": {"list": [9]}}"#
        let (v, items) = try Self.parseDeferring(text, "list").get()
        let full = try Self.parse(text)
        // Only the top-level key's array is left out; the same name deeper down is built.
        #expect(v["list"] == .array([]) && v["b"] == full["b"] && v["a"] == full["a"])
        #expect(items == full["list"]?.array)
        let (_, none) = try Self.parseDeferring(#"{"list": 5}"#, "list").get()
        #expect(none == nil)
        let (_, empty) = try Self.parseDeferring(#"{"list": []}"#, "list").get()
        #expect(empty == [])
        // What is wrong inside the deferred array is found when the file is read, at its byte.
        for (bad, offset) in [(#"{"list": [1, {"k": 1, "k": 2}]}"#, 22), (#"{"list": [1, NaN]}"#, 13)] {
            guard case .failure(let e) = Self.parseDeferring(bad, "list") else {
                Issue.record("accepted \(bad)")
                continue
            }
            #expect(e.offset == offset, "\(bad): \(e)")
        }
    }

    /// What `StrictJSON.validate` refuses `text` with (nil when it accepts it).
    static func validationError(_ text: String) -> JSONSyntaxError? {
        Array(text.utf8).withUnsafeBytes { raw -> JSONSyntaxError? in
            do {
                try StrictJSON.validate(raw, file: "t.json")
                return nil
            } catch { return error as? JSONSyntaxError }
        }
    }

    @Test func linesAndColumnsCountFromOne() {
        #expect { _ = try Self.parse("{\n  \"a\": tru\n}") } throws: { e in
            guard let e = e as? JSONSyntaxError else { return false }
            return (e.file, e.offset, e.line, e.column, e.reason) == (
                "t.json", 9, 2, 8, "invalid literal, expected 'true'"
            )
        }
    }

    @Test func invalidUTF8IsFoundAtItsByte() {
        for (bytes, at) in [
            ([0x22, 0x61, 0xC3, 0x22], 2), ([0x22, 0x5C, 0x6E, 0xED, 0xA0, 0x80, 0x22], 3),
            ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1),
        ] as [([UInt8], Int)] {
            #expect { _ = try StrictJSON.parse(bytes, file: "u.json") } throws: { e in
                guard let e = e as? JSONSyntaxError else { return false }
                return e.offset == at && e.reason.contains("UTF-8")
            }
        }
    }

    @Test func nestingIsBounded() throws {
        let deep =
            String(repeating: "[", count: StrictJSON.defaultMaxDepth + 1)
            + String(repeating: "]", count: StrictJSON.defaultMaxDepth + 1)
        #expect(throws: JSONSyntaxError.self) { _ = try Self.parse(deep) }
        let ok =
            String(repeating: "[", count: StrictJSON.defaultMaxDepth)
            + String(repeating: "]", count: StrictJSON.defaultMaxDepth)
        _ = try Self.parse(ok)
        // Huge objects check duplicates with a set, found wherever they are.
        let many = "{" + (0..<1000).map { "\"k\($0)\": \($0)" }.joined(separator: ",") + ", \"k500\": 0}"
        #expect { _ = try Self.parse(many) } throws: {
            ($0 as? JSONSyntaxError)?.reason.contains("duplicate key \"k500\"") == true
        }
    }

    /// Structure errors after a clean parse name the file and the field, never Foundation's wording.
    @Test func decodeNamesTheField() throws {
        struct Inner: Decodable { var width: Int }
        struct Doc: Decodable {
            var name: String
            var inner: Inner
        }
        func message(_ text: String) -> String {
            do {
                _ = try StrictJSON.decode(Doc.self, from: Data(text.utf8), file: "d.json")
                return ""
            } catch { return "\(error)" }
        }
        #expect(
            message(#"{"name": "x", "inner": {"width": "wide"}}"#).hasPrefix(
                #"d.json: field "inner.width": expected an integer"#))
        #expect(message(#"{"name": "x"}"#) == #"d.json: field "inner": missing"#)
        #expect(
            message(#"{"name": "x", "inner": {"width": 1}, "name": "y"}"#).hasPrefix(
                "d.json: invalid JSON at byte 37 (line 1, column 38): duplicate key"))
        for m in [message(#"{"name": 1}"#), message("{")] { #expect(!m.contains("Error Domain") && !m.isEmpty, "\(m)") }
    }

    @Test func escapeHelperDecodesPairsAndRefusesLoneHalves() {
        func decode(_ s: String) -> JSONEscape.Decoded {
            Array(s.utf8).withUnsafeBufferPointer { JSONEscape.unicode($0, at: 0) }
        }
        guard case .scalar(0x1F600, 12) = decode(#"\ud83d\ude00"#) else {
            Issue.record("pair")
            return
        }
        guard case .scalar(0xE9, 6) = decode(#"\u00E9"#) else {
            Issue.record("BMP")
            return
        }
        guard case .failure(.loneSurrogate) = decode(#"\ud83dx"#) else {
            Issue.record("lone high")
            return
        }
        guard case .failure(.badHex) = decode(#"\u00g0"#) else {
            Issue.record("hex")
            return
        }
        var out: [UInt8] = []
        for v: UInt32 in [0x24, 0xA2, 0x20AC, 0x10348] { JSONEscape.appendUTF8(v, to: &out) }
        #expect(out == Array("$¢€𐍈".utf8))
    }
}

/// Manifests are oreo's own files, but a dataset can come from anywhere: the strict reader sees them first.
@Suite struct ManifestSyntaxTests {
    @Test func syntaxErrorsGiveThePosition() throws {
        let dir = NSTemporaryDirectory() + "oreo-manifest-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("{\n \"format\": \"oreo.dataset\",\n \"format\": 1}".utf8).write(
            to: URL(fileURLWithPath: dir + "/manifest.json"))
        #expect { _ = try Manifest.read(directory: dir) } throws: { e in
            "\(e)" == "\(dir)/manifest.json at offset 30: not valid JSON (line 3, column 2): duplicate key \"format\""
        }
    }
}
