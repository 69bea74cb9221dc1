import Foundation
import Support

/// Per-shard statistics that let a trainer plan a run (its schedule's length, what its method can use) before
/// it reads any trajectory: written into the manifest when a shard is closed, or computed once for an older
/// shard and cached beside it (`<shard>.stats.json`).
///
/// Counts follow the loader's order of checks: an empty prompt first, then an empty response; lengths,
/// positives and groups count only the trajectories left (those a method can train on). "Positive" means a
/// reward of at least `positiveThreshold`, the loader's default.
public struct ShardStats: Codable, Sendable, Equatable {
    /// Trajectories and tokens in the shard.
    public var trajectories: UInt64 = 0, tokens: UInt64 = 0
    /// Trajectories without a prompt token, and (with one) without a response token.
    public var emptyPrompt: UInt64 = 0, emptyResponse: UInt64 = 0
    /// Trajectories whose reward is NaN or infinite (training refuses them).
    public var nonFiniteRewards: UInt64 = 0
    /// The longest trajectory, in tokens.
    public var longest: UInt64 = 0
    /// Positive trajectories and their tokens.
    public var positives: UInt64 = 0, positiveTokens: UInt64 = 0
    /// Trajectories (and their tokens) by length, in buckets a quarter of a power of two wide
    /// (`lengthBucket(_:)`, `lengthRange(_:)`): lengths 0-3 exactly, then [4,5), ..., [8,10), [10,12), ...
    public var lengthCounts: [UInt64] = [], lengthTokens: [UInt64] = []
    /// [p, n]: n groups (runs of one group id) whose positives x negatives is p (capped at `pairCap`).
    public var groupPairs: [[UInt64]] = []

    /// The reward at or above which a trajectory counts as positive here.
    public static let positiveThreshold: Float = 0.5
    /// Positives x negatives above this count as this (more pairs than any sensible per-group cap).
    public static let pairCap: UInt64 = 1024

    enum CodingKeys: String, CodingKey {
        case trajectories, tokens, longest, positives
        case emptyPrompt = "empty_prompt", emptyResponse = "empty_response", nonFiniteRewards = "non_finite_rewards"
        case positiveTokens = "positive_tokens", lengthCounts = "length_counts", lengthTokens = "length_tokens"
        case groupPairs = "group_pairs"
    }

    /// Empty statistics.
    public init() {}

    /// Reads every trajectory's scalars (not its tokens) of `shard`.
    public init(shard: Shard) throws {
        let c = shard.cursor()
        var group: UInt64?
        var pos: UInt64 = 0, neg: UInt64 = 0
        var pairs: [UInt64: UInt64] = [:]
        func closeGroup() {
            if group != nil { pairs[min(pos * neg, ShardStats.pairCap), default: 0] += 1 }
            pos = 0
            neg = 0
        }
        for i in 0..<shard.trajectoryCount {
            let s = try c.scalars(i)
            trajectories += 1
            tokens += UInt64(s.tokenCount)
            guard s.reward.isFinite else {
                nonFiniteRewards += 1
                continue
            }
            if s.promptLength == 0 {
                emptyPrompt += 1
                continue
            }
            if s.tokenCount == s.promptLength {
                emptyResponse += 1
                continue
            }
            let n = UInt64(s.tokenCount)
            longest = max(longest, n)
            let b = ShardStats.lengthBucket(n)
            while lengthCounts.count <= b {
                lengthCounts.append(0)
                lengthTokens.append(0)
            }
            lengthCounts[b] += 1
            lengthTokens[b] += n
            if group != s.group {
                closeGroup()
                group = s.group
            }
            if s.reward >= ShardStats.positiveThreshold {
                positives += 1
                positiveTokens += n
                pos += 1
            } else {
                neg += 1
            }
        }
        closeGroup()
        groupPairs = pairs.keys.sorted().map { [$0, pairs[$0]!] }
    }

    /// The length bucket of `n` tokens: n itself below 4, then four buckets per power of two.
    public static func lengthBucket(_ n: UInt64) -> Int {
        if n < 4 { return Int(n) }
        let e = 63 - n.leadingZeroBitCount
        return e * 4 + Int((n >> (e - 2)) & 3) - 4
    }

    /// The lengths bucket `b` holds: [lower, upper).
    public static func lengthRange(_ b: Int) -> Range<UInt64> {
        if b < 4 { return UInt64(b)..<UInt64(b + 1) }
        let e = (b + 4) / 4, sub = UInt64((b + 4) % 4)
        return ((4 + sub) << (e - 2))..<((5 + sub) << (e - 2))
    }

    /// Trajectories a method can train on (a prompt, a response and a finite reward).
    public var usable: UInt64 { lengthCounts.reduce(0, +) }
    /// Their tokens.
    public var usableTokens: UInt64 { lengthTokens.reduce(0, +) }

    /// Adds `other`'s counts (a dataset's statistics are the sum of its shards').
    public mutating func add(_ other: ShardStats) {
        trajectories += other.trajectories
        tokens += other.tokens
        emptyPrompt += other.emptyPrompt
        emptyResponse += other.emptyResponse
        nonFiniteRewards += other.nonFiniteRewards
        longest = max(longest, other.longest)
        positives += other.positives
        positiveTokens += other.positiveTokens
        while lengthCounts.count < other.lengthCounts.count {
            lengthCounts.append(0)
            lengthTokens.append(0)
        }
        for b in other.lengthCounts.indices {
            lengthCounts[b] += other.lengthCounts[b]
            lengthTokens[b] += other.lengthTokens[b]
        }
        var pairs = Dictionary(uniqueKeysWithValues: groupPairs.map { ($0[0], $0[1]) })
        for p in other.groupPairs { pairs[p[0], default: 0] += p[1] }
        groupPairs = pairs.keys.sorted().map { [$0, pairs[$0]!] }
    }

    /// Checks what a hand-edited or damaged file could get wrong; `path` names it.
    func validate(path: String) throws {
        guard lengthCounts.count == lengthTokens.count, lengthCounts.count <= 256,
            groupPairs.allSatisfy({ $0.count == 2 }), positives <= usable, usable <= trajectories
        else {
            throw FormatError(.manifest, path: path, "shard statistics are inconsistent")
        }
    }
}

/// A shard's statistics cached beside it, tied to the shard's checksum.
struct CachedShardStats: Codable {
    /// XXH3 of the shard the statistics describe (from the manifest).
    var shardXXH3: String
    /// The statistics.
    var stats: ShardStats

    enum CodingKeys: String, CodingKey {
        case shardXXH3 = "shard_xxh3", stats
    }
}
