import Foundation
import Testing
import Ingest

@Suite struct JSONScannerTests {
    static func parse(_ s: String) -> JSONScanner.Failure? {
        var scanner = JSONScanner()
        var bytes = Array(s.utf8)
        return bytes.withUnsafeMutableBufferPointer { b -> JSONScanner.Failure? in
            do {
                _ = try scanner.parse(UnsafeBufferPointer(b))
                return nil
            } catch { return error as? JSONScanner.Failure }
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
        for bad: [UInt8] in [
            [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],
            [0x22, 0xE2, 0x82, 0x22], [0x22, 0xFF, 0x22],
        ] {
            let f = bad.withUnsafeBufferPointer { b in (try? scanner.parse(b)) == nil }
            #expect(f, "\(bad) accepted")
        }
        let deep = Array((String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8)
        #expect(deep.withUnsafeBufferPointer { (try? scanner.parse($0)) == nil })
    }

    @Test func decodesStringsNumbersAndMembers() throws {
        var scanner = JSONScanner()
        let line = Array(
            #"{"p": "a\tb\u00e9\ud83d\ude00", "q": "plain", "n": -12, "x": 1.5e2, "big": 99999999999999999999, "p": "last"}"#
                .utf8)
        try line.withUnsafeBufferPointer { b in
            let root = try scanner.parse(b)
            var scratch: [UInt8] = []
            #expect(
                try scanner.withText(scanner.member(root, "q")!, in: b, scratch: &scratch) { Array($0) }
                    == Array("plain".utf8))
            #expect(
                try scanner.withText(scanner.member(root, "p")!, in: b, scratch: &scratch) { Array($0) }
                    == Array("last".utf8))
            let first = scanner.children(root)[1]
            #expect(
                try scanner.withText(first, in: b, scratch: &scratch) { Array($0) } == Array("a\tb\u{e9}\u{1F600}".utf8)
            )
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
        guard
            let python = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
                .map({ $0 + "/python3" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" { Issue.record("python3 not found") }
            return
        }
        var rng = SystemRandomNumberGenerator()
        let atoms = [
            "{", "}", "[", "]", ",", ":", "\"a\"", "\"\\n\"", "\"\\u0041\"", "1", "-0", "2.5", "1e3", "01",
            "true", "null", " ", "\"", "\\", "x", "\"\\ud800\"", "-", ".",
        ]
        var cases: [String] = []
        for _ in 0..<3000 {
            cases.append(
                (0..<Int.random(in: 1...8, using: &rng)).map { _ in atoms.randomElement(using: &rng)! }.joined())
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
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(
            separator: "\n")
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

@Suite struct JSONScannerFastPathTests {
    /// The bytes the block search stops at.
    static func special(_ c: UInt8) -> Bool { c == 0x22 || c == 0x5C || c < 0x20 }

    /// The block search against the byte rule: every byte value at every offset of a block and of the tail,
    /// then random buffers biased to the boundary values.
    @Test func blockSearchAgreesWithTheByteRule() {
        func check(_ bytes: [UInt8], from: Int) {
            let want =
                bytes.indices.dropFirst(from).first { JSONScannerFastPathTests.special(bytes[$0]) } ?? bytes.count
            let highBefore = bytes[from..<want].contains { $0 >= 0x80 }
            let (got, high) = bytes.withUnsafeBufferPointer { JSONScanner.nextSpecialByte($0, from: from) }
            #expect(got == want, "\(bytes) from \(from)")
            #expect(high || !highBefore, "a byte >= 0x80 before \(want) was missed in \(bytes)")
        }
        for position in 0..<40 {
            for c in 0...255 {
                var bytes = [UInt8](repeating: 0x61, count: 40)
                bytes[position] = UInt8(c)
                check(bytes, from: 0)
                check(bytes, from: min(position, 3))
            }
        }
        var state: UInt64 = 1
        let edges: [UInt8] = [0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xC3, 0xFF]
        for _ in 0..<20_000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(state % 50) {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let r = Int(truncatingIfNeeded: state >> 33)
                bytes.append(r % 12 == 0 ? edges[(r >> 4) % edges.count] : UInt8(0x20 + (r >> 4) % 0x5F))
            }
            check(bytes, from: bytes.isEmpty ? 0 : Int(state >> 40) % bytes.count)
        }
    }

    @Test func longStringsWithEscapesAndUTF8AtEveryAlignment() {
        var scanner = JSONScanner()
        for pad in 0..<17 {
            let text =
                String(repeating: "x", count: pad) + "caf\u{e9} \\\"q\\\" \u{1F600} end"
                + String(repeating: "y", count: 9)
            let line = Array("{\"k\":\"\(text)\"}".utf8)
            let ok = line.withUnsafeBufferPointer { b -> Bool in
                guard let root = try? scanner.parse(b), let v = scanner.member(root, "k") else { return false }
                var scratch: [UInt8] = []
                let got = try? scanner.withText(v, in: b, scratch: &scratch) { String(decoding: $0, as: UTF8.self) }
                return got == String(repeating: "x", count: pad) + "caf\u{e9} \"q\" \u{1F600} end"
                    + String(repeating: "y", count: 9)
            }
            #expect(ok, "pad \(pad)")
            let bad = Array("\"\(String(repeating: "z", count: pad))\u{01}\"".utf8)
            #expect(bad.withUnsafeBufferPointer { (try? scanner.parse($0)) == nil }, "control byte after \(pad) bytes")
        }
    }
}
