#if canImport(Glibc)
    import Glibc
#else
    import Darwin
#endif
import Support

/// An added or special token as tokenizer.json declares it.
struct AddedToken: Sendable, Equatable {
    let id: UInt32
    let content: [UInt8]
    let special: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
}

/// Leftmost-longest matching of a set of added tokens in raw bytes (HF uses Aho-Corasick, LeftmostLongest).
/// A class, so that an encoder passes it around per call without retaining each of its arrays.
final class AddedTokenSet: Sendable {
    let tokens: [AddedToken]
    /// Trie over token bytes: per node, its (byte, child) edges and the token it completes (-1 none).
    private let edges: [[(byte: UInt8, child: Int32)]]
    private let terminal: [Int32]
    /// Bytes some token starts with, to skip ordinary text quickly.
    private let firstByte: FrozenBuffer<Bool>
    /// The only byte tokens start with (as with `<|...|>` specials), for memchr; -1 when several.
    private let onlyFirstByte: Int32

    /// Builds the matcher; later duplicates of a content replace earlier ones.
    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        var edges: [[(byte: UInt8, child: Int32)]] = [[]]
        var terminal: [Int32] = [-1]
        var first = [Bool](repeating: false, count: 256)
        for (index, t) in tokens.enumerated() where !t.content.isEmpty {
            first[Int(t.content[0])] = true
            var node = 0
            for byte in t.content {
                if let e = edges[node].first(where: { $0.byte == byte }) {
                    node = Int(e.child)
                } else {
                    edges.append([])
                    terminal.append(-1)
                    edges[node].append((byte, Int32(edges.count - 1)))
                    node = edges.count - 1
                }
            }
            terminal[node] = Int32(index)
        }
        self.edges = edges
        self.terminal = terminal
        self.firstByte = FrozenBuffer(first)
        let starts = first.indices.filter { first[$0] }
        self.onlyFirstByte = starts.count == 1 ? Int32(starts[0]) : -1
    }

    /// A copy that shares no storage with this set (one per encoder, so threads do not share its counts).
    func copy() -> AddedTokenSet {
        AddedTokenSet(
            tokens.map {
                AddedToken(
                    id: $0.id, content: $0.content.map { $0 }, special: $0.special,
                    singleWord: $0.singleWord, lstrip: $0.lstrip, rstrip: $0.rstrip)
            })
    }

    /// Whether there is nothing to match.
    var isEmpty: Bool { tokens.isEmpty }

    /// The leftmost-longest match at or after `from` before `end`: (start, end, token index).
    func nextMatch(_ b: UnsafeBufferPointer<UInt8>, from: Int, end: Int) -> (start: Int, end: Int, token: Int)? {
        var i = from
        let first = firstByte.pointer
        while i < end {
            if onlyFirstByte >= 0 {
                // memchr scans with SIMD; ordinary text rarely contains the byte.
                guard let hit = memchr(b.baseAddress! + i, onlyFirstByte, end - i) else { return nil }
                i = b.baseAddress!.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            }
            if first[Int(b[i])] {
                var node = 0, j = i
                var best: (Int, Int)? = nil
                while j < end, let e = edges[node].first(where: { $0.byte == b[j] }) {
                    node = Int(e.child)
                    j += 1
                    if terminal[node] >= 0 { best = (j, Int(terminal[node])) }
                }
                if let (stop, token) = best { return (i, stop, token) }
            }
            i += 1
        }
        return nil
    }
}
