import Foundation
import Ingest
import TestSupport
import Testing
import Tokenizers

/// Behaviour derived from the regexes and the tokenizer.json format; needs no fixtures.
@Suite("Tokenizer units")
struct TokenizerUnitTests {
    static func pieces(_ tokenizer: Tokenizer, _ text: String) -> [String] {
        tokenizer.preTokenize(text).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test("byte map: printable bytes stand for themselves, space is Ġ, newline is Ċ")
    func byteMap() throws {
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json())
        #expect(SyntheticTokenizer.byteString(0x20) == "Ġ" && SyntheticTokenizer.byteString(0x0A) == "Ċ")
        // With no merges every byte is its own token, and ids were assigned in byte order.
        #expect(t.encode("A b\n") == [0x41, 0x20, 0x62, 0x0A])
        #expect(try t.decode((0...255).map(UInt32.init)) == (0...255).map(UInt8.init))
    }

    @Test("GPT-2 splits: contractions case-sensitive, last space goes to the next word")
    func gpt2Splits() throws {
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json(preTokenizer: SyntheticTokenizer.split(SyntheticTokenizer.gpt2)))
        #expect(Self.pieces(t, "I'm DON'T") == ["I", "'m", " DON", "'", "T"])
        #expect(Self.pieces(t, "a   b") == ["a", "  ", " b"])
        #expect(Self.pieces(t, "a  ") == ["a", "  "])
        #expect(Self.pieces(t, "x\tb") == ["x", "\t", "b"])
        #expect(Self.pieces(t, "12345 678") == ["12345", " 678"])
        #expect(Self.pieces(t, "٣٤ x") == ["٣٤", " x"])  // \p{N} is not only ASCII
        #expect(Self.pieces(t, "a\u{85}\u{85}b") == ["a", "\u{85}", "\u{85}", "b"])  // U+0085 is \s
        #expect(Self.pieces(t, "e\u{301}!? ok") == ["e", "\u{301}!?", " ok"])
    }

    @Test("Llama-3 splits: case-insensitive contractions, 3-digit groups, newline runs")
    func llama3Splits() throws {
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json(preTokenizer: SyntheticTokenizer.split(SyntheticTokenizer.llama3)))
        #expect(Self.pieces(t, "DON'T it'S we'Ve") == ["DON", "'T", " it", "'S", " we", "'Ve"])
        #expect(Self.pieces(t, "it’s") == ["it", "’s"])  // only the ASCII apostrophe makes a contraction
        #expect(Self.pieces(t, "1234567") == ["123", "456", "7"])
        #expect(Self.pieces(t, "a\n\n  b") == ["a", "\n\n", " ", " b"])
        #expect(Self.pieces(t, "a\r\nb") == ["a", "\r\n", "b"])
        #expect(Self.pieces(t, "x.\n\ny") == ["x", ".\n\n", "y"])
        #expect(Self.pieces(t, "\thello $x$y") == ["\thello", " $", "x", "$y"])
        #expect(Self.pieces(t, "a\u{85}b") == ["a", "\u{85}b"])
        #expect(Self.pieces(t, "'ſ") == ["'ſ"])  // Oniguruma case folding: ſ matches s
    }

    @Test("Qwen2 splits single digits")
    func qwen2Splits() throws {
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json(preTokenizer: SyntheticTokenizer.split(SyntheticTokenizer.qwen2)))
        #expect(Self.pieces(t, "x2024") == ["x", "2", "0", "2", "4"])
    }

    @Test("Digits then ByteLevel(use_regex) as SmolLM2 configures it")
    func digitsSequence() throws {
        let pre: [String: Any] = [
            "type": "Sequence",
            "pretokenizers": [
                ["type": "Digits", "individual_digits": true],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            ],
        ]
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json(preTokenizer: pre))
        #expect(Self.pieces(t, "ab 12c") == ["ab", " ", "1", "2", "c"])
    }

    @Test("merges parse in both formats and lowest rank wins", arguments: [false, true])
    func mergesFormats(pairs: Bool) throws {
        let list: [(String, String)] = [("a", "b"), ("b", "c"), ("ab", "c")]
        let merges: [Any] = pairs ? list.map { [$0.0, $0.1] } : list.map { "\($0.0) \($0.1)" }
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json(merges: merges, extra: ["ab", "bc", "abc"]))
        #expect(t.encode("abc") == [258])  // ab (rank 0) first, then ab+c
        #expect(t.encode("bc") == [257])
        #expect(t.encode("xbc") == [0x78, 257])
    }

    @Test("ignore_merges emits a whole-vocabulary piece that merges cannot reach")
    func ignoreMerges() throws {
        for ignore in [false, true] {
            let t = try SyntheticTokenizer.load(
                SyntheticTokenizer.json(extra: ["abc"]) { root in
                    var model = root["model"] as! [String: Any]
                    model["ignore_merges"] = ignore
                    root["model"] = model
                })
            #expect(t.encode("abc") == (ignore ? [256] : [0x61, 0x62, 0x63]))
        }
    }

    @Test("special tokens: literal or recognized, template BOS, ids above 65535")
    func specialTokens() throws {
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json { root in
                root["added_tokens"] = [
                    [
                        "id": 70_000, "content": "<|eot|>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true,
                    ],
                    [
                        "id": 70_001, "content": "<|bos|>", "single_word": false, "lstrip": false, "rstrip": false,
                        "normalized": false, "special": true,
                    ],
                ]
                root["post_processor"] = [
                    "type": "TemplateProcessing",
                    "single": [
                        ["SpecialToken": ["id": "<|bos|>", "type_id": 0]],
                        ["Sequence": ["id": "A", "type_id": 0]],
                    ],
                    "pair": [Any](),
                    "special_tokens": ["<|bos|>": ["id": "<|bos|>", "ids": [70_001], "tokens": ["<|bos|>"]]],
                ]
            })
        #expect(t.encode("a<|eot|>") == [0x61, 70_000])
        #expect(t.encode("a<|eot|>", options: EncodeOptions(recognizeSpecialTokens: false)).count == 8)
        #expect(t.encode("a", options: EncodeOptions(addSpecialTokens: true)) == [70_001, 0x61])
        #expect(t.bosId == 70_001)
        #expect(t.vocabSize == 70_002)
        #expect(try t.decode([70_001, 0x61]) == Array("<|bos|>a".utf8))
        #expect(try t.decode([70_001, 0x61], skipSpecialTokens: true) == [0x61])
        #expect(throws: TokenizerError.self) { try t.decode([300]) }
    }

    @Test("added-token flags: lstrip and rstrip take whitespace, single_word needs non-word neighbours")
    func addedTokenFlags() throws {
        func token(_ id: Int, _ content: String, lstrip: Bool = false, rstrip: Bool = false, single: Bool = false)
            -> [String: Any]
        {
            [
                "id": id, "content": content, "single_word": single, "lstrip": lstrip, "rstrip": rstrip,
                "normalized": false, "special": false,
            ]
        }
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json { root in
                root["added_tokens"] = [
                    token(300, "<L>", lstrip: true), token(301, "<R>", rstrip: true),
                    token(302, "<W>", single: true),
                ]
            })
        #expect(t.encode("a  <L>b") == [0x61, 300, 0x62])  // the spaces before <L> vanish
        #expect(t.encode("a<R> \n b") == [0x61, 301, 0x62])  // all whitespace after <R> vanishes
        #expect(t.encode("a <W> b") == [0x61, 0x20, 302, 0x20, 0x62])
        #expect(t.encode("a<W>b").count == 5)  // glued to word characters: plain text
        #expect(t.encode("é<W>") == [0xC3, 0xA9].map(UInt32.init) + [0x3C, 0x57, 0x3E])  // é is a word character
        #expect(t.encode("<L><L>") == [300, 300])
    }

    @Test("NFC applies, and may yield more ids than input bytes (U+0958 expands to two scalars)")
    func nfcExpansion() throws {
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json { root in root["normalizer"] = ["type": "NFC"] })
        #expect(t.encode("e\u{301}") == [0xC3, 0xA9])
        let text = String(repeating: "\u{958}", count: 3000)
        let nfc = String(repeating: "\u{915}\u{93C}", count: 3000)
        #expect(t.encode(text) == Array(nfc.utf8).map(UInt32.init))
        var encoder = t.makeEncoder()
        var ids: [UInt32] = [1, 2]
        encoder.encode(text, into: &ids)  // appends after what is there
        #expect(ids.count == 2 + nfc.utf8.count && ids.prefix(2) == [1, 2])
    }

    @Test("invalid UTF-8 is an error, and the output is left alone")
    func invalidUTF8() throws {
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json())
        var encoder = t.makeEncoder()
        var ids: [UInt32] = [7]
        #expect(throws: TokenizerError.self) { try encoder.encode(bytes: [0x61, 0xC3], into: &ids) }
        #expect(throws: TokenizerError.self) { try encoder.encode(bytes: [0xED, 0xA0, 0x80], into: &ids) }
        #expect(ids == [7])
    }

    @Test("invalid UTF-8 is found at the offset the standard library's decoder finds, in any block position")
    func utf8Offsets() throws {
        let t = try SyntheticTokenizer.load(SyntheticTokenizer.json())
        var encoder = t.makeEncoder()
        // Offset of the first ill-formed sequence by the standard library's parser, or nil.
        func reference(_ bytes: [UInt8]) -> Int? {
            var parser = Unicode.UTF8.ForwardParser()
            var it = bytes.makeIterator()
            var offset = 0
            while true {
                switch parser.parseScalar(from: &it) {
                case .valid(let s): offset += s.count
                case .emptyInput: return nil
                case .error: return offset
                }
            }
        }
        func found(_ bytes: [UInt8]) -> Int? {
            var ids: [UInt32] = []
            do {
                try encoder.encode(bytes: bytes, into: &ids)
                return nil
            } catch {
                guard case .invalidUTF8(let offset) = error.kind else { return -1 }
                return offset
            }
        }
        // Boundary scalars of every length, and ill-formed sequences of every kind.
        let valid: [[UInt8]] = [
            [0x61], [0x20], [0x7F], [0xC2, 0x80], [0xC3, 0xA9], [0xDF, 0xBF], [0xE0, 0xA0, 0x80],
            [0xE2, 0x82, 0xAC], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF],
            [0xF0, 0x90, 0x80, 0x80], [0xF0, 0x9F, 0x98, 0x80], [0xF3, 0xBF, 0xBF, 0xBF],
            [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        let invalid: [[UInt8]] = [
            [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC3], [0xC3, 0x41], [0xE0, 0x80, 0x80],
            [0xE0, 0x9F, 0xBF], [0xE2, 0x82], [0xE2, 0x41, 0x82], [0xED, 0xA0, 0x80],
            [0xED, 0xBF, 0xBF], [0xF0, 0x80, 0x80, 0x80], [0xF0, 0x8F, 0xBF, 0xBF],
            [0xF0, 0x9F, 0x98], [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xF8], [0xFF],
            [0xC3, 0xA9, 0xA9], [0xE2, 0x82, 0xAC, 0x80],
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33) % n
        }
        var checked = 0, errors = 0
        for _ in 0..<20000 {
            var bytes: [UInt8] = []
            let length = next(90)
            // Mostly ASCII with some multi-byte scalars, like real text; at most two bad sequences.
            var bad = next(3)
            while bytes.count < length {
                if bad > 0 && next(40) == 0 {
                    bytes += invalid[next(invalid.count)]
                    bad -= 1
                } else {
                    bytes += next(4) == 0 ? valid[next(valid.count)] : [UInt8(0x41 + next(26))]
                }
            }
            if next(8) == 0 && !bytes.isEmpty { bytes.removeLast(next(min(3, bytes.count)) + 1) }  // may cut a scalar
            let want = reference(bytes)
            #expect(found(bytes) == want, "\(bytes.map { String($0, radix: 16) })")
            checked += 1
            if want != nil { errors += 1 }
        }
        #expect(errors > 4000 && checked - errors > 4000)  // both outcomes well covered
    }

    @Test("long pieces merge the same with the heap as with the scan")
    func longPieces() throws {
        let list: [(String, String)] = [("a", "a"), ("aa", "aa"), ("a", "b"), ("aaaa", "ab")]
        let t = try SyntheticTokenizer.load(
            SyntheticTokenizer.json(
                merges: list.map { "\($0.0) \($0.1)" },
                extra: ["aa", "aaaa", "ab", "aaaaab"]))
        let vocab = ["aa": 256, "aaaa": 257, "ab": 258, "aaaaab": 259]
        for n in [5, 47, 48, 49, 200, 1001] {
            // Reference BPE written from the definition: lowest rank first, leftmost on ties.
            var parts = Array(repeating: "a", count: n) + ["b"]
            while true {
                var best: (rank: Int, at: Int)? = nil
                for i in 0..<(parts.count - 1) {
                    if let r = list.firstIndex(where: { $0 == (parts[i], parts[i + 1]) }), best == nil || r < best!.rank
                    {
                        best = (r, i)
                    }
                }
                guard let (_, at) = best else { break }
                parts[at] += parts[at + 1]
                parts.remove(at: at + 1)
            }
            let expected = parts.map { UInt32(vocab[$0] ?? Int($0.utf8.first!)) }
            #expect(t.encode(String(repeating: "a", count: n) + "b") == expected, "n = \(n)")
        }
    }

    @Test(
        "refused components name what is unsupported",
        arguments: [
            ("Metaspace", "pre_tokenizer"), ("WordPiece", "model"), ("regex", "Split regex"), ("NFKC", "normalizer"),
            ("prefix", "add_prefix_space"), ("truncation", "truncation"), ("bytes", "byte_fallback"),
            ("Roberta", "RobertaProcessing"), ("dropout", "dropout"), ("Whitespace", "Whitespace"),
            ("hugeId", "outside 0..<"), ("merge", "missing from the vocab"), ("Unigram", "Unigram"),
        ])
    func refusals(kind: String, mention: String) throws {
        let root = SyntheticTokenizer.json { root in
            var model = root["model"] as! [String: Any]
            switch kind {
            case "Metaspace":
                root["pre_tokenizer"] = ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"]
            case "WordPiece": model["type"] = "WordPiece"
            case "regex": root["pre_tokenizer"] = SyntheticTokenizer.split(#"\w+|\s+"#)
            case "NFKC": root["normalizer"] = ["type": "NFKC"]
            case "prefix": root["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": true, "use_regex": true]
            case "truncation": root["truncation"] = ["max_length": 8]
            case "bytes":
                var vocab = model["vocab"] as! [String: Any]
                vocab.removeValue(forKey: "Ġ")
                model["vocab"] = vocab
                model["byte_fallback"] = true
            case "Roberta": root["post_processor"] = ["type": "RobertaProcessing"]
            case "dropout": model["dropout"] = 0.1
            case "hugeId":
                root["added_tokens"] = [["id": 1 << 30, "content": "<x>", "special": true]]
            case "merge": model["merges"] = ["a zz"]
            case "Unigram": model["type"] = "Unigram"
            default: root["pre_tokenizer"] = ["type": "Whitespace"]
            }
            root["model"] = model
        }
        let path = try SyntheticTokenizer.write(root)
        do {
            _ = try Tokenizer.load(path: path)
            Issue.record("\(kind) was accepted")
        } catch {
            #expect(error.description.contains(mention), "\(error)")
            #expect(error.description.contains(path))
        }
    }

    @Test("bytes missing from the vocabulary vanish, or become unk, fused or not")
    func missingBytes() throws {
        for (unk, fuse, expected) in [
            (false, false, [0x61, 0x62] as [UInt32]), (true, false, [0x61, 7, 7, 0x62]),
            (true, true, [0x61, 7, 0x62]),
        ] {
            let t = try SyntheticTokenizer.load(
                SyntheticTokenizer.json { root in
                    var model = root["model"] as! [String: Any]
                    var vocab = model["vocab"] as! [String: Any]
                    vocab.removeValue(forKey: SyntheticTokenizer.byteString(0x04))
                    vocab.removeValue(forKey: SyntheticTokenizer.byteString(0x05))
                    model["vocab"] = vocab
                    if unk { model["unk_token"] = SyntheticTokenizer.byteString(0x07) }
                    model["fuse_unk"] = fuse
                    root["model"] = model
                })
            #expect(t.encode("a\u{4}\u{5}b") == expected)
            #expect(t.encode("\u{4}") == Array(expected.dropFirst().dropLast().prefix(1)))
        }
    }

    @Test(
        "broken JSON is a malformed-file error with the byte offset",
        arguments: [
            "{", "{\"model\": [1, 2,]}", "{\"a\": \"\\ud800\"}", "[]", String(repeating: "[", count: 5000),
        ])
    func brokenJSON(text: String) throws {
        let path = makeTemporaryDirectory("tok") + "/tokenizer.json"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        #expect {
            _ = try Tokenizer.load(path: path)
        } throws: { error in
            guard let e = error as? TokenizerError, case .malformed = e.kind else { return false }
            return true
        }
    }

    @Test("a missing file is a typed error naming it")
    func missingFile() {
        #expect(throws: TokenizerError.self) { try Tokenizer.load(path: "/nonexistent/tokenizer.json") }
    }
}
