import Checkpoint
import Foundation
import Support

/// A tokenizer.json or tokenizer_config.json that cannot be read as a byte-level BPE vocabulary: one line
/// naming the file and the entry.
public struct TokenizerFileError: Error, CustomStringConvertible {
    /// The file.
    public let file: String
    /// What is wrong, naming the entry.
    public let why: String
    /// `file: why`.
    public var description: String { "\(file): \(why)" }
}

/// A byte-level BPE tokenizer as both formats carry it: HF `tokenizer.json` (+ `tokenizer_config.json`) and
/// GGUF's `tokenizer.ggml.*` metadata. Converting between the two is exact for the pre-tokenizer families
/// llama.cpp names (`tokenizer.ggml.pre`) and oreo's tokenizer reproduces; anything else is refused.
public struct BPEVocabulary: Sendable, Equatable {
    /// Token text by id (byte-level characters; special tokens verbatim).
    public var tokens: [String]
    /// llama.cpp token types by id: 1 normal, 3 control (special added token), 4 user-defined (added token).
    public var tokenTypes: [Int32]
    /// Merges in rank order, each "left right".
    public var merges: [String]
    /// llama.cpp's pre-tokenizer name: gpt2, smollm, llama-bpe or qwen2.
    public var preTokenizer: String
    /// Beginning / end of sequence ids.
    public var bos: Int?, eos: Int?
    /// Whether BOS is prepended when encoding (HF TemplateProcessing; GGUF add_bos_token).
    public var addBOS: Bool
    /// Jinja chat template, if any.
    public var chatTemplate: String?

    /// The pre-tokenizer families both formats can express exactly.
    public static let knownPreTokenizers = ["gpt2", "smollm", "llama-bpe", "qwen2"]
    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Regex =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    /// llama.cpp pre-tokenizers that split exactly like `smollm` (single digits, then the GPT-2 regex).
    static let smollmAliases: Set<String> = ["smollm", "starcoder", "refact", "codeshell"]

    /// A vocabulary from its parts.
    public init(
        tokens: [String], tokenTypes: [Int32], merges: [String], preTokenizer: String, bos: Int?, eos: Int?,
        addBOS: Bool, chatTemplate: String?
    ) {
        self.tokens = tokens
        self.tokenTypes = tokenTypes
        self.merges = merges
        self.preTokenizer = preTokenizer
        self.bos = bos
        self.eos = eos
        self.addBOS = addBOS
        self.chatTemplate = chatTemplate
    }

    // MARK: - GGUF

    /// Reads `tokenizer.ggml.*` from a GGUF file (model gpt2, a known pre-tokenizer).
    public init(gguf g: GGUFFile) throws {
        func bad(_ w: String) -> GGUFError { .invalid(file: g.path, why: "tokenizer metadata: \(w)") }
        guard let model = g.string("tokenizer.ggml.model") else { throw bad("no tokenizer.ggml.model") }
        guard model == "gpt2" else { throw bad("tokenizer model \"\(model)\" is not byte-level BPE (gpt2)") }
        let pre = g.string("tokenizer.ggml.pre") ?? "gpt2"
        let canonical = Self.smollmAliases.contains(pre) ? "smollm" : (pre == "llama3" ? "llama-bpe" : pre)
        guard Self.knownPreTokenizers.contains(canonical) else {
            throw bad(
                "pre-tokenizer \"\(pre)\" has no exact tokenizer.json equivalent here (known: \(Self.knownPreTokenizers.joined(separator: ", ")))"
            )
        }
        func strings(_ key: String) throws -> [String] {
            guard case .array(let a)? = g.metadata[key] else { throw bad("no \(key) array") }
            return try a.enumerated().map { i, v in
                guard case .string(let s) = v else { throw bad("\(key)[\(i)] is not a string") }
                return s
            }
        }
        let toks = try strings("tokenizer.ggml.tokens")
        var types = [Int32](repeating: 1, count: toks.count)
        if case .array(let a)? = g.metadata["tokenizer.ggml.token_type"] {
            guard a.count == toks.count else { throw bad("\(a.count) token types for \(toks.count) tokens") }
            for (i, v) in a.enumerated() {
                guard let t = v.int, t >= 0, t <= 6 else {
                    throw bad("tokenizer.ggml.token_type[\(i)] is not a token type")
                }
                types[i] = Int32(t)
            }
        }
        func id(_ key: String) throws -> Int? {
            guard let v = g.metadata[key] else { return nil }
            guard let i = v.int, i >= 0, i < toks.count else {
                throw bad("\(key) is not a token id below \(toks.count)")
            }
            return i
        }
        var addBOS = false
        if case .bool(let b)? = g.metadata["tokenizer.ggml.add_bos_token"] { addBOS = b }
        self.init(
            tokens: toks, tokenTypes: types, merges: try strings("tokenizer.ggml.merges"), preTokenizer: canonical,
            bos: try id("tokenizer.ggml.bos_token_id"), eos: try id("tokenizer.ggml.eos_token_id"),
            addBOS: addBOS, chatTemplate: g.string("tokenizer.chat_template"))
        try validate { GGUFError.invalid(file: g.path, why: "tokenizer: \($0)") }
    }

    /// The `tokenizer.ggml.*` metadata llama.cpp reads.
    public func ggufMetadata() -> [(String, GGUFMetadataValue)] {
        var m: [(String, GGUFMetadataValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(preTokenizer)),
            ("tokenizer.ggml.tokens", .stringArray(tokens)), ("tokenizer.ggml.token_type", .int32Array(tokenTypes)),
            ("tokenizer.ggml.merges", .stringArray(merges)),
        ]
        if let bos { m.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(bos)))) }
        if let eos { m.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(eos)))) }
        m.append(("tokenizer.ggml.add_bos_token", .bool(addBOS)))
        if let chatTemplate { m.append(("tokenizer.chat_template", .string(chatTemplate))) }
        return m
    }

    /// Checks ids, types and merges against each other (both readers end here).
    func validate(_ bad: (String) -> any Error) throws {
        guard !tokens.isEmpty, tokenTypes.count == tokens.count else {
            throw bad("\(tokens.count) tokens, \(tokenTypes.count) types")
        }
        var seen: [String: Int] = [:]
        for (i, t) in tokens.enumerated() {
            if let j = seen[t] { throw bad("token \(i) \"\(t)\" repeats token \(j)") }
            seen[t] = i
        }
        for (i, m) in merges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw bad("merge \(i) \"\(m)\" is not two tokens")
            }
        }
        if let b = bos, b >= tokens.count { throw bad("BOS id \(b) out of range") }
        if let e = eos, e >= tokens.count { throw bad("EOS id \(e) out of range") }
        if addBOS && bos == nil { throw bad("add_bos_token without a BOS id") }
    }

    // MARK: - tokenizer.json

    /// Reads an HF `tokenizer.json` (BPE, a known byte-level pre-tokenizer) and, when given, the
    /// `tokenizer_config.json` beside it (BOS / EOS names, chat template).
    public init(tokenizerJSON data: Data, path: String, config: Data? = nil) throws {
        func bad(_ w: String) -> TokenizerFileError { TokenizerFileError(file: path, why: w) }
        let root: JSONValue
        do { root = try StrictJSON.parse(data, file: path) } catch { throw bad("invalid JSON at \(error.position)") }
        guard root.members != nil else { throw bad("not a JSON object") }
        guard let model = root["model"], model.members != nil, model["type"]?.string == "BPE" else {
            throw bad("model is not BPE")
        }
        if model["byte_fallback"]?.bool == true { throw bad("byte_fallback BPE is not byte-level") }
        for k in ["continuing_subword_prefix", "end_of_word_suffix"] where !(model[k]?.isNull ?? true) {
            throw bad("model.\(k) is not supported")
        }
        guard let vocab = model["vocab"]?.members else { throw bad("model.vocab is not an object") }
        var byId: [Int: (String, Int32)] = [:]
        for (t, v) in vocab {
            guard let i = v.int, i >= 0, i < 1 << 24 else {
                throw bad("model.vocab[\(t.debugDescription)]: \(v.summary) is not a token id")
            }
            if let prev = byId[i] {
                throw bad("model.vocab[\(t.debugDescription)]: id \(i) is already the id of \(prev.0.debugDescription)")
            }
            byId[i] = (t, 1)
        }
        guard let addedList = (root["added_tokens"] ?? .array([])).array else {
            throw bad("added_tokens is not an array")
        }
        for (k, a) in addedList.enumerated() {
            guard let c = a["content"]?.string, let i = a["id"]?.int, i >= 0, i < 1 << 24 else {
                throw bad("added_tokens[\(k)] needs an integer id and a string content")
            }
            if let prev = byId[i], prev.0 != c {
                throw bad(
                    "added_tokens[\(k)]: id \(i) of \(c.debugDescription) is already the id of \(prev.0.debugDescription)"
                )
            }
            byId[i] = (c, a["special"]?.bool == true ? 3 : 4)
        }
        let n = (byId.keys.max() ?? -1) + 1
        guard n > 0, byId.count == n else {
            throw bad("token ids are not contiguous from 0 (\(byId.count) ids, highest \(n - 1))")
        }
        let toks = (0..<n).map { byId[$0]!.0 }
        let types = (0..<n).map { byId[$0]!.1 }
        var merges: [String] = []
        guard let mergeList = (model["merges"] ?? .array([])).array else { throw bad("model.merges is not an array") }
        for (i, m) in mergeList.enumerated() {
            if let s = m.string {
                merges.append(s)
            } else if let p = m.array, p.count == 2, let a = p[0].string, let b = p[1].string {
                merges.append(a + " " + b)
            } else {
                throw bad("model.merges[\(i)] is neither \"a b\" nor [a, b]")
            }
        }
        let pre = try Self.preTokenizerName(root, ignoreMerges: model["ignore_merges"]?.bool ?? false, path: path)
        // BOS from a TemplateProcessing that prepends one special token (Llama 3 style).
        var templateBOS: String?
        func findTemplate(_ p: JSONValue?) {
            guard let p, p.members != nil else { return }
            if p["type"]?.string == "Sequence" { for q in p["processors"]?.array ?? [] { findTemplate(q) } }
            if p["type"]?.string == "TemplateProcessing", let first = p["single"]?.array?.first,
                let st = first["SpecialToken"], st.members != nil
            {
                templateBOS = st["id"]?.string
            }
        }
        findTemplate(root["post_processor"])
        var cfg = JSONValue.object([])
        if let config {
            let configPath = (path as NSString).deletingLastPathComponent + "/tokenizer_config.json"
            do { cfg = try StrictJSON.parse(config, file: configPath) } catch {
                throw TokenizerFileError(file: configPath, why: "invalid JSON at \(error.position)")
            }
            guard cfg.members != nil else { throw TokenizerFileError(file: configPath, why: "not a JSON object") }
        }
        func named(_ key: String) -> String? { cfg[key]?.string ?? cfg[key]?["content"]?.string }
        let index = Dictionary(toks.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let bosName = named("bos_token") ?? templateBOS
        self.init(
            tokens: toks, tokenTypes: types, merges: merges, preTokenizer: pre,
            bos: bosName.flatMap { index[$0] }, eos: named("eos_token").flatMap { index[$0] },
            addBOS: templateBOS != nil, chatTemplate: cfg["chat_template"]?.string)
        try validate { TokenizerFileError(file: path, why: $0) }
    }

    /// Which llama.cpp pre-tokenizer a tokenizer.json's normalizer + pre_tokenizer spell, or an error.
    static func preTokenizerName(_ root: JSONValue, ignoreMerges: Bool, path: String) throws -> String {
        func type(_ x: JSONValue?) -> String? { x?["type"]?.string }
        func byteLevel(_ x: JSONValue?, regex: Bool) -> Bool {
            guard let o = x, type(o) == "ByteLevel" else { return false }
            return (o["add_prefix_space"]?.bool ?? false) == false && (o["use_regex"]?.bool ?? true) == regex
        }
        func split(_ x: JSONValue?, _ pattern: String) -> Bool {
            guard let o = x, type(o) == "Split", o["pattern"]?["Regex"]?.string == pattern else { return false }
            return o["behavior"]?.string == "Isolated" && (o["invert"]?.bool ?? false) == false
        }
        let norm = root["normalizer"]
        let normType = norm?.isNull ?? true ? nil : type(norm)
        let pre = root["pre_tokenizer"]
        let seq: [JSONValue?] = type(pre) == "Sequence" ? (pre?["pretokenizers"]?.array ?? []) : [pre]
        if normType == nil && seq.count == 1 && byteLevel(seq[0], regex: true) { return "gpt2" }
        if normType == nil && seq.count == 2 && split(seq[0], gpt2Regex) && byteLevel(seq[1], regex: false) {
            return "gpt2"
        }
        if normType == nil && seq.count == 2, type(seq[0]) == "Digits", seq[0]?["individual_digits"]?.bool == true,
            byteLevel(seq[1], regex: true)
        {
            return "smollm"
        }
        if normType == nil && seq.count == 2 && split(seq[0], llama3Regex) && byteLevel(seq[1], regex: false)
            && ignoreMerges
        {
            return "llama-bpe"
        }
        if normType == "NFC" && seq.count == 2 && split(seq[0], qwen2Regex) && byteLevel(seq[1], regex: false)
            && !ignoreMerges
        {
            return "qwen2"
        }
        throw TokenizerFileError(
            file: path,
            why:
                "normalizer / pre_tokenizer match none of the GGUF pre-tokenizers \(knownPreTokenizers.joined(separator: ", "))"
        )
    }

    /// An HF `tokenizer.json` that tokenizes exactly as llama.cpp does with this vocabulary.
    public func tokenizerJSON() throws -> Data {
        func byteLevel(regex: Bool) -> [String: Any] {
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
        }
        func split(_ pattern: String) -> [String: Any] {
            ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false]
        }
        let pre: [String: Any]
        switch preTokenizer {
        case "smollm":
            pre = [
                "type": "Sequence",
                "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)],
            ]
        case "llama-bpe":
            pre = ["type": "Sequence", "pretokenizers": [split(Self.llama3Regex), byteLevel(regex: false)]]
        case "qwen2": pre = ["type": "Sequence", "pretokenizers": [split(Self.qwen2Regex), byteLevel(regex: false)]]
        default: pre = byteLevel(regex: true)
        }
        var post: [String: Any] = [
            "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true,
        ]
        if addBOS, let bos {
            let b = tokens[bos]
            post = [
                "type": "Sequence",
                "processors": [
                    post,
                    [
                        "type": "TemplateProcessing",
                        "single": [
                            ["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                        ],
                        "pair": [
                            ["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                            ["SpecialToken": ["id": b, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]],
                        ],
                        "special_tokens": [b: ["id": b, "ids": [bos], "tokens": [b]]],
                    ] as [String: Any],
                ],
            ]
        }
        // the vocabulary is written by hand in id order: JSONSerialization's sortedKeys compares 50k keys with
        // locale-aware string comparison, seconds per model load
        let placeholder = "oreo-vocabulary-\(tokens.count)"
        var last: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { last[t] = i }  // a repeated string maps to its last id, as before
        var vocabJSON = "{"
        for (i, t) in tokens.enumerated() where last[t] == i {
            vocabJSON += (vocabJSON.utf8.count == 1 ? "" : ",") + jsonStringLiteral(t) + ":\(i)"
        }
        vocabJSON += "}"
        let added: [[String: Any]] = tokens.indices.filter { tokenTypes[$0] == 3 || tokenTypes[$0] == 4 }.map { i in
            [
                "id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": tokenTypes[i] == 3,
            ]
        }
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": preTokenizer == "qwen2" ? ["type": "NFC"] as Any : NSNull(),
            "pre_tokenizer": pre, "post_processor": post,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": preTokenizer == "llama-bpe", "vocab": placeholder,
                "merges": merges.map { m -> [String] in
                    let p = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                    return [String(p[0]), String(p[1])]
                },
            ] as [String: Any],
        ]
        let text = String(
            decoding: try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys]), as: UTF8.self)
        guard let r = text.range(of: "\"" + placeholder + "\"") else {
            throw TokenizerFileError(file: "<tokenizer.json>", why: "vocabulary placeholder lost in serialization")
        }
        return Data(text.replacingCharacters(in: r, with: vocabJSON).utf8)
    }

    /// A `tokenizer_config.json` naming BOS, EOS and the chat template (HF AutoTokenizer and oreo read it).
    public func tokenizerConfigJSON(maxLength: Int) throws -> Data {
        var o: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": maxLength,
            "add_bos_token": addBOS, "clean_up_tokenization_spaces": false,
        ]
        if let bos { o["bos_token"] = tokens[bos] }
        if let eos { o["eos_token"] = tokens[eos] }
        if let chatTemplate { o["chat_template"] = chatTemplate }
        return try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])
    }
}
