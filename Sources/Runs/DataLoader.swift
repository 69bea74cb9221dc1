import Format
import Foundation
import Support
import Train

/// Streams a dataset's trajectories as packed micro-batches in an order that is a pure function of
/// (seed, epoch), reading only what the next micro-batches need: memory does not grow with the dataset.
///
/// The order: the dataset's token axis is cut into windows of `windowTokens` tokens (a window holds the
/// trajectories that start in it; for DPO its edges move to the next group boundary, so a group is never split).
/// Each epoch shuffles the windows, takes them `mixWindows` at a time (a run), reads a run's trajectories'
/// scalars, applies the length policy and the method's selection, and shuffles the run's units (trajectories or
/// DPO pairs). Micro-batches fill a token budget greedily in that order. Run r shuffles with the epoch's
/// generator moved 2^40 draws ahead r times, so any run can be built without the ones before it, and a dataset
/// of one run is shuffled exactly as one whole-epoch shuffle would. The position (epoch, run, unit in the run)
/// is the whole resume state. Single-threaded, so the order never depends on a thread count.
public final class DataLoader {
    /// The dataset read.
    public let dataset: Dataset
    /// Settings.
    public let config: LoaderConfig
    /// Selection in force.
    public let selection: DataSelection
    /// Per-token column holding reference log-probs, when read.
    public let referenceColumn: String?
    /// What was kept and left out: counted over the first epoch for a dataset of at most `exactPlanLimit`
    /// trajectories, else estimated from the shards' statistics (`report.estimated`).
    public private(set) var report = LoaderReport()
    /// Where the next micro-batch starts.
    public private(set) var position = LoaderPosition()
    /// Windows per epoch.
    public let windowCount: Int
    /// Datasets up to this many trajectories are counted exactly before training (a pass over their scalars per
    /// planned epoch); larger ones are planned from statistics.
    public static let exactPlanLimit = 100_000

    /// Longest sequence kept.
    let limit: Int
    private let shardTokenStart: [UInt64]
    private var epochWindows: [UInt32] = []
    private var epochGenerator = SplitMix64(seed: 0)
    private var windowsEpoch = -1
    private var units: [Unit] = []
    private var unitsAt = (epoch: -1, run: -1)
    /// Cursors of the shards read last, most recent last (a dataset may have more shards than can be open).
    private var cursors: [(shard: Int, cursor: ShardCursor)] = []
    /// Exact micro-batch counts of the epochs counted at start.
    private var countedMicroBatches: [Int] = []
    /// While counting an epoch at start: what its runs keep and leave out.
    private var tally: LoaderReport?

    /// One unit: a trajectory, or a DPO pair (chosen, rejected), with kept lengths and positive flags.
    struct Unit {
        var first: Int, second: Int
        var firstLength: Int32, secondLength: Int32
        var firstPositive: Bool, secondPositive: Bool
        var tokens: Int { Int(firstLength) + Int(secondLength) }
    }

    /// Opens the loader on `dataset` and checks, from the shards' statistics (and for a small dataset, a pass
    /// over its scalars), that `selection` has something to train on, refusing what cannot be trained with the
    /// reason. `sequenceLimit` is the model's position limit. `epochs` is how many epochs a small dataset's
    /// micro-batches are counted for (`stepCount(epochs:)`); datasets above `exactPlanLimit` trajectories are
    /// planned from statistics instead.
    public init(
        dataset: Dataset, config: LoaderConfig, selection: DataSelection, sequenceLimit: Int,
        referenceColumn: String? = nil, epochs: Int = 1, exactPlanLimit: Int = DataLoader.exactPlanLimit
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
        if case .pairs(let cap) = selection, cap <= 0 { throw DataError("pairs per prompt must be positive") }
        if let referenceColumn, !dataset.manifest.tokenColumns.contains(referenceColumn) {
            throw DataError(
                "\(dataset.directory): no per-token column '\(referenceColumn)' (reference log-probs); run `oreo score --model REF --data \(dataset.directory)` first, or keep a reference model in memory (reference = model)"
            )
        }
        var limit = min(sequenceLimit, config.tokensPerMicroBatch)
        if config.maxLength > 0 { limit = min(limit, config.maxLength) }
        self.limit = limit
        var starts: [UInt64] = [0]
        starts.reserveCapacity(dataset.shardCount + 1)
        for e in dataset.manifest.shards { starts.append(starts.last! + e.tokens) }
        shardTokenStart = starts
        let tokens = starts.last!
        let windows = max(1, (tokens + UInt64(config.windowTokens) - 1) / UInt64(config.windowTokens))
        guard windows <= UInt64(UInt32.max) else {
            throw DataError("\(dataset.directory): \(windows) shuffle windows; raise window_tokens")
        }
        windowCount = Int(windows)

        let stats = try dataset.statistics()
        try refuseFromStatistics(stats)
        if dataset.trajectoryCount <= exactPlanLimit {
            // Small: count every epoch that will be trained, and report the first exactly.
            for e in 0..<max(1, epochs) {
                if e == 0 { tally = LoaderReport() }
                countedMicroBatches.append(try countMicroBatches(epoch: e))
                if e == 0, let t = tally { report = t }
                tally = nil
            }
            report.microBatchesPerEpoch = countedMicroBatches
        } else {
            report = estimate(stats)
        }
        report.trajectories = dataset.trajectoryCount
        report.maxLength = limit
        guard report.unitsPerEpoch > 0 else {
            throw DataError("\(dataset.directory): no trajectory is left to train on (\(reportSummary))")
        }
    }

    /// One line on what was kept and left out.
    public var reportSummary: String {
        let r = report
        let about = r.estimated ? "~" : ""
        var parts = [
            "\(about)\(r.used) of \(r.trajectories) trajectories used (\(about)\(r.positives) positive, \(about)\(r.negatives) negative)"
        ]
        if case .pairs = selection { parts.append("\(about)\(r.pairs) pairs from \(about)\(r.pairedGroups) groups") }
        if r.skippedOverlong > 0 {
            parts.append("\(about)\(r.skippedOverlong) longer than \(r.maxLength) tokens skipped")
        }
        if r.truncated > 0 { parts.append("\(about)\(r.truncated) cut to \(r.maxLength) tokens") }
        if r.skippedEmptyResponse > 0 { parts.append("\(r.skippedEmptyResponse) with an empty response skipped") }
        if r.skippedEmptyPrompt > 0 { parts.append("\(r.skippedEmptyPrompt) with an empty prompt skipped") }
        if r.filtered > 0 { parts.append("\(about)\(r.filtered) left out by the method's selection") }
        if r.estimated { parts.append("estimated from the shards' statistics") }
        return parts.joined(separator: "; ")
    }

    /// Units (trajectories or pairs) in one epoch (estimated for a large dataset).
    public var unitsPerEpoch: Int { report.unitsPerEpoch }

    /// Runs (groups of `mixWindows` windows) per epoch.
    public var runCount: Int { (windowCount + config.mixWindows - 1) / config.mixWindows }

    /// Optimizer steps in `epochs` epochs: exact for the epochs counted at start, else estimated from the
    /// statistics (the last step may hold fewer micro-batches).
    public func stepCount(epochs: Int) -> Int {
        let total =
            epochs <= countedMicroBatches.count
            ? countedMicroBatches.prefix(epochs).reduce(0, +)
            : epochs * max(1, report.microBatchesPerEpoch.first ?? 1)
        return max(1, (total + config.microBatchesPerStep - 1) / config.microBatchesPerStep)
    }

    /// Whether `epochs` whole epochs have been delivered.
    public func finished(epochs: Int) -> Bool {
        position.epoch >= epochs || (position.epoch == epochs - 1 && position.run >= runCount)
    }

    /// Moves to `position` (a checkpoint's); the next micro-batch is the one that followed it. A position from
    /// before runs were recorded (only `consumed`) is found by counting units from the epoch's start.
    public func seek(_ position: LoaderPosition) throws {
        guard position.epoch >= 0, position.consumed >= 0, position.microBatches >= 0, position.run >= 0,
            position.run <= runCount, position.inRun >= 0
        else {
            throw DataError("loader position \(position) does not fit this dataset's \(runCount) runs per epoch")
        }
        var p = position
        if p.recordsRuns == false {
            var left = p.consumed
            p.run = 0
            p.inRun = 0
            while p.run < runCount {
                let n = try loadRun(epoch: p.epoch, run: p.run).count
                if left < n { break }
                left -= n
                p.run += 1
            }
            guard left == 0 || p.run < runCount else {
                throw DataError("loader position \(position) is past the end of epoch \(position.epoch)")
            }
            p.inRun = left
            p.recordsRuns = true
        }
        if p.run < runCount {
            let n = try loadRun(epoch: p.epoch, run: p.run).count
            guard p.inRun <= n else {
                throw DataError("loader position \(position): run \(p.run) holds \(n) units")
            }
        }
        self.position = p
    }

    /// Fills `batch` with the next micro-batch (rolling into the next epoch at the end of one).
    public func next(into batch: TrainingBatch) throws {
        _ = try advance(into: batch)
    }

    /// Moves past the next micro-batch without reading its trajectories (another rank trains on it), returning
    /// the sequences and positions it holds: only the run's scalars are read.
    public func skip() throws -> (sequences: Int, tokens: Int) {
        try advance(into: nil)
    }

    private func advance(into batch: TrainingBatch?) throws -> (sequences: Int, tokens: Int) {
        if position.run >= runCount {
            position.epoch += 1
            position.run = 0
            position.inRun = 0
            position.consumed = 0
        }
        guard try moveToUnit(&position) else {
            throw DataError(
                "\(dataset.directory): epoch \(position.epoch) has no trajectory left to train on (\(reportSummary))")
        }
        batch?.clear()
        var tokens = 0, count = 0, sequences = 0
        repeat {
            let u = units[position.inRun]
            if count > 0 && tokens + u.tokens > config.tokensPerMicroBatch { break }
            if let batch {
                try append(u.first, length: Int(u.firstLength), positive: u.firstPositive, to: batch)
                if u.second >= 0 {
                    try append(u.second, length: Int(u.secondLength), positive: u.secondPositive, to: batch)
                }
            }
            sequences += u.second >= 0 ? 2 : 1
            tokens += u.tokens
            count += 1
            position.inRun += 1
            position.consumed += 1
        } while try moveToUnit(&position)
        position.microBatches += 1
        return (sequences, tokens)
    }

    /// The units of `epoch` in order, as trajectory indices (one, or chosen then rejected): the whole epoch in
    /// memory, for tests and inspection.
    public func epochUnits(_ epoch: Int) throws -> [[Int]] {
        var out: [[Int]] = []
        for r in 0..<runCount {
            for u in try loadRun(epoch: epoch, run: r) { out.append(u.second < 0 ? [u.first] : [u.first, u.second]) }
        }
        return out
    }

    /// The units of run `run` of `epoch` in order, as trajectory indices.
    public func runUnits(epoch: Int, run: Int) throws -> [[Int]] {
        try loadRun(epoch: epoch, run: run).map { $0.second < 0 ? [$0.first] : [$0.first, $0.second] }
    }

    /// Micro-batches epoch `epoch`'s order packs into (a pass over the epoch's scalars).
    public func microBatchCount(epoch: Int) throws -> Int { try countMicroBatches(epoch: epoch) }

    // MARK: - Runs

    /// Points `p` at a unit of its epoch (loading runs past empty ones); false at the epoch's end.
    private func moveToUnit(_ p: inout LoaderPosition) throws -> Bool {
        while p.run < runCount {
            if p.inRun < (try loadRun(epoch: p.epoch, run: p.run)).count { return true }
            p.run += 1
            p.inRun = 0
        }
        return false
    }

    /// The units of run `run` of `epoch`, shuffled (kept in `units` until another run is asked for).
    @discardableResult
    private func loadRun(epoch: Int, run: Int) throws -> [Unit] {
        if unitsAt == (epoch, run) && tally == nil { return units }
        if windowsEpoch != epoch {
            var rng = SplitMix64(seed: mixSeed(config.seed, 0x4F52_4445, UInt64(epoch)))
            var w = (0..<windowCount).map { UInt32($0) }
            shuffle(&w, &rng)
            epochWindows = w
            epochGenerator = rng
            windowsEpoch = epoch
        }
        var out: [Unit] = []
        let first = run * config.mixWindows
        for k in first..<min(windowCount, first + config.mixWindows) {
            let w = Int(epochWindows[k])
            try readWindow(try windowStart(w)..<(try windowStart(w + 1)), into: &out)
        }
        var rng = epochGenerator
        rng.advance(by: UInt64(run) << 40)
        shuffle(&out, &rng)
        units = out
        unitsAt = (epoch, run)
        return out
    }

    /// Packs `epoch` as `next` would, counting micro-batches (and, while `tally` is set, what the epoch keeps).
    private func countMicroBatches(epoch: Int) throws -> Int {
        var count = 0, tokens = 0, open = false
        for r in 0..<runCount {
            for u in try loadRun(epoch: epoch, run: r) {
                if open && tokens + u.tokens > config.tokensPerMicroBatch {
                    count += 1
                    tokens = 0
                }
                tokens += u.tokens
                open = true
            }
        }
        return count + (open ? 1 : 0)
    }

    /// The first trajectory of window `k` (the dataset's end for `k == windowCount`).
    private func windowStart(_ k: Int) throws -> Int {
        if k == 0 { return 0 }
        let total = dataset.trajectoryCount
        if k >= windowCount { return total }
        let target = UInt64(k) * UInt64(config.windowTokens)
        // The last shard starting at or before the target token.
        var lo = 0, hi = dataset.shardCount
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if shardTokenStart[mid] <= target { lo = mid } else { hi = mid }
        }
        let shard = try dataset.shard(lo)
        var g = dataset.firstTrajectory[lo] + shard.tokenOffsets.firstStarting(atOrAfter: target - shardTokenStart[lo])
        if case .pairs = selection {
            // Never split a group: move to the next group boundary.
            while g > 0 && g < total, try scalars(g).group == scalars(g - 1).group { g += 1 }
        }
        return g
    }

    private func scalars(_ g: Int) throws -> TrajectoryScalars {
        guard let (si, local) = dataset.locate(g) else { throw DataError("trajectory \(g) outside the dataset") }
        return try cursor(si).scalars(local)
    }

    /// Appends the units of trajectories `range` (in dataset order; pairs sorted by their first trajectory).
    private func readWindow(_ range: Range<Int>, into out: inout [Unit]) throws {
        var kept: [(g: Int, length: Int32, positive: Bool, group: UInt64)] = []
        var r = LoaderReport()
        for g in range {
            guard let (si, local) = dataset.locate(g) else { break }
            let s = try cursor(si).scalars(local)
            // Named only when something is reported: an entry is decoded from the manifest each time it is asked for.
            var path: String { dataset.shardPath(si) }
            func note(_ why: String) {
                if r.examples.count < 10 { r.examples.append("\(path) trajectory \(local) (\(why))") }
            }
            guard s.reward.isFinite else {
                throw DataError("\(path): trajectory \(local) has reward \(s.reward); rewards must be finite")
            }
            if s.promptLength == 0 {
                r.skippedEmptyPrompt += 1
                note("empty prompt")
                continue
            }
            if s.tokenCount == s.promptLength {
                r.skippedEmptyResponse += 1
                note("empty response")
                continue
            }
            var length = s.tokenCount
            if length > limit {
                switch config.overlong {
                case .fail:
                    throw DataError(
                        "\(path): trajectory \(local) has \(length) tokens, the limit is \(limit) (raise --max-length / --tokens-per-micro-batch, or pass --overlong skip|truncate)"
                    )
                case .skip:
                    r.skippedOverlong += 1
                    note("\(length) tokens > \(limit)")
                    continue
                case .truncate:
                    if s.promptLength >= limit {
                        r.skippedOverlong += 1
                        note("prompt alone \(s.promptLength) tokens >= \(limit)")
                        continue
                    }
                    r.truncated += 1
                    note("cut from \(length) to \(limit) tokens")
                    length = limit
                }
            }
            kept.append((g, Int32(length), s.reward >= config.positiveThreshold, s.group))
        }
        let before = out.count
        // Which trajectories a unit uses: only for the report, so only while counting one.
        let counting = tally != nil
        var used = Set<Int>()
        switch selection {
        case .all, .positives:
            for t in kept {
                if selection == .positives && !t.positive {
                    r.filtered += 1
                    continue
                }
                out.append(
                    Unit(
                        first: t.g, second: -1, firstLength: t.length, secondLength: 0,
                        firstPositive: t.positive, secondPositive: false))
                if counting { used.insert(t.g) }
            }
        case .pairs(let cap):
            var groups: [UInt64: (pos: [Int], neg: [Int])] = [:]
            var groupOrder: [UInt64] = []
            for (k, t) in kept.enumerated() {
                if groups[t.group] == nil {
                    groups[t.group] = ([], [])
                    groupOrder.append(t.group)
                }
                if t.positive { groups[t.group]!.pos.append(k) } else { groups[t.group]!.neg.append(k) }
            }
            var pairs: [(Int, Int)] = []
            for key in groupOrder {
                let (pos, neg) = groups[key]!
                if pos.isEmpty || neg.isEmpty { continue }
                // Draw without replacement from positives x negatives: a seeded partial Fisher-Yates.
                var all: [Int] = Array(0..<(pos.count * neg.count))
                var rng = SplitMix64(seed: mixSeed(config.seed, 0x5041_4952, key))
                for i in 0..<min(cap, all.count) {
                    let j = i + Int(rng.next() % UInt64(all.count - i))
                    all.swapAt(i, j)
                    pairs.append((pos[all[i] / neg.count], neg[all[i] % neg.count]))
                }
                r.pairedGroups += 1
            }
            pairs.sort { min($0.0, $0.1) < min($1.0, $1.1) }
            for (c, j) in pairs {
                let a = kept[c], b = kept[j]
                guard Int(a.length) + Int(b.length) <= config.tokensPerMicroBatch else {
                    throw DataError(
                        "a DPO pair of \(Int(a.length) + Int(b.length)) tokens does not fit one micro-batch of \(config.tokensPerMicroBatch) tokens"
                    )
                }
                out.append(
                    Unit(
                        first: a.g, second: b.g, firstLength: a.length, secondLength: b.length,
                        firstPositive: true, secondPositive: false))
                if counting {
                    used.insert(a.g)
                    used.insert(b.g)
                }
            }
            r.pairs = pairs.count
            r.filtered = kept.count - used.count
        }
        guard counting else { return }
        for t in kept where used.contains(t.g) {
            r.used += 1
            if t.positive { r.positives += 1 } else { r.negatives += 1 }
        }
        r.unitsPerEpoch = out.count - before
        tally?.add(r)
    }

    // MARK: - Statistics

    /// Refusals the statistics decide before any trajectory is read.
    private func refuseFromStatistics(_ st: ShardStats) throws {
        if st.nonFiniteRewards > 0 || (config.overlong == .fail && st.longest > UInt64(limit)) {
            // Name the trajectory: scan until it is found (this is the error path).
            var scratch: [Unit] = []
            for g in 0..<dataset.trajectoryCount {
                try readWindow(g..<(g + 1), into: &scratch)
                scratch.removeAll(keepingCapacity: true)
            }
        }
        guard config.positiveThreshold == ShardStats.positiveThreshold else { return }
        switch selection {
        case .positives where st.positives == 0:
            throw DataError(
                "\(dataset.directory): no trajectory with reward >= \(config.positiveThreshold) to train rejection sampling on"
            )
        case .pairs where !st.groupPairs.contains(where: { $0[0] > 0 }):
            throw DataError(
                "\(dataset.directory): no group has both a positive (reward >= \(config.positiveThreshold)) and a negative trajectory, so DPO has no pairs"
            )
        default: break
        }
    }

    /// What an epoch keeps, from the statistics alone (lengths by bucket, positives, group pairs).
    private func estimate(_ st: ShardStats) -> LoaderReport {
        var r = LoaderReport()
        r.estimated = true
        r.skippedEmptyPrompt = Int(st.emptyPrompt)
        r.skippedEmptyResponse = Int(st.emptyResponse)
        // Trajectories over the limit: whole buckets above it, and the straddling bucket's share above it.
        var over = 0.0, overTokens = 0.0
        for (b, n) in st.lengthCounts.enumerated() where n > 0 {
            let range = ShardStats.lengthRange(b)
            let lo = Double(range.lowerBound), hi = Double(range.upperBound)
            let share = Double(limit) >= hi - 1 ? 0 : Double(limit) < lo ? 1 : (hi - 1 - Double(limit)) / (hi - lo)
            over += share * Double(n)
            overTokens += share * Double(st.lengthTokens[b])
        }
        let usable = Double(st.usable), usableTokens = Double(st.usableTokens)
        var keptTokens = usableTokens
        if config.overlong == .truncate {
            r.truncated = Int(over)
            keptTokens -= overTokens - over * Double(limit)
        } else {
            r.skippedOverlong = Int(over)
            keptTokens -= overTokens
        }
        let keep = usable > 0 ? (config.overlong == .truncate ? usable : usable - over) / usable : 0
        let positives = Double(st.positives) * keep
        var units: Double, tokens: Double
        switch selection {
        case .all:
            units = usable * keep
            tokens = keptTokens
            r.used = Int(units)
            r.positives = Int(positives)
        case .positives:
            units = positives
            tokens = usableTokens > 0 ? keptTokens * Double(st.positiveTokens) / usableTokens : 0
            r.used = Int(units)
            r.positives = Int(units)
            r.filtered = Int(usable * keep - units)
        case .pairs(let cap):
            let pairs = st.groupPairs.reduce(0.0) { $0 + Double($1[1]) * Double(min(UInt64(cap), $1[0])) } * keep
            units = pairs
            tokens = usable > 0 ? 2 * pairs * keptTokens / (usable * keep) : 0
            r.pairs = Int(pairs)
            r.pairedGroups = Int(st.groupPairs.filter { $0[0] > 0 }.reduce(UInt64(0)) { $0 + $1[1] })
            r.used = Int(min(usable * keep, 2 * pairs))
            r.positives = r.used / 2
            r.filtered = Int(usable * keep) - r.used
        }
        r.negatives = r.used - r.positives
        r.unitsPerEpoch = Int(units.rounded())
        // Greedy packing leaves about half a unit of room per micro-batch.
        let mean = units > 0 ? tokens / units : 0
        let room = max(mean, Double(config.tokensPerMicroBatch) - mean / 2)
        r.microBatchesPerEpoch = [units > 0 ? Int((tokens / room).rounded(.up)) : 0]
        return r
    }

    // MARK: - Reading

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

    /// Appends trajectory `g` as one sequence of its first `length` tokens: targets on its response tokens only.
    private func append(_ g: Int, length: Int, positive: Bool, to batch: TrainingBatch) throws {
        guard let (si, local) = dataset.locate(g) else { throw DataError("trajectory \(g) outside the dataset") }
        let c = try cursor(si)
        let view = try c.trajectory(local)
        let p = view.promptLength
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
                first: start + p - 1, count: t, reward: view.reward, positive: positive,
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
