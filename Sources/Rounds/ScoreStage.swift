import Format
import Models
import Runs
import Train

/// The score stage of a round: the reference model's log-probs as a column of the dataset, which DPO, KTO,
/// DQO and k3 KL read instead of running the reference beside the policy.
public enum ScoreStage {
    /// Adds `column` to the dataset in `data`, scored by `reference` in batches of at most `maxTokens`;
    /// nil when the column is already there.
    public static func run(
        data: String, reference: ModelSource, column: String, maxTokens: Int, precision: Precision = .fp32,
        progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }
    ) throws -> ScoreSummary? {
        let dataset = try Dataset(directory: data)
        guard !dataset.manifest.tokenColumns.contains(column) else { return nil }
        do {
            let model = try reference.load(maxTokens: maxTokens)
            try model.setPrecision(precision)
            return try ReferenceScorer.score(dataset: dataset, model: model, column: column, progress: progress)
        } catch {
            throw RoundError("\(data): scoring reference log-probs with \(reference.description): \(error)")
        }
    }
}
