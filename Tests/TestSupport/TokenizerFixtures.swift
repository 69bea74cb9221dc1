import Foundation
import Ingest
import Testing
import Tokenizers

/// Where the oracle script writes, and whether tests must fail without it.
public enum Fixtures {
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent()
        .appendingPathComponent("Fixtures/generated/tokenizers")
    public static let script = "scripts/oracles/gen_tokenizer_fixtures.py"
    public static var present: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("corpus.bin").path)
    }
    public static var required: Bool { ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" }
    /// Run when the fixtures exist, or when CI requires them (then their absence fails the test).
    public static var enabled: Bool { present || required }
    public static let missingMessage =
        "tokenizer fixtures missing: run python3 \(script) (see its header for pip packages)"

    /// False (after recording a failure) when the fixtures are absent.
    public static func check() -> Bool {
        if present { return true }
        Issue.record(Comment(rawValue: missingMessage))
        return false
    }

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The corpus cases as raw UTF-8 bytes.
    public static func corpus() throws -> [[UInt8]] {
        let data = try Data(contentsOf: directory.appendingPathComponent("corpus.bin"))
        var out: [[UInt8]] = []
        var i = 0
        let bytes = [UInt8](data)
        while i + 4 <= bytes.count {
            let n = Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24
            out.append(Array(bytes[(i + 4)..<(i + 4 + n)]))
            i += 4 + n
        }
        return out
    }

    /// Expected ids per case: plain, with the post-processor, with special tokens as text.
    public static func expected(_ name: String) throws -> [[[UInt32]]] {
        let text = try String(contentsOfFile: path("\(name).expected.txt"), encoding: .utf8)
        return text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
            line.split(separator: "\t", omittingEmptySubsequences: false).map { field in
                field.split(separator: " ").map { UInt32($0)! }
            }
        }
    }
}

/// Writes small tokenizer.json files for tests that need no fixtures.
public enum SyntheticTokenizer {
    public static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let llama3 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// GPT-2's byte -> character map, computed independently of the library.
    public static func byteString(_ b: UInt8) -> String {
        var next: UInt32 = 256
        for x in 0...255 {
            let printable = (0x21...0x7E).contains(x) || (0xA1...0xAC).contains(x) || (0xAE...0xFF).contains(x)
            if x == Int(b) { return String(Unicode.Scalar(printable ? UInt32(x) : next)!) }
            if !printable { next += 1 }
        }
        fatalError()
    }

    public static func split(_ pattern: String) -> [String: Any] {
        [
            "type": "Sequence",
            "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ],
        ]
    }

    /// A tokenizer.json over the 256 byte tokens plus `extra` merged tokens, with overrides applied.
    public static func json(
        preTokenizer: Any? = nil, merges: Any = [Any](), extra: [String] = [],
        edit: (inout [String: Any]) -> Void = { _ in }
    ) -> [String: Any] {
        var vocab: [String: Any] = [:]
        for b in 0...255 { vocab[byteString(UInt8(b))] = b }
        for (i, t) in extra.enumerated() { vocab[t] = 256 + i }
        var root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": [Any](),
            "normalizer": NSNull(),
            "pre_tokenizer": preTokenizer ?? split(gpt2),
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges,
            ],
        ]
        edit(&root)
        return root
    }

    /// Writes `root` to a fresh temporary file and returns its path.
    public static func write(_ root: [String: Any]) throws -> String {
        let url = URL(fileURLWithPath: makeTemporaryDirectory("tok")).appendingPathComponent("tokenizer.json")
        try JSONSerialization.data(withJSONObject: root).write(to: url)
        return url.path
    }

    public static func load(_ root: [String: Any]) throws -> Tokenizer { try Tokenizer.load(path: write(root)) }
}
