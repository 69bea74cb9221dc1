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
        let o0 = a.order(epoch: 0)
        #expect(o0 == b.order(epoch: 0))
        #expect(Set(o0).count == 300 && o0.count == 300)
        #expect(o0 != a.order(epoch: 1))
        #expect(o0 != Array(0..<300).map(Int32.init))
        let other = try loader(ds) { $0.seed = 2 }
        #expect(other.order(epoch: 0) != o0)
    }

    /// Every run of `mixWindows` shuffled windows is delivered together: the units of each run form at most
    /// `mixWindows` contiguous ranges of the dataset order.
    @Test func orderKeepsBlockLocality() throws {
        let dir = temporaryDirectory("locality")
        let ds = try writeDataset(randomRecords(400, vocab: 50, seed: 2), vocab: 50, at: dir, shardTokens: 600)
        let l = try loader(ds) {
            $0.windowTokens = 60
            $0.mixWindows = 3
        }
        let o = l.order(epoch: 0).map(Int.init)
        #expect(l.windows.count > 20)
        var start = 0
        var runs = 0
        let windowOf = Dictionary(uniqueKeysWithValues: l.windows.enumerated().flatMap { w, r in r.map { ($0, w) } })
        while start < o.count {
            // The run's windows: the next 3 distinct windows met, and all of their units come before any other.
            var seen = Set<Int>(), end = start
            while end < o.count, seen.count < 3 || seen.contains(windowOf[o[end]]!) {
                seen.insert(windowOf[o[end]]!)
                end += 1
            }
            let units = seen.reduce(0) { $0 + l.windows[$1].count }
            #expect(end - start == units, "run at \(start): \(end - start) units delivered, its windows hold \(units)")
            start = end
            runs += 1
        }
        #expect(runs >= 7)
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
        let perEpoch = a.microBatchCount(epoch: 0)
        let b = TrainingBatch()
        var firstEpoch: [Int] = [], secondEpoch: [Int] = []
        var position: LoaderPosition?
        var after: [[Int32]] = []
        for k in 0..<(perEpoch + a.microBatchCount(epoch: 1)) {
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
        for _ in 0..<cut.microBatchCount(epoch: 0) {
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
        #expect((0..<rft.unitsPerEpoch).allSatisfy { records[rft.trajectories(ofUnit: $0)[0]].reward == 1 })

        let dpo = try loader(ds, selection: .pairs(perGroup: 2))
        var pairs = Set<[Int]>()
        var perGroup: [UInt64: Int] = [:]
        for u in 0..<dpo.unitsPerEpoch {
            let t = dpo.trajectories(ofUnit: u)
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
