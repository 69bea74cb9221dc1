/// The stages of one `oreo iterate` round, in order.
public enum RoundStage: String, Sendable, CaseIterable {
    /// K samples per prompt from the current policy, labelled by the verifier.
    case sample
    /// The samples into shards (ids verbatim).
    case ingest
    /// The current policy's log-probs as the reference column.
    case score
    /// Training from the current policy.
    case train

    /// The stage's tag in printed lines: `[1/4 sample]`.
    public var tag: String {
        let all = RoundStage.allCases
        return "[\(all.firstIndex(of: self)! + 1)/\(all.count) \(rawValue)]"
    }
}

/// Progress inside a stage: units done of a total.
public struct StageProgress: Sendable {
    /// Units done (a continued stage counts what earlier runs did).
    public var done: Double
    /// Units in all, when known.
    public var total: Double?
    /// What a unit is.
    public var unit: String
    /// Units done before this run (left out of rates).
    public var before: Double
    /// A remark for the progress line (loss, throughput).
    public var detail: String

    /// A progress report.
    public init(done: Double, total: Double?, unit: String, before: Double = 0, detail: String = "") {
        self.done = done
        self.total = total
        self.unit = unit
        self.before = before
        self.detail = detail
    }
}

/// What a round reports as it goes.
public enum RoundEvent: Sendable {
    /// Progress inside a stage.
    case progress(RoundStage, StageProgress)
    /// A stage ended (ran, skipped, cut): its summary and how it went.
    case finished(RoundStage, summary: String, status: StageStatus)
    /// A remark (a loaded model, a training note).
    case note(String)
}
