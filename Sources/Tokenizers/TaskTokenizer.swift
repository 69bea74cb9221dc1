import Support

/// The demo task's own byte-level BPE tokenizer: `<pad>` `<s>` `</s>` (ids 0, 1, 2), the 256 bytes (id 3 + byte,
/// so any text encodes), then merges learned over the task's words. Digits and symbols are never merged,
/// so numbers and calculations stay one character per token (what a small model learns arithmetic from);
/// only letter runs with at most one leading space (` apples`) are, which shortens the word problems.
/// Written as a tokenizer.json that Ingest's `Tokenizer` and HF `tokenizers` read to the same ids.
public struct TaskTokenizer: Sendable, Equatable {
    /// One learned merge: two adjacent tokens (raw bytes) become one.
    public struct Merge: Sendable, Hashable {
        /// The left token's bytes.
        public var left: [UInt8]
        /// The right token's bytes.
        public var right: [UInt8]
        /// A merge of `left` and `right`.
        public init(_ left: [UInt8], _ right: [UInt8]) {
            self.left = left
            self.right = right
        }
    }

    /// Padding (id 0).
    public static let padToken = "<pad>"
    /// Beginning of sequence (id 1), put before every prompt by the post-processor.
    public static let bosToken = "<s>"
    /// End of sequence (id 2).
    public static let eosToken = "</s>"
    /// Id of `<pad>`.
    public static let padId: UInt32 = 0
    /// Id of `<s>`.
    public static let bosId: UInt32 = 1
    /// Id of `</s>`.
    public static let eosId: UInt32 = 2
    /// Id of byte 0; byte b is `firstByteId + b`.
    public static let firstByteId: UInt32 = 3

    /// The merges in rank order.
    public let merges: [Merge]
    /// Tokens made by merges, in id order from `firstByteId + 256` (two merges may make the same token).
    public let mergedTokens: [[UInt8]]

    /// A tokenizer with these merges (each side must be a byte or an earlier merge's result).
    public init(merges: [Merge]) throws(TokenizerError) {
        var known = Set((0...255).map { [UInt8($0)] })
        for (rank, m) in merges.enumerated() {
            guard known.contains(m.left), known.contains(m.right) else {
                throw TokenizerError(
                    path: "task tokenizer",
                    .malformed("merge \(rank) uses a token that neither a byte nor an earlier merge makes"))
            }
            known.insert(m.left + m.right)
        }
        self.init(checked: merges)
    }

    private init(checked merges: [Merge]) {
        var seen = Set<[UInt8]>()
        var tokens: [[UInt8]] = []
        for m in merges where seen.insert(m.left + m.right).inserted {
            tokens.append(m.left + m.right)
        }
        self.merges = merges
        mergedTokens = tokens
    }

    /// Learns up to `maxMerges` merges from `corpus`: the most frequent adjacent pair inside letter runs
    /// (GPT-2 pre-tokenization: ` ?[A-Za-z]+`), ties broken by the pair's bytes, until no pair occurs
    /// `minCount` times. Deterministic for the same corpus.
    public static func learn(from corpus: [String], maxMerges: Int = 512, minCount: Int = 2) -> TaskTokenizer {
        var counts: [[UInt8]: Int] = [:]
        for text in corpus {
            let b = Array(text.utf8)
            var i = 0
            while i < b.count {
                guard isLetter(b[i]) else {
                    i += 1
                    continue
                }
                let start = i > 0 && b[i - 1] == 0x20 ? i - 1 : i
                while i < b.count, isLetter(b[i]) { i += 1 }
                counts[Array(b[start..<i]), default: 0] += 1
            }
        }
        // Words as symbol lists, in a fixed order so that ties and merging never depend on hashing.
        let order = counts.keys.sorted { $0.lexicographicallyPrecedes($1) }
        var words = order.map { $0.map { [$0] } }
        let weight = order.map { counts[$0]! }
        var merges: [Merge] = []
        while merges.count < maxMerges {
            var pairs: [Merge: Int] = [:]
            for (w, symbols) in words.enumerated() where symbols.count > 1 {
                for k in 0..<(symbols.count - 1) { pairs[Merge(symbols[k], symbols[k + 1]), default: 0] += weight[w] }
            }
            guard
                let best = pairs.max(by: { a, b in
                    a.value != b.value
                        ? a.value < b.value
                        : a.key.left != b.key.left
                            ? b.key.left.lexicographicallyPrecedes(a.key.left)
                            : b.key.right.lexicographicallyPrecedes(a.key.right)
                }), best.value >= minCount
            else { break }
            merges.append(best.key)
            let joined = best.key.left + best.key.right
            for w in words.indices where words[w].count > 1 {
                var out: [[UInt8]] = []
                var k = 0
                let s = words[w]
                while k < s.count {
                    if k + 1 < s.count, s[k] == best.key.left, s[k + 1] == best.key.right {
                        out.append(joined)
                        k += 2
                    } else {
                        out.append(s[k])
                        k += 1
                    }
                }
                words[w] = out
            }
        }
        // Every merge joins tokens that exist by construction.
        return TaskTokenizer(checked: merges)
    }

    static func isLetter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }

    /// Ids in use: 3 special tokens, 256 bytes, the merged tokens.
    public var vocabSize: Int { Int(TaskTokenizer.firstByteId) + 256 + mergedTokens.count }

    /// The tokenizer.json text (ordered keys, one vocabulary entry and merge per line).
    public var tokenizerJSON: String {
        let specials = [
            (TaskTokenizer.padToken, TaskTokenizer.padId), (TaskTokenizer.bosToken, TaskTokenizer.bosId),
            (TaskTokenizer.eosToken, TaskTokenizer.eosId),
        ]
        let added = specials.map { name, id in
            JSONText.object([
                ("id", "\(id)"), ("content", JSONText.string(name)), ("single_word", "false"),
                ("lstrip", "false"), ("rstrip", "false"), ("normalized", "false"), ("special", "true"),
            ])
        }
        var vocab = specials.map { (JSONText.string($0.0), $0.1) }
        for b in 0...255 {
            vocab.append((JSONText.string(ByteLevelMap.string(of: [UInt8(b)])), TaskTokenizer.firstByteId + UInt32(b)))
        }
        for (k, t) in mergedTokens.enumerated() {
            vocab.append((JSONText.string(ByteLevelMap.string(of: t)), TaskTokenizer.firstByteId + 256 + UInt32(k)))
        }
        let mergeLines = merges.map {
            JSONText.array([
                JSONText.string(ByteLevelMap.string(of: $0.left)), JSONText.string(ByteLevelMap.string(of: $0.right)),
            ])
        }
        let bos = JSONText.string(TaskTokenizer.bosToken)
        let bosPiece = JSONText.object([("SpecialToken", JSONText.object([("id", bos), ("type_id", "0")]))])
        func sequence(_ id: String, _ type: Int) -> String {
            JSONText.object([("Sequence", JSONText.object([("id", JSONText.string(id)), ("type_id", "\(type)")]))])
        }
        let post = JSONText.object([
            ("type", "\"TemplateProcessing\""),
            ("single", JSONText.array([bosPiece, sequence("A", 0)])),
            ("pair", JSONText.array([bosPiece, sequence("A", 0), sequence("B", 1)])),
            (
                "special_tokens",
                JSONText.object([
                    (
                        TaskTokenizer.bosToken,
                        JSONText.object([
                            ("id", bos), ("ids", "[\(TaskTokenizer.bosId)]"), ("tokens", JSONText.array([bos])),
                        ])
                    )
                ])
            ),
        ])
        let byteLevel = { (prefixSpace: Bool) in
            "{\"type\": \"ByteLevel\", \"add_prefix_space\": \(prefixSpace), \"trim_offsets\": true, \"use_regex\": true}"
        }
        return """
            {
              "version": "1.0",
              "truncation": null,
              "padding": null,
              "added_tokens": [
                \(added.joined(separator: ",\n    "))
              ],
              "normalizer": null,
              "pre_tokenizer": \(byteLevel(false)),
              "post_processor": \(post),
              "decoder": \(byteLevel(true)),
              "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": {
                  \(vocab.map { "\($0.0): \($0.1)" }.joined(separator: ",\n      "))
                },
                "merges": [\(mergeLines.isEmpty ? "" : "\n      " + mergeLines.joined(separator: ",\n      ") + "\n    ")]
              }
            }

            """
    }

    /// tokenizer_config.json: which added tokens are BOS, EOS and PAD (read by HF and by Ingest's loader).
    public var configJSON: String {
        JSONText.object([
            ("bos_token", JSONText.string(TaskTokenizer.bosToken)),
            ("eos_token", JSONText.string(TaskTokenizer.eosToken)),
            ("pad_token", JSONText.string(TaskTokenizer.padToken)), ("add_bos_token", "true"),
            ("add_eos_token", "false"),
            ("model_max_length", "4096"), ("tokenizer_class", "\"PreTrainedTokenizerFast\""),
        ]) + "\n"
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `directory` (each atomically) and returns the
    /// tokenizer.json path.
    @discardableResult
    public func write(directory: String) throws -> String {
        let path = directory + "/tokenizer.json"
        try writeFileAtomically(Array(tokenizerJSON.utf8), to: path)
        try writeFileAtomically(Array(configJSON.utf8), to: directory + "/tokenizer_config.json")
        return path
    }
}
