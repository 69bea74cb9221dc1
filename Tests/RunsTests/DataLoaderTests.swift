import Format
import Foundation
import Testing
import Train
import Runs

/// The data loader: order, locality, packing, resume, epochs, limits and selections.
@Suite struct DataLoaderTests {
    func loader(
        _ ds: Dataset, _ tweak: (inout LoaderConfig) -> Void = { _ in }, selection: DataSelection = .all,
        limit: Int = 64, column: String? = nil
    ) throws -> DataLoader {
        var c = LoaderConfig()
        c.tokensPerMicroBatch = 40
        c.windowTokens = 30
        c.mixWindows = 2
        tweak(&c)
        return try DataLoader(
            dataset: ds, config: c, selection: selection, sequenceLimit: limit, referenceColumn: column)
    }

    @Test func orderIsAPureFunctionOfSeedAndEpoch() throws {
        let dir = temporaryDirectory("order")
        let ds = try writeDataset(randomRecords(300, vocab: 50, seed: 1), vocab: 50, at: dir, shardTokens: 400)
        #expect(ds.shardCount > 3)
        let a = try loader(ds), b = try loader(ds)
        let o0 = try a.epochUnits(0).map { $0[0] }
        #expect(try o0 == b.epochUnits(0).map { $0[0] })
        #expect(Set(o0).count == 300 && o0.count == 300)
        #expect(try o0 != a.epochUnits(1).map { $0[0] })
        #expect(o0 != Array(0..<300))
        let other = try loader(ds) { $0.seed = 2 }
        #expect(try other.epochUnits(0).map { $0[0] } != o0)
    }

    /// Every run of `mixWindows` shuffled windows is delivered together, and its trajectories form at most
    /// `mixWindows` contiguous ranges of the dataset order: a micro-batch touches a few blocks.
    @Test func orderKeepsBlockLocality() throws {
        let dir = temporaryDirectory("locality")
        let ds = try writeDataset(randomRecords(400, vocab: 50, seed: 2), vocab: 50, at: dir, shardTokens: 600)
        let l = try loader(ds) {
            $0.windowTokens = 60
            $0.mixWindows = 3
        }
        #expect(l.windowCount > 20 && l.runCount >= 7)
        var all: [Int] = []
        for r in 0..<l.runCount {
            let run = try l.runUnits(epoch: 0, run: r).map { $0[0] }.sorted()
            let ranges = 1 + zip(run, run.dropFirst()).filter { $1 != $0 + 1 }.count
            #expect(run.isEmpty || ranges <= 3, "run \(r): \(ranges) ranges")
            all += run
        }
        #expect(all.sorted() == Array(0..<400))
        #expect(try l.epochUnits(0).count == 400)
    }

    /// A position saved before runs were recorded (epoch and units consumed only) resumes at the same unit.
    @Test func aPositionWithoutRunsIsFoundFromItsCount() throws {
        let dir = temporaryDirectory("old-position")
        let ds = try writeDataset(randomRecords(200, vocab: 50, seed: 9), vocab: 50, at: dir, shardTokens: 300)
        let a = try loader(ds)
        #expect(a.runCount > 3)
        let b = TrainingBatch()
        for _ in 0..<9 { try a.next(into: b) }
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(a.position)) as! [String: Any]
        #expect(json["run"] as? Int == a.position.run)
        json["run"] = nil
        json["inRun"] = nil
        let old = try JSONDecoder().decode(LoaderPosition.self, from: JSONSerialization.data(withJSONObject: json))
        let resumed = try loader(ds)
        try resumed.seek(old)
        #expect(resumed.position == a.position)
        for _ in 0..<5 {
            try a.next(into: b)
            let expected = b.trajectories
            try resumed.next(into: b)
            #expect(b.trajectories == expected)
        }
    }

    @Test func packsResponseTargetsAndReferenceValues() throws {
        let dir = temporaryDirectory("pack")
        let records = randomRecords(60, vocab: 50, seed: 3, columns: ["ref_logprob"])
        let ds = try writeDataset(records, vocab: 50, at: dir, columns: ["ref_logprob"])
        let l = try loader(ds, column: "ref_logprob")
        let b = TrainingBatch()
        var seen = 0
        for _ in 0..<8 {
            try l.next(into: b)
            #expect(b.count <= 40 && !b.spans.isEmpty)
            var start = 0
            for (k, g) in b.trajectories.enumerated() {
                let r = records[g], len = b.packed.sequenceLengths[k], s = b.spans[k]
                #expect(len == r.tokens.count)
                #expect(Array(b.packed.tokens[start..<(start + len)]) == r.tokens.map { Int32($0) })
                // Targets on response tokens only: the prompt's last position predicts the first response token.
                for i in 0..<len {
                    let expected: Int32 = i >= r.promptLength - 1 && i + 1 < len ? Int32(r.tokens[i + 1]) : -1
                    #expect(b.packed.targets[start + i] == expected)
                    let ref = b.refLogProbs[start + i]
                    #expect(ref == (expected >= 0 ? r.tokenValues["ref_logprob"]![i + 1] : 0))
                }
                #expect(s.first == start + r.promptLength - 1 && s.count == len - r.promptLength)
                #expect(s.reward == r.reward && s.positive == (r.reward >= 0.5))
                let ends = Array(b.stepEnds[s.stepEndStart..<(s.stepEndStart + s.stepEndCount)])
                #expect(ends == r.stepEnds.filter { Int($0) < len }.map { Int32(Int($0) - r.promptLength) })
                start += len
                seen += 1
            }
        }
        #expect(seen > 20)
    }

    @Test func resumesFromAPositionAndCoversEveryUnitOncePerEpoch() throws {
        let dir = temporaryDirectory("resume")
        let ds = try writeDataset(randomRecords(120, vocab: 50, seed: 4), vocab: 50, at: dir, shardTokens: 300)
        let a = try loader(ds)
        let perEpoch = try a.microBatchCount(epoch: 0)
        let b = TrainingBatch()
        var firstEpoch: [Int] = [], secondEpoch: [Int] = []
        var position: LoaderPosition?
        var after: [[Int32]] = []
        for k in 0..<(perEpoch + (try a.microBatchCount(epoch: 1))) {
            try a.next(into: b)
            if k < perEpoch { firstEpoch += b.trajectories } else { secondEpoch += b.trajectories }
            if k == perEpoch - 3 { position = a.position }
            if k > perEpoch - 3 { after.append(b.packed.tokens) }
        }
        #expect(firstEpoch.sorted() == Array(0..<120) && secondEpoch.sorted() == Array(0..<120))
        #expect(firstEpoch != secondEpoch)
        let resumed = try loader(ds)
        try resumed.seek(position!)
        for expected in after {
            try resumed.next(into: b)
            #expect(b.packed.tokens == expected)
        }
        #expect(resumed.position == a.position)
    }

    @Test func overlongTrajectoriesAreSkippedCutOrRefused() throws {
        let dir = temporaryDirectory("overlong")
        var records = randomRecords(20, vocab: 50, seed: 5)
        records[3] = TrajectoryRecord(
            tokens: Array(repeating: 7, count: 30), promptLength: 4, reward: 1, stepEnds: [10, 30])
        records[9] = TrajectoryRecord(
            tokens: Array(repeating: 8, count: 30), promptLength: 25, reward: 0, stepEnds: [30])
        let ds = try writeDataset(records, vocab: 50, at: dir)
        let skip = try loader(ds, limit: 20)
        #expect(skip.report.skippedOverlong == 2 && skip.report.used == 18 && skip.report.examples.count == 2)
        let cut = try loader(ds, { $0.overlong = .truncate }, limit: 20)
        #expect(cut.report.truncated == 1 && cut.report.skippedOverlong == 1 && cut.report.maxLength == 20)
        let b = TrainingBatch()
        var found = false
        for _ in 0..<(try cut.microBatchCount(epoch: 0)) {
            try cut.next(into: b)
            if let k = b.trajectories.firstIndex(of: 3) {
                found = true
                #expect(b.packed.sequenceLengths[k] == 20 && b.spans[k].count == 16)
                #expect(b.stepEnds[b.spans[k].stepEndStart] == 6 && b.spans[k].stepEndCount == 1)
            }
        }
        #expect(found)
        #expect(throws: DataError.self) { try loader(ds, { $0.overlong = .fail }, limit: 20) }
    }

    @Test func selectionsForRejectionSamplingAndDPO() throws {
        let dir = temporaryDirectory("select")
        let records = randomRecords(80, vocab: 50, seed: 6)
        let ds = try writeDataset(records, vocab: 50, at: dir)
        let rft = try loader(ds, selection: .positives)
        #expect(rft.report.used == records.filter { $0.reward == 1 }.count)
        let rftUnits = try rft.epochUnits(0)
        #expect(rftUnits.count == rft.unitsPerEpoch && rftUnits.allSatisfy { records[$0[0]].reward == 1 })

        let dpo = try loader(ds, selection: .pairs(perGroup: 2))
        var pairs = Set<[Int]>()
        var perGroup: [UInt64: Int] = [:]
        for t in try dpo.epochUnits(0) {
            #expect(t.count == 2 && records[t[0]].reward == 1 && records[t[1]].reward == 0)
            #expect(records[t[0]].group == records[t[1]].group)
            pairs.insert(t)
            perGroup[records[t[0]].group, default: 0] += 1
        }
        #expect(pairs.count == dpo.unitsPerEpoch && dpo.report.pairs == dpo.unitsPerEpoch)
        #expect(perGroup.values.allSatisfy { $0 <= 2 } && perGroup.count == dpo.report.pairedGroups)
        // Pairs stay together in a micro-batch, chosen first.
        let b = TrainingBatch()
        try dpo.next(into: b)
        #expect(b.spans.count % 2 == 0 && b.spans[0].positive && !b.spans[1].positive)

        let allWrong = records.map { r in
            var r = r
            r.reward = 0
            return r
        }
        let none = try writeDataset(allWrong, vocab: 50, at: temporaryDirectory("none"))
        #expect(throws: DataError.self) { try loader(none, selection: .positives) }
        #expect(throws: DataError.self) { try loader(none, selection: .pairs(perGroup: 4)) }
        #expect(throws: DataError.self) { try loader(ds, column: "ref_logprob") }
    }
}

/// Planning from the shards' statistics, as for a dataset too large to count first.
@Suite struct StatisticsPlanTests {
    /// The statistics count what the loader's pass counts; the estimate of an epoch is close to the count; and
    /// training by `finished(epochs:)` delivers exactly the counted epochs whatever the estimate said.
    @Test(arguments: [DataSelection.all, .positives, .pairs(perGroup: 2)])
    func estimatesAreCloseAndEpochsExact(selection: DataSelection) throws {
        let dir = temporaryDirectory("estimate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ds = try writeDataset(randomRecords(400, vocab: 50, seed: 21), vocab: 50, at: dir, shardTokens: 500)
        var c = LoaderConfig()
        c.tokensPerMicroBatch = 48
        c.windowTokens = 200
        let exact = try DataLoader(dataset: ds, config: c, selection: selection, sequenceLimit: 10)
        let planned = try DataLoader(
            dataset: ds, config: c, selection: selection, sequenceLimit: 10, exactPlanLimit: 0)
        #expect(!exact.report.estimated && planned.report.estimated)
        #expect(planned.report.skippedEmptyPrompt == exact.report.skippedEmptyPrompt)
        let units = Double(exact.unitsPerEpoch), estimate = Double(planned.unitsPerEpoch)
        #expect(abs(estimate - units) <= 0.15 * units, "units: estimated \(estimate), counted \(units)")
        let batches = Double(exact.stepCount(epochs: 1)), estimatedBatches = Double(planned.stepCount(epochs: 1))
        #expect(abs(estimatedBatches - batches) <= 0.25 * batches, "batches: \(estimatedBatches) vs \(batches)")
        #expect(planned.reportSummary.contains("estimated from the shards' statistics"))
        // The data, not the estimate, ends an epoch.
        let b = TrainingBatch()
        var delivered = 0
        while !planned.finished(epochs: 2) {
            try planned.next(into: b)
            delivered += 1
        }
        #expect(delivered == (try exact.microBatchCount(epoch: 0)) + (try exact.microBatchCount(epoch: 1)))
        #expect(planned.position.epoch == 1 && planned.position.run == planned.runCount)
    }

    /// A manifest without statistics (written before they existed) gets them computed from the shards once,
    /// cached beside each shard and tied to its checksum; a stale or damaged cache is computed again.
    @Test func olderDatasetsGetCachedStatistics() throws {
        let dir = temporaryDirectory("stats-cache")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let records = randomRecords(90, vocab: 50, seed: 22)
        let ds = try writeDataset(records, vocab: 50, at: dir, shardTokens: 200)
        let fresh = try ds.statistics()
        #expect(fresh.trajectories == 90 && fresh.usable == 90)
        #expect(fresh.positives == UInt64(records.filter { $0.reward >= 0.5 }.count))
        #expect(fresh.longest == UInt64(records.map(\.tokens.count).max()!))
        #expect(ds.manifest.stats == fresh)
        var m = ds.manifest
        m.stats = nil
        try m.write(directory: dir)
        let old = try Dataset(directory: dir)
        #expect(try old.statistics() == fresh)
        let cache = dir + "/" + m.shards[0].file + ".stats.json"
        #expect(FileManager.default.fileExists(atPath: cache))
        try Data("{\"shard_xxh3\": \"0000000000000000\", \"stats\": {}}".utf8).write(to: URL(fileURLWithPath: cache))
        #expect(try Dataset(directory: dir).statistics() == fresh)
        let text = try String(contentsOfFile: cache, encoding: .utf8)
        #expect(text.contains(m.shards[0].xxh3))
    }
}
