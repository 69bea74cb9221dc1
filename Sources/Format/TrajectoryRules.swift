/// The rules every trajectory written to a shard obeys, checked in one place for both ways of appending
/// (`ShardWriter.append(_:)` for a record, `append(_:_:sourceFile:)` for a batch): at most 2^32-1 tokens, a
/// prompt within them, ids below the vocabulary size, step ends strictly increasing after the prompt and
/// within the trajectory, a source file in the shard's table, a finite reward.
struct TrajectoryRules {
    /// The shard's vocabulary size: every id is below it.
    let vocabSize: Int
    /// Entries of the shard's source-file table (0: the table is empty and only index 0 is valid).
    let sourceCount: Int

    /// What is wrong with one trajectory, or nil when it follows every rule.
    ///
    /// Shapes: tokens [n], stepEnds [steps]; promptLength is in tokens from the trajectory's start.
    func problem(
        tokens: UnsafeBufferPointer<UInt32>, promptLength: Int, stepEnds: UnsafeBufferPointer<UInt32>,
        sourceFile: UInt32, reward: Float
    ) -> String? {
        let n = tokens.count
        guard n <= Int(UInt32.max) else { return "\(n) tokens exceed 2^32-1" }
        guard promptLength >= 0, promptLength <= n else { return "prompt length \(promptLength) outside 0...\(n)" }
        let limit = UInt32(truncatingIfNeeded: vocabSize)
        var maxID: UInt32 = 0
        for id in tokens { maxID = max(maxID, id) }
        if maxID >= limit, let i = tokens.firstIndex(where: { $0 >= limit }) {
            return "token \(i) has id \(tokens[i]), not below the vocabulary size \(vocabSize)"
        }
        var previous = UInt32(promptLength)
        for (k, e) in stepEnds.enumerated() {
            guard e > previous, Int(e) <= n else {
                return "step \(k) ends at \(e): step ends must increase, follow the prompt and stay within \(n) tokens"
            }
            previous = e
        }
        guard sourceCount == 0 ? sourceFile == 0 : Int(sourceFile) < sourceCount else {
            return "source file index \(sourceFile) is not in the shard's table"
        }
        guard reward.isFinite else { return "reward \(reward) is not finite" }
        return nil
    }
}
