import Foundation
import Support
import Testing

/// The one JSON string writer (manifests, safetensors headers, demo files, TOML configs).
@Suite struct JSONStringTests {
    @Test func everyScalarRoundTripsThroughAJSONParser() throws {
        var scalars: [Unicode.Scalar] = (0..<0x80).compactMap(Unicode.Scalar.init)
        scalars += ["\u{85}", "\u{2028}", "\u{2029}", "é", "漢", "😀"]
        let text = String(String.UnicodeScalarView(scalars))
        let literal = jsonStringLiteral(text)
        #expect(!literal.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        let parsed = try JSONSerialization.jsonObject(with: Data(("[" + literal + "]").utf8)) as? [String]
        #expect(parsed == [text])
        #expect(jsonStringLiteral("a\"b\\c\nd") == #""a\"b\\c\nd""#)
    }
}
