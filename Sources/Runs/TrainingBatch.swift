import Format
import Foundation
import Support
import Train

/// One micro-batch as packed for the model and the losses (storage reused from batch to batch).
public final class TrainingBatch {
    /// Tokens, sequence lengths and targets (response tokens only) for the model.
    public internal(set) var packed = PackedBatch(tokens: [], sequenceLengths: [], targets: [])
    /// One span per sequence (pairs are consecutive: chosen, rejected).
    public internal(set) var spans: [ResponseSpan] = []
    /// Response-relative step ends of all spans, back to back.
    public internal(set) var stepEnds: [Int32] = []
    /// Reference log-prob of each position's target (0 elsewhere), when the loader reads a reference column.
    public internal(set) var refLogProbs: [Float] = []
    /// Global trajectory index of each sequence.
    public internal(set) var trajectories: [Int] = []

    /// An empty batch.
    public init() {}

    /// Positions in the batch.
    public var count: Int { packed.tokens.count }

    func clear() {
        packed.tokens.removeAll(keepingCapacity: true)
        packed.sequenceLengths.removeAll(keepingCapacity: true)
        packed.targets.removeAll(keepingCapacity: true)
        spans.removeAll(keepingCapacity: true)
        stepEnds.removeAll(keepingCapacity: true)
        refLogProbs.removeAll(keepingCapacity: true)
        trajectories.removeAll(keepingCapacity: true)
    }
}
