import Format
import Foundation
import Support
import Train

/// Where the loader stands: the next micro-batch starts at unit `inRun` of run `run` of epoch `epoch`.
public struct LoaderPosition: Sendable, Equatable, Codable {
    /// 0-based epoch.
    public var epoch = 0
    /// Units of that epoch's order already delivered.
    public var consumed = 0
    /// Micro-batches delivered since the start of the run.
    public var microBatches = 0
    /// The run (group of shuffled windows) of the epoch the next unit is in; the run count at the epoch's end.
    public var run = 0
    /// Units of that run already delivered.
    public var inRun = 0
    /// False for a position from a checkpoint written before runs were recorded: `seek` finds the run from
    /// `consumed`.
    var recordsRuns = true

    enum CodingKeys: String, CodingKey {
        case epoch, consumed, microBatches, run, inRun
    }

    /// The start of the run.
    public init() {}

    /// Decodes a position; one without `run` (an older checkpoint's) is located from `consumed` when sought.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(Int.self, forKey: .epoch)
        consumed = try c.decode(Int.self, forKey: .consumed)
        microBatches = try c.decode(Int.self, forKey: .microBatches)
        let run = try c.decodeIfPresent(Int.self, forKey: .run)
        self.run = run ?? 0
        inRun = try c.decodeIfPresent(Int.self, forKey: .inRun) ?? 0
        recordsRuns = run != nil
    }
}
