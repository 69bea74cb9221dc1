import Format
import Support

/// Draws the demo makes from Format's SplitMix64, written out here because the standard library's
/// `random(in:using:)` does not promise one algorithm across platforms and Swift versions.
extension SplitMix64 {
    /// A generator for stream `tag` of `seed`: streams of one seed are independent of each other.
    public static func stream(_ seed: UInt64, _ tag: UInt64) -> SplitMix64 {
        var g = SplitMix64(seed: seed ^ (tag &* 0xD1B5_4A32_D192_ED03))
        return SplitMix64(seed: g.next())
    }

    /// A uniform integer in `range` (Lemire's multiply-and-reject, so no modulo bias).
    public mutating func draw(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(bitPattern: Int64(range.upperBound &- range.lowerBound)) &+ 1
        if span == 0 { return Int(truncatingIfNeeded: next()) }
        var m = next().multipliedFullWidth(by: span)
        if m.low < span {
            let threshold = (0 &- span) % span
            while m.low < threshold { m = next().multipliedFullWidth(by: span) }
        }
        return range.lowerBound &+ Int(truncatingIfNeeded: m.high)
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { unit() < p }

    /// A uniform element of a non-empty array.
    public mutating func pick<T>(_ items: [T]) -> T { items[draw(0...(items.count - 1))] }
}

/// FNV-1a 64 of `text`'s UTF-8 bytes, salted with `seed` and finished with SplitMix64's mixer: a hash that
/// is the same on every platform and run (Swift's `Hasher` is randomly seeded per process).
func stableHash(_ text: String, seed: UInt64) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
    for b in text.utf8 {
        h ^= UInt64(b)
        h = h &* 0x0000_0100_0000_01B3
    }
    h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
    h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
    return h ^ (h >> 31)
}
