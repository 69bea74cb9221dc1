/// SplitMix64: a tiny seeded generator, identical on every platform (tests and synthetic data depend on it).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    /// Seeds the generator.
    public init(seed: UInt64) { state = seed }
    /// Next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Moves ahead as if `draws` numbers had been drawn (the state is a counter, so a jump is one step): lets
    /// independent consumers share one seeded stream at fixed distances.
    public mutating func advance(by draws: UInt64) { state &+= draws &* 0x9E37_79B9_7F4A_7C15 }
}
