import Checkpoint
import Foundation
import Support

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
    public init(tokens: [String], tokenTypes: [Int32], merges: [String], preTokenizer: String, bos: Int?, eos: Int?,
                addBOS: Bool, chatTemplate: String?) {
        self.tokens = tokens; self.tokenTypes = tokenTypes; self.merges = merges; self.preTokenizer = preTokenizer
        self.bos = bos; self.eos = eos; self.addBOS = addBOS; self.chatTemplate = chatTemplate
    }

    // MARK: - GGUF

    /// Reads `tokenizer.ggml.*` from a GGUF file (model gpt2, a known pre-tokenizer).
    public init(gguf g: GGUFFile) throws {
        func bad(_ w: String) -> SafeTensorsError { .invalid(file: g.path, why: "tokenizer metadata: \(w)") }
        guard let model = g.string("tokenizer.ggml.model") else { throw bad("no tokenizer.ggml.model") }
        guard model == "gpt2" else { throw bad("tokenizer model \"\(model)\" is not byte-level BPE (gpt2)") }
        let pre = g.string("tokenizer.ggml.pre") ?? "gpt2"
        let canonical = Self.smollmAliases.contains(pre) ? "smollm" : (pre == "llama3" ? "llama-bpe" : pre)
        guard Self.knownPreTokenizers.contains(canonical) else {
            throw bad("pre-tokenizer \"\(pre)\" has no exact tokenizer.json equivalent here (known: \(Self.knownPreTokenizers.joined(separator: ", ")))")
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
                guard let t = v.int, t >= 0, t <= 6 else { throw bad("tokenizer.ggml.token_type[\(i)] is not a token type") }
                types[i] = Int32(t)
            }
        }
        func id(_ key: String) throws -> Int? {
            guard let v = g.metadata[key] else { return nil }
            guard let i = v.int, i >= 0, i < toks.count else { throw bad("\(key) is not a token id below \(toks.count)") }
            return i
        }
        var addBOS = false
        if case .bool(let b)? = g.metadata["tokenizer.ggml.add_bos_token"] { addBOS = b }
        self.init(tokens: toks, tokenTypes: types, merges: try strings("tokenizer.ggml.merges"), preTokenizer: canonical,
                  bos: try id("tokenizer.ggml.bos_token_id"), eos: try id("tokenizer.ggml.eos_token_id"),
                  addBOS: addBOS, chatTemplate: g.string("tokenizer.chat_template"))
        try validate(file: g.path)
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
    func validate(file: String) throws {
        func bad(_ w: String) -> SafeTensorsError { .invalid(file: file, why: "tokenizer: \(w)") }
        guard !tokens.isEmpty, tokenTypes.count == tokens.count else { throw bad("\(tokens.count) tokens, \(tokenTypes.count) types") }
        var seen: [String: Int] = [:]
        for (i, t) in tokens.enumerated() {
            if let j = seen[t] { throw bad("token \(i) \"\(t)\" repeats token \(j)") }
            seen[t] = i
        }
        for (i, m) in merges.enumerated() {
            let parts = m.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { throw bad("merge \(i) \"\(m)\" is not two tokens") }
        }
        if let b = bos, b >= tokens.count { throw bad("BOS id \(b) out of range") }
        if let e = eos, e >= tokens.count { throw bad("EOS id \(e) out of range") }
        if addBOS && bos == nil { throw bad("add_bos_token without a BOS id") }
    }

    // MARK: - tokenizer.json

    /// Reads an HF `tokenizer.json` (BPE, a known byte-level pre-tokenizer) and, when given, the
    /// `tokenizer_config.json` beside it (BOS / EOS names, chat template).
    public init(tokenizerJSON data: Data, path: String, config: Data? = nil) throws {
        func bad(_ w: String) -> SafeTensorsError { .invalid(file: path, why: w) }
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw bad("not a JSON object") }
        guard let model = root["model"] as? [String: Any], (model["type"] as? String) == "BPE" else {
            throw bad("model is not BPE")
        }
        if (model["byte_fallback"] as? Bool) == true { throw bad("byte_fallback BPE is not byte-level") }
        for k in ["continuing_subword_prefix", "end_of_word_suffix"] where !(model[k] is NSNull || model[k] == nil) {
            throw bad("model.\(k) is not supported")
        }
        guard let vocab = model["vocab"] as? [String: Any] else { throw bad("model.vocab is not an object") }
        var byId: [Int: (String, Int32)] = [:]
        for (t, v) in vocab {
            guard let n = v as? NSNumber, let i = Int(exactly: n.doubleValue), i >= 0, i < 1 << 24 else { throw bad("vocab id of \"\(t)\" is not an id") }
            guard byId[i] == nil else { throw bad("vocab id \(i) used twice") }
            byId[i] = (t, 1)
        }
        for (k, a) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let o = a as? [String: Any], let c = o["content"] as? String, let n = o["id"] as? NSNumber,
                  let i = Int(exactly: n.doubleValue), i >= 0, i < 1 << 24 else { throw bad("added_tokens[\(k)] needs id and content") }
            if let prev = byId[i], prev.0 != c { throw bad("added token \(i) \"\(c)\" differs from vocab entry \"\(prev.0)\"") }
            byId[i] = (c, (o["special"] as? Bool) == true ? 3 : 4)
        }
        let n = (byId.keys.max() ?? -1) + 1
        guard n > 0, byId.count == n else { throw bad("token ids are not contiguous from 0 (\(byId.count) ids, highest \(n - 1))") }
        let toks = (0..<n).map { byId[$0]!.0 }
        let types = (0..<n).map { byId[$0]!.1 }
        var merges: [String] = []
        for (i, m) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            if let s = m as? String { merges.append(s) }
            else if let p = m as? [String], p.count == 2 { merges.append(p[0] + " " + p[1]) }
            else { throw bad("merges[\(i)] is neither \"a b\" nor [a, b]") }
        }
        let pre = try Self.preTokenizerName(root, ignoreMerges: (model["ignore_merges"] as? Bool) ?? false, path: path)
        // BOS from a TemplateProcessing that prepends one special token (Llama 3 style).
        var templateBOS: String?
        func findTemplate(_ p: Any?) {
            guard let p = p as? [String: Any] else { return }
            if p["type"] as? String == "Sequence" { for q in (p["processors"] as? [Any]) ?? [] { findTemplate(q) } }
            if p["type"] as? String == "TemplateProcessing", let single = p["single"] as? [Any],
               let first = single.first as? [String: Any], let st = first["SpecialToken"] as? [String: Any] {
                templateBOS = st["id"] as? String
            }
        }
        findTemplate(root["post_processor"])
        var cfg: [String: Any] = [:]
        if let config {
            guard let c = try? JSONSerialization.jsonObject(with: config) as? [String: Any] else { throw bad("tokenizer_config.json is not a JSON object") }
            cfg = c
        }
        func named(_ key: String) -> String? {
            (cfg[key] as? String) ?? ((cfg[key] as? [String: Any])?["content"] as? String)
        }
        let index = Dictionary(toks.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let bosName = named("bos_token") ?? templateBOS
        self.init(tokens: toks, tokenTypes: types, merges: merges, preTokenizer: pre,
                  bos: bosName.flatMap { index[$0] }, eos: named("eos_token").flatMap { index[$0] },
                  addBOS: templateBOS != nil, chatTemplate: cfg["chat_template"] as? String)
        try validate(file: path)
    }

    /// Which llama.cpp pre-tokenizer a tokenizer.json's normalizer + pre_tokenizer spell, or an error.
    static func preTokenizerName(_ root: [String: Any], ignoreMerges: Bool, path: String) throws -> String {
        func type(_ x: Any?) -> String? { (x as? [String: Any])?["type"] as? String }
        func byteLevel(_ x: Any?, regex: Bool) -> Bool {
            guard let o = x as? [String: Any], o["type"] as? String == "ByteLevel" else { return false }
            return (o["add_prefix_space"] as? Bool ?? false) == false && (o["use_regex"] as? Bool ?? true) == regex
        }
        func split(_ x: Any?, _ pattern: String) -> Bool {
            guard let o = x as? [String: Any], o["type"] as? String == "Split",
                  let p = o["pattern"] as? [String: Any], p["Regex"] as? String == pattern else { return false }
            return (o["behavior"] as? String) == "Isolated" && (o["invert"] as? Bool ?? false) == false
        }
        let norm = root["normalizer"]
        let normType = norm is NSNull || norm == nil ? nil : type(norm)
        let pre = root["pre_tokenizer"]
        let seq = type(pre) == "Sequence" ? ((pre as? [String: Any])?["pretokenizers"] as? [Any]) ?? [] : [pre as Any]
        if normType == nil && seq.count == 1 && byteLevel(seq[0], regex: true) { return "gpt2" }
        if normType == nil && seq.count == 2 && split(seq[0], gpt2Regex) && byteLevel(seq[1], regex: false) { return "gpt2" }
        if normType == nil && seq.count == 2, let d = seq[0] as? [String: Any], d["type"] as? String == "Digits",
           d["individual_digits"] as? Bool == true, byteLevel(seq[1], regex: true) { return "smollm" }
        if normType == nil && seq.count == 2 && split(seq[0], llama3Regex) && byteLevel(seq[1], regex: false) && ignoreMerges {
            return "llama-bpe"
        }
        if normType == "NFC" && seq.count == 2 && split(seq[0], qwen2Regex) && byteLevel(seq[1], regex: false) && !ignoreMerges {
            return "qwen2"
        }
        throw SafeTensorsError.invalid(file: path, why: "normalizer / pre_tokenizer match none of the GGUF pre-tokenizers \(knownPreTokenizers.joined(separator: ", "))")
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
        case "smollm": pre = ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)]]
        case "llama-bpe": pre = ["type": "Sequence", "pretokenizers": [split(Self.llama3Regex), byteLevel(regex: false)]]
        case "qwen2": pre = ["type": "Sequence", "pretokenizers": [split(Self.qwen2Regex), byteLevel(regex: false)]]
        default: pre = byteLevel(regex: true)
        }
        var post: [String: Any] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
        if addBOS, let bos {
            let b = tokens[bos]
            post = ["type": "Sequence", "processors": [post, [
                "type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [["SpecialToken": ["id": b, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                         ["SpecialToken": ["id": b, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                "special_tokens": [b: ["id": b, "ids": [bos], "tokens": [b]]],
            ] as [String: Any]]]
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
            ["id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": tokenTypes[i] == 3]
        }
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": preTokenizer == "qwen2" ? ["type": "NFC"] as Any : NSNull(),
            "pre_tokenizer": pre, "post_processor": post,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": preTokenizer == "llama-bpe", "vocab": placeholder,
                      "merges": merges.map { m -> [String] in
                          let p = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                          return [String(p[0]), String(p[1])]
                      }] as [String: Any],
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys]), as: UTF8.self)
        guard let r = text.range(of: "\"" + placeholder + "\"") else {
            throw SafeTensorsError.invalid(file: "<tokenizer.json>", why: "vocabulary placeholder lost in serialization")
        }
        return Data(text.replacingCharacters(in: r, with: vocabJSON).utf8)
    }

    /// A `tokenizer_config.json` naming BOS, EOS and the chat template (HF AutoTokenizer and oreo read it).
    public func tokenizerConfigJSON(maxLength: Int) throws -> Data {
        var o: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": maxLength,
                                "add_bos_token": addBOS, "clean_up_tokenization_spaces": false]
        if let bos { o["bos_token"] = tokens[bos] }
        if let eos { o["eos_token"] = tokens[eos] }
        if let chatTemplate { o["chat_template"] = chatTemplate }
        return try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])
    }
}
