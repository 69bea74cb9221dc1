import Support

/// The immutable tables of one loaded tokenizer, shared by every encoder on every thread.
final class TokenizerModel: Sendable {
    let path: String
    let vocab: VocabTable
    /// What each id decodes to.
    let decodeBytes: ByteArena
    let pairs: PairTable
    /// The token of each single byte; `UInt32.max` for bytes the vocabulary lacks.
    let byteIds: FrozenBuffer<UInt32>
    /// The unknown token for such bytes (`UInt32.max`: none, the byte is dropped) and whether runs fuse.
    let unkId: UInt32
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// Per id: a piece equal to the token's bytes encodes to exactly this id (always under
    /// ignore_merges; otherwise when BPE of its bytes gives it back), so a vocabulary hit is final.
    let wholePieceIsFinal: FrozenBuffer<Bool>
    let steps: [PreTokenizerStep]
    let nfc: Bool
    /// Added tokens matched in raw text, then those matched after normalization.
    let rawTokens: AddedTokenSet
    let normalizedTokens: AddedTokenSet
    /// Post-processor ids around a single sequence.
    let prefix: [UInt32]
    let suffix: [UInt32]
    let isSpecial: [Bool]
    let vocabSize: Int
    let bosId: UInt32?
    let eosId: UInt32?
    let fingerprint: UInt64

    init(
        path: String, vocab: VocabTable, decodeBytes: [[UInt8]], pairs: PairTable, byteIds: [UInt32], unkId: UInt32,
        fuseUnk: Bool,
        ignoreMerges: Bool,
        steps: [PreTokenizerStep], nfc: Bool, added: [(AddedToken, normalized: Bool)],
        prefix: [UInt32], suffix: [UInt32], vocabSize: Int, bosId: UInt32?, eosId: UInt32?, fingerprint: UInt64
    ) {
        self.path = path
        self.vocab = vocab
        self.decodeBytes = ByteArena(decodeBytes)
        self.pairs = pairs
        self.byteIds = FrozenBuffer(byteIds)
        self.unkId = unkId
        self.fuseUnk = fuseUnk
        self.ignoreMerges = ignoreMerges
        self.steps = steps
        self.nfc = nfc
        self.rawTokens = AddedTokenSet(added.filter { !$0.normalized }.map(\.0))
        // HF matches normalized tokens by their normalized content.
        self.normalizedTokens = AddedTokenSet(
            added.filter { $0.normalized }.map { t, _ in
                guard nfc else { return t }
                let content = t.content.withUnsafeBufferPointer { NFC.normalizeIfNeeded($0, 0, $0.count) } ?? t.content
                return AddedToken(
                    id: t.id, content: content, special: t.special, singleWord: t.singleWord,
                    lstrip: t.lstrip, rstrip: t.rstrip)
            })
        self.prefix = prefix
        self.suffix = suffix
        var special = [Bool](repeating: false, count: vocabSize)
        for (t, _) in added where t.special { special[Int(t.id)] = true }
        self.isSpecial = special
        self.vocabSize = vocabSize
        self.bosId = bosId
        self.eosId = eosId
        self.fingerprint = fingerprint
        var final = [Bool](repeating: false, count: vocabSize)
        let view = vocab.view
        let tables = MergeTables(byteIds: self.byteIds.pointer, pairs: pairs.view, unk: unkId, fuseUnk: fuseUnk)
        var scratch = MergeScratch()
        for k in 0..<vocab.count {
            let id = view.ids[k]
            if ignoreMerges {
                final[Int(id)] = true
            } else {
                let (p, n) = view.entry(k)
                scratch.merge(p, n, tables)
                final[Int(id)] = scratch.ids.count == 1 && scratch.ids[0] == id
            }
        }
        self.wholePieceIsFinal = FrozenBuffer(final)
    }

    /// Pointer views for one encoder; valid while this model is alive, which the encoder ensures.
    var encoderTables: EncoderTables {
        var packed: UInt64 = 0
        for (k, step) in steps.enumerated() { packed |= UInt64(step.code) << (8 * UInt64(k)) }
        return EncoderTables(
            classes: ScalarClass.table.pointer, vocab: vocab.view,
            merge: MergeTables(byteIds: byteIds.pointer, pairs: pairs.view, unk: unkId, fuseUnk: fuseUnk),
            final: wholePieceIsFinal.pointer, steps: packed, stepCount: steps.count)
    }
}

/// Everything the encoding hot path reads, as plain pointers (no reference counting).
struct EncoderTables {
    let classes: UnsafePointer<UInt8>
    let vocab: VocabView
    let merge: MergeTables
    let final: UnsafePointer<Bool>
    /// Pre-tokenizer step codes, one byte each from the lowest.
    let steps: UInt64
    let stepCount: Int

    /// Code of step `k`.
    @inline(__always)
    func step(_ k: Int) -> UInt8 { UInt8(truncatingIfNeeded: steps >> (8 * UInt64(k))) }
}
