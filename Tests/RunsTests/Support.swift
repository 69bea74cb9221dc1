import Checkpoint
import Format
import Foundation
import Support
import TestSupport
import Testing
import Train
import Runs

/// A fresh temporary directory (removed by the caller when it wants).
func temporaryDirectory(_ name: String) -> String { makeTemporaryDirectory("runs-" + name) }

/// Writes `records` as a dataset (small shards so that several shards and blocks are exercised).
@discardableResult
func writeDataset(
    _ records: [TrajectoryRecord], vocab: Int, at dir: String, columns: [String] = [],
    shardTokens: UInt64 = 1 << 20, tokenizer: TokenizerInfo? = nil
) throws -> Dataset {
    let w = try DatasetWriter(
        directory: dir, options: ShardOptions(vocabSize: vocab, compression: .zstd(level: 1), tokenColumns: columns),
        shardTokens: shardTokens, tokenizer: tokenizer)
    for r in records { try w.append(r, source: "test.jsonl") }
    _ = try w.finish()
    return try Dataset(directory: dir)
}

/// Random trajectories: prompt 1-4 tokens, response 1-8 tokens in 1-3 steps, 0/1 rewards, 4 per group.
func randomRecords(_ n: Int, vocab: Int, seed: UInt64, columns: [String] = []) -> [TrajectoryRecord] {
    var g = SplitMix64(seed: seed)
    return (0..<n).map { i in
        let p = 1 + Int(g.next() % 4), t = 1 + Int(g.next() % 8)
        let tokens = (0..<(p + t)).map { _ in UInt32(g.next() % UInt64(vocab)) }
        var ends: [UInt32] = []
        if t > 2 { ends.append(UInt32(p + t / 2)) }
        ends.append(UInt32(p + t))
        var values: [String: [Float]] = [:]
        for c in columns { values[c] = (0..<(p + t)).map { -Float($0) / 100 - Float(i) / 1000 } }
        return TrajectoryRecord(
            tokens: tokens, promptLength: p, reward: g.next() & 1 == 0 ? 0 : 1, group: UInt64(i / 4),
            stepEnds: ends, sourceLine: UInt64(i + 1), tokenValues: values)
    }
}

/// A tiny Llama-style model configuration.
func tinyConfig(vocab: Int = 16, maxPositions: Int = 64, hidden: Int = 32, layers: Int = 2) -> ModelConfig {
    ModelConfig(
        family: .llama, vocabSize: vocab, hiddenSize: hidden, layers: layers, heads: 2, kvHeads: 1,
        intermediateSize: 2 * hidden, maxPositions: maxPositions, tieWordEmbeddings: true)
}

/// A toy task a tiny model learns in a few hundred steps: prompt [BOS, a]; the right answer is [a + 4, EOS]
/// (reward 1), a wrong one [b, EOS] with b != a + 4 (reward 0). Groups are prompts.
func toyTask(_ n: Int, seed: UInt64) -> [TrajectoryRecord] {
    var g = SplitMix64(seed: seed)
    return (0..<n).map { i in
        let a = UInt32(2 + g.next() % 4)
        let right = i % 2 == 0
        var answer = a + 4
        if !right { repeat { answer = UInt32(2 + g.next() % 12) } while answer == a + 4 }
        return TrajectoryRecord(
            tokens: [1, a, answer, 15], promptLength: 2, reward: right ? 1 : 0, group: UInt64(a),
            stepEnds: [3, 4], sourceLine: UInt64(i + 1))
    }
}

/// Bitwise equality of two models' parameters.
func sameParameters(_ a: TransformerModel, _ b: TransformerModel) -> Bool {
    a.parameters.count == b.parameters.count
        && memcmp(a.parameters.pointer, b.parameters.pointer, a.parameters.count * MemoryLayout<Float>.size) == 0
}

/// The metrics.jsonl lines of a run, decoded.
func metricLines(_ run: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8)
    return try text.split(separator: "\n").map {
        try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
}
