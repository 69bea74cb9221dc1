import ArgumentParser
import Foundation
import Format
import Support
import Train

/// The `oreo` command line: ingest, inspect, verify, train, sample, evaluate.
@main
struct Oreo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oreo",
        abstract: "Offline RL (OREO and baselines) for multi-step reasoning on CPUs.",
        version: "0.1.0",
        subcommands: [
            DemoCommand.self, IngestCommand.self, ScoreCommand.self, TrainCommand.self, SampleCommand.self,
            IterateCommand.self,
            EvalCommand.self, ConvertCommand.self, Inspect.self, Verify.self, TokenizeCommand.self, Synth.self,
            Doctor.self,
        ]
    )

    static func main() {
        BLASRuntime.ensurePreferredKernels()
        var command: ParsableCommand
        do { command = try parseAsRoot() } catch { exit(withError: error) }
        do {
            try command.run()
        } catch let e as ValidationError {
            exitWithUsage(e.message, of: type(of: command))
        } catch {
            // Foundation's file errors print as `Error Domain=NSCocoaErrorDomain Code=260 ...`: one line instead.
            if let f = FileReadError(foundation: error) { exit(withError: CommandError(f.description)) }
            exit(withError: error)
        }
    }

    /// Prints an option's error found while running with the usage of the command it belongs to (as ArgumentParser
    /// does for errors found while parsing; `exit(withError:)` would show the top-level usage), and exits 64.
    static func exitWithUsage(_ message: String, of command: ParsableCommand.Type) -> Never {
        let usage = usageString(for: command)
        let name = usage.split(separator: " ").prefix(2).joined(separator: " ")
        printError("Error: \(message)\nUsage: \(usage)\n  See '\(name) --help' for more information.")
        Foundation.exit(ExitCode.validationFailure.rawValue)
    }
}

/// Prints what this machine gives oreo: BLAS kernels, threads, CPU features.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the BLAS kernels, the bf16 path and the CPU features oreo will use.")
    func run() throws {
        print(BLASRuntime.summary)
        print(BF16GEMM.summary)
    }
}
