/// The command line that continues a run the time budget cut short: the same arguments (so the same
/// inputs, and every finished stage is skipped), without `--overwrite`, which would throw the work away.
public struct ContinueCommand: Sendable, Equatable {
    /// The arguments after the program name.
    public var arguments: [String]

    /// The command continuing a run started with `arguments` (the program name first, as in `CommandLine.arguments`).
    public init(commandLine arguments: [String]) {
        self.arguments = Array(arguments.dropFirst()).filter { $0 != "--overwrite" }
    }

    /// The command as one shell line, starting with `oreo`.
    public var line: String { (["oreo"] + arguments.map(ContinueCommand.quote)).joined(separator: " ") }

    /// `s` quoted for a POSIX shell when it needs it.
    public static func quote(_ s: String) -> String {
        let plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%"
        if !s.isEmpty, s.allSatisfy({ plain.contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
