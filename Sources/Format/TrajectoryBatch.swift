/// Trajectories in flat columns, as a producer (a tokenizing thread) hands them to a writer in one piece.
///
/// Appending a batch costs a few copies per column instead of several allocations per trajectory, and a
/// batch that is cleared and refilled keeps its storage. Trajectory `k`'s tokens are
/// `tokens[tokenEnd[k - 1] ..< tokenEnd[k]]` (from 0 for the first), and likewise its step ends (relative
/// to the trajectory's start, as in `TrajectoryRecord`) and metadata bytes. The writer validates a batch
/// as it validates records, so a malformed one is refused, never written.
public struct TrajectoryBatch: Sendable {
    /// Every trajectory's tokens, back to back; a producer appends the next trajectory's tokens here.
    public var tokens: [UInt32] = []
    /// Every trajectory's step ends, back to back; a producer appends the next trajectory's here.
    public var stepEnds: [UInt32] = []
    /// Every trajectory's metadata bytes, back to back; a producer appends the next trajectory's here.
    public var meta: [UInt8] = []
    /// Per trajectory: the end of its tokens, step ends and metadata in the arrays above.
    public private(set) var tokenEnd: [Int] = [], stepEnd: [Int] = [], metaEnd: [Int] = []
    /// Per trajectory: prompt length, reward, group, flag bits and source line (see `TrajectoryRecord`).
    public private(set) var promptLength: [UInt32] = [], reward: [Float] = [], group: [UInt64] = []
    public private(set) var flags: [UInt32] = [], sourceLine: [UInt64] = []

    /// An empty batch.
    public init() {}

    /// Number of trajectories.
    public var count: Int { tokenEnd.count }

    /// Where the next trajectory's tokens, step ends and metadata start.
    public var openStart: (tokens: Int, steps: Int, meta: Int) {
        (tokenEnd.last ?? 0, stepEnd.last ?? 0, metaEnd.last ?? 0)
    }

    /// Closes the next trajectory: everything appended to `tokens`, `stepEnds` and `meta` since the last one.
    public mutating func commit(
        promptLength: Int, reward: Float, group: UInt64, flags: TrajectoryFlags, sourceLine: UInt64
    ) {
        tokenEnd.append(tokens.count)
        stepEnd.append(stepEnds.count)
        metaEnd.append(meta.count)
        self.promptLength.append(UInt32(truncatingIfNeeded: promptLength))
        self.reward.append(reward)
        self.group.append(group)
        self.flags.append(flags.rawValue)
        self.sourceLine.append(sourceLine)
    }

    /// Drops what was appended since the last committed trajectory (after a line turned out invalid).
    public mutating func rollBack() {
        let (t, s, m) = openStart
        tokens.removeSubrange(t...)
        stepEnds.removeSubrange(s...)
        meta.removeSubrange(m...)
    }

    /// Appends a record (its `sourceFile` and per-token values are not carried).
    public mutating func append(_ r: TrajectoryRecord) {
        tokens += r.tokens
        stepEnds += r.stepEnds
        meta += r.meta
        commit(promptLength: r.promptLength, reward: r.reward, group: r.group, flags: r.flags, sourceLine: r.sourceLine)
    }

    /// Trajectory `k` as a record.
    public func record(_ k: Int) -> TrajectoryRecord {
        let t = range(tokenEnd, k), s = range(stepEnd, k), m = range(metaEnd, k)
        return TrajectoryRecord(
            tokens: Array(tokens[t]), promptLength: Int(promptLength[k]), reward: reward[k],
            group: group[k], stepEnds: Array(stepEnds[s]), sourceLine: sourceLine[k],
            flags: TrajectoryFlags(rawValue: flags[k]), meta: Array(meta[m]))
    }

    /// Empties the batch, keeping its storage for the next one.
    public mutating func removeAll() {
        tokens.removeAll(keepingCapacity: true)
        stepEnds.removeAll(keepingCapacity: true)
        meta.removeAll(keepingCapacity: true)
        tokenEnd.removeAll(keepingCapacity: true)
        stepEnd.removeAll(keepingCapacity: true)
        metaEnd.removeAll(keepingCapacity: true)
        promptLength.removeAll(keepingCapacity: true)
        reward.removeAll(keepingCapacity: true)
        group.removeAll(keepingCapacity: true)
        flags.removeAll(keepingCapacity: true)
        sourceLine.removeAll(keepingCapacity: true)
    }

    /// Trajectory `k`'s range in a column whose per-trajectory ends are `ends`.
    func range(_ ends: [Int], _ k: Int) -> Range<Int> { (k == 0 ? 0 : ends[k - 1])..<ends[k] }
}
