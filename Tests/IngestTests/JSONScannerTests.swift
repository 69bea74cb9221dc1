import Foundation
import Testing
import Ingest

@Suite struct JSONScannerTests {
    static func parse(_ s: String) -> JSONScanner.Failure? {
        var scanner = JSONScanner()
        var bytes = Array(s.utf8)
        return bytes.withUnsafeMutableBufferPointer { b -> JSONScanner.Failure? in
            do { _ = try scanner.parse(UnsafeBufferPointer(b)); return nil } catch { return error as? JSONScanner.Failure }
        }
    }

    @Test(arguments: [
        #"{}"#, #"[]"#, #" {"a": [1, -2.5e+3, 0, true, false, null, "x"]} "#, #"{"a":{"b":{"c":[[]]}}}"#,
        #""\u00e9\ud83d\ude00\n\"\\\/""#, #"-0.0E-0"#, "\"caf\u{e9} \u{1F600} \u{0E01}\"", #"{"a":1,"a":2}"#,
    ])
    func acceptsValidJSON(_ s: String) { #expect(JSONScannerTests.parse(s) == nil, "\(s)") }

    @Test(arguments: [
        (#"{"a":1,}"#, "expected a string key"), (#"[1,2"#, "unterminated array"), (#"{"a" 1}"#, "expected ':'"),
        (#"01"#, "leading zero"), (#"1."#, "after '.'"), (#"1e"#, "exponent"), (#"-"#, "expected a digit"),
        (#""\x""#, "invalid escape"), (#""\u12g4""#, "4 hex digits"), ("\"a\u{01}b\"", "control character"),
        (#"tru"#, "expected 'true'"), (#"{} x"#, "after the JSON value"), (#""abc"#, "unterminated string"),
        (#"[1 2]"#, "expected ','"), ("", "unexpected end"), (#"NaN"#, "unexpected character"),
    ])
    func refusesInvalidJSONWithAReason(_ s: String, _ reason: String) {
        let f = JSONScannerTests.parse(s)
        #expect(f?.reason.contains(reason) == true, "\(s): \(f?.reason ?? "accepted")")
    }

    @Test func refusesInvalidUTF8AndDeepNesting() {
        var scanner = JSONScanner()
        for bad: [UInt8] in [[0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
                             [0x22, 0xE2, 0x82, 0x22], [0x22, 0xFF, 0x22]] {
            let f = bad.withUnsafeBufferPointer { b in (try? scanner.parse(b)) == nil }
            #expect(f, "\(bad) accepted")
        }
        let deep = Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)
        #expect(deep.withUnsafeBufferPointer { (try? scanner.parse($0)) == nil })
    }

    @Test func decodesStringsNumbersAndMembers() throws {
        var scanner = JSONScanner()
        let line = Array(#"{"p": "a\tb\u00e9\ud83d\ude00", "q": "plain", "n": -12, "x": 1.5e2, "big": 99999999999999999999, "p": "last"}"#.utf8)
        try line.withUnsafeBufferPointer { b in
            let root = try scanner.parse(b)
            var scratch: [UInt8] = []
            #expect(try scanner.withText(scanner.member(root, "q")!, in: b, scratch: &scratch) { Array($0) } == Array("plain".utf8))
            #expect(try scanner.withText(scanner.member(root, "p")!, in: b, scratch: &scratch) { Array($0) } == Array("last".utf8))
            let first = scanner.children(root)[1]
            #expect(try scanner.withText(first, in: b, scratch: &scratch) { Array($0) } == Array("a\tb\u{e9}\u{1F600}".utf8))
            #expect(scanner.integer(scanner.member(root, "n")!, in: b) == -12)
            #expect(scanner.integer(scanner.member(root, "x")!, in: b) == nil)
            #expect(scanner.double(scanner.member(root, "x")!, in: b) == 150)
            #expect(scanner.integer(scanner.member(root, "big")!, in: b) == nil)
            #expect(scanner.member(root, "missing") == nil)
        }
        let lone = Array(#""\ud83d x""#.utf8)
        #expect(throws: JSONScanner.Failure.self) {
            try lone.withUnsafeBufferPointer { b in
                let r = try scanner.parse(b)
                var scratch: [UInt8] = []
                _ = try scanner.withText(r, in: b, scratch: &scratch) { $0.count }
            }
        }
    }

    /// Differential check against Python's json module on random near-JSON strings, when python3 is present.
    @Test func agreesWithPythonOnRandomInputs() throws {
        guard let python = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
            .map({ $0 + "/python3" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" { Issue.record("python3 not found") }
            return
        }
        var rng = SystemRandomNumberGenerator()
        let atoms = ["{", "}", "[", "]", ",", ":", "\"a\"", "\"\\n\"", "\"\\u0041\"", "1", "-0", "2.5", "1e3", "01",
                     "true", "null", " ", "\"", "\\", "x", "\"\\ud800\"", "-", "."]
        var cases: [String] = []
        for _ in 0..<3000 {
            cases.append((0..<Int.random(in: 1...8, using: &rng)).map { _ in atoms.randomElement(using: &rng)! }.joined())
        }
        let dir = NSTemporaryDirectory() + "oreo-json-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try cases.joined(separator: "\n").write(toFile: dir + "/cases.txt", atomically: true, encoding: .utf8)
        // Python's parser accepts lone surrogates and NaN; compare only on inputs without those features.
        let script = """
        import json, sys
        for line in open(sys.argv[1], encoding='utf-8').read().split('\\n'):
            try:
                json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
                print('ok')
            except Exception:
                print('bad')
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, dir + "/cases.txt"]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        p.waitUntilExit()
        #expect(out.count == cases.count)
        var compared = 0
        for (c, verdict) in zip(cases, out) where !c.contains("\\ud800") {
            compared += 1
            #expect((JSONScannerTests.parse(c) == nil) == (verdict == "ok"), "disagree on \(c): python says \(verdict)")
        }
        #expect(compared > 2000)
    }
}
