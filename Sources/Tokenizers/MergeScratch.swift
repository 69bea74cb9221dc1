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
///
/// Long pieces (a word of megabytes) are merged chunk by chunk, and the chunks' results are kept only where
/// they provably equal the whole piece's (`boundaryHolds`); elsewhere neighbouring chunks are merged again as
/// one. The ids are HF's either way; time stays O(n log n) with the heap of each run fitting in cache, and
/// memory is a chunk's working set plus the output instead of ~25 bytes per input byte.
struct MergeScratch {
    /// The piece's token ids after `merge`.
    var ids: [UInt32] = []
    var ranks: [UInt64] = []
    var prev: [Int32] = []
    var next: [Int32] = []
    var heap: [UInt64] = []
    /// One chunk's symbols while it is merged.
    var chunk: [UInt32] = []
    /// What chunked merging did, for tests: symbols run through the heap (re-runs included) and chunk joins.
    var work = MergeWork()

    /// Pieces up to this many bytes use the quadratic scan, which beats a heap on short input.
    static let scanLimit = 48
    /// Bytes per chunk of a long piece; pieces over four chunks are merged chunk by chunk.
    static let chunkBytes = 4096

    /// Applies the lowest-rank merge repeatedly (leftmost on ties) to the bytes of a piece.
    /// Bytes without a token become `unk` (fused when `fuseUnk`) or vanish when there is none, as in HF.
    mutating func merge(_ p: UnsafePointer<UInt8>, _ n: Int, _ t: MergeTables, chunked: Bool = true) {
        ids.removeAll(keepingCapacity: true)
        // Chunks need one symbol per byte (every byte has a token, as in every byte-level vocabulary); past 2^31
        // bytes positions would not fit the heap's keys, so such pieces take the plain path.
        if chunked && n > 4 * MergeScratch.chunkBytes && n < 1 << 31
            && (0..<n).allSatisfy({ t.byteIds[Int(p[$0])] != .max })
        {
            mergeChunked(p, n, t)
            return
        }
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
            work.heapSymbols += ids.count
            MergeScratch.mergeByHeap(&ids, &prev, &next, &heap, pairs, base: 0, log: nil)
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

    /// O(n log n) merge of `s` with a heap of (rank, position), as HF `tokenizers` does for every word; `s` is left
    /// holding the result. With `log`, records each merge's priority (rank, `base` + position) and how the first
    /// and last symbols changed, which `boundaryHolds` replays.
    static func mergeByHeap(
        _ s: inout [UInt32], _ prev: inout [Int32], _ next: inout [Int32], _ heap: inout [UInt64],
        _ pairs: PairView, base: Int, log: UnsafeMutablePointer<ChunkLog>?
    ) {
        let n = s.count
        prev.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            prev.append(Int32(i - 1))
            next.append(i + 1 < n ? Int32(i + 1) : -1)
        }
        if let log { log.pointee.start(first: s[0], last: s[n - 1], lastPosition: base + n - 1) }
        var last = n - 1
        for i in 0..<max(n - 1, 0) {
            let v = pairs.lookup(s[i], s[i + 1])
            if v != .max { heapPush(&heap, v & 0xFFFF_FFFF_0000_0000 | UInt64(i)) }
        }
        while let top = heapPop(&heap) {
            let rank = top >> 32, pos = Int(top & 0xFFFF_FFFF)
            if s[pos] == .max { continue }  // merged into its left neighbour
            let nx = Int(next[pos])
            if nx < 0 { continue }
            let v = pairs.lookup(s[pos], s[nx])
            if v == .max || v >> 32 != rank { continue }  // stale: a neighbour changed
            s[pos] = UInt32(truncatingIfNeeded: v)
            s[nx] = .max
            if let log {
                log.pointee.keys.append(rank << 32 | UInt64(base + pos))
                let event = log.pointee.keys.count
                if pos == 0 { log.pointee.firstChanges.append((event, s[0])) }
                if nx == last {
                    last = pos
                    log.pointee.lastChanges.append((event, s[pos], base + pos))
                }
            }
            let after = next[nx]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let pv = Int(prev[pos])
            if pv >= 0 {
                let r = pairs.lookup(s[pv], s[pos])
                if r != .max { heapPush(&heap, r & 0xFFFF_FFFF_0000_0000 | UInt64(pv)) }
            }
            if after >= 0 {
                let r = pairs.lookup(s[pos], s[Int(after)])
                if r != .max { heapPush(&heap, r & 0xFFFF_FFFF_0000_0000 | UInt64(pos)) }
            }
        }
        var w = 0
        for i in 0..<n where s[i] != .max {
            s[w] = s[i]
            w += 1
        }
        s.removeLast(n - w)
    }

    private static func heapPush(_ heap: inout [UInt64], _ v: UInt64) { MinHeap.push(&heap, v) }

    private static func heapPop(_ heap: inout [UInt64]) -> UInt64? { MinHeap.pop(&heap) }

    // MARK: - Long pieces

    /// Merges bytes `[start, end)` of the piece on their own, appending the result to `ids` and filling `log`.
    private mutating func run(
        _ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ t: MergeTables, _ log: inout ChunkLog
    ) {
        chunk.removeAll(keepingCapacity: true)
        for i in start..<end { chunk.append(t.byteIds[Int(p[i])]) }
        work.heapSymbols += end - start
        work.largestRun = max(work.largestRun, end - start)
        withUnsafeMutablePointer(to: &log) { l in
            MergeScratch.mergeByHeap(&chunk, &prev, &next, &heap, t.pairs, base: start, log: l)
        }
        ids.append(contentsOf: chunk)
    }

    /// A long piece, chunk by chunk: each chunk is merged alone, then the boundary with the chunks before it is
    /// checked; where the check fails the two sides are merged again as one group, twice as large each time a
    /// group grows, so the total work stays within a small multiple of one plain run.
    private mutating func mergeChunked(_ p: UnsafePointer<UInt8>, _ n: Int, _ t: MergeTables) {
        let size = MergeScratch.chunkBytes
        // Groups of chunks whose results are final unless a later join reaches them; only the last few keep
        // their logs (an older one is rebuilt, from the same bytes, in the rare case a join cascades that far).
        var groups: [(start: Int, end: Int, output: Int)] = []
        var logs: [ChunkLog?] = []
        var start = 0
        while start < n {
            var end = n - start < 2 * size ? n : MergeScratch.cut(near: start + size, p, t)
            var log = ChunkLog()
            var output = ids.count
            run(p, start, end, t, &log)
            var groupStart = start
            while let previous = groups.last {
                let k = groups.count - 1
                if logs[k] == nil {
                    // Rebuild the log only (the output is already in place).
                    var again = ChunkLog()
                    let keep = ids.count
                    run(p, previous.start, previous.end, t, &again)
                    ids.removeLast(ids.count - keep)
                    logs[k] = again
                }
                if MergeScratch.boundaryHolds(logs[k]!, log, t.pairs) { break }
                // Join: the previous group and this one are merged as one. Past eight chunks a group at least
                // doubles each time, so a piece whose boundaries all fail costs O(n log n), not O(n^2 / chunk).
                work.joins += 1
                groups.removeLast()
                logs.removeLast()
                groupStart = previous.start
                if end - groupStart > 8 * size {
                    end = max(end, min(n, groupStart + 2 * (previous.end - previous.start)))
                }
                if n - end < size { end = n }
                ids.removeLast(ids.count - previous.output)
                output = ids.count
                log = ChunkLog()
                run(p, groupStart, end, t, &log)
            }
            groups.append((groupStart, end, output))
            logs.append(log)
            if logs.count > 4 { logs[logs.count - 5] = nil }
            start = end
        }
    }

    /// A chunk end near `target`: where the two bytes around it pair up latest (or never), so a merge across the
    /// cut is least likely and the check of the boundary seldom fails. Any cut gives the same ids.
    static func cut(near target: Int, _ p: UnsafePointer<UInt8>, _ t: MergeTables) -> Int {
        var best = target, bestRank: UInt64 = 0
        for c in (target - 64)...(target + 64) {
            let r = t.pairs.lookup(t.byteIds[Int(p[c - 1])], t.byteIds[Int(p[c])])
            if r >> 32 > bestRank >> 32 || r == .max {
                (best, bestRank) = (c, r)
                if r == .max { break }
            }
        }
        return best
    }

    /// Whether merging the bytes of two neighbouring groups separately gives what merging them together would.
    ///
    /// Merging both together runs the merges of each side in (rank, position) order, interleaved, plus any merge
    /// across the boundary. Replaying that interleaving from the two logs, the pair across the boundary (its
    /// symbols as they stand at each point) must never be the lowest of the pairs: then no merge ever crosses,
    /// each side's merges are exactly its own run's, and so are the results. Other boundaries and groups only
    /// add pairs that are lower still, so the argument holds within the whole piece.
    static func boundaryHolds(_ a: ChunkLog, _ b: ChunkLog, _ pairs: PairView) -> Bool {
        var i = 0, j = 0, ia = 0, jb = 0
        var left = a.last, leftPosition = a.lastPosition, right = b.first
        while true {
            let r = pairs.lookup(left, right)
            let cross = r == .max ? UInt64.max : r & 0xFFFF_FFFF_0000_0000 | UInt64(leftPosition)
            let ha = i < a.keys.count ? a.keys[i] : .max, hb = j < b.keys.count ? b.keys[j] : .max
            if cross < min(ha, hb) { return false }  // the cross pair merges (also at the end, when both are done)
            if ha == .max && hb == .max { return true }
            if ha < hb {
                i += 1
                if ia < a.lastChanges.count && a.lastChanges[ia].event == i {
                    (left, leftPosition) = (a.lastChanges[ia].id, a.lastChanges[ia].position)
                    ia += 1
                }
            } else {
                j += 1
                if jb < b.firstChanges.count && b.firstChanges[jb].event == j {
                    right = b.firstChanges[jb].id
                    jb += 1
                }
            }
        }
    }
}

/// What one heap run did, as `boundaryHolds` needs it.
struct ChunkLog {
    /// Each merge's `rank << 32 | position` (position in the whole piece), in the order they happened.
    var keys: [UInt64] = []
    /// The first symbol at the start, and after which merge (1-based count) it became what.
    var first: UInt32 = 0
    var firstChanges: [(event: Int, id: UInt32)] = []
    /// The last symbol and its position at the start, and after which merge it became what, where.
    var last: UInt32 = 0, lastPosition = 0
    var lastChanges: [(event: Int, id: UInt32, position: Int)] = []

    mutating func start(first: UInt32, last: UInt32, lastPosition: Int) {
        self.first = first
        self.last = last
        self.lastPosition = lastPosition
    }
}

/// Counters of the merge work for long pieces (tests check it stays near one plain run).
struct MergeWork {
    /// Symbols that went through a heap run, re-runs included.
    var heapSymbols = 0
    /// Times two neighbouring groups were merged again as one.
    var joins = 0
    /// The most symbols in one run (its heap, links and symbols are the working memory).
    var largestRun = 0
}
