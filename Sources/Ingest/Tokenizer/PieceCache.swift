/// A small direct-mapped cache of piece bytes -> token ids, one per encoder (pieces repeat ~98% of the time).
final class PieceCache {
    static let slotCount = 4096
    /// Longest piece cached, in bytes; longer pieces are rare and mostly vocabulary hits.
    static let keyMax = 32
    /// Most ids a cached piece may have.
    static let valueMax = 16

    private let keys = UnsafeMutablePointer<UInt8>.allocate(capacity: slotCount * keyMax)
    private let keyLength = UnsafeMutablePointer<UInt8>.allocate(capacity: slotCount)  // 0: empty
    private let values = UnsafeMutablePointer<UInt32>.allocate(capacity: slotCount * valueMax)
    private let valueCount = UnsafeMutablePointer<UInt8>.allocate(capacity: slotCount)
    /// Pieces of up to 8 bytes that are one final vocabulary token: slot `s` holds their bytes at
    /// `2s` and `id | length << 32` (0: empty) at `2s + 1`, one cache line per probe. 64 KiB that stay
    /// in cache, in front of the multi-megabyte vocabulary table.
    static let shortCount = 4096
    private let short = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * shortCount)

    init() {
        keyLength.initialize(repeating: 0, count: PieceCache.slotCount)
        valueCount.initialize(repeating: 0, count: PieceCache.slotCount)
        keys.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.keyMax)
        values.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.valueMax)
        short.initialize(repeating: 0, count: 2 * PieceCache.shortCount)
    }

    /// The token of a piece of at most 8 bytes whose bytes as a word are `first`, if cached.
    @inline(__always)
    func short(_ first: UInt64, _ n: Int, hash: UInt64) -> UInt32? {
        let s = 2 * (Int(truncatingIfNeeded: hash) & (PieceCache.shortCount - 1))
        let v = short[s + 1]
        guard v >> 32 == UInt64(n), short[s] == first else { return nil }
        return UInt32(truncatingIfNeeded: v)
    }

    /// Remembers that a piece of at most 8 bytes is exactly token `id`.
    @inline(__always)
    func storeShort(_ first: UInt64, _ n: Int, hash: UInt64, id: UInt32) {
        let s = 2 * (Int(truncatingIfNeeded: hash) & (PieceCache.shortCount - 1))
        short[s] = first
        short[s + 1] = UInt64(n) << 32 | UInt64(id)
    }

    deinit {
        keys.deallocate()
        keyLength.deallocate()
        values.deallocate()
        valueCount.deallocate()
        short.deallocate()
    }

    @inline(__always)
    static func slot(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> 40) & (slotCount - 1) }

    /// Appends the cached ids of the piece to `ids`; false on a miss.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, into out: inout TokenSink) -> Bool {
        guard n <= PieceCache.keyMax else { return false }
        let slot = PieceCache.slot(hash)
        guard Int(keyLength[slot]) == n, memEqual(keys + slot * PieceCache.keyMax, p, n) else { return false }
        let base = values + slot * PieceCache.valueMax
        for i in 0..<Int(valueCount[slot]) { out.append(base[i]) }
        return true
    }

    /// Remembers the ids of a piece, replacing whatever shared its slot.
    func store(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, ids: [UInt32]) {
        guard n <= PieceCache.keyMax, ids.count <= PieceCache.valueMax else { return }
        let slot = PieceCache.slot(hash)
        (keys + slot * PieceCache.keyMax).update(from: p, count: n)
        keyLength[slot] = UInt8(n)
        let base = values + slot * PieceCache.valueMax
        for (i, id) in ids.enumerated() { base[i] = id }
        valueCount[slot] = UInt8(ids.count)
    }
}
