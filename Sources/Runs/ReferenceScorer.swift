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
        tokenizerDirectory: String? = nil, maxTrajectories: Int = .max, collective: Collective = SingleProcess(),
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> ScoreSummary {
        _ = try Compatibility.check(dataset: dataset, model: model.config, tokenizerDirectory: tokenizerDirectory)
        var summary = ScoreSummary()
        let limit = min(model.maxTokens, model.config.maxPositions)
        let totalTokens = Int(dataset.manifest.counts.tokens)
        let pass = ForwardPass(model: model, limit: limit)
        // Under MPI rank 0 writes the column and plans the forward passes; the others run the passes it deals them.
        if !collective.isRoot {
            try serve(dataset: dataset, pass: pass, collective: collective)
            return summary
        }
        var cacheShard = -1, cacheFirst = 0
        var cache: [[Float]] = []
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
        defer { if collective.size > 1 { _ = try? collective.broadcast([], root: 0) } }
        let result = try dataset.addTokenColumn(column, producer: producer, maxTrajectories: maxTrajectories) {
            si, cursor, i in
            if si != cacheShard || i < cacheFirst || i >= cacheFirst + cache.count {
                // The next forward passes of this shard from trajectory i, packed as one process packs them (so
                // every value is the one a single process computes), one per rank.
                let end = min(cursor.count, i + max(1, maxTrajectories - summary.trajectories))
                var counts: [Int] = []
                var j = i
                while counts.count < collective.size && j < end {
                    let n = try pass.pack(cursor, from: j, end: end)
                    counts.append(n)
                    j += n
                }
                var mine: [[Float]]
                if collective.size > 1 {
                    let plan = [Double(si), Double(i)] + counts.map(Double.init)
                    _ = try collective.broadcast(encode(plan), root: 0)
                    mine = try pass.run(cursor, from: i, count: counts[0])
                    let parts = try collective.gather(encode(mine.flatMap { [Float($0.count)] + $0 }), root: 0)!
                    for part in parts.dropFirst() { mine += decode(part) }
                } else {
                    mine = try pass.run(cursor, from: i, count: counts[0])
                }
                summary.batches += counts.count
                cache = mine
                for values in cache {
                    if values.count > limit { summary.overlong += 1 }
                    summary.tokens += values.count
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

    /// A rank other than 0: runs the forward passes rank 0 deals it until rank 0 sends an empty plan.
    private static func serve(dataset: Dataset, pass: ForwardPass, collective: Collective) throws {
        var cursors: [Int: ShardCursor] = [:]
        while true {
            let plan = decodeDoubles(try collective.broadcast([], root: 0))
            guard plan.count >= 3 else { return }
            let si = Int(plan[0])
            var from = Int(plan[1])
            let counts = plan.dropFirst(2).map { Int($0) }
            for r in 0..<collective.rank where r < counts.count { from += counts[r] }
            var mine: [[Float]] = []
            if collective.rank < counts.count {
                if cursors[si] == nil { cursors = [si: try dataset.shard(si).cursor()] }
                mine = try pass.run(cursors[si]!, from: from, count: counts[collective.rank])
            }
            _ = try collective.gather(encode(mine.flatMap { [Float($0.count)] + $0 }), root: 0)
        }
    }

    /// One packed forward pass over consecutive trajectories of a shard.
    final class ForwardPass {
        let model: TransformerModel, limit: Int
        private var batch = PackedBatch(tokens: [], sequenceLengths: [], targets: [])
        private var logProbs: [Float] = []

        init(model: TransformerModel, limit: Int) {
            self.model = model
            self.limit = limit
        }

        /// How many trajectories from `from` (before `end`) one pass holds: up to the model's positions.
        func pack(_ cursor: ShardCursor, from: Int, end: Int) throws -> Int {
            var tokens = 0, j = from
            while j < end {
                let n = min(try cursor.tokens(j).count, limit)
                if j > from && tokens + n > model.maxTokens { break }
                tokens += n
                j += 1
            }
            return j - from
        }

        /// Each trajectory's values: 0, then log p(token_k | tokens_<k) up to the limit, NaN past it.
        func run(_ cursor: ShardCursor, from: Int, count: Int) throws -> [[Float]] {
            batch.tokens.removeAll(keepingCapacity: true)
            batch.targets.removeAll(keepingCapacity: true)
            batch.sequenceLengths.removeAll(keepingCapacity: true)
            var full: [Int] = []
            for j in from..<from + count {
                let ids = try cursor.tokens(j)
                let n = min(ids.count, limit)
                full.append(ids.count)
                if n > 0 {
                    for k in 0..<n { batch.tokens.append(Int32(bitPattern: ids[k])) }
                    for k in 0..<n { batch.targets.append(k + 1 < n ? Int32(bitPattern: ids[k + 1]) : -1) }
                    batch.sequenceLengths.append(n)
                }
            }
            if !batch.tokens.isEmpty { try model.forward(batch, logProbs: &logProbs) }
            var out: [[Float]] = []
            var offset = 0
            for length in full {
                let n = min(length, limit)
                var values = [Float](repeating: .nan, count: length)
                if n > 0 { values[0] = 0 }
                for k in 1..<max(1, n) { values[k] = logProbs[offset + k - 1] }
                out.append(values)
                offset += n
            }
            return out
        }
    }
}

/// Floats as little-endian bytes (what the ranks exchange).
private func encode(_ values: [Float]) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(values.count * 4)
    for v in values { out.appendWord(v.bitPattern) }
    return out
}

private func encode(_ values: [Double]) -> [UInt8] {
    var out = [UInt8]()
    for v in values { out.appendWord(v.bitPattern) }
    return out
}

private func decodeDoubles(_ bytes: [UInt8]) -> [Double] {
    stride(from: 0, to: bytes.count - bytes.count % 8, by: 8).map { Double(bitPattern: bytes.word64(at: $0)) }
}

/// Trajectories' values sent as (count, values...) runs.
private func decode(_ bytes: [UInt8]) -> [[Float]] {
    let floats = stride(from: 0, to: bytes.count - bytes.count % 4, by: 4).map {
        Float(bitPattern: bytes.word32(at: $0))
    }
    var out: [[Float]] = []
    var at = 0
    while at < floats.count {
        let n = Int(floats[at])
        out.append(Array(floats[at + 1..<at + 1 + n]))
        at += 1 + n
    }
    return out
}
