import Foundation
import Support
import Testing
import Format

/// Appending trajectories as flat batches must give exactly what appending them one at a time gives.
@Suite struct BatchTests {
    static func batch(_ records: [TrajectoryRecord]) -> TrajectoryBatch {
        var b = TrajectoryBatch()
        for r in records { b.append(r) }
        return b
    }

    /// Random split points of `0..<count` into consecutive ranges (some empty).
    static func ranges(_ count: Int, _ rng: inout SplitMix64) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var k = 0
        while k < count {
            let n = Int.random(in: 0...12, using: &rng)
            out.append(k..<min(count, k + n))
            k += n
        }
        return out
    }

    @Test(arguments: [300, 151_936], [64, 200, 4096])
    func batchesWriteTheSameShardBytesAsRecords(vocab: Int, blockBytes: Int) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        for (seed, codec) in [(1, Compression.none), (2, .zstd(level: 3)), (3, .zstd(level: 1))] {
            let records = randomTrajectories(seed: UInt64(seed), count: 150, vocab: vocab)
            let options = ShardOptions(
                vocabSize: vocab, compression: codec, blockBytes: blockBytes,
                trajectoryBlockBytes: max(64, blockBytes / 4))
            let one = try writeShard(dir.file("one.oreo"), records, options: options)
            let w = try ShardWriter(path: dir.file("batch.oreo"), options: options)
            let source = w.sourceIndex("input.jsonl")
            var rng = SplitMix64(seed: UInt64(seed))
            // Several batches, each appended in pieces.
            var start = 0
            while start < records.count {
                let end = min(records.count, start + Int.random(in: 1...60, using: &rng))
                let b = BatchTests.batch(Array(records[start..<end]))
                for r in BatchTests.ranges(b.count, &rng) { try w.append(b, r, sourceFile: source) }
                start = end
            }
            let batched = try w.finish()
            #expect(
                batched.checksum == one.checksum && batched.bytes == one.bytes,
                "vocab \(vocab), block \(blockBytes), \(codec)")
            #expect(readBytes(dir.file("batch.oreo")) == readBytes(dir.file("one.oreo")))
            let block = try Shard(path: dir.file("batch.oreo")).main.footer.columns.map(\.blocks.count).reduce(0, +)
            #expect(block > 12 || blockBytes == 4096)  // the small block sizes cut many blocks
        }
    }

    @Test func datasetsRollShardsWhereRecordsDo() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let records = randomTrajectories(seed: 9, count: 400, vocab: 1000)
        let options = ShardOptions(vocabSize: 1000, blockBytes: 512)
        let a = try DatasetWriter(directory: dir.file("a"), options: options, shardTokens: 3000)
        for r in records { try a.append(r, source: "in.jsonl") }
        let ma = try a.finish()
        let b = try DatasetWriter(directory: dir.file("b"), options: options, shardTokens: 3000)
        var closedAfter: [Int] = []
        var rng = SplitMix64(seed: 4)
        var start = 0
        while start < records.count {
            let end = min(records.count, start + Int.random(in: 1...90, using: &rng))
            let batch = BatchTests.batch(Array(records[start..<end]))
            for r in BatchTests.ranges(batch.count, &rng) {
                try b.append(batch, r, source: "in.jsonl") { closedAfter.append(start + $0) }
            }
            start = end
        }
        let mb = try b.finish()
        #expect(ma.shards.count > 3 && ma.shards.count == mb.shards.count)
        for (x, y) in zip(ma.shards, mb.shards) {
            #expect(x.xxh3 == y.xxh3 && x.trajectories == y.trajectories)
            #expect(readBytes(dir.file("a/" + x.file)) == readBytes(dir.file("b/" + y.file)))
        }
        // Each closed shard's last trajectory, as the callback reported it.
        var last = -1
        let expected = ma.shards.dropLast().map { s -> Int in
            last += Int(s.trajectories)
            return last
        }
        #expect(closedAfter == expected)
    }

    @Test func invalidBatchesAreRefusedAndLeaveTheShardUnchanged() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let w = try ShardWriter(path: dir.file("a.oreo"), options: ShardOptions(vocabSize: 100))
        let good = TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [2, 3])
        let bad: [TrajectoryRecord] = [
            TrajectoryRecord(tokens: [1, 100], promptLength: 1, reward: 1),
            TrajectoryRecord(tokens: [1, 2], promptLength: 3, reward: 1),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [3, 2]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 2, reward: 1, stepEnds: [2]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [4]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: .infinity),
        ]
        try w.append(BatchTests.batch([good]), 0..<1)
        for (k, b) in bad.enumerated() {
            // The bad trajectory sits between good ones: nothing of the batch may be written.
            let batch = BatchTests.batch([good, b, good])
            #expect(throws: FormatError.self, "bad trajectory \(k) accepted") { try w.append(batch, 0..<3) }
            #expect(throws: FormatError.self) { try w.append(batch, 1..<2) }
            try w.append(batch, 2..<3)
        }
        let three = BatchTests.batch([good, good, good])
        #expect(throws: FormatError.self, "a range past the batch") { try w.append(three, 2..<4) }
        #expect(throws: FormatError.self, "an unknown source") { try w.append(three, 0..<1, sourceFile: 5) }
        var cut = three
        cut.tokens.removeLast()  // the last trajectory's tokens no longer all exist
        #expect(throws: FormatError.self, "ends past the arrays") { try w.append(cut, 0..<3) }
        try w.append(cut, 0..<2)
        _ = try w.finish()
        let shard = try Shard(path: dir.file("a.oreo"))
        #expect(shard.trajectoryCount == 1 + bad.count + 2)
        let c = shard.cursor()
        for i in 0..<shard.trajectoryCount {
            #expect(try matches(c.trajectory(i), good, cursor: c, valueColumns: []))
        }
        try c.verifyAll()

        let withValues = try ShardWriter(
            path: dir.file("v.oreo"), options: ShardOptions(vocabSize: 100, tokenColumns: ["v"]))
        #expect(throws: FormatError.self, "a batch carries no per-token values") { try withValues.append(three, 0..<1) }
        withValues.abandon()
    }

    @Test func rollBackDropsTheOpenTrajectoryOnly() {
        var b = BatchTests.batch([
            TrajectoryRecord(tokens: [5, 6], promptLength: 1, reward: 0, stepEnds: [2], meta: [1])
        ])
        b.tokens += [7, 8, 9]
        b.stepEnds.append(3)
        b.meta += [2, 3]
        b.rollBack()
        #expect(b.tokens == [5, 6] && b.stepEnds == [2] && b.meta == [1] && b.count == 1)
        b.tokens.append(4)
        b.commit(promptLength: 0, reward: 1, group: 7, flags: .truncated, sourceLine: 12)
        let r = b.record(1)
        #expect(r.tokens == [4] && r.group == 7 && r.flags == .truncated && r.sourceLine == 12 && r.stepEnds.isEmpty)
        #expect(b.record(0).tokens == [5, 6])
    }
}
