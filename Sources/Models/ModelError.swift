/// A model that cannot be found or loaded as asked (missing files, a value model without its head, a tokenizer
/// that does not fit), with a message naming the path.
public struct ModelError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong and where.
    public let description: String
    /// An error with its message.
    public init(_ description: String) { self.description = description }
}
