import Format
import Foundation
import Support
import Train

/// What to do with a trajectory longer than the sequence limit.
public enum OverlongPolicy: String, Sendable, Codable, CaseIterable {
    /// Leave it out (counted in the loader's report).
    case skip
    /// Keep its first `maxLength` tokens (counted; the reward stays that of the whole response).
    case truncate
    /// Refuse the dataset before training, naming the trajectory.
    case fail
}

/// Which trajectories a method trains on, and in what units.
public enum DataSelection: Sendable, Equatable {
    /// Every trajectory (SFT, OREO, KTO, DQO).
    case all
    /// Only positive trajectories (rejection sampling).
    case positives
    /// (chosen, rejected) pairs from each group's positives x negatives, at most `perGroup` per group (DPO).
    case pairs(perGroup: Int)
}

/// Settings of the data loader (all part of a run's configuration).
public struct LoaderConfig: Sendable, Equatable, Codable {
    /// Seed of the data order (and of DPO pair drawing).
    public var seed: UInt64 = 1
    /// Token budget of one micro-batch (the model holds this many positions).
    public var tokensPerMicroBatch = 4096
    /// Micro-batches accumulated into one optimizer step.
    public var microBatchesPerStep = 1
    /// Longest sequence in tokens; 0: the model's position limit (and never above the micro-batch budget).
    public var maxLength = 0
    /// Trajectories longer than the limit.
    public var overlong = OverlongPolicy.skip
    /// Shuffle locality: consecutive trajectories are grouped into windows of about this many tokens, the
    /// windows are shuffled, then trajectories are shuffled within runs of `mixWindows` windows, so a
    /// micro-batch touches a few compressed blocks instead of one block per trajectory.
    public var windowTokens = 262_144
    /// Windows shuffled together.
    public var mixWindows = 4
    /// Reward at or above which a trajectory counts as positive (the 0/1 verifier's 1).
    public var positiveThreshold: Float = 0.5

    /// Defaults: seed 1, 4096 tokens per micro-batch, 1 micro-batch per step, skip overlong trajectories.
    public init() {}
}
