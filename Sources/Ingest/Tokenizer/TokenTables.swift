/// Hashing of short byte strings shared by the vocabulary table and the encoder cache.
enum ByteHash {
    /// A fast 64-bit hash of `count` bytes at `p` (word-at-a-time multiply-xorshift).
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(truncatingIfNeeded: count)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= count {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0x9FB2_1C65_1E98_DF25
            h ^= h >> 29
            i += 8
        }
        if i < count {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < count {
                w |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ w) &* 0x9FB2_1C65_1E98_DF25
        }
        h ^= h >> 32
        h = h &* 0xD6E8_FEB8_6659_FD93
        h ^= h >> 32
        return h
    }
}

/// An immutable open-addressing map from the raw bytes of vocabulary entries to their ids.
struct VocabTable: Sendable {
    /// Bytes of every id, concatenated; `offsets[id] ..< offsets[id + 1]`.
    let bytes: [UInt8]
    let offsets: [UInt32]
    /// Slot -> id, `UInt32.max` when empty.
    let slots: [UInt32]
    let mask: Int

    /// Builds the table over `entries` (id, bytes); ids not listed decode to nothing.
    init(idCount: Int, entries: [(id: UInt32, bytes: [UInt8])], lookupable: (UInt32) -> Bool) {
        var perId = [[UInt8]](repeating: [], count: idCount)
        for e in entries { perId[Int(e.id)] = e.bytes }
        var bytes: [UInt8] = []
        var offsets: [UInt32] = [0]
        offsets.reserveCapacity(idCount + 1)
        for b in perId {
            bytes.append(contentsOf: b)
            offsets.append(UInt32(bytes.count))
        }
        var capacity = 16
        while capacity < entries.count * 2 { capacity <<= 1 }
        var slots = [UInt32](repeating: .max, count: capacity)
        let mask = capacity - 1
        bytes.withUnsafeBufferPointer { all in
            for e in entries where lookupable(e.id) && !e.bytes.isEmpty {
                let start = Int(offsets[Int(e.id)])
                var s = Int(truncatingIfNeeded: ByteHash.hash(all.baseAddress! + start, e.bytes.count)) & mask
                while slots[s] != .max { s = (s + 1) & mask }
                slots[s] = e.id
            }
        }
        self.bytes = bytes
        self.offsets = offsets
        self.slots = slots
        self.mask = mask
    }

    /// The bytes of `id` (empty for ids that have none).
    func tokenBytes(_ id: UInt32) -> ArraySlice<UInt8> {
        bytes[Int(offsets[Int(id)])..<Int(offsets[Int(id) + 1])]
    }

    /// The id whose bytes are exactly `count` bytes at `p`, or nil.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ count: Int, hash: UInt64) -> UInt32? {
        var s = Int(truncatingIfNeeded: hash) & mask
        return slots.withUnsafeBufferPointer { slots in
            offsets.withUnsafeBufferPointer { offsets in
                bytes.withUnsafeBufferPointer { all in
                    while true {
                        let id = slots[s]
                        if id == .max { return nil }
                        let lo = Int(offsets[Int(id)])
                        if Int(offsets[Int(id) + 1]) - lo == count && memEqual(all.baseAddress! + lo, p, count) {
                            return id
                        }
                        s = (s + 1) & mask
                    }
                }
            }
        }
    }
}

/// Byte-wise equality of two short buffers.
@inline(__always)
func memEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 8 <= count {
        if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < count {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// An immutable open-addressing map from an adjacent token pair to its merge rank and result.
struct PairTable: Sendable {
    /// Keys are `left << 32 | right`; `UInt64.max` marks an empty slot.
    let keys: [UInt64]
    /// Values are `rank << 32 | merged id`.
    let values: [UInt64]
    let mask: Int

    /// Builds the table; later duplicates of a pair overwrite earlier ones, as in HF's HashMap.
    init(_ merges: [(left: UInt32, right: UInt32, merged: UInt32)]) {
        var capacity = 16
        while capacity < merges.count * 2 { capacity <<= 1 }
        var keys = [UInt64](repeating: .max, count: capacity)
        var values = [UInt64](repeating: 0, count: capacity)
        let mask = capacity - 1
        for (rank, m) in merges.enumerated() {
            let key = UInt64(m.left) << 32 | UInt64(m.right)
            var s = PairTable.slot(key, mask)
            while keys[s] != .max && keys[s] != key { s = (s + 1) & mask }
            keys[s] = key
            values[s] = UInt64(rank) << 32 | UInt64(m.merged)
        }
        self.keys = keys
        self.values = values
        self.mask = mask
    }

    @inline(__always)
    static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    /// `rank << 32 | merged` for the pair, or `UInt64.max` when the pair never merges.
    @inline(__always)
    func lookup(_ left: UInt32, _ right: UInt32) -> UInt64 {
        let key = UInt64(left) << 32 | UInt64(right)
        var s = PairTable.slot(key, mask)
        return keys.withUnsafeBufferPointer { keys in
            while true {
                let k = keys[s]
                if k == key { return values[s] }
                if k == .max { return .max }
                s = (s + 1) & mask
            }
        }
    }
}
