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

/// Many byte strings stored back to back: string `i` is `bytes[offsets[i] ..< offsets[i + 1]]`.
struct ByteArena: Sendable {
    let bytes: [UInt8]
    let offsets: [UInt32]

    /// Packs `strings` in order.
    init(_ strings: [[UInt8]]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(strings.reduce(0) { $0 + $1.count })
        var offsets: [UInt32] = [0]
        offsets.reserveCapacity(strings.count + 1)
        for s in strings {
            bytes.append(contentsOf: s)
            offsets.append(UInt32(bytes.count))
        }
        self.bytes = bytes
        self.offsets = offsets
    }

    /// Number of strings.
    var count: Int { offsets.count - 1 }

    /// String `i`.
    subscript(i: Int) -> ArraySlice<UInt8> { bytes[Int(offsets[i])..<Int(offsets[i + 1])] }
}

/// An immutable open-addressing map from the raw bytes of vocabulary entries to their ids.
struct VocabTable: Sendable {
    /// Entry `k` has bytes `bytes[offsets[k] ..< offsets[k + 1]]` and id `ids[k]`.
    let bytes: FrozenBuffer<UInt8>
    let offsets: FrozenBuffer<UInt32>
    let ids: FrozenBuffer<UInt32>
    /// Slot -> entry index, `UInt32.max` when empty.
    let slots: FrozenBuffer<UInt32>
    let mask: Int

    /// Builds the table; the first of two entries with equal bytes wins.
    init(entries: [(id: UInt32, bytes: [UInt8])]) {
        let arena = ByteArena(entries.map(\.bytes))
        var capacity = 16
        while capacity < entries.count * 2 { capacity <<= 1 }
        var slots = [UInt32](repeating: .max, count: capacity)
        let mask = capacity - 1
        arena.bytes.withUnsafeBufferPointer { all in
            for k in 0..<arena.count {
                let lo = Int(arena.offsets[k]), n = Int(arena.offsets[k + 1]) - lo
                guard n > 0 else { continue }
                let p = all.baseAddress! + lo
                var s = Int(truncatingIfNeeded: ByteHash.hash(p, n)) & mask
                var duplicate = false
                while slots[s] != .max {
                    let other = Int(slots[s])
                    let olo = Int(arena.offsets[other])
                    if Int(arena.offsets[other + 1]) - olo == n && memEqual(all.baseAddress! + olo, p, n) {
                        duplicate = true
                        break
                    }
                    s = (s + 1) & mask
                }
                if !duplicate { slots[s] = UInt32(k) }
            }
        }
        self.bytes = FrozenBuffer(arena.bytes)
        self.offsets = FrozenBuffer(arena.offsets)
        self.ids = FrozenBuffer(entries.map(\.id))
        self.slots = FrozenBuffer(slots)
        self.mask = mask
    }

    /// Number of entries.
    var count: Int { ids.count }

    /// Plain pointers for the hot path; valid while this table's buffers live.
    var view: VocabView {
        VocabView(bytes: bytes.pointer, offsets: offsets.pointer, ids: ids.pointer, slots: slots.pointer, mask: mask)
    }
}

/// Pointer view of a `VocabTable`, free of reference counting.
struct VocabView {
    let bytes: UnsafePointer<UInt8>
    let offsets: UnsafePointer<UInt32>
    let ids: UnsafePointer<UInt32>
    let slots: UnsafePointer<UInt32>
    let mask: Int

    /// The id whose bytes are exactly `count` bytes at `p` (`hash` from `ByteHash`), or nil.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ count: Int, hash: UInt64) -> UInt32? {
        var s = Int(truncatingIfNeeded: hash) & mask
        while true {
            let k = slots[s]
            if k == .max { return nil }
            let lo = Int(offsets[Int(k)])
            if Int(offsets[Int(k) + 1]) - lo == count && memEqual(bytes + lo, p, count) { return ids[Int(k)] }
            s = (s + 1) & mask
        }
    }

    /// Bytes of entry `k`.
    func entry(_ k: Int) -> (UnsafePointer<UInt8>, Int) {
        (bytes + Int(offsets[k]), Int(offsets[k + 1]) - Int(offsets[k]))
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
    let keys: FrozenBuffer<UInt64>
    /// Values are `rank << 32 | merged id`.
    let values: FrozenBuffer<UInt64>
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
            var s = PairView.slot(key, mask)
            while keys[s] != .max && keys[s] != key { s = (s + 1) & mask }
            keys[s] = key
            values[s] = UInt64(rank) << 32 | UInt64(m.merged)
        }
        self.keys = FrozenBuffer(keys)
        self.values = FrozenBuffer(values)
        self.mask = mask
    }

    /// Plain pointers for the hot path; valid while this table's buffers live.
    var view: PairView { PairView(keys: keys.pointer, values: values.pointer, mask: mask) }
}

/// Pointer view of a `PairTable`.
struct PairView {
    let keys: UnsafePointer<UInt64>
    let values: UnsafePointer<UInt64>
    let mask: Int

    @inline(__always)
    static func slot(_ key: UInt64, _ mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 20) & mask
    }

    /// `rank << 32 | merged` for the pair, or `UInt64.max` when the pair never merges.
    @inline(__always)
    func lookup(_ left: UInt32, _ right: UInt32) -> UInt64 {
        let key = UInt64(left) << 32 | UInt64(right)
        var s = PairView.slot(key, mask)
        while true {
            let k = keys[s]
            if k == key { return values[s] }
            if k == .max { return .max }
            s = (s + 1) & mask
        }
    }
}
