import Format
import Foundation
import Support
import Train

/// What the loader kept and left out, for the run's record.
public struct LoaderReport: Sendable, Equatable, Codable {
    /// Trajectories in the dataset.
    public var trajectories = 0
    /// Trajectories in at least one unit.
    public var used = 0
    /// Left out: longer than the limit (skip policy).
    public var skippedOverlong = 0
    /// Kept but cut to the limit (truncate policy).
    public var truncated = 0
    /// Left out: no response tokens, or no prompt token to condition the first response token on.
    public var skippedEmptyResponse = 0, skippedEmptyPrompt = 0
    /// Left out by the selection (negatives for rejection sampling; unpaired trajectories for DPO).
    public var filtered = 0
    /// Positive and negative trajectories among those used.
    public var positives = 0, negatives = 0
    /// DPO: pairs formed and groups that gave at least one.
    public var pairs = 0, pairedGroups = 0
    /// Units (trajectories or pairs) per epoch, micro-batches per epoch (each epoch's order packs differently).
    public var unitsPerEpoch = 0, microBatchesPerEpoch: [Int] = []
    /// Longest sequence allowed.
    public var maxLength = 0
    /// A few of the trajectories left out or cut, as "source:line (reason)".
    public var examples: [String] = []
    /// True when the counts are estimated from the shards' statistics (a dataset too large to count first).
    public var estimated = false

    /// Adds the counts of `other` (one window's) to these.
    mutating func add(_ other: LoaderReport) {
        used += other.used
        skippedOverlong += other.skippedOverlong
        truncated += other.truncated
        skippedEmptyResponse += other.skippedEmptyResponse
        skippedEmptyPrompt += other.skippedEmptyPrompt
        filtered += other.filtered
        positives += other.positives
        negatives += other.negatives
        pairs += other.pairs
        pairedGroups += other.pairedGroups
        unitsPerEpoch += other.unitsPerEpoch
        examples += other.examples.prefix(max(0, 10 - examples.count))
    }
}
