/// A round or stage that cannot go on, in one line naming the file and what is wrong.
public struct RoundError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The message.
    public let message: String

    /// An error with this message.
    public init(_ message: String) { self.message = message }

    /// The message.
    public var description: String { message }
}
