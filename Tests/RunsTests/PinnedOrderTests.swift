import Format
import Foundation
import Support
import Testing
import Runs

/// The loader's order and batches on small datasets, pinned: a new loader (or a change of this one) must deliver
/// the same micro-batches, trajectory for trajectory, for seed, selection and epoch, on datasets that fit in one
/// shuffle window (the default window is 262,144 tokens).
@Suite struct PinnedOrderTests {
    /// 60 micro-batches (about two epochs) of `selection` as text: one line per batch, its trajectories and lengths.
    static func batches(_ selection: DataSelection, seed: UInt64, tokens: Int = 40) throws -> [String] {
        let dir = temporaryDirectory("pinned")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ds = try writeDataset(randomRecords(120, vocab: 50, seed: 4), vocab: 50, at: dir, shardTokens: 300)
        var c = LoaderConfig()
        c.seed = seed
        c.tokensPerMicroBatch = tokens
        let loader = try DataLoader(dataset: ds, config: c, selection: selection, sequenceLimit: 64)
        let b = TrainingBatch()
        return try (0..<60).map { _ in
            try loader.next(into: b)
            return "\(b.trajectories) \(b.packed.sequenceLengths)"
        }
    }

    static func digest(_ lines: [String]) -> String {
        let text = Array(lines.joined(separator: "\n").utf8)
        return text.withUnsafeBytes { FNV1a.fingerprint($0) }
    }

    @Test(
        arguments: [
            (DataSelection.all, UInt64(1), "f6f61c766ee5044b", "[21, 3, 41, 100, 102, 104] [3, 7, 6, 9, 5, 6]"),
            (.all, 7, "b2bce57bcbf800ee", "[111, 98, 110, 33, 61, 102] [5, 9, 3, 9, 9, 5]"),
            (.positives, 1, "e1db00eccb20a7ad", "[82, 11, 90, 3] [10, 10, 9, 7]"),
            (.pairs(perGroup: 2), 1, "a8ce8784d4b567db", "[118, 116, 77, 78] [11, 6, 5, 9]"),
        ])
    func batchesArePinned(selection: DataSelection, seed: UInt64, digest: String, first: String) throws {
        let lines = try Self.batches(selection, seed: seed)
        #expect(lines[0] == first)
        #expect(Self.digest(lines) == digest)
    }
}
