import Support

/// What the merge loop reads: pointer views of a model's byte and pair tables.
struct MergeTables {
    /// The token of each byte, `UInt32.max` where the vocabulary has none.
    let byteIds: UnsafePointer<UInt32>
    let pairs: PairView
    /// Token for bytes without one (`UInt32.max`: drop them) and whether a run of them fuses.
    let unk: UInt32
    let fuseUnk: Bool
}

/// Reusable buffers for applying BPE merges to one piece; one per encoder.
struct MergeScratch {
    /// The piece's token ids after `merge`.
    var ids: [UInt32] = []
    var ranks: [UInt64] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap: [UInt64] = []

    /// Pieces up to this many bytes use the quadratic scan, which beats a heap on short input.
    static let scanLimit = 48

    /// Applies the lowest-rank merge repeatedly (leftmost on ties) to the bytes of a piece.
    /// Bytes without a token become `unk` (fused when `fuseUnk`) or vanish when there is none, as in HF.
    mutating func merge(_ p: UnsafePointer<UInt8>, _ n: Int, _ t: MergeTables) {
        ids.removeAll(keepingCapacity: true)
        var lastWasUnknown = false
        for i in 0..<n {
            let id = t.byteIds[Int(p[i])]
            if id != .max {
                ids.append(id)
                lastWasUnknown = false
            } else if t.unk != .max {
                if !(t.fuseUnk && lastWasUnknown) { ids.append(t.unk) }
                lastWasUnknown = true
            }
        }
        let pairs = t.pairs
        if ids.count <= MergeScratch.scanLimit {
            mergeByScan(pairs)
        } else {
            mergeByHeap(pairs)
        }
    }

    /// O(n^2) scan: recompute only the two pairs a merge touches.
    mutating func mergeByScan(_ pairs: PairView) {
        var count = ids.count
        ranks.removeAll(keepingCapacity: true)
        for i in 0..<max(count - 1, 0) { ranks.append(pairs.lookup(ids[i], ids[i + 1])) }
        while count > 1 {
            var best = UInt64.max, pos = -1
            for i in 0..<(count - 1) where ranks[i] < best {
                best = ranks[i]
                pos = i
            }
            if pos < 0 { break }
            ids[pos] = UInt32(truncatingIfNeeded: best)
            var j = pos + 1
            while j < count - 1 {
                ids[j] = ids[j + 1]
                if j < count - 2 { ranks[j] = ranks[j + 1] }
                j += 1
            }
            count -= 1
            if pos < count - 1 { ranks[pos] = pairs.lookup(ids[pos], ids[pos + 1]) }
            if pos > 0 { ranks[pos - 1] = pairs.lookup(ids[pos - 1], ids[pos]) }
        }
        ids.removeLast(ids.count - count)
    }

    /// O(n log n) merge with a heap of (rank, position), as HF `tokenizers` does for every word.
    mutating func mergeByHeap(_ pairs: PairView) {
        let n = ids.count
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        for i in 0..<max(n - 1, 0) {
            let v = pairs.lookup(ids[i], ids[i + 1])
            if v != .max { heapPush(v & 0xFFFF_FFFF_0000_0000 | UInt64(i)) }
        }
        while let top = heapPop() {
            let rank = top >> 32, pos = Int(top & 0xFFFF_FFFF)
            if ids[pos] == .max { continue }  // merged into its left neighbour
            let nx = Int(next[pos])
            if nx < 0 { continue }
            let v = pairs.lookup(ids[pos], ids[nx])
            if v == .max || v >> 32 != rank { continue }  // stale: a neighbour changed
            ids[pos] = UInt32(truncatingIfNeeded: v)
            ids[nx] = .max
            let after = next[nx]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let pv = Int(prev[pos])
            if pv >= 0 {
                let r = pairs.lookup(ids[pv], ids[pos])
                if r != .max { heapPush(r & 0xFFFF_FFFF_0000_0000 | UInt64(pv)) }
            }
            if after >= 0 {
                let r = pairs.lookup(ids[pos], ids[Int(after)])
                if r != .max { heapPush(r & 0xFFFF_FFFF_0000_0000 | UInt64(pos)) }
            }
        }
        var w = 0
        for i in 0..<n where ids[i] != .max {
            ids[w] = ids[i]
            w += 1
        }
        ids.removeLast(n - w)
    }

    private mutating func heapPush(_ v: UInt64) { MinHeap.push(&heap, v) }

    private mutating func heapPop() -> UInt64? { MinHeap.pop(&heap) }
}
