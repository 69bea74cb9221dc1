/// A small direct-mapped cache of piece bytes -> token ids, one per encoder (pieces repeat ~98% of the time).
struct PieceCache {
    static let slotCount = 4096
    /// Longest piece cached, in bytes; longer pieces are rare and mostly vocabulary hits.
    static let keyMax = 32
    /// Most ids a cached piece may have.
    static let valueMax = 16

    private var keys = [UInt8](repeating: 0, count: slotCount * keyMax)
    private var keyLength = [UInt8](repeating: 0, count: slotCount)  // 0: empty
    private var values = [UInt32](repeating: 0, count: slotCount * valueMax)
    private var valueCount = [UInt8](repeating: 0, count: slotCount)

    /// Appends the cached ids of the piece to `ids`; false on a miss.
    @inline(__always)
    func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, into ids: inout [UInt32]) -> Bool {
        guard n <= PieceCache.keyMax else { return false }
        let slot = Int(truncatingIfNeeded: hash >> 40) & (PieceCache.slotCount - 1)
        guard Int(keyLength[slot]) == n else { return false }
        let equal = keys.withUnsafeBufferPointer { memEqual($0.baseAddress! + slot * PieceCache.keyMax, p, n) }
        guard equal else { return false }
        let base = slot * PieceCache.valueMax
        ids.append(contentsOf: values[base..<(base + Int(valueCount[slot]))])
        return true
    }

    /// Remembers the ids of a piece, replacing whatever shared its slot.
    @inline(__always)
    mutating func store(_ p: UnsafePointer<UInt8>, _ n: Int, hash: UInt64, ids: [UInt32]) {
        guard n <= PieceCache.keyMax, ids.count <= PieceCache.valueMax else { return }
        let slot = Int(truncatingIfNeeded: hash >> 40) & (PieceCache.slotCount - 1)
        let kb = slot * PieceCache.keyMax
        for i in 0..<n { keys[kb + i] = p[i] }
        keyLength[slot] = UInt8(n)
        let vb = slot * PieceCache.valueMax
        for (i, id) in ids.enumerated() { values[vb + i] = id }
        valueCount[slot] = UInt8(ids.count)
    }
}
