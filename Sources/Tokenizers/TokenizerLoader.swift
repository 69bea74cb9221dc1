import Foundation
import Support

/// Reads a tokenizer.json into a `TokenizerModel`, refusing every component it cannot reproduce exactly.
struct TokenizerLoader {
    let path: String
    /// The tokenizer.json bytes when they are already in memory (rebuilt from GGUF metadata); `path` then
    /// only names where they came from.
    var contents: Data? = nil
    /// tokenizer_config.json bytes to use instead of a file beside `path`.
    var configContents: Data? = nil

    /// Ids size per-id tables, so an absurd id in an untrusted file must not allocate gigabytes;
    /// real vocabularies stay below 300k.
    static let idLimit = 1 << 24

    func fail(_ kind: TokenizerError.Kind) -> TokenizerError { TokenizerError(path: path, kind) }

    func unsupported(_ component: String, _ detail: String) -> TokenizerError {
        fail(.unsupported(component: component, detail: detail))
    }

    /// Parses the file at `path`.
    func load() throws(TokenizerError) -> TokenizerModel {
        let data: Data
        if let contents {
            data = contents
        } else {
            do { data = try readFile(path) } catch { throw fail(.unreadable(error.reason)) }
        }
        let parsed: Result<(JSONValue, UInt64), JSONSyntaxError> = data.withUnsafeBytes { raw in
            do throws(JSONSyntaxError) {
                return .success((try StrictJSON.parse(raw, file: path), FNV1a.hash(raw)))
            } catch {
                return .failure(error)
            }
        }
        switch parsed {
        case .success(let (root, fingerprint)): return try build(root, fingerprint: fingerprint)
        case .failure(let e): throw fail(.malformed("JSON at \(e.position)"))
        }
    }

    func build(_ root: JSONValue, fingerprint: UInt64) throws(TokenizerError) -> TokenizerModel {
        guard root.members != nil else { throw fail(.malformed("top level is not an object")) }
        for key in ["truncation", "padding"] where !(root[key]?.isNull ?? true) {
            throw unsupported(
                key, "encode would \(key == "truncation" ? "truncate" : "pad"); store the file with \"\(key)\": null")
        }
        let nfc = try normalizer(root["normalizer"])
        let steps = try preTokenizer(root["pre_tokenizer"])
        guard let model = root["model"], model.members != nil else { throw fail(.malformed("no \"model\" object")) }
        try checkModel(model)
        let vocab = try Vocabulary(model["vocab"], loader: self)
        let added = try addedTokens(root["added_tokens"])
        var idCount = vocab.idCount
        for (t, _) in added { idCount = max(idCount, Int(t.id) + 1) }
        var decodeBytes = [[UInt8]](repeating: [], count: idCount)
        for (i, b) in vocab.decodeBytes.enumerated() { decodeBytes[i] = b }
        for (t, _) in added { decodeBytes[Int(t.id)] = t.content }  // HF looks added tokens up first

        var byteIds = [UInt32](repeating: .max, count: 256)
        for b in 0..<256 { byteIds[b] = vocab.id(raw: [UInt8(b)]) ?? .max }
        var unkId = UInt32.max
        if let unk = model["unk_token"]?.bytes {
            guard let id = vocab.id(utf8: unk) else {
                throw fail(
                    .malformed("unk_token \(String(decoding: unk, as: UTF8.self).debugDescription) is not in the vocab")
                )
            }
            unkId = id
        }
        if byteIds.contains(.max) && model["byte_fallback"]?.bool == true {
            throw unsupported("model", "byte_fallback with bytes missing from the vocabulary")
        }
        let pairs = try merges(model["merges"], vocab: vocab)
        try checkAddedIds(added, vocab: vocab)
        let (prefix, suffix) = try postProcessor(root["post_processor"], decodeBytes: decodeBytes)
        try checkDecoder(root["decoder"])
        let (bos, eos) = try specialIds(prefix: prefix, added: added)
        return TokenizerModel(
            path: path, vocab: vocab.table, decodeBytes: decodeBytes, pairs: pairs, byteIds: byteIds,
            unkId: unkId, fuseUnk: model["fuse_unk"]?.bool ?? false,
            ignoreMerges: model["ignore_merges"]?.bool ?? false,
            steps: steps, nfc: nfc, added: added, prefix: prefix, suffix: suffix, vocabSize: idCount,
            bosId: bos, eosId: eos, fingerprint: fingerprint)
    }

    func isNull(_ v: JSONValue?) -> Bool { v?.isNull ?? true }

    /// NFC or nothing; true when NFC applies.
    func normalizer(_ v: JSONValue?) throws(TokenizerError) -> Bool {
        guard let v, !v.isNull else { return false }
        switch v.typeName {
        case "NFC": return true
        case "Sequence":
            var nfc = false
            for item in v["normalizers"]?.array ?? [] { nfc = try normalizer(item) || nfc }
            return nfc
        case let other: throw unsupported("normalizer", "\(other) (only NFC or none)")
        }
    }

    /// The split steps; ByteLevel must come last, since later steps would see mapped characters.
    func preTokenizer(_ v: JSONValue?) throws(TokenizerError) -> [PreTokenizerStep] {
        var flat: [JSONValue] = []
        func flatten(_ v: JSONValue?) throws(TokenizerError) {
            guard let v, v.members != nil else {
                throw unsupported("pre_tokenizer", "missing; a byte-level BPE needs ByteLevel")
            }
            if v.typeName == "Sequence" {
                for item in v["pretokenizers"]?.array ?? [] { try flatten(item) }
            } else {
                flat.append(v)
            }
        }
        try flatten(v)
        var steps: [PreTokenizerStep] = []
        for (index, obj) in flat.enumerated() {
            switch obj.typeName {
            case "ByteLevel":
                guard index == flat.count - 1 else {
                    throw unsupported("pre_tokenizer", "ByteLevel followed by other pre-tokenizers")
                }
                if obj["add_prefix_space"]?.bool == true {
                    throw unsupported("pre_tokenizer", "ByteLevel with add_prefix_space: true")
                }
                if obj["use_regex"]?.bool ?? true { steps.append(.regex(.gpt2)) }
            case "Split":
                guard let pattern = obj["pattern"] else { throw fail(.malformed("Split without pattern")) }
                guard let regex = pattern["Regex"]?.string else {
                    throw unsupported("pre_tokenizer", "Split with a String pattern")
                }
                guard let family = RegexFamily(pattern: regex) else {
                    throw unsupported(
                        "pre_tokenizer",
                        "Split regex \(regex.debugDescription) is not one of the known GPT-2, Llama-3/cl100k or Qwen2 patterns"
                    )
                }
                let behavior = obj["behavior"]?.string ?? "?"
                guard behavior == "Isolated", obj["invert"]?.bool != true else {
                    throw unsupported(
                        "pre_tokenizer",
                        "Split with behavior \(behavior), invert \(obj["invert"]?.bool ?? false) (only Isolated, not inverted)"
                    )
                }
                steps.append(.regex(family))
            case "Digits":
                steps.append(.digits(individual: obj["individual_digits"]?.bool ?? false))
            case let other:
                throw unsupported("pre_tokenizer", "\(other) (only ByteLevel, Split, Digits, Sequence)")
            }
        }
        guard flat.last?.typeName == "ByteLevel" else {
            throw unsupported("pre_tokenizer", "no ByteLevel step; only byte-level BPE is supported")
        }
        guard steps.count <= 8 else { throw unsupported("pre_tokenizer", "more than 8 split steps") }
        return steps
    }

    func checkModel(_ model: JSONValue) throws(TokenizerError) {
        let kind = model["type"]?.string ?? (model["merges"] != nil ? "BPE" : "?")
        guard kind == "BPE" else { throw unsupported("model", "\(kind) (only byte-level BPE)") }
        if let dropout = model["dropout"]?.double, dropout > 0 {
            throw unsupported("model", "BPE dropout \(dropout) makes encoding random")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = model[key]?.string, !s.isEmpty { throw unsupported("model", "BPE \(key) \(s.debugDescription)") }
        }
        // Bytes missing from the vocabulary are dropped or become unk_token, exactly as HF does.
    }

    func addedTokens(_ v: JSONValue?) throws(TokenizerError) -> [(AddedToken, normalized: Bool)] {
        guard let v, !v.isNull else { return [] }
        guard let list = v.array else { throw fail(.malformed("added_tokens is not an array")) }
        var out: [(AddedToken, normalized: Bool)] = []
        for item in list {
            guard let id = item["id"]?.int, let content = item["content"]?.bytes, !content.isEmpty else {
                throw fail(.malformed("added token without id or content"))
            }
            guard id >= 0, id < TokenizerLoader.idLimit else {
                throw fail(.malformed("added token id \(id) outside 0..<\(TokenizerLoader.idLimit)"))
            }
            let special = item["special"]?.bool ?? false
            let t = AddedToken(
                id: UInt32(id), content: content, special: special,
                singleWord: item["single_word"]?.bool ?? false,
                lstrip: item["lstrip"]?.bool ?? false, rstrip: item["rstrip"]?.bool ?? false)
            out.append((t, item["normalized"]?.bool ?? !special))
        }
        // A token starting with whitespace could begin inside the whitespace an rstrip token swallowed,
        // where HF's overlapping spans have no byte-exact reading.
        if out.contains(where: { $0.0.rstrip }),
            let t = out.first(where: { $0.0.content.first.map { ScalarClass.isWhitespace(UInt32($0)) } ?? false })
        {
            throw unsupported(
                "added_tokens",
                "rstrip tokens together with \(String(decoding: t.0.content, as: UTF8.self).debugDescription), which starts with whitespace"
            )
        }
        return out
    }

    func merges(_ v: JSONValue?, vocab: Vocabulary) throws(TokenizerError) -> PairTable {
        guard let list = v?.array else { throw fail(.malformed("model.merges is not an array")) }
        var out: [(left: UInt32, right: UInt32, merged: UInt32)] = []
        out.reserveCapacity(list.count)
        for (rank, item) in list.enumerated() {
            let a: [UInt8], b: [UInt8]
            if let s = item.bytes {
                let spaces = s.indices.filter { s[$0] == 0x20 }
                guard spaces.count == 1 else {
                    throw fail(
                        .malformed(
                            "merge \(rank) \(String(decoding: s, as: UTF8.self).debugDescription) is not \"a b\""))
                }
                (a, b) = (Array(s[..<spaces[0]]), Array(s[(spaces[0] + 1)...]))
            } else if let pair = item.array, pair.count == 2, let x = pair[0].bytes, let y = pair[1].bytes {
                (a, b) = (x, y)
            } else {
                throw fail(.malformed("merge \(rank) is neither \"a b\" nor [\"a\", \"b\"]"))
            }
            guard let (l, r, m) = vocab.mergeIds(a, b) else {
                throw fail(
                    .malformed(
                        "merge \(rank) (\(String(decoding: a, as: UTF8.self).debugDescription), \(String(decoding: b, as: UTF8.self).debugDescription)) uses tokens missing from the vocab"
                    ))
            }
            out.append((l, r, m))
        }
        return PairTable(out)
    }

    /// Added tokens agree with the vocabulary: a content the vocabulary has keeps its id there, an id the
    /// vocabulary uses keeps its text, and no id or content is given twice with different partners. (HF warns and
    /// picks one; either pick could differ from what the file's author meant.)
    func checkAddedIds(_ added: [(AddedToken, normalized: Bool)], vocab: Vocabulary) throws(TokenizerError) {
        var byId: [UInt32: Int] = [:], byContent: [[UInt8]: Int] = [:]
        for (k, (t, _)) in added.enumerated() {
            let name = String(decoding: t.content, as: UTF8.self).debugDescription
            if let j = byId[t.id], added[j].0.content != t.content {
                throw fail(
                    .malformed(
                        "added_tokens[\(k)]: id \(t.id) of \(name) is already the id of added_tokens[\(j)] \(String(decoding: added[j].0.content, as: UTF8.self).debugDescription)"
                    ))
            }
            if let j = byContent[t.content], added[j].0.id != t.id {
                throw fail(
                    .malformed(
                        "added_tokens[\(k)]: \(name) has id \(t.id), added_tokens[\(j)] gives it id \(added[j].0.id)"))
            }
            byId[t.id] = byId[t.id] ?? k
            byContent[t.content] = byContent[t.content] ?? k
            if let v = vocab.id(utf8: t.content), v != t.id {
                throw fail(.malformed("added_tokens[\(k)]: \(name) has id \(t.id), but model.vocab gives it id \(v)"))
            }
            if let other = vocab.text(of: t.id), other != t.content {
                throw fail(
                    .malformed(
                        "added_tokens[\(k)]: id \(t.id) of \(name) is already the id of model.vocab entry \(String(decoding: other, as: UTF8.self).debugDescription)"
                    ))
            }
        }
    }

    /// Ids the post-processor puts before and after a single sequence; each must be a token of the vocabulary.
    func postProcessor(_ v: JSONValue?, decodeBytes: [[UInt8]]) throws(TokenizerError) -> ([UInt32], [UInt32]) {
        guard let v, !v.isNull else { return ([], []) }
        switch v.typeName {
        case "ByteLevel": return ([], [])  // only moves offsets
        case "Sequence":
            var prefix: [UInt32] = [], suffix: [UInt32] = []
            for item in v["processors"]?.array ?? [] {
                let (p, s) = try postProcessor(item, decodeBytes: decodeBytes)
                prefix = p + prefix
                suffix += s
            }
            return (prefix, suffix)
        case "TemplateProcessing":
            guard let single = v["single"]?.array else { throw fail(.malformed("TemplateProcessing without single")) }
            var prefix: [UInt32] = [], suffix: [UInt32] = []
            var seenSequence = false
            for piece in single {
                if let seq = piece["Sequence"] {
                    guard seq["id"]?.string == "A", !seenSequence else {
                        throw unsupported("post_processor", "single template with sequence \(seq["id"]?.string ?? "?")")
                    }
                    seenSequence = true
                } else if let name = piece["SpecialToken"]?["id"]?.string {
                    guard let ids = v["special_tokens"]?[name]?["ids"]?.array, !ids.isEmpty else {
                        throw fail(
                            .malformed("post_processor: template special token \(name.debugDescription) has no ids"))
                    }
                    var u: [UInt32] = []
                    for (k, x) in ids.enumerated() {
                        // Unchecked, an id past the vocabulary would only be noticed by whoever reads the ids.
                        guard let id = x.int, id >= 0, id < decodeBytes.count, !decodeBytes[id].isEmpty else {
                            throw fail(
                                .malformed(
                                    "post_processor.special_tokens[\(name.debugDescription)].ids[\(k)]: \(x.summary) is not the id of a token (the vocabulary has ids 0..<\(decodeBytes.count))"
                                ))
                        }
                        u.append(UInt32(id))
                    }
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

    func checkDecoder(_ v: JSONValue?) throws(TokenizerError) {
        guard let v, !v.isNull else { return }
        guard v.typeName == "ByteLevel" else { throw unsupported("decoder", "\(v.typeName) (only ByteLevel)") }
    }

    /// BOS and EOS: tokenizer_config.json beside the file when present, else the template and common names.
    func specialIds(prefix: [UInt32], added: [(AddedToken, normalized: Bool)]) throws(TokenizerError) -> (
        UInt32?, UInt32?
    ) {
        func id(of name: [UInt8]) -> UInt32? { added.first { $0.0.content == name }?.0.id }
        var config: JSONValue? = nil
        if let configContents {
            config = try? StrictJSON.parse(configContents, file: path)
        } else if path.hasSuffix("tokenizer.json") {
            let configPath = String(path.dropLast("tokenizer.json".count)) + "tokenizer_config.json"
            if let data = FileManager.default.contents(atPath: configPath) {
                do { config = try StrictJSON.parse(data, file: configPath) } catch {
                    throw TokenizerError(path: configPath, .malformed("JSON at \(error.position)"))
                }
            }
        }
        func configured(_ key: String) -> UInt32? {
            guard let v = config?[key] else { return nil }
            return (v.bytes ?? v["content"]?.bytes).flatMap(id)
        }
        let names = { (list: [String]) in list.lazy.compactMap { id(of: Array($0.utf8)) }.first }
        let bos =
            configured("bos_token") ?? prefix.first ?? names(["<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"])
        let eos = configured("eos_token") ?? names(["<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"])
        return (bos, eos)
    }
}

/// The model vocabulary: byte-level entries in a hash table, the few others by their text.
struct Vocabulary {
    let table: VocabTable
    /// Entries whose text is not byte-level characters (never produced by BPE), by UTF-8 text.
    let unmapped: [[UInt8]: UInt32]
    let decodeBytes: [[UInt8]]
    let idCount: Int

    init(_ v: JSONValue?, loader: TokenizerLoader) throws(TokenizerError) {
        guard let members = v?.members else { throw loader.fail(.malformed("model.vocab is not an object")) }
        var entries: [(id: UInt32, bytes: [UInt8])] = []
        entries.reserveCapacity(members.count)
        var unmapped: [[UInt8]: UInt32] = [:]
        var maxId = -1
        var owner: [Int32] = []  // entry index by id, to name both entries of a repeated id
        for (k, (key, value)) in members.enumerated() {
            let text = Array(key.utf8)
            guard let id = value.int, id >= 0, id < TokenizerLoader.idLimit else {
                throw loader.fail(
                    .malformed(
                        "model.vocab[\(key.debugDescription)]: id \(value.summary) is not an integer in 0..<\(TokenizerLoader.idLimit)"
                    ))
            }
            if id >= owner.count {
                owner.append(contentsOf: repeatElement(-1, count: max(id + 1 - owner.count, owner.count)))
            }
            if owner[id] >= 0 {
                // HF keeps one of the two entries for decoding and encodes both, so the ids would not round-trip.
                throw loader.fail(
                    .malformed(
                        "model.vocab[\(key.debugDescription)]: id \(id) is already the id of \(members[Int(owner[id])].key.debugDescription)"
                    ))
            }
            owner[id] = Int32(k)
            maxId = max(maxId, id)
            if let raw = ByteLevelMap.bytes(utf8: text) {
                entries.append((UInt32(id), raw))
            } else {
                unmapped[text] = UInt32(id)
            }
        }
        idCount = maxId + 1
        var decode = [[UInt8]](repeating: [], count: idCount)
        for e in entries { decode[Int(e.id)] = e.bytes }
        for (text, id) in unmapped { decode[Int(id)] = text }  // what HF's ByteLevel decoder falls back to
        decodeBytes = decode
        table = VocabTable(entries: entries)
        self.unmapped = unmapped
    }

    /// The id of the entry whose raw bytes are `raw`.
    func id(raw: [UInt8]) -> UInt32? {
        raw.withUnsafeBufferPointer { b in
            b.isEmpty ? nil : table.view.find(b.baseAddress!, b.count)
        }
    }

    /// Ids of `a`, `b` and `a + b` (texts as in tokenizer.json), or nil when one is not in the vocabulary.
    func mergeIds(_ a: [UInt8], _ b: [UInt8]) -> (UInt32, UInt32, UInt32)? {
        guard let ra = ByteLevelMap.bytes(utf8: a), let rb = ByteLevelMap.bytes(utf8: b) else {
            guard let l = id(utf8: a), let r = id(utf8: b), let m = id(utf8: a + b) else { return nil }
            return (l, r, m)
        }
        // Both halves are byte-level text, so the merged token is their raw bytes side by side.
        let joined = ra + rb
        return joined.withUnsafeBufferPointer { p -> (UInt32, UInt32, UInt32)? in
            let view = table.view, base = p.baseAddress!
            guard !ra.isEmpty, !rb.isEmpty, let l = view.find(base, ra.count),
                let r = view.find(base + ra.count, rb.count),
                let m = view.find(base, joined.count)
            else { return nil }
            return (l, r, m)
        }
    }

    /// The text (as written in tokenizer.json) of the vocabulary entry with id `id`, or nil when there is none.
    func text(of id: UInt32) -> [UInt8]? {
        guard Int(id) < decodeBytes.count else { return nil }
        if let (text, _) = unmapped.first(where: { $0.value == id }) { return text }
        let raw = decodeBytes[Int(id)]
        return raw.isEmpty ? nil : Array(ByteLevelMap.string(of: raw).utf8)
    }

    /// The id of the entry written `text` in tokenizer.json.
    func id(utf8 text: [UInt8]) -> UInt32? {
        if let raw = ByteLevelMap.bytes(utf8: text) { return id(raw: raw) }
        return unmapped[text]
    }
}

extension JSONValue {
    /// A string's UTF-8 bytes (vocabulary texts are compared and mapped as bytes).
    var bytes: [UInt8]? { string.map { Array($0.utf8) } }
    /// The `type` member of an object, as tokenizer.json tags its components.
    var typeName: String { self["type"]?.string ?? "?" }
}
