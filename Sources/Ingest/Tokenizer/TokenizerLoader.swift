import Foundation

/// Reads a tokenizer.json into a `TokenizerModel`, refusing every component it cannot reproduce exactly.
struct TokenizerLoader {
    let path: String

    func fail(_ kind: TokenizerError.Kind) -> TokenizerError { TokenizerError(path: path, kind) }

    func unsupported(_ component: String, _ detail: String) -> TokenizerError {
        fail(.unsupported(component: component, detail: detail))
    }

    /// Parses the file at `path`.
    func load() throws(TokenizerError) -> TokenizerModel {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw fail(.unreadable("\(error)")) }
        let fingerprint = data.withUnsafeBytes { FNV1a.hash($0) }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch { throw fail(.malformed("\(error)")) }
        guard let root = parsed as? [String: Any] else { throw fail(.malformed("top level is not an object")) }
        return try build(root, fingerprint: fingerprint)
    }

    func build(_ root: [String: Any], fingerprint: UInt64) throws(TokenizerError) -> TokenizerModel {
        for key in ["truncation", "padding"] where !isNull(root[key]) {
            throw unsupported(key, "encode would \(key == "truncation" ? "truncate" : "pad"); store the file with \"\(key)\": null")
        }
        let nfc = try normalizer(root["normalizer"])
        let steps = try preTokenizer(root["pre_tokenizer"])
        guard let model = root["model"] as? [String: Any] else { throw fail(.malformed("no \"model\" object")) }
        try checkModel(model)
        guard let vocabJSON = model["vocab"] as? [String: Any] else { throw fail(.malformed("model.vocab is not an object")) }
        var modelTokens: [(id: UInt32, text: String)] = []
        modelTokens.reserveCapacity(vocabJSON.count)
        var idOf: [String: UInt32] = [:]
        idOf.reserveCapacity(vocabJSON.count)
        var maxId = -1
        for (text, value) in vocabJSON {
            guard let id = value as? Int, id >= 0, id < Int(UInt32.max) else {
                throw fail(.malformed("vocab id of \(text.debugDescription) is not a non-negative integer"))
            }
            modelTokens.append((UInt32(id), text))
            idOf[text] = UInt32(id)
            maxId = max(maxId, id)
        }
        let added = try addedTokens(root["added_tokens"])
        for (t, _) in added { maxId = max(maxId, Int(t.id)) }
        let idCount = maxId + 1

        var bytesOf = [[UInt8]?](repeating: nil, count: idCount)
        var lookupable = [Bool](repeating: false, count: idCount)
        for (id, text) in modelTokens {
            if let b = ByteLevelMap.bytes(of: text) {
                bytesOf[Int(id)] = b
                lookupable[Int(id)] = true
            } else {
                bytesOf[Int(id)] = Array(text.utf8)  // what HF's ByteLevel decoder falls back to
            }
        }
        for (t, _) in added {
            if bytesOf[Int(t.id)] != t.content { lookupable[Int(t.id)] = false }
            bytesOf[Int(t.id)] = t.content
        }
        var entries: [(id: UInt32, bytes: [UInt8])] = []
        entries.reserveCapacity(idCount)
        for (id, b) in bytesOf.enumerated() { if let b { entries.append((UInt32(id), b)) } }
        let vocab = VocabTable(idCount: idCount, entries: entries, lookupable: { lookupable[Int($0)] })

        var byteIds = [UInt32](repeating: .max, count: 256)
        for b in 0..<256 { byteIds[b] = idOf[ByteLevelMap.string(of: [UInt8(b)])] ?? .max }
        var unkId = UInt32.max
        if let unk = model["unk_token"] as? String {
            guard let id = idOf[unk] else { throw fail(.malformed("unk_token \(unk.debugDescription) is not in the vocab")) }
            unkId = id
        }
        if byteIds.contains(.max) && (model["byte_fallback"] as? Bool) == true {
            throw unsupported("model", "byte_fallback with bytes missing from the vocabulary")
        }
        let pairs = try merges(model["merges"], idOf: idOf)
        let ignoreMerges = (model["ignore_merges"] as? Bool) ?? false
        let (prefix, suffix) = try postProcessor(root["post_processor"], idOf: idOf, added: added)
        try checkDecoder(root["decoder"])
        let (bos, eos) = specialIds(prefix: prefix, added: added)
        return TokenizerModel(path: path, vocab: vocab, pairs: pairs, byteIds: byteIds, unkId: unkId,
                              fuseUnk: (model["fuse_unk"] as? Bool) ?? false, ignoreMerges: ignoreMerges,
                              steps: steps, nfc: nfc, added: added, prefix: prefix, suffix: suffix, vocabSize: idCount,
                              bosId: bos, eosId: eos, fingerprint: fingerprint,
                              modelIds: modelTokens.map(\.id).filter { lookupable[Int($0)] })
    }

    func isNull(_ v: Any?) -> Bool { v == nil || v is NSNull }

    func type(_ v: Any?) -> String { ((v as? [String: Any])?["type"] as? String) ?? "?" }

    /// NFC or nothing; true when NFC applies.
    func normalizer(_ v: Any?) throws(TokenizerError) -> Bool {
        if isNull(v) { return false }
        guard let obj = v as? [String: Any] else { throw fail(.malformed("normalizer is not an object")) }
        switch type(obj) {
        case "NFC": return true
        case "Sequence":
            let items = (obj["normalizers"] as? [Any]) ?? []
            var nfc = false
            for item in items { nfc = try normalizer(item) || nfc }
            return nfc
        case let other: throw unsupported("normalizer", "\(other) (only NFC or none)")
        }
    }

    /// The split steps; ByteLevel must come last, since later steps would see mapped characters.
    func preTokenizer(_ v: Any?) throws(TokenizerError) -> [PreTokenizerStep] {
        var flat: [[String: Any]] = []
        func flatten(_ v: Any?) throws(TokenizerError) {
            guard let obj = v as? [String: Any] else { throw unsupported("pre_tokenizer", "missing; a byte-level BPE needs ByteLevel") }
            if type(obj) == "Sequence" {
                for item in (obj["pretokenizers"] as? [Any]) ?? [] { try flatten(item) }
            } else {
                flat.append(obj)
            }
        }
        try flatten(v)
        var steps: [PreTokenizerStep] = []
        for (index, obj) in flat.enumerated() {
            switch type(obj) {
            case "ByteLevel":
                guard index == flat.count - 1 else {
                    throw unsupported("pre_tokenizer", "ByteLevel followed by other pre-tokenizers")
                }
                if (obj["add_prefix_space"] as? Bool) == true {
                    throw unsupported("pre_tokenizer", "ByteLevel with add_prefix_space: true")
                }
                if (obj["use_regex"] as? Bool) ?? true { steps.append(.regex(.gpt2)) }
            case "Split":
                guard let pattern = obj["pattern"] as? [String: Any] else { throw fail(.malformed("Split without pattern")) }
                guard let regex = pattern["Regex"] as? String else {
                    throw unsupported("pre_tokenizer", "Split with a String pattern")
                }
                guard let family = RegexFamily(pattern: regex) else {
                    throw unsupported("pre_tokenizer", "Split regex \(regex.debugDescription) is not one of the known GPT-2, Llama-3/cl100k or Qwen2 patterns")
                }
                guard (obj["behavior"] as? String) == "Isolated", (obj["invert"] as? Bool) != true else {
                    throw unsupported("pre_tokenizer", "Split with behavior \(obj["behavior"] ?? "?") invert \(obj["invert"] ?? "?") (only Isolated, not inverted)")
                }
                steps.append(.regex(family))
            case "Digits":
                steps.append(.digits(individual: (obj["individual_digits"] as? Bool) ?? false))
            case let other:
                throw unsupported("pre_tokenizer", "\(other) (only ByteLevel, Split, Digits, Sequence)")
            }
        }
        guard type(flat.last) == "ByteLevel" else {
            throw unsupported("pre_tokenizer", "no ByteLevel step; only byte-level BPE is supported")
        }
        return steps
    }

    func checkModel(_ model: [String: Any]) throws(TokenizerError) {
        let kind = (model["type"] as? String) ?? (model["merges"] != nil ? "BPE" : "?")
        guard kind == "BPE" else { throw unsupported("model", "\(kind) (only byte-level BPE)") }
        if let dropout = model["dropout"] as? Double, dropout > 0 {
            throw unsupported("model", "BPE dropout \(dropout) makes encoding random")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key] as? String, !s.isEmpty { throw unsupported("model", "BPE \(key) \(s.debugDescription)") }
        }
        // Bytes missing from the vocabulary are dropped or become unk_token, exactly as HF does.
    }

    func addedTokens(_ v: Any?) throws(TokenizerError) -> [(AddedToken, normalized: Bool)] {
        if isNull(v) { return [] }
        guard let list = v as? [Any] else { throw fail(.malformed("added_tokens is not an array")) }
        var out: [(AddedToken, normalized: Bool)] = []
        for item in list {
            guard let obj = item as? [String: Any], let id = obj["id"] as? Int, id >= 0, id < Int(UInt32.max),
                  let content = obj["content"] as? String else {
                throw fail(.malformed("added token without id or content"))
            }
            let special = (obj["special"] as? Bool) ?? false
            let t = AddedToken(id: UInt32(id), content: Array(content.utf8), special: special,
                               singleWord: (obj["single_word"] as? Bool) ?? false,
                               lstrip: (obj["lstrip"] as? Bool) ?? false, rstrip: (obj["rstrip"] as? Bool) ?? false)
            out.append((t, (obj["normalized"] as? Bool) ?? !special))
        }
        // A token starting with whitespace could begin inside the whitespace an rstrip token swallowed,
        // where HF's overlapping spans have no byte-exact reading.
        if out.contains(where: { $0.0.rstrip }),
           let t = out.first(where: { $0.0.content.first.map { ScalarClass.isWhitespace(UInt32($0)) } ?? false }) {
            throw unsupported("added_tokens", "rstrip tokens together with \(String(decoding: t.0.content, as: UTF8.self).debugDescription), which starts with whitespace")
        }
        return out
    }

    func merges(_ v: Any?, idOf: [String: UInt32]) throws(TokenizerError) -> PairTable {
        guard let list = v as? [Any] else { throw fail(.malformed("model.merges is not an array")) }
        var out: [(left: UInt32, right: UInt32, merged: UInt32)] = []
        out.reserveCapacity(list.count)
        for (rank, item) in list.enumerated() {
            let a: String, b: String
            if let s = item as? String {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail(.malformed("merge \(rank) \(s.debugDescription) is not \"a b\"")) }
                (a, b) = (String(parts[0]), String(parts[1]))
            } else if let pair = item as? [Any], pair.count == 2, let x = pair[0] as? String, let y = pair[1] as? String {
                (a, b) = (x, y)
            } else {
                throw fail(.malformed("merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]"))
            }
            guard let l = idOf[a], let r = idOf[b], let m = idOf[a + b] else {
                throw fail(.malformed("merge \(rank) (\(a.debugDescription), \(b.debugDescription)) uses tokens missing from the vocab"))
            }
            out.append((l, r, m))
        }
        return PairTable(out)
    }

    /// Ids the post-processor puts before and after a single sequence.
    func postProcessor(_ v: Any?, idOf: [String: UInt32], added: [(AddedToken, normalized: Bool)])
        throws(TokenizerError) -> ([UInt32], [UInt32]) {
        if isNull(v) { return ([], []) }
        guard let obj = v as? [String: Any] else { throw fail(.malformed("post_processor is not an object")) }
        switch type(obj) {
        case "ByteLevel": return ([], [])  // only moves offsets
        case "Sequence":
            var prefix: [UInt32] = [], suffix: [UInt32] = []
            for item in (obj["processors"] as? [Any]) ?? [] {
                let (p, s) = try postProcessor(item, idOf: idOf, added: added)
                prefix = p + prefix
                suffix += s
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            guard let single = obj["single"] as? [Any] else { throw fail(.malformed("TemplateProcessing without single")) }
            let specials = (obj["special_tokens"] as? [String: Any]) ?? [:]
            var prefix: [UInt32] = [], suffix: [UInt32] = []
            var seenSequence = false
            for piece in single {
                guard let p = piece as? [String: Any] else { throw fail(.malformed("template piece is not an object")) }
                if let seq = p["Sequence"] as? [String: Any] {
                    guard (seq["id"] as? String) == "A", !seenSequence else {
                        throw unsupported("post_processor", "single template with sequence \(seq["id"] ?? "?")")
                    }
                    seenSequence = true
                } else if let sp = p["SpecialToken"] as? [String: Any], let name = sp["id"] as? String {
                    guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int] else {
                        throw fail(.malformed("template special token \(name.debugDescription) has no ids"))
                    }
                    let u = ids.map { UInt32(clamping: $0) }
                    if seenSequence { suffix += u } else { prefix += u }
                } else {
                    throw fail(.malformed("unknown template piece"))
                }
            }
            return (prefix, suffix)
        case let other:
            throw unsupported("post_processor", "\(other) (only TemplateProcessing, ByteLevel, Sequence)")
        }
    }

    func checkDecoder(_ v: Any?) throws(TokenizerError) {
        if isNull(v) { return }
        let t = type(v)
        guard t == "ByteLevel" else { throw unsupported("decoder", "\(t) (only ByteLevel)") }
    }

    /// BOS and EOS: tokenizer_config.json beside the file when present, else the template and common names.
    func specialIds(prefix: [UInt32], added: [(AddedToken, normalized: Bool)]) -> (UInt32?, UInt32?) {
        func id(of name: String) -> UInt32? { added.first { $0.0.content == Array(name.utf8) }?.0.id }
        func configured(_ key: String, _ config: [String: Any]?) -> UInt32? {
            if let s = config?[key] as? String { return id(of: s) }
            if let o = config?[key] as? [String: Any], let s = o["content"] as? String { return id(of: s) }
            return nil
        }
        var config: [String: Any]? = nil
        if path.hasSuffix("tokenizer.json") {
            let configPath = String(path.dropLast("tokenizer.json".count)) + "tokenizer_config.json"
            if let data = FileManager.default.contents(atPath: configPath) {
                config = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            }
        }
        let bos = configured("bos_token", config) ?? prefix.first
            ?? ["<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"].lazy.compactMap(id).first
        let eos = configured("eos_token", config)
            ?? ["<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"].lazy.compactMap(id).first
        return (bos, eos)
    }
}

/// FNV-1a, 64-bit: a stable fingerprint of a tokenizer file's bytes.
enum FNV1a {
    /// Hash of `bytes`.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }
}
