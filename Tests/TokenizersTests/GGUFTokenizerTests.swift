import Checkpoint
import Foundation
import Ingest
import TestSupport
import Testing
import Tokenizers

/// Tokenizers carried through GGUF metadata (`oreo convert`): the tokenizer.json rebuilt from SmolLM2's real GGUF,
/// and tokenizer.json -> GGUF -> tokenizer.json for each pre-tokenizer family, must encode id for id as HF.
@Suite("Tokenizers through GGUF", .enabled(if: Fixtures.enabled, Comment(rawValue: Fixtures.missingMessage)))
struct GGUFTokenizerTests {
    static func tempDir() -> String { makeTemporaryDirectory("ggtok") }

    /// Writes the vocabulary as tokenizer.json + tokenizer_config.json and checks every corpus case in all three
    /// modes against HF's ids for `expectedName`.
    static func checkParity(_ v: BPEVocabulary, expectedName: String, dir: String) throws -> Tokenizer {
        try v.tokenizerJSON().write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try v.tokenizerConfigJSON(maxLength: 8192).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        let tok = try Tokenizer.load(path: dir + "/tokenizer.json")
        let corpus = try Fixtures.corpus(), expected = try Fixtures.expected(expectedName)
        let modes = [
            EncodeOptions(), EncodeOptions(addSpecialTokens: true), EncodeOptions(recognizeSpecialTokens: false),
        ]
        for (m, options) in modes.enumerated() {
            var enc = tok.makeEncoder(options: options)
            var failures = 0
            for (i, text) in corpus.enumerated() {
                var ids: [UInt32] = []
                try enc.encode(bytes: text, into: &ids)
                if ids != expected[i][m] {
                    failures += 1
                    if failures <= 3 {
                        Issue.record("\(expectedName) mode \(m) case \(i): got \(ids), HF \(expected[i][m])")
                    }
                }
            }
            #expect(failures == 0, "\(expectedName) mode \(m): \(failures) of \(corpus.count) cases differ")
        }
        return tok
    }

    @Test func smolLM2TokenizerRebuiltFromItsGGUF() throws {
        guard Fixtures.check() else { return }
        let source = Fixtures.directory.deletingLastPathComponent().appendingPathComponent("smollm2/source.json")
        guard let s = try? JSONSerialization.jsonObject(with: Data(contentsOf: source)) as? [String: String],
            let path = s["gguf"], FileManager.default.fileExists(atPath: path)
        else {
            Issue.record("no SmolLM2 GGUF recorded in \(source.path): run scripts/oracles/gguf_reference.py")
            return
        }
        let v = try BPEVocabulary(gguf: try GGUFFile(path: path))
        #expect(v.tokens.count == 49152 && v.merges.count == 48900 && v.preTokenizer == "smollm")
        #expect(v.bos == 1 && v.eos == 2 && !v.addBOS && v.chatTemplate?.contains("<|im_start|>") == true)
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tok = try Self.checkParity(v, expectedName: "smollm2", dir: dir)
        #expect(tok.bosId == 1 && tok.eosId == 2 && tok.vocabSize == 49152)
    }

    @Test(arguments: ["smollm2", "gpt2split", "llama3", "cl100k"])
    func tokenizerJSONThroughGGUF(name: String) throws {
        guard Fixtures.check() else { return }
        let path = Fixtures.path("\(name).tokenizer.json")
        let v = try BPEVocabulary(tokenizerJSON: Data(contentsOf: URL(fileURLWithPath: path)), path: path)
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeGGUF(
            [], metadata: [("general.architecture", .string("llama"))] + v.ggufMetadata(), to: dir + "/t.gguf")
        let back = try BPEVocabulary(gguf: try GGUFFile(path: dir + "/t.gguf"))
        #expect(back == v)
        #expect(
            v.preTokenizer
                == ["smollm2": "smollm", "gpt2split": "gpt2", "llama3": "llama-bpe", "cl100k": "llama-bpe"][name])
        #expect(v.addBOS == (name != "smollm2"))
        _ = try Self.checkParity(back, expectedName: name, dir: dir)
    }

    @Test func refusesWhatGGUFCannotExpress() throws {
        guard Fixtures.check() else { return }
        let path = Fixtures.path("llama3.tokenizer.json")
        var root =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        root["normalizer"] = ["type": "NFKC"]
        do {
            _ = try BPEVocabulary(tokenizerJSON: JSONSerialization.data(withJSONObject: root), path: "edited.json")
            Issue.record("accepted an NFKC normalizer")
        } catch { #expect("\(error)".contains("edited.json") && "\(error)".contains("pre_tokenizer")) }
        var model = root["model"] as! [String: Any]
        model["type"] = "WordPiece"
        root["model"] = model
        #expect(throws: TokenizerFileError.self) {
            try BPEVocabulary(tokenizerJSON: JSONSerialization.data(withJSONObject: root), path: "wp.json")
        }
        // GGUF side: an unknown pre-tokenizer and mismatched token types are named
        let dir = Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base: [(String, GGUFMetadataValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", .stringArray(["a", "b"])),
            ("tokenizer.ggml.merges", .stringArray(["a b"])),
        ]
        try writeGGUF([], metadata: base + [("tokenizer.ggml.pre", .string("deepseek-llm"))], to: dir + "/pre.gguf")
        #expect { try BPEVocabulary(gguf: GGUFFile(path: dir + "/pre.gguf")) } throws: {
            "\($0)".contains("deepseek-llm")
        }
        try writeGGUF([], metadata: base + [("tokenizer.ggml.token_type", .int32Array([1]))], to: dir + "/types.gguf")
        #expect { try BPEVocabulary(gguf: GGUFFile(path: dir + "/types.gguf")) } throws: {
            "\($0)".contains("token types")
        }
        try writeGGUF(
            [],
            metadata: [
                ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.tokens", .stringArray(["a", "a"])),
                ("tokenizer.ggml.merges", .stringArray([])),
            ], to: dir + "/dup.gguf")
        #expect { try BPEVocabulary(gguf: GGUFFile(path: dir + "/dup.gguf")) } throws: { "\($0)".contains("repeats") }
    }
}
