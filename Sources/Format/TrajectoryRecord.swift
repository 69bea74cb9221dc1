import Support

/// One trajectory to write: prompt + response tokens, reward, steps and provenance.
public struct TrajectoryRecord: Sendable {
    /// Prompt tokens followed by response tokens.
    public var tokens: [UInt32]
    /// How many of `tokens` belong to the prompt.
    public var promptLength: Int
    /// Terminal reward (usually 0 or 1).
    public var reward: Float
    /// Trajectories sampled from the same prompt share a group id.
    public var group: UInt64
    /// End of each step in tokens from the trajectory start (exclusive, strictly increasing, after the prompt).
    public var stepEnds: [UInt32]
    /// Index into the shard's source-file table (see `ShardWriter.sourceIndex`).
    public var sourceFile: UInt32
    /// 1-based line of the source file.
    public var sourceLine: UInt64
    /// Flag bits.
    public var flags: TrajectoryFlags
    /// Metadata bytes (JSON by convention).
    public var meta: [UInt8]
    /// Optional per-token f32 columns, by name (each as long as `tokens`).
    public var tokenValues: [String: [Float]]

    /// A trajectory with the given parts; optional parts default to empty.
    public init(
        tokens: [UInt32], promptLength: Int, reward: Float, group: UInt64 = 0, stepEnds: [UInt32] = [],
        sourceFile: UInt32 = 0, sourceLine: UInt64 = 0, flags: TrajectoryFlags = [], meta: [UInt8] = [],
        tokenValues: [String: [Float]] = [:]
    ) {
        self.tokens = tokens
        self.promptLength = promptLength
        self.reward = reward
        self.group = group
        self.stepEnds = stepEnds
        self.sourceFile = sourceFile
        self.sourceLine = sourceLine
        self.flags = flags
        self.meta = meta
        self.tokenValues = tokenValues
    }
}
