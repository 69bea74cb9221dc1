import Support

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
    /// Pieces of up to 16 bytes and their ids (up to three; most are one final vocabulary token): slot `s`
    /// holds the bytes as two zero-padded little-endian words at `4s` and `4s + 1`, the first id with
    /// `length << 32 | id count << 40` at `4s + 2` (0: empty) and the other ids at `4s + 3`: half a cache
    /// line per probe, 256 KiB that stay in L2, in front of the multi-megabyte vocabulary table.
    static let shortBits = 13
    static let shortCount = 1 << shortBits
    static let shortMax = 16
    static let shortIds = 3
    let short = UnsafeMutablePointer<UInt64>.allocate(capacity: 4 * shortCount)

    init() {
        keyLength.initialize(repeating: 0, count: PieceCache.slotCount)
        valueCount.initialize(repeating: 0, count: PieceCache.slotCount)
        keys.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.keyMax)
        values.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.valueMax)
        short.initialize(repeating: 0, count: 4 * PieceCache.shortCount)
    }

    /// Index of the first word of the short slot for a piece of `n` <= 16 bytes held in words `w0`, `w1`.
    @inline(__always)
    static func shortSlot(_ w0: UInt64, _ w1: UInt64, _ n: Int) -> Int {
        let h = (w0 ^ (w1 &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(truncatingIfNeeded: n) << 58) &* 0xD6E8_FEB8_6659_FD93
        return Int(truncatingIfNeeded: h >> UInt64(64 - shortBits)) << 2
    }

    /// Appends the cached ids of a piece of `n` <= 16 bytes held in words `w0`, `w1`; false on a miss.
    @inline(__always)
    static func short(
        _ table: UnsafeMutablePointer<UInt64>, _ w0: UInt64, _ w1: UInt64, _ n: Int,
        into out: inout TokenSink
    ) -> Bool {
        let s = shortSlot(w0, w1, n)
        let v = table[s + 2]
        guard (v >> 32) & 0xFF == UInt64(n), table[s] == w0, table[s + 1] == w1 else { return false }
        out.append(UInt32(truncatingIfNeeded: v))
        let count = v >> 40
        if count > 1 {
            let more = table[s + 3]
            out.append(UInt32(truncatingIfNeeded: more))
            if count > 2 { out.append(UInt32(truncatingIfNeeded: more >> 32)) }
        }
        return true
    }

    /// Remembers the ids (1 to 3) of a piece of at most 16 bytes held in words `w0`, `w1`.
    @inline(__always)
    func storeShort(_ w0: UInt64, _ w1: UInt64, _ n: Int, _ ids: UnsafeBufferPointer<UInt32>) {
        guard ids.count >= 1 && ids.count <= PieceCache.shortIds else { return }
        let s = PieceCache.shortSlot(w0, w1, n)
        short[s] = w0
        short[s + 1] = w1
        short[s + 2] = UInt64(ids[0]) | UInt64(n) << 32 | UInt64(ids.count) << 40
        short[s + 3] = ids.count > 1 ? UInt64(ids[1]) | (ids.count > 2 ? UInt64(ids[2]) << 32 : 0) : 0
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
