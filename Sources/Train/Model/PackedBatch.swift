/// Several token sequences concatenated into one row block, with per-position prediction targets.
///
/// Positions restart at 0 for every sequence and attention never crosses a boundary.
public struct PackedBatch: Sendable, Equatable {
    /// Token ids of all sequences, back to back.
    public var tokens: [Int32]
    /// Length of each sequence (sum == tokens.count).
    public var sequenceLengths: [Int]
    /// For each position, the token whose log-prob is wanted there (-1 = none).
    public var targets: [Int32]

    /// A batch with explicit targets.
    public init(tokens: [Int32], sequenceLengths: [Int], targets: [Int32]) {
        self.tokens = tokens
        self.sequenceLengths = sequenceLengths
        self.targets = targets
    }

    /// Next-token targets for every position except each sequence's last.
    public init(sequences: [[Int32]]) {
        tokens = sequences.flatMap { $0 }
        sequenceLengths = sequences.map(\.count)
        targets = sequences.flatMap { s in s.indices.map { $0 + 1 < s.count ? s[$0 + 1] : -1 } }
    }

    /// Number of positions.
    public var count: Int { tokens.count }
}
