import Format
import Foundation
import Support
import Train

/// Streams a dataset's trajectories as packed micro-batches in an order that is a pure function of
/// (seed, epoch): windows of consecutive trajectories are shuffled, then trajectories within runs of windows,
/// which keeps reads within a few compressed blocks. Micro-batches fill a token budget greedily in that order;
/// the position (epoch, units consumed) is the whole resume state. Single-threaded, so the order never depends
/// on a thread count.
public final class DataLoader {
    /// The dataset read.
    public let dataset: Dataset
    /// Settings.
    public let config: LoaderConfig
    /// Selection in force.
    public let selection: DataSelection
    /// Per-token column holding reference log-probs, when read.
    public let referenceColumn: String?
    /// What was kept and left out.
    public private(set) var report = LoaderReport()
    /// Where the next micro-batch starts.
    public private(set) var position = LoaderPosition()
    /// Locality windows: ranges of consecutive units (in dataset order) shuffled as wholes.
    public private(set) var windows: [Range<Int>] = []

    /// Trajectories of each unit (1, or 2 for a pair) and kept length of each trajectory.
    private var unitFirst: [Int32] = [], unitSecond: [Int32] = [], unitTokens: [Int32] = []
    private var keptLength: [Int32]
    private var positive: [Bool]
    private var order: [Int32] = []
    private var orderEpoch = -1
    /// Cursors of the shards read last, most recent last (bounded: a dataset may have more shards than can be open).
    private var cursors: [(shard: Int, cursor: ShardCursor)] = []

    /// Plans every unit of `dataset` (reading only per-trajectory scalars), checks the data for `selection`,
    /// and refuses what cannot be trained on with the reason. `sequenceLimit` is the model's position limit.
    public init(
        dataset: Dataset, config: LoaderConfig, selection: DataSelection, sequenceLimit: Int,
        referenceColumn: String? = nil
    ) throws {
        self.dataset = dataset
        self.config = config
        self.selection = selection
        self.referenceColumn = referenceColumn
        guard config.tokensPerMicroBatch > 0, config.microBatchesPerStep > 0, config.windowTokens > 0,
            config.mixWindows > 0
        else {
            throw DataError(
                "tokens per micro-batch, micro-batches per step, window tokens and mix windows must be positive")
        }
        if let referenceColumn, !dataset.manifest.tokenColumns.contains(referenceColumn) {
            throw DataError(
                "\(dataset.directory): no per-token column '\(referenceColumn)' (reference log-probs); run `oreo score --model REF --data \(dataset.directory)` first, or keep a reference model in memory (reference = model)"
            )
        }
        var limit = min(sequenceLimit, config.tokensPerMicroBatch)
        if config.maxLength > 0 { limit = min(limit, config.maxLength) }
        let total = dataset.trajectoryCount
        guard total <= Int(Int32.max) else {
            throw DataError(
                "\(dataset.directory): \(total) trajectories; this loader indexes at most \(Int32.max) (split the dataset)"
            )
        }
        report.trajectories = total
        report.maxLength = limit
        keptLength = [Int32](repeating: 0, count: total)
        positive = [Bool](repeating: false, count: total)
        var groups: [UInt64: (pos: [Int32], neg: [Int32])] = [:]
        var groupOrder: [UInt64] = []
        var eligible = [Bool](repeating: false, count: total)
        for si in 0..<dataset.shardCount {
            let shard = try dataset.shard(si)
            let cursor = shard.cursor()
            for local in 0..<shard.trajectoryCount {
                let g = dataset.firstTrajectory[si] + local
                let s = try cursor.scalars(local)
                func note(_ why: String) {
                    if report.examples.count < 10 {
                        report.examples.append("\(shard.path) trajectory \(local) (\(why))")
                    }
                }
                guard s.reward.isFinite else {
                    throw DataError("\(shard.path): trajectory \(local) has reward \(s.reward); rewards must be finite")
                }
                if s.promptLength == 0 {
                    report.skippedEmptyPrompt += 1
                    note("empty prompt")
                    continue
                }
                if s.tokenCount == s.promptLength {
                    report.skippedEmptyResponse += 1
                    note("empty response")
                    continue
                }
                var length = s.tokenCount
                if length > limit {
                    switch config.overlong {
                    case .fail:
                        throw DataError(
                            "\(shard.path): trajectory \(local) has \(length) tokens, the limit is \(limit) (raise --max-length / --tokens-per-micro-batch, or pass --overlong skip|truncate)"
                        )
                    case .skip:
                        report.skippedOverlong += 1
                        note("\(length) tokens > \(limit)")
                        continue
                    case .truncate:
                        if s.promptLength >= limit {
                            report.skippedOverlong += 1
                            note("prompt alone \(s.promptLength) tokens >= \(limit)")
                            continue
                        }
                        report.truncated += 1
                        note("cut from \(length) to \(limit) tokens")
                        length = limit
                    }
                }
                keptLength[g] = Int32(length)
                let pos = s.reward >= config.positiveThreshold
                positive[g] = pos
                eligible[g] = true
                if case .pairs = selection {
                    if groups[s.group] == nil {
                        groups[s.group] = ([], [])
                        groupOrder.append(s.group)
                    }
                    if pos { groups[s.group]!.pos.append(Int32(g)) } else { groups[s.group]!.neg.append(Int32(g)) }
                }
            }
        }
        var used = [Bool](repeating: false, count: total)
        switch selection {
        case .all, .positives:
            for g in 0..<total where eligible[g] {
                if selection == .positives && !positive[g] {
                    report.filtered += 1
                    continue
                }
                unitFirst.append(Int32(g))
                unitSecond.append(-1)
                unitTokens.append(keptLength[g])
                used[g] = true
            }
            if selection == .positives && unitFirst.isEmpty {
                throw DataError(
                    "\(dataset.directory): no trajectory with reward >= \(config.positiveThreshold) to train rejection sampling on"
                )
            }
        case .pairs(let cap):
            guard cap > 0 else { throw DataError("pairs per prompt must be positive") }
            var pairs: [(Int32, Int32)] = []
            for key in groupOrder {
                let (pos, neg) = groups[key]!
                if pos.isEmpty || neg.isEmpty { continue }
                // Draw without replacement from positives x negatives: a seeded partial Fisher-Yates.
                var all: [Int] = Array(0..<(pos.count * neg.count))
                var rng = SplitMix64(seed: mixSeed(config.seed, 0x5041_4952, key))
                let take = min(cap, all.count)
                for i in 0..<take {
                    let j = i + Int(rng.next() % UInt64(all.count - i))
                    all.swapAt(i, j)
                    pairs.append((pos[all[i] / neg.count], neg[all[i] % neg.count]))
                }
                report.pairedGroups += 1
            }
            guard !pairs.isEmpty else {
                throw DataError(
                    "\(dataset.directory): no group has both a positive (reward >= \(config.positiveThreshold)) and a negative trajectory, so DPO has no pairs"
                )
            }
            pairs.sort { min($0.0, $0.1) < min($1.0, $1.1) }
            for (c, r) in pairs {
                guard keptLength[Int(c)] + keptLength[Int(r)] <= Int32(config.tokensPerMicroBatch) else {
                    throw DataError(
                        "a DPO pair of \(keptLength[Int(c)] + keptLength[Int(r)]) tokens does not fit one micro-batch of \(config.tokensPerMicroBatch) tokens"
                    )
                }
                unitFirst.append(c)
                unitSecond.append(r)
                unitTokens.append(keptLength[Int(c)] + keptLength[Int(r)])
                used[Int(c)] = true
                used[Int(r)] = true
            }
            report.pairs = pairs.count
            report.filtered = (0..<total).filter { eligible[$0] && !used[$0] }.count
        }
        for g in 0..<total where used[g] {
            report.used += 1
            if positive[g] { report.positives += 1 } else { report.negatives += 1 }
        }
        guard !unitFirst.isEmpty else {
            throw DataError("\(dataset.directory): no trajectory is left to train on (\(reportSummary))")
        }
        report.unitsPerEpoch = unitFirst.count
        // Windows of consecutive units (units are in dataset order) of about windowTokens tokens.
        var start = 0, tokens = 0
        for u in 0..<unitFirst.count {
            tokens += Int(unitTokens[u])
            if tokens >= config.windowTokens {
                windows.append(start..<(u + 1))
                start = u + 1
                tokens = 0
            }
        }
        if start < unitFirst.count { windows.append(start..<unitFirst.count) }
    }

    /// One line on what was kept and left out.
    public var reportSummary: String {
        let r = report
        var parts = [
            "\(r.used) of \(r.trajectories) trajectories used (\(r.positives) positive, \(r.negatives) negative)"
        ]
        if case .pairs = selection { parts.append("\(r.pairs) pairs from \(r.pairedGroups) groups") }
        if r.skippedOverlong > 0 { parts.append("\(r.skippedOverlong) longer than \(r.maxLength) tokens skipped") }
        if r.truncated > 0 { parts.append("\(r.truncated) cut to \(r.maxLength) tokens") }
        if r.skippedEmptyResponse > 0 { parts.append("\(r.skippedEmptyResponse) with an empty response skipped") }
        if r.skippedEmptyPrompt > 0 { parts.append("\(r.skippedEmptyPrompt) with an empty prompt skipped") }
        if r.filtered > 0 { parts.append("\(r.filtered) left out by the method's selection") }
        return parts.joined(separator: "; ")
    }

    /// Units (trajectories or pairs) in one epoch.
    public var unitsPerEpoch: Int { unitFirst.count }

    /// The unit order of `epoch` (indices into the planned units): a pure function of (seed, epoch).
    public func order(epoch: Int) -> [Int32] {
        var rng = SplitMix64(seed: mixSeed(config.seed, 0x4F52_4445, UInt64(epoch)))
        var w = Array(windows.indices)
        shuffle(&w, &rng)
        var out: [Int32] = []
        out.reserveCapacity(unitFirst.count)
        var i = 0
        while i < w.count {
            let runStart = out.count
            for k in i..<min(w.count, i + config.mixWindows) { for u in windows[w[k]] { out.append(Int32(u)) } }
            var run = Array(out[runStart...])
            shuffle(&run, &rng)
            out.replaceSubrange(runStart..., with: run)
            i += config.mixWindows
        }
        return out
    }

    /// The global trajectory indices of unit `u` (one, or chosen then rejected).
    public func trajectories(ofUnit u: Int) -> [Int] {
        unitSecond[u] < 0 ? [Int(unitFirst[u])] : [Int(unitFirst[u]), Int(unitSecond[u])]
    }

    /// Number of micro-batches epoch `epoch`'s order packs into.
    public func microBatchCount(epoch: Int) -> Int {
        let o = order(epoch: epoch)
        var count = 0, i = 0
        while i < o.count {
            i = packEnd(o, from: i)
            count += 1
        }
        return count
    }

    /// First unit index after the micro-batch that starts at `from` in `o`.
    private func packEnd(_ o: [Int32], from: Int) -> Int {
        var tokens = 0, i = from
        while i < o.count {
            let t = Int(unitTokens[Int(o[i])])
            if i > from && tokens + t > config.tokensPerMicroBatch { break }
            tokens += t
            i += 1
        }
        return i
    }

    /// Optimizer steps in `epochs` epochs (the last step may hold fewer micro-batches).
    public func stepCount(epochs: Int) -> Int {
        var total = 0
        report.microBatchesPerEpoch = (0..<epochs).map { microBatchCount(epoch: $0) }
        total = report.microBatchesPerEpoch.reduce(0, +)
        return (total + config.microBatchesPerStep - 1) / config.microBatchesPerStep
    }

    /// Moves to `position` (a checkpoint's); the next micro-batch is the one that followed it.
    public func seek(_ position: LoaderPosition) throws {
        guard position.epoch >= 0, position.consumed >= 0, position.consumed <= unitFirst.count,
            position.microBatches >= 0
        else {
            throw DataError(
                "loader position \(position) does not fit this dataset's \(unitFirst.count) units per epoch")
        }
        self.position = position
    }

    /// Fills `batch` with the next micro-batch (rolling into the next epoch at the end of one).
    public func next(into batch: TrainingBatch) throws {
        if position.consumed >= unitFirst.count {
            position.epoch += 1
            position.consumed = 0
        }
        if orderEpoch != position.epoch {
            order = order(epoch: position.epoch)
            orderEpoch = position.epoch
        }
        let end = packEnd(order, from: position.consumed)
        batch.clear()
        for i in position.consumed..<end {
            let u = Int(order[i])
            try append(Int(unitFirst[u]), to: batch)
            if unitSecond[u] >= 0 { try append(Int(unitSecond[u]), to: batch) }
        }
        position.consumed = end
        position.microBatches += 1
    }

    private func cursor(_ shard: Int) throws -> ShardCursor {
        if let k = cursors.lastIndex(where: { $0.shard == shard }) {
            let c = cursors[k].cursor
            if k != cursors.count - 1 { cursors.append(cursors.remove(at: k)) }
            return c
        }
        let c = try dataset.shard(shard).cursor(cacheBlocks: 2 * config.mixWindows + 2)
        cursors.append((shard, c))
        // A run of `mixWindows` windows touches a few shards at most; keep a few more.
        if cursors.count > 2 * config.mixWindows + 4 { cursors.removeFirst() }
        return c
    }

    /// Appends trajectory `g` as one sequence: targets on its response tokens only.
    private func append(_ g: Int, to batch: TrainingBatch) throws {
        guard let (si, local) = dataset.locate(g) else { throw DataError("trajectory \(g) outside the dataset") }
        let c = try cursor(si)
        let view = try c.trajectory(local)
        let length = Int(keptLength[g]), p = view.promptLength
        let start = batch.packed.tokens.count
        for i in 0..<length { batch.packed.tokens.append(Int32(bitPattern: view.tokens[i])) }
        for i in 0..<length {
            batch.packed.targets.append(i >= p - 1 && i + 1 < length ? Int32(bitPattern: view.tokens[i + 1]) : -1)
        }
        batch.packed.sequenceLengths.append(length)
        let t = length - p
        let stepStart = batch.stepEnds.count
        for e in view.stepEnds where Int(e) > p && Int(e) < length { batch.stepEnds.append(Int32(Int(e) - p)) }
        batch.spans.append(
            ResponseSpan(
                first: start + p - 1, count: t, reward: view.reward, positive: positive[g],
                stepEndStart: stepStart, stepEndCount: batch.stepEnds.count - stepStart))
        batch.trajectories.append(g)
        if let referenceColumn {
            let ref = try c.tokenValues(referenceColumn, trajectory: local)
            for i in 0..<length {
                let v = i >= p - 1 && i + 1 < length ? ref[i + 1] : 0
                guard v.isFinite else {
                    throw DataError(
                        "\(dataset.shardPath(si)): trajectory \(local) token \(i + 1): reference log-prob \(v) in column '\(referenceColumn)' is not a finite log-probability"
                    )
                }
                batch.refLogProbs.append(v)
            }
        }
    }
}

/// A seed for one use, derived from the run's seed (SplitMix64 decorrelates nearby inputs).
func mixSeed(_ seed: UInt64, _ purpose: UInt64, _ index: UInt64) -> UInt64 {
    var g = SplitMix64(seed: seed ^ (purpose &* 0x9E37_79B9_7F4A_7C15))
    var h = g.next() ^ index
    var g2 = SplitMix64(seed: h)
    h = g2.next()
    return h
}

/// Fisher-Yates with the generator's raw bits (stable across Swift versions, unlike the standard shuffle).
func shuffle<T>(_ a: inout [T], _ rng: inout SplitMix64) {
    guard a.count > 1 else { return }
    for i in stride(from: a.count - 1, to: 0, by: -1) {
        a.swapAt(i, Int(rng.next() % UInt64(i + 1)))
    }
}
