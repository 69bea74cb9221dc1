import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// A line that stops an ingest run under `--on-invalid fail`.
public struct IngestError: Error, CustomStringConvertible {
    /// `file:line:column`.
    public var location: String
    /// What is wrong.
    public var reason: String
    /// `file:line:column: reason`.
    public var description: String { "\(location): \(reason)" }
}
