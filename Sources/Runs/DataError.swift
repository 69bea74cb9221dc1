import Format
import Foundation
import Support
import Train

/// A problem with the data that stops training before it starts.
public struct DataError: Error, CustomStringConvertible {
    /// What is wrong and where.
    public let description: String
    /// An error with its message.
    public init(_ description: String) { self.description = description }
}
