/// The immutable tables of one loaded tokenizer, shared by every encoder on every thread.
final class TokenizerModel: Sendable {
    let path: String
    let vocab: VocabTable
    /// What each id decodes to.
    let decodeBytes: ByteArena
    let pairs: PairTable
    /// The token of each single byte; `UInt32.max` for bytes the vocabulary lacks.
    let byteIds: [UInt32]
    /// The unknown token for such bytes (`UInt32.max`: none, the byte is dropped) and whether runs fuse.
    let unkId: UInt32
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// Per id: BPE of the token's own bytes gives back exactly this id, so a whole-piece vocab hit is final.
    let mergesToSelf: [Bool]
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

    init(path: String, vocab: VocabTable, decodeBytes: [[UInt8]], pairs: PairTable, byteIds: [UInt32], unkId: UInt32, fuseUnk: Bool,
         ignoreMerges: Bool,
         steps: [PreTokenizerStep], nfc: Bool, added: [(AddedToken, normalized: Bool)],
         prefix: [UInt32], suffix: [UInt32], vocabSize: Int, bosId: UInt32?, eosId: UInt32?, fingerprint: UInt64) {
        self.path = path
        self.vocab = vocab
        self.decodeBytes = ByteArena(decodeBytes)
        self.pairs = pairs
        self.byteIds = byteIds
        self.unkId = unkId
        self.fuseUnk = fuseUnk
        self.ignoreMerges = ignoreMerges
        self.steps = steps
        self.nfc = nfc
        self.rawTokens = AddedTokenSet(added.filter { !$0.normalized }.map(\.0))
        self.normalizedTokens = AddedTokenSet(added.filter { $0.normalized }.map(\.0))
        self.prefix = prefix
        self.suffix = suffix
        var special = [Bool](repeating: false, count: vocabSize)
        for (t, _) in added where t.special { special[Int(t.id)] = true }
        self.isSpecial = special
        self.vocabSize = vocabSize
        self.bosId = bosId
        self.eosId = eosId
        self.fingerprint = fingerprint
        var toSelf = [Bool](repeating: false, count: vocabSize)
        if !ignoreMerges {
            var scratch = MergeScratch()
            let arena = vocab.arena
            arena.bytes.withUnsafeBufferPointer { all in
                for k in 0..<arena.count {
                    let id = vocab.ids[k]
                    let lo = Int(arena.offsets[k]), hi = Int(arena.offsets[k + 1])
                    guard hi > lo else { continue }
                    scratch.merge(all.baseAddress! + lo, hi - lo, byteIds: byteIds, pairs: pairs, unk: unkId, fuseUnk: fuseUnk)
                    toSelf[Int(id)] = scratch.ids.count == 1 && scratch.ids[0] == id
                }
            }
        }
        self.mergesToSelf = toSelf
    }
}
