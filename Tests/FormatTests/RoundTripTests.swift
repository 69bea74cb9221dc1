import Foundation
import Support
import Testing
import PropertyBased
import Format

@Suite struct RoundTripTests {
    @Test func randomShardsRoundTrip() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let blockSizes = [64, 200, 4096, 1 << 20]
        let vocabs = [2, 300, 65_536, 65_537, 151_936]
        let codecs: [Compression] = [.none, .zstd(level: 1), .zstd(level: 3)]
        await propertyCheck(count: 60, input: Gen.uint64(in: 0...UInt64.max), Gen.int(in: 0...59), Gen.int(in: 0...120))
        { seed, config, count in
            let vocab = vocabs[config % vocabs.count]
            let options = ShardOptions(
                vocabSize: vocab, compression: codecs[config % 3],
                blockBytes: blockSizes[config / 15 % 4], tokenColumns: ["behavior_logprob"])
            let records = randomTrajectories(seed: seed, count: count, vocab: vocab, valueColumns: ["behavior_logprob"])
            let path = dir.file("s\(seed).oreo")
            let summary = try writeShard(path, records, options: options)
            #expect(summary.trajectories == UInt64(count))
            #expect(summary.tokens == UInt64(records.reduce(0) { $0 + $1.tokens.count }))
            let shard = try Shard(path: path)
            #expect(shard.tokenDType == DType.forVocabulary(vocab))
            let cursor = shard.cursor(cacheBlocks: 2)
            // Random order exercises the cache; then a sequential pass.
            var rng = SplitMix64(seed: seed)
            for i in (0..<count).shuffled(using: &rng) + Array(0..<count) {
                let ok = try matches(
                    try cursor.trajectory(i), records[i], cursor: cursor, valueColumns: ["behavior_logprob"])
                #expect(ok, "trajectory \(i) differs (seed \(seed), config \(config))")
            }
            try cursor.verifyAll()
            try FileManager.default.removeItem(atPath: path)
        }
    }

    @Test(arguments: [(65_536, DType.u16), (65_537, DType.u32)])
    func vocabularyBoundaryPicksDType(vocab: Int, dtype: DType) throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let top = UInt32(vocab - 1)
        let r = TrajectoryRecord(tokens: [0, top, 65_535, top], promptLength: 1, reward: 1, stepEnds: [3, 4])
        try writeShard(dir.file("a.oreo"), [r], options: ShardOptions(vocabSize: vocab))
        let shard = try Shard(path: dir.file("a.oreo"))
        #expect(shard.tokenDType == dtype)
        let t = try shard.cursor().trajectory(0)
        #expect(t.tokens.array == [0, top, 65_535, top])
        #expect((dtype == .u16) == (t.tokens.u16 != nil))
    }

    @Test func invalidRecordsAreRefusedAndLeaveTheShardUnchanged() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let w = try ShardWriter(path: dir.file("a.oreo"), options: ShardOptions(vocabSize: 100, tokenColumns: ["v"]))
        let good = TrajectoryRecord(
            tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [2, 3], tokenValues: ["v": [0, 0, 0]])
        let bad: [TrajectoryRecord] = [
            TrajectoryRecord(tokens: [1, 100], promptLength: 1, reward: 1, tokenValues: ["v": [0, 0]]),
            TrajectoryRecord(tokens: [1, 2], promptLength: 3, reward: 1, tokenValues: ["v": [0, 0]]),
            TrajectoryRecord(
                tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [3, 2], tokenValues: ["v": [0, 0, 0]]),
            TrajectoryRecord(
                tokens: [1, 2, 3], promptLength: 2, reward: 1, stepEnds: [2], tokenValues: ["v": [0, 0, 0]]),
            TrajectoryRecord(
                tokens: [1, 2, 3], promptLength: 1, reward: 1, stepEnds: [4], tokenValues: ["v": [0, 0, 0]]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: .nan, tokenValues: ["v": [0, 0, 0]]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: 1, tokenValues: ["v": [0, 0]]),
            TrajectoryRecord(tokens: [1, 2, 3], promptLength: 1, reward: 1),
            TrajectoryRecord(tokens: [1], promptLength: 1, reward: 1, tokenValues: ["v": [0], "w": [0]]),
        ]
        try w.append(good)
        for (k, b) in bad.enumerated() {
            #expect(throws: FormatError.self, "bad record \(k) accepted") { try w.append(b) }
        }
        try w.append(good)
        let s = try w.finish()
        #expect(s.trajectories == 2 && s.tokens == 6 && s.steps == 4)
        #expect(openAndReadAll(dir.file("a.oreo")) == nil)
    }

    @Test func largeTrajectoryGetsItsOwnBlockAndViewsOutliveTheCursor() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let records = randomTrajectories(seed: 7, count: 41, vocab: 50_000, maxTokens: 50, bigTokens: 1_000_000)
        try writeShard(dir.file("big.oreo"), records, options: ShardOptions(vocabSize: 50_000, blockBytes: 4096))
        let shard = try Shard(path: dir.file("big.oreo"))
        let ids = shard.columnList.first { $0.column.name == ColumnName.tokenIDs }!.column
        #expect(ids.blocks.contains { $0.elementCount >= 1_000_000 })
        var view: TokenSlice?
        do {
            let cursor = shard.cursor(cacheBlocks: 1)
            view = try cursor.trajectory(20).tokens
            _ = try cursor.trajectory(0)  // evicts the big block from the cache
        }
        #expect(view!.array == records[20].tokens)
        var widened = [UInt32](repeating: 0, count: view!.count)
        widened.withUnsafeMutableBufferPointer { view!.copy(into: $0.baseAddress!) }
        #expect(widened == records[20].tokens)
    }

    @Test func datasetRollsShardsAddsAColumnAndReopens() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let records = randomTrajectories(seed: 11, count: 500, vocab: 1000)
        let w = try DatasetWriter(
            directory: dir.path, options: ShardOptions(vocabSize: 1000, blockBytes: 1024),
            shardTokens: 10_000, tokenizer: TokenizerInfo(fingerprint: "abc", source: "test"))
        for r in records { try w.append(r, source: "in.jsonl") }
        let m = try w.finish()
        #expect(m.shards.count > 3)
        #expect(m.counts.trajectories == 500)
        let d = try Dataset(directory: dir.path)
        #expect(d.trajectoryCount == 500)
        for i in [0, 1, 137, 499] {
            let (s, l) = d.locate(i)!
            let c = try d.shard(s).cursor()
            #expect(try matches(c.trajectory(l), records[i], cursor: c, valueColumns: []))
            #expect(try c.trajectory(l).sourceFile == "in.jsonl")
        }
        #expect(d.locate(500) == nil)
        // Add a per-token column as sidecars: value = token id + trajectory index.
        _ = try d.addTokenColumn("ref_logprob") { s, c, i in
            try c.trajectory(i).tokens.map { Float($0) + Float(d.firstTrajectory[s] + i) }
        }
        let d2 = try Dataset(directory: dir.path)
        #expect(d2.manifest.tokenColumns == ["ref_logprob"])
        for i in [3, 250, 499] {
            let (s, l) = d2.locate(i)!
            let c = try d2.shard(s).cursor()
            #expect(
                Array(try c.tokenValues("ref_logprob", trajectory: l)) == records[i].tokens.map { Float($0) + Float(i) }
            )
        }
        #expect(d2.verify().allSatisfy { $0.error == nil })
    }
}
