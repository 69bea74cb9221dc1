import Foundation
import Format
import Infer
import Ingest
import Support
import Train
import Runs

/// What one round produced, and how each stage went.
public struct RoundOutcome: Sendable {
    /// The labelled samples (JSONL, token ids as sampled).
    public var samples: String
    /// The dataset.
    public var data: String
    /// The training run directory.
    public var run: String
    /// How each stage went.
    public var statuses: [RoundStage: StageStatus] = [:]

    /// Whether the time budget cut a stage, so the round needs another run to finish.
    public var unfinished: Bool { statuses.values.contains { $0.unfinished } }
    /// The next round's model, once training finished.
    public var policy: String? { unfinished ? nil : run + "/policy" }
}

/// One round of iterative OREO (or a baseline): sample from the current policy, label with the verifier,
/// ingest, score against the current policy, train from it. Each stage records its inputs in
/// ROUND/stages: a rerun skips finished stages whose inputs match and continues an interrupted one.
public struct IterateRound: Sendable {
    /// The round's settings.
    public let settings: IterateSettings

    /// A round (the settings are validated).
    public init(settings: IterateSettings) throws {
        try settings.validate()
        self.settings = settings
    }

    /// The round's stage records.
    var runner: StageRunner { StageRunner(directory: settings.output + "/stages") }

    /// Runs every stage; `events` sees progress, each stage's end, and remarks.
    public func run(events: (RoundEvent) -> Void = { _ in }) throws -> RoundOutcome {
        let out = settings.output
        try prepareOutput()
        var outcome = RoundOutcome(samples: out + "/samples.jsonl", data: out + "/data", run: out + "/run")
        let modelIdentity = InputFingerprint.model(settings.model)

        let (sampleSummary, sampleStatus) = try sample(
            into: outcome.samples, modelIdentity: modelIdentity, events: events)
        outcome.statuses[.sample] = sampleStatus
        events(.finished(.sample, summary: sampleSummary, status: sampleStatus))

        let (ingestSummary, ingestStatus) = try ingest(outcome.samples, into: outcome.data, events: events)
        outcome.statuses[.ingest] = ingestStatus
        events(.finished(.ingest, summary: ingestSummary, status: ingestStatus))

        let (scoreSummary, scoreStatus) = try score(outcome.data, modelIdentity: modelIdentity, events: events)
        outcome.statuses[.score] = scoreStatus
        events(.finished(.score, summary: scoreSummary, status: scoreStatus))

        let (trainSummary, trainStatus) = try train(
            outcome.data, into: outcome.run, modelIdentity: modelIdentity, events: events)
        outcome.statuses[.train] = trainStatus
        events(.finished(.train, summary: trainSummary, status: trainStatus))
        return outcome
    }

    /// Creates the round's directory (emptied first with `overwrite`) and pins the round's inputs in
    /// iterate.json: a rerun with other ones is refused.
    func prepareOutput() throws {
        let fm = FileManager.default, out = settings.output
        if settings.overwrite { try? fm.removeItem(atPath: out) }
        do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
            throw RoundError("\(out): cannot create the directory: \(error.localizedDescription)")
        }
        let identity = settings.identity
        let identityPath = out + "/iterate.json"
        if let old = fm.contents(atPath: identityPath) {
            guard old == identity else {
                throw RoundError(
                    "\(identityPath): an earlier run of this round used other inputs or settings; pass --overwrite to start it again, or choose another --out"
                )
            }
        } else {
            try writeFileAtomically(Array(identity), to: identityPath)
        }
    }
}
