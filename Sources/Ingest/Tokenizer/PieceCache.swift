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

    init() {
        keyLength.initialize(repeating: 0, count: PieceCache.slotCount)
        valueCount.initialize(repeating: 0, count: PieceCache.slotCount)
        keys.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.keyMax)
        values.initialize(repeating: 0, count: PieceCache.slotCount * PieceCache.valueMax)
    }

    deinit {
        keys.deallocate()
        keyLength.deallocate()
        values.deallocate()
        valueCount.deallocate()
    }

    @inline(__always)
    static func slot(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash >> 40) & (slotCount - 1) }

    /// Appends the cached ids of the piece to `ids`; false on a miss.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, into ids: inout [UInt32]) -> Bool {
        guard n <= PieceCache.keyMax else { return false }
        let slot = PieceCache.slot(hash)
        guard Int(keyLength[slot]) == n, memEqual(keys + slot * PieceCache.keyMax, p, n) else { return false }
        let base = values + slot * PieceCache.valueMax
        for i in 0..<Int(valueCount[slot]) { ids.append(base[i]) }
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
