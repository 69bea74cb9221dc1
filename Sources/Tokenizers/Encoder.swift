import Foundation
import Support

/// How an encoder treats special tokens; recorded with the encoder so ingest can state its choice.
public struct EncodeOptions: Sendable, Equatable {
    /// Special tokens written literally in the text become their ids (HF `encode`'s default). When
    /// false they are encoded as ordinary text, like HF `encode_special_tokens = True`; non-special
    /// added tokens are always recognized.
    public var recognizeSpecialTokens: Bool
    /// Surround every encoded text with the post-processor's tokens (BOS ...), like HF `add_special_tokens`.
    public var addSpecialTokens: Bool

    /// Options; the defaults recognize special tokens and add nothing around the text.
    public init(recognizeSpecialTokens: Bool = true, addSpecialTokens: Bool = false) {
        self.recognizeSpecialTokens = recognizeSpecialTokens
        self.addSpecialTokens = addSpecialTokens
    }
}

/// Encodes text to token ids with per-thread scratch space; make one per thread from a shared `Tokenizer`.
public struct Encoder {
    /// Keeps the tables behind `tables` alive.
    let model: TokenizerModel
    let tables: EncoderTables
    /// The special-token policy this encoder applies.
    public let options: EncodeOptions
    var merger = MergeScratch()
    let cache = PieceCache()
    let storage = TokenStorage()
    // This encoder's own copies of what every call reads from the shared model: retaining the model's
    // objects from several threads at once makes their reference counts bounce between cores.
    let prefix: [UInt32], suffix: [UInt32]
    let rawTokens: AddedTokenSet, normalizedTokens: AddedTokenSet
    let nfc: Bool

    init(model: TokenizerModel, options: EncodeOptions) {
        self.model = model
        self.tables = model.encoderTables
        self.options = options
        prefix = model.prefix.map { $0 }
        suffix = model.suffix.map { $0 }
        rawTokens = model.rawTokens.copy()
        normalizedTokens = model.normalizedTokens.copy()
        nfc = model.nfc
    }

    /// Appends the ids of `text` to `ids`.
    public mutating func encode(_ text: String, into ids: inout [UInt32]) {
        var text = text
        text.withUTF8 { encodeValid($0, &ids) }
    }

    /// Appends the ids of UTF-8 `bytes` to `ids`; throws (leaving `ids` unchanged) on invalid UTF-8.
    public mutating func encode(bytes: [UInt8], into ids: inout [UInt32]) throws(TokenizerError) {
        let error: TokenizerError? = bytes.withUnsafeBufferPointer { encodeChecked($0, &ids) }
        if let error { throw error }
    }

    /// Appends the ids of UTF-8 `bytes` to `ids`; throws (leaving `ids` unchanged) on invalid UTF-8.
    public mutating func encode(bytes: UnsafeRawBufferPointer, into ids: inout [UInt32]) throws(TokenizerError) {
        if let error = encodeChecked(bytes.assumingMemoryBound(to: UInt8.self), &ids) { throw error }
    }

    mutating func encodeChecked(_ b: UnsafeBufferPointer<UInt8>, _ ids: inout [UInt32]) -> TokenizerError? {
        if let bad = UTF8Scan.firstInvalidOffset(b) {
            return TokenizerError(path: model.path, .invalidUTF8(offset: bad))
        }
        encodeValid(b, &ids)
        return nil
    }

    /// Appends the ids of `b`, which the caller has already checked is valid UTF-8.
    public mutating func encodeValid(_ b: UnsafeBufferPointer<UInt8>, _ ids: inout [UInt32]) {
        guard b.count > 0 || options.addSpecialTokens else { return }
        // Ids go to a buffer the encoder owns (no per-id array bookkeeping), then to `ids` in one copy.
        // One byte never yields more than one id, so growth is only for NFC expansions.
        var out = storage.sink(reserving: b.count + prefix.count + suffix.count + 16)
        if options.addSpecialTokens { out.append(contentsOf: prefix) }
        splitAdded(b, 0, b.count, &out, raw: true)
        if options.addSpecialTokens { out.append(contentsOf: suffix) }
        ids.append(contentsOf: UnsafeBufferPointer(start: out.base, count: out.count))
    }

    /// Splits out added tokens (HF's AddedVocabulary): first those matched in raw text, then, in each
    /// normalized gap, those matched after normalization.
    mutating func splitAdded(
        _ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ out: inout TokenSink, raw: Bool
    ) {
        let set = raw ? rawTokens : normalizedTokens
        if set.isEmpty {
            gap(b, start, end, &out, raw: raw)
            return
        }
        var chunkStart = start, scan = start
        while let m = set.nextMatch(b, from: scan, end: end) {
            scan = m.end
            let t = set.tokens[m.token]
            if t.special && !options.recognizeSpecialTokens { continue }
            if t.singleWord && !AddedTokenRules.isSingleWord(b, m.start, m.end, start, end) { continue }
            var s = m.start, e = m.end
            if t.lstrip { s = AddedTokenRules.whitespaceBefore(b, s, floor: chunkStart) }
            if t.rstrip {
                e = AddedTokenRules.whitespaceAfter(b, e, end)
                scan = e
            }
            if chunkStart < s { gap(b, chunkStart, s, &out, raw: raw) }
            out.append(t.id)
            chunkStart = e
        }
        if chunkStart < end { gap(b, chunkStart, end, &out, raw: raw) }
    }

    /// Text between added tokens: normalize (raw pass) or pre-tokenize (normalized pass).
    mutating func gap(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ out: inout TokenSink, raw: Bool) {
        guard raw else {
            preTokenize(0, b, start, end, &out)
            return
        }
        if nfc, let normalized = NFC.normalizeIfNeeded(b, start, end) {
            normalized.withUnsafeBufferPointer { splitAdded($0, 0, $0.count, &out, raw: false) }
        } else {
            splitAdded(b, start, end, &out, raw: false)
        }
    }

    /// Applies pre-tokenizer step `k` and the ones after it, then BPE to each final piece.
    mutating func preTokenize(
        _ k: Int, _ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ out: inout TokenSink
    ) {
        let t = tables
        if k == t.stepCount {
            emitPiece(b.baseAddress! + start, end - start, &out)
            return
        }
        let step = t.step(k)
        if k == t.stepCount - 1 {
            splitLast(step, b, start, end, &out)
            return
        }
        var i = start
        while i < end {
            let j = Splitter.pieceEnd(step, b, i, end, t.classes)
            preTokenize(k + 1, b, i, j, &out)
            i = j
        }
    }

    /// Splits `[start, end)` with the last pre-tokenizer step and encodes each piece.
    ///
    /// The common pieces take a short path: pieces of ASCII text are cut by `Splitter.commonPieceEnd`, and
    /// pieces of up to 16 bytes are looked up in the short cache from two masked loads. Everything else goes
    /// the general way, so the pieces and ids are the same either way.
    @inline(__always)
    mutating func splitLast(
        _ step: UInt8, _ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int, _ out: inout TokenSink
    ) {
        let t = tables
        let ct = t.classes
        let base = b.baseAddress!
        let raw = UnsafeRawPointer(base)
        let short = cache.short
        let byteIds = t.merge.byteIds
        // Two words may be loaded at any piece start before this (the loads stay inside `b`).
        let wideLimit = b.count - PieceCache.shortMax
        let common = step <= 2
        var i = start
        while i < end {
            var j = common ? Splitter.commonPieceEnd(step, b, i, end, ct) : -1
            if j < 0 { j = Splitter.pieceEnd(step, b, i, end, ct) }
            let n = j - i
            if n == 1, byteIds[Int(base[i])] != .max {
                out.append(byteIds[Int(base[i])])
            } else if n <= PieceCache.shortMax && i <= wideLimit {
                var w0 = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                var w1: UInt64 = 0
                if n <= 8 {
                    w0 &= UInt64.max >> UInt64(64 - 8 * n)
                } else {
                    w1 = raw.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self) & UInt64.max >> UInt64(128 - 8 * n)
                }
                if !PieceCache.short(short, w0, w1, n, into: &out) { emitPiece(base + i, n, &out) }
            } else {
                emitPiece(base + i, n, &out)
            }
            i = j
        }
    }

    /// BPE of one piece: a single byte, a whole-vocabulary hit, a cache hit, or the merge loop.
    @inline(never)
    mutating func emitPiece(_ p: UnsafePointer<UInt8>, _ n: Int, _ out: inout TokenSink) {
        let t = tables
        if n == 1, t.merge.byteIds[Int(p[0])] != .max {
            out.append(t.merge.byteIds[Int(p[0])])
            return
        }
        var w0: UInt64 = 0, w1: UInt64 = 0
        let shortPiece = n > 0 && n <= PieceCache.shortMax
        if shortPiece {
            w0 = ByteHash.prefix(p, min(n, 8))
            if n > 8 { w1 = ByteHash.prefix(p + 8, n - 8) }
            if PieceCache.short(cache.short, w0, w1, n, into: &out) { return }
        }
        let first = ByteHash.prefix(p, n)
        let hash = ByteHash.hash(p, n, first: first)
        let before = out.count
        if let id = t.vocab.find(p, n, first: first, hash: hash), t.final[Int(id)] {
            out.append(id)
        } else if !cache.lookup(p, n, hash: hash, into: &out) {
            merger.merge(p, n, t.merge)
            out.append(contentsOf: merger.ids)
            cache.store(p, n, hash: hash, ids: merger.ids)
        }
        // Short pieces of up to three ids (nearly all of them) are found in the short cache next time.
        if shortPiece {
            cache.storeShort(w0, w1, n, UnsafeBufferPointer(start: out.base + before, count: out.count - before))
        }
    }
}

/// HF's rules for the `single_word`, `lstrip` and `rstrip` flags of added tokens.
enum AddedTokenRules {
    /// Neither neighbour of the match is a word character (Rust regex `\w`) inside `[lo, hi)`.
    static func isSingleWord(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, _ lo: Int, _ hi: Int) -> Bool {
        if s > lo && ScalarClass.isWordCharacter(UTF8Scan.decodeBefore(b, s).value) { return false }
        if e < hi && ScalarClass.isWordCharacter(UTF8Scan.decode(b, e).value) { return false }
        return true
    }

    /// Start of the whitespace run ending at `s`, not before `floor`.
    static func whitespaceBefore(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, floor: Int) -> Int {
        var s = s
        while s > floor {
            let (v, p) = UTF8Scan.decodeBefore(b, s)
            guard ScalarClass.isWhitespace(v), p >= floor else { break }
            s = p
        }
        return s
    }

    /// End of the whitespace run starting at `e`.
    static func whitespaceAfter(_ b: UnsafeBufferPointer<UInt8>, _ e: Int, _ end: Int) -> Int {
        var e = e
        while e < end {
            let (v, len) = UTF8Scan.decode(b, e)
            guard ScalarClass.isWhitespace(v) else { break }
            e += len
        }
        return e
    }
}

/// Unicode NFC for the Qwen2 family's normalizer.
enum NFC {
    /// The NFC form of `b[start..<end]`, or nil when it has no scalar >= U+0300 and so is already NFC.
    ///
    /// Only runs of non-ASCII bytes holding such a scalar, with the ASCII character before them (a
    /// possible base), go through Foundation: an ASCII character never composes with what precedes it
    /// and scalars below U+0300 are stable, so normalization cannot cross those boundaries.
    static func normalizeIfNeeded(_ b: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> [UInt8]? {
        var i = start
        while i < end && b[i] < 0xCC { i += 1 }
        if i == end { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(end - start + 16)
        var copied = start
        i = start
        while i < end {
            if b[i] < 0x80 {
                i += 1
                continue
            }
            var runEnd = i, needs = false
            while runEnd < end && b[runEnd] >= 0x80 {
                needs = needs || b[runEnd] >= 0xCC
                runEnd += 1
            }
            if needs {
                let regionStart = i > start ? i - 1 : i
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[copied..<regionStart]))
                let text = String(decoding: UnsafeBufferPointer(rebasing: b[regionStart..<runEnd]), as: UTF8.self)
                out.append(contentsOf: text.precomposedStringWithCanonicalMapping.utf8)
                copied = runEnd
            }
            i = runEnd
        }
        out.append(contentsOf: UnsafeBufferPointer(rebasing: b[copied..<end]))
        return out
    }
}
