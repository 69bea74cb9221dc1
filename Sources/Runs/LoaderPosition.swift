import Format
import Foundation
import Support
import Train

/// Where the loader stands: the next micro-batch starts at unit `consumed` of epoch `epoch`'s order.
public struct LoaderPosition: Sendable, Equatable, Codable {
    /// 0-based epoch.
    public var epoch = 0
    /// Units of that epoch's order already delivered.
    public var consumed = 0
    /// Micro-batches delivered since the start of the run.
    public var microBatches = 0
    /// The start of the run.
    public init() {}
}
