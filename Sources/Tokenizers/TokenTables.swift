import Support

/// Hashing of short byte strings shared by the vocabulary table and the encoder cache.
enum ByteHash {
    /// The first (up to) 8 bytes at `p` as a little-endian word, zero-padded; reads only `count` bytes.
    @inline(__always)
    static func prefix(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
        let raw = UnsafeRawPointer(p)
        if count >= 8 { return raw.loadUnaligned(as: UInt64.self) }
        if count >= 4 {
            // Two overlapping 4-byte loads cover 4...7 bytes; shared bytes agree, so OR is exact.
            let lo = UInt64(raw.loadUnaligned(as: UInt32.self))
            let hi = UInt64(raw.loadUnaligned(fromByteOffset: count - 4, as: UInt32.self))
            return lo | hi << (UInt64(count - 4) * 8)
        }
        if count >= 2 {
            let lo = UInt64(raw.loadUnaligned(as: UInt16.self))
            let hi = UInt64(raw.loadUnaligned(fromByteOffset: count - 2, as: UInt16.self))
            return lo | hi << (UInt64(count - 2) * 8)
        }
        return count == 1 ? UInt64(p[0]) : 0
    }

    /// A fast 64-bit hash of `count` bytes at `p` whose first word is `first` (from `prefix`).
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ count: Int, first: UInt64) -> UInt64 {
        var h = first ^ (UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15)
        if count > 8 {
            let raw = UnsafeRawPointer(p)
            var i = 8
            while i + 8 <= count {
                h = (h &* 0x9FB2_1C65_1E98_DF25) ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                i += 8
            }
            // The last (overlapping) word covers the tail.
            if i < count {
                h = (h &* 0x9FB2_1C65_1E98_DF25) ^ raw.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            }
        }
        h ^= h >> 29
        h = h &* 0xD6E8_FEB8_6659_FD93
        h ^= h >> 32
        return h
    }

    /// Hash of `count` bytes at `p`.
    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt64 { hash(p, count, first: prefix(p, count)) }
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
///
/// A slot holds the key's first 8 bytes and `id | length << 32 | hash tag << 40`, so a lookup of a
/// piece of up to 8 bytes (most of them) touches one slot and nothing else.
struct VocabTable: Sendable {
    /// Entry `k` has bytes `bytes[offsets[k] ..< offsets[k + 1]]` and id `ids[k]`.
    let bytes: FrozenBuffer<UInt8>
    let offsets: FrozenBuffer<UInt32>
    let ids: FrozenBuffer<UInt32>
    let slotPrefix: FrozenBuffer<UInt64>
    /// 0 when empty (entries are never empty, so their length byte is not 0).
    let slotMeta: FrozenBuffer<UInt64>
    /// Entry index of each slot, for comparing keys longer than 8 bytes.
    let slotEntry: FrozenBuffer<UInt32>
    let mask: Int

    /// Builds the table; the first of two entries with equal bytes wins.
    init(entries: [(id: UInt32, bytes: [UInt8])]) {
        let arena = ByteArena(entries.map(\.bytes))
        var capacity = 16
        while capacity < entries.count * 2 { capacity <<= 1 }
        var prefix = [UInt64](repeating: 0, count: capacity)
        var meta = [UInt64](repeating: 0, count: capacity)
        var entry = [UInt32](repeating: 0, count: capacity)
        let mask = capacity - 1
        arena.bytes.withUnsafeBufferPointer { all in
            for k in 0..<arena.count {
                let lo = Int(arena.offsets[k]), n = Int(arena.offsets[k + 1]) - lo
                guard n > 0 else { continue }
                let p = all.baseAddress! + lo
                let first = ByteHash.prefix(p, n)
                let h = ByteHash.hash(p, n, first: first)
                let m = UInt64(entries[k].id) | VocabView.check(n, h)
                var s = Int(truncatingIfNeeded: h) & mask
                var duplicate = false
                while meta[s] != 0 {
                    let other = Int(entry[s])
                    let olo = Int(arena.offsets[other])
                    if Int(arena.offsets[other + 1]) - olo == n && memEqual(all.baseAddress! + olo, p, n) {
                        duplicate = true
                        break
                    }
                    s = (s + 1) & mask
                }
                if !duplicate {
                    prefix[s] = first
                    meta[s] = m
                    entry[s] = UInt32(k)
                }
            }
        }
        self.bytes = FrozenBuffer(arena.bytes)
        self.offsets = FrozenBuffer(arena.offsets)
        self.ids = FrozenBuffer(entries.map(\.id))
        self.slotPrefix = FrozenBuffer(prefix)
        self.slotMeta = FrozenBuffer(meta)
        self.slotEntry = FrozenBuffer(entry)
        self.mask = mask
    }

    /// Number of entries.
    var count: Int { ids.count }

    /// Plain pointers for the hot path; valid while this table's buffers live.
    var view: VocabView {
        VocabView(
            bytes: bytes.pointer, offsets: offsets.pointer, ids: ids.pointer, slotPrefix: slotPrefix.pointer,
            slotMeta: slotMeta.pointer, slotEntry: slotEntry.pointer, mask: mask)
    }
}

/// Pointer view of a `VocabTable`, free of reference counting.
struct VocabView {
    let bytes: UnsafePointer<UInt8>
    let offsets: UnsafePointer<UInt32>
    let ids: UnsafePointer<UInt32>
    let slotPrefix: UnsafePointer<UInt64>
    let slotMeta: UnsafePointer<UInt64>
    let slotEntry: UnsafePointer<UInt32>
    let mask: Int

    /// The high 32 bits of a slot's meta word: length (capped at 255) and 24 bits of hash.
    @inline(__always)
    static func check(_ count: Int, _ hash: UInt64) -> UInt64 {
        UInt64(min(count, 255)) << 32 | (hash >> 40) << 40
    }

    /// The id whose bytes are exactly `count` bytes at `p`, given `ByteHash.prefix` and `hash` of them.
    @inline(__always)
    func find(_ p: UnsafePointer<UInt8>, _ count: Int, first: UInt64, hash: UInt64) -> UInt32? {
        let want = VocabView.check(count, hash)
        var s = Int(truncatingIfNeeded: hash) & mask
        while true {
            let m = slotMeta[s]
            if m == 0 { return nil }
            if m & 0xFFFF_FFFF_0000_0000 == want && slotPrefix[s] == first {
                if count <= 8 { return UInt32(truncatingIfNeeded: m) }
                let k = Int(slotEntry[s])
                let lo = Int(offsets[k])
                if Int(offsets[k + 1]) - lo == count && memEqual(bytes + lo, p, count) {
                    return UInt32(truncatingIfNeeded: m)
                }
            }
            s = (s + 1) & mask
        }
    }

    /// The id whose bytes are exactly `count` bytes at `p`, or nil.
    func find(_ p: UnsafePointer<UInt8>, _ count: Int) -> UInt32? {
        let first = ByteHash.prefix(p, count)
        return find(p, count, first: first, hash: ByteHash.hash(p, count, first: first))
    }

    /// Bytes of entry `k`.
    func entry(_ k: Int) -> (UnsafePointer<UInt8>, Int) {
        (bytes + Int(offsets[k]), Int(offsets[k + 1]) - Int(offsets[k]))
    }
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
