/// How a stage went in this run, so a resumed, budget-cut or skipped stage never reads like a fresh,
/// complete one.
public struct StageStatus: Sendable, Equatable, Codable {
    /// What happened to the stage.
    public enum Outcome: String, Sendable, Equatable, Codable {
        /// It ran in this run.
        case ran
        /// It finished in an earlier run with the same inputs, so it was skipped.
        case done
        /// The time budget left it out.
        case leftOut
        /// It was not needed, or could not run (the reason is in the summary).
        case notRun
    }

    /// What happened.
    public var outcome: Outcome
    /// The step an interrupted run was continued from.
    public var continuedFrom: Int?
    /// Updates made and planned, when the time budget stopped the stage before its end.
    public var stoppedAfter: Int?, planned: Int?

    /// A status.
    public init(_ outcome: Outcome, continuedFrom: Int? = nil, stoppedAfter: Int? = nil, planned: Int? = nil) {
        self.outcome = outcome
        self.continuedFrom = continuedFrom
        self.stoppedAfter = stoppedAfter
        self.planned = planned
    }

    /// Ran fresh to its end.
    public static let ran = StageStatus(.ran)
    /// Skipped: done earlier with the same inputs.
    public static let done = StageStatus(.done)
    /// Skipped: the time budget left it out.
    public static let leftOut = StageStatus(.leftOut)
    /// Not run: not needed, or impossible.
    public static let notRun = StageStatus(.notRun)

    /// A training run that started at `start` (0: fresh) and stands at `step` of `total` updates.
    public static func training(from start: Int, at step: Int, of total: Int) -> StageStatus {
        StageStatus(
            .ran, continuedFrom: start > 0 ? start : nil, stoppedAfter: step < total ? step : nil,
            planned: step < total ? total : nil)
    }

    /// Whether another run has work left here (cut or left out by the time budget).
    public var unfinished: Bool { outcome == .leftOut || stoppedAfter != nil }

    /// What sets the stage apart from a fresh, complete run ("" for one): "continued from step N",
    /// "stopped by the time budget after N of M updates", or both.
    public var remark: String {
        var parts: [String] = []
        if let continuedFrom { parts.append("continued from step \(continuedFrom)") }
        if let stoppedAfter, let planned {
            parts.append("stopped by the time budget after \(stoppedAfter) of \(planned) updates")
        }
        return parts.joined(separator: "; ")
    }

    /// A stage's line: its summary with the status in front ("skipped (done): ...", "skipped (budget): ...")
    /// or after it ("... (continued from step 4)").
    public func line(_ summary: String) -> String {
        switch outcome {
        case .done: return "skipped (done)" + (summary.isEmpty ? "" : ": " + summary)
        case .leftOut: return "skipped (budget)" + (summary.isEmpty ? "" : ": " + summary)
        case .notRun: return summary
        case .ran: return remark.isEmpty ? summary : summary + " (" + remark + ")"
        }
    }
}
