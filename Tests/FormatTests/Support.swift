import Foundation
import Format
import Support
import TestSupport

/// A fresh directory under the system temporary directory, removed by `cleanup()` (or at exit).
struct TempDir {
    let path: String
    init(_ tag: String = "oreo") { path = makeTemporaryDirectory(tag) }
    func file(_ name: String) -> String { path + "/" + name }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Random trajectories covering the edge cases the format must hold: empty trajectories, empty and 1-token
/// responses, zero steps, ids at the top of the vocabulary, metadata, and now and then a very large one.
func randomTrajectories(
    seed: UInt64, count: Int, vocab: Int, maxTokens: Int = 300, bigTokens: Int = 0,
    valueColumns: [String] = []
) -> [TrajectoryRecord] {
    var rng = SplitMix64(seed: seed)
    var out: [TrajectoryRecord] = []
    for i in 0..<count {
        let shape = Int.random(in: 0..<10, using: &rng)
        var n: Int
        switch shape {
        case 0: n = 0
        case 1: n = 1
        case 2: n = 2
        default: n = Int.random(in: 0...maxTokens, using: &rng)
        }
        if bigTokens > 0 && i == count / 2 { n = bigTokens }
        let tokens: [UInt32] = (0..<n).map { _ in
            Int.random(in: 0..<8, using: &rng) == 0
                ? UInt32(vocab - 1) : UInt32.random(in: 0..<UInt32(vocab), using: &rng)
        }
        let prompt = shape == 2 ? 1 : (n == 0 ? 0 : Int.random(in: 0...n, using: &rng))
        var ends: [UInt32] = []
        if shape > 3 {
            var e = prompt
            while e < n {
                e += Int.random(in: 1...40, using: &rng)
                ends.append(UInt32(min(e, n)))
            }
        }
        let meta: [UInt8] = Int.random(in: 0..<3, using: &rng) == 0 ? Array("{\"i\":\(i)}".utf8) : []
        var values: [String: [Float]] = [:]
        for c in valueColumns { values[c] = (0..<n).map { _ in Float.random(in: -20...0, using: &rng) } }
        out.append(
            TrajectoryRecord(
                tokens: tokens, promptLength: prompt, reward: Float(Int.random(in: 0...1, using: &rng)),
                group: UInt64(i / 4), stepEnds: ends, sourceLine: UInt64(i + 1),
                flags: Int.random(in: 0..<5, using: &rng) == 0 ? .truncated : [], meta: meta,
                tokenValues: values))
    }
    return out
}

/// Writes `records` into one shard file and returns its summary.
@discardableResult
func writeShard(_ path: String, _ records: [TrajectoryRecord], options: ShardOptions, source: String = "input.jsonl")
    throws -> ShardSummary
{
    let w = try ShardWriter(path: path, options: options)
    let s = w.sourceIndex(source)
    for var r in records {
        r.sourceFile = s
        try w.append(r)
    }
    return try w.finish()
}

/// Reads trajectory `i` back and compares every field with what was written.
func matches(_ v: TrajectoryView, _ r: TrajectoryRecord, cursor: ShardCursor, valueColumns: [String]) throws -> Bool {
    guard v.tokens.array == r.tokens, v.promptLength == r.promptLength, v.reward == r.reward, v.group == r.group,
        Array(v.stepEnds) == r.stepEnds, v.sourceLine == r.sourceLine, v.flags == r.flags, Array(v.meta) == r.meta
    else { return false }
    for c in valueColumns where Array(try cursor.tokenValues(c, trajectory: v.index)) != r.tokenValues[c]! {
        return false
    }
    return true
}

/// Reads a file into bytes.
func readBytes(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path)!) }

/// Writes bytes to a file.
func writeBytes(_ bytes: [UInt8], _ path: String) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// Opens a shard and reads every block and trajectory; returns the error, or nil when all is sound.
func openAndReadAll(_ path: String) -> Error? {
    do {
        let s = try Shard(path: path)
        try s.cursor().verifyAll()
        return nil
    } catch {
        return error
    }
}
