import ArgumentParser
import Train

/// The `oreo` command line: ingest, inspect, verify, train, sample, evaluate.
@main
struct Oreo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oreo",
        abstract: "Offline RL (OREO and baselines) for multi-step reasoning on CPUs.",
        version: "0.1.0",
        subcommands: [DemoCommand.self, IngestCommand.self, ScoreCommand.self, TrainCommand.self, SampleCommand.self, IterateCommand.self,
                      EvalCommand.self, ConvertCommand.self, Inspect.self, Verify.self, TokenizeCommand.self, Synth.self, Doctor.self]
    )

    static func main() {
        BLASRuntime.ensurePreferredKernels()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// Prints what this machine gives oreo: BLAS kernels, threads, CPU features.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the BLAS kernels and CPU features oreo will use.")
    func run() throws {
        print(BLASRuntime.summary)
    }
}
