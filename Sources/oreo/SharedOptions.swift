import ArgumentParser
import Cluster
import Support
import Train

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

/// `--threads N`: the compute threads of this process, the same flag on every command that runs a model.
struct ThreadOptions: ParsableArguments {
    @Option(
        help:
            "Compute threads (default: the machine's cores; under mpirun, the cores divided by the ranks on this machine)."
    )
    var threads: Int?

    /// Sets the threads (before any model runs) and returns the processes this command runs as.
    func apply() throws -> Collective {
        if let threads, threads < 1 { throw ValidationError("--threads must be positive") }
        let c: Collective = Cluster.mpi ?? SingleProcess()
        BLASRuntime.configureThreads(try threads ?? Cluster.defaultThreads(c))
        return c
    }
}

/// Prints a log line on rank 0 only (every rank of an MPI job runs the same command).
func printRoot(_ line: String) {
    if Cluster.mpi?.isRoot ?? true { printError(line) }
}
