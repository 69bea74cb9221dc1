import ArgumentParser

/// How special tokens written in input text are encoded: one flag, the same name in `oreo tokenize` and
/// `oreo ingest`.
struct SpecialTokenOptions: ParsableArguments {
    @Flag(help: "Encode special tokens written in the text (e.g. <|im_end|>) as plain text instead of control tokens.")
    var specialTokensAsText = false

    // The name `oreo tokenize` used to have; hidden, so scripts written with it keep working.
    @Flag(name: .customLong("literal-special-tokens"), help: .hidden)
    var literalSpecialTokens = false

    /// Whether special tokens in the text are plain text.
    var asText: Bool { specialTokensAsText || literalSpecialTokens }
}

/// An error in a user's input that is not about the command line (a malformed line, a missing file): printed
/// as `Error: MESSAGE` without the usage.
struct CommandError: Error, CustomStringConvertible {
    /// One line naming the file or line and what is wrong.
    let description: String
    /// An error with its message.
    init(_ description: String) { self.description = description }
}
