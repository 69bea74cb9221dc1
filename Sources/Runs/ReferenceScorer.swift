import Format
import Foundation
import Support
import Train

/// What `ReferenceScorer.score` did.
public struct ScoreSummary: Sendable, Equatable {
    /// Trajectories and tokens scored.
    public var trajectories = 0, tokens = 0
    /// Trajectories longer than the model's positions: tokens past the limit hold NaN.
    public var overlong = 0
    /// Forward passes run.
    public var batches = 0
    /// Shards whose column an earlier, interrupted run of the same model had finished (kept, not scored again).
    public var reusedShards = 0
    /// Whether the column was added (false when `maxTrajectories` stopped the run first).
    public var complete = false
}

/// Adds a per-token reference log-prob column to a dataset, so k3-KL OREO, DPO, KTO and DQO train without a
/// reference model in memory.
public enum ReferenceScorer {
    /// The column name trainers read by default.
    public static let defaultColumn = "ref_logprob"

    /// Writes column `column`: value j of a trajectory is log p_ref(token_j | tokens_<j) (0 for the first
    /// token, whose context is empty; NaN past the model's position limit, which training refuses to read).
    /// Trajectories are packed into forward passes of up to `model.maxTokens` positions. The column is added as
    /// sidecar files and the manifest is rewritten only at the end, so an interrupted run leaves the dataset as
    /// it was. `progress(tokensDone, tokensTotal)`.
    /// The dataset is first checked against the model (vocabulary; tokenizer fingerprint against
    /// `tokenizerDirectory`/tokenizer.json when given). A run stopped early (killed, or by `maxTrajectories`)
    /// leaves its finished shards' columns, which the next run with the same model keeps.
    public static func score(
        dataset: Dataset, model: TransformerModel, column: String = defaultColumn,
        tokenizerDirectory: String? = nil, maxTrajectories: Int = .max,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> ScoreSummary {
        _ = try Compatibility.check(dataset: dataset, model: model.config, tokenizerDirectory: tokenizerDirectory)
        var summary = ScoreSummary()
        let limit = min(model.maxTokens, model.config.maxPositions)
        let totalTokens = Int(dataset.manifest.counts.tokens)
        var cacheShard = -1, cacheFirst = 0
        var cache: [[Float]] = []
        var logProbs: [Float] = []
        var batch = PackedBatch(tokens: [], sequenceLengths: [], targets: [])
        // The values depend on the weights, the position limit (NaN past it) and the precision: a sidecar is
        // reused only when all are the same.
        let weights = Checksum.xxh3(
            UnsafeRawBufferPointer(start: model.parameters.pointer, count: model.parameters.count * 4))
        // a packed base's matrices and LoRA adapters are part of the weights (named only when present, so a
        // plain model's sidecars made before they existed are still recognised)
        var parts = "weights xxh3 \(Checksum.hex(weights))"
        if let base = model.baseWeights {
            parts +=
                ", packed base xxh3 \(Checksum.hex(Checksum.xxh3(UnsafeRawBufferPointer(start: base.storage, count: base.byteCount))))"
        }
        if let a = model.adapters {
            let bytes = UnsafeRawBufferPointer(start: a.parameters.pointer, count: a.parameters.count * 4)
            parts += ", LoRA adapters xxh3 \(Checksum.hex(Checksum.xxh3(bytes)))"
        }
        let producer =
            "reference log-probs, \(parts), \(limit) positions"
            + (model.precision == .fp32 ? "" : ", \(model.precision.rawValue)")
        let result = try dataset.addTokenColumn(column, producer: producer, maxTrajectories: maxTrajectories) {
            si, cursor, i in
            if si != cacheShard || i < cacheFirst || i >= cacheFirst + cache.count {
                // Pack trajectories i, i+1, ... of this shard into one forward pass.
                batch.tokens.removeAll(keepingCapacity: true)
                batch.targets.removeAll(keepingCapacity: true)
                batch.sequenceLengths.removeAll(keepingCapacity: true)
                var full: [Int] = []
                var j = i
                let end = min(cursor.count, i + max(1, maxTrajectories - summary.trajectories))
                while j < end {
                    let ids = try cursor.tokens(j)
                    let n = min(ids.count, limit)
                    if !full.isEmpty && batch.tokens.count + n > model.maxTokens { break }
                    full.append(ids.count)
                    if n > 0 {
                        for k in 0..<n { batch.tokens.append(Int32(bitPattern: ids[k])) }
                        for k in 0..<n { batch.targets.append(k + 1 < n ? Int32(bitPattern: ids[k + 1]) : -1) }
                        batch.sequenceLengths.append(n)
                    }
                    j += 1
                }
                if !batch.tokens.isEmpty {
                    try model.forward(batch, logProbs: &logProbs)
                    summary.batches += 1
                }
                cache.removeAll(keepingCapacity: true)
                var offset = 0
                for length in full {
                    let n = min(length, limit)
                    var values = [Float](repeating: .nan, count: length)
                    if n > 0 { values[0] = 0 }
                    for k in 1..<max(1, n) { values[k] = logProbs[offset + k - 1] }
                    if length > limit { summary.overlong += 1 }
                    cache.append(values)
                    offset += n
                    summary.tokens += length
                }
                cacheShard = si
                cacheFirst = i
                progress(summary.tokens, totalTokens)
            }
            summary.trajectories += 1
            return cache[i - cacheFirst]
        }
        summary.reusedShards = result.reusedShards
        summary.complete = result.manifest != nil
        return summary
    }
}
