import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// What became of one line of a batch: blank, a trajectory (the batch's next), or refused.
enum LineOutcome: Sendable {
    case blank, record, failure(LineError)
}

/// A worker's result for one batch of lines: its trajectories in flat columns and each line's outcome.
struct ProcessedLines: Sendable {
    var records = TrajectoryBatch()
    var outcomes: [LineOutcome] = []
}
