import Foundation
import Models
import Train
import Runs

/// The train stage of a round: `TrainJob` from `model` on `data` into the run directory `run`, continued
/// from the run's last checkpoint when asked, and, under a time budget, in sessions that each end with a
/// checkpoint so the budget can stop it and a later run continue it.
public struct TrainStage {
    /// The training configuration.
    public var config: TrainConfig
    /// The starting weights (the policy's start and the value network's backbone).
    public var model: ModelSource
    /// The frozen reference model kept in memory, when the method runs one (default: `model`).
    public var reference: ModelSource?
    /// The dataset directory.
    public var data: String
    /// The run directory.
    public var run: String

    /// A training stage.
    public init(config: TrainConfig, model: ModelSource, reference: ModelSource? = nil, data: String, run: String) {
        self.config = config
        self.model = model
        self.reference = reference
        self.data = data
        self.run = run
    }

    /// Opens the job: a new run, or (`resume`) the run's latest checkpoint when it has one.
    public func open(resume: Bool) throws -> TrainJob {
        try TrainJob(
            config: config, model: model, reference: reference, data: data, run: run,
            resume: resume && FileManager.default.fileExists(atPath: run + "/config.json"))
    }

    /// Trains `job` to its end, or until `timeBudget` seconds after `started` have passed (checked after
    /// each session of at most a tenth of the run and about two minutes). The status says where it started
    /// and whether the budget stopped it.
    public static func train(
        _ job: TrainJob, timeBudget: Double?, started: Date = Date(),
        progress: (TrainProgress) -> Void = { _ in }
    ) throws -> (summary: TrainSummary, status: StageStatus) {
        let first = job.step, total = job.totalSteps
        guard let timeBudget else {
            let s = try job.run(progress: progress)
            return (s, .training(from: first, at: s.steps, of: total))
        }
        var chunk = max(1, total / 10)
        var summary: TrainSummary?
        repeat {
            let sessionStart = Date(), before = job.step
            summary = try job.run(stopAfter: min(total, job.step + chunk), checkpointAtStop: true, progress: progress)
            if summary?.finished == true { break }
            if Date().timeIntervalSince(started) >= timeBudget { break }
            let perStep = Date().timeIntervalSince(sessionStart) / Double(max(1, job.step - before))
            chunk = max(1, min(total / 10, Int(120 / max(perStep, 1e-6))))
        } while job.step < total
        guard let s = summary else { throw RoundError("\(job.runDirectory): training made no step") }
        return (s, .training(from: first, at: s.finished ? total : s.steps, of: total))
    }
}
