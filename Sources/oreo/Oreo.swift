import ArgumentParser
import Cluster
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
        // Under mpirun every rank runs the same command; MPI is loaded only then.
        if Cluster.launchedByMPI {
            do { _ = try Cluster.start() } catch { exit(withError: error) }
            // the commands that split their work over ranks; any other would run N times over the same files
            let distributed: [ParsableCommand.Type] = [
                TrainCommand.self, ScoreCommand.self, SampleCommand.self, EvalCommand.self, Doctor.self,
            ]
            if let mpi = Cluster.mpi, mpi.size > 1, !distributed.contains(where: { $0 == type(of: command) }) {
                if mpi.isRoot {
                    printError(
                        "Error: `oreo \(type(of: command)._commandName)` runs in one process; under mpirun only train, score, sample and eval split their work over ranks (ingest spreads over machines with --part i/n)"
                    )
                }
                Cluster.finish(64)
            }
        }
        do {
            try command.run()
            if Cluster.mpi != nil { Cluster.finish(0) }
        } catch {
            if let mpi = Cluster.mpi, mpi.size > 1 { endRank(mpi, error, command: type(of: command)) }
            exitAfter(error, command: type(of: command))
        }
    }

    /// Ends one process after `error`: usage errors with the command's usage, others as one line.
    static func exitAfter(_ error: Error, command: ParsableCommand.Type) -> Never {
        do {
            throw error
        } catch let e as ValidationError {
            exitWithUsage(e.message, of: command)
        } catch {
            // Foundation's file errors print as `Error Domain=NSCocoaErrorDomain Code=260 ...`: one line instead.
            if let f = FileReadError(foundation: error) { exit(withError: CommandError(f.description)) }
            exit(withError: error)
        }
    }

    /// Ends one rank of an MPI job after `error`, without leaving another rank waiting: an error every rank
    /// raised at the same point is printed by rank 0 and every rank ends normally; any other is printed with its
    /// rank and aborts the job (rank 0 first: when every rank failed the same way, its message is the one shown).
    static func endRank(_ mpi: MPICollective, _ error: Error, command: ParsableCommand.Type) -> Never {
        switch error {
        case is PeerFailure:
            Cluster.finish(1)
        case is CollectiveError:
            if mpi.isRoot { printError("Error: \(error)") }
            Cluster.finish(1)
        default:
            if !mpi.isRoot { usleep(1_000_000) }
            let message =
                (error as? ValidationError)?.message ?? FileReadError(foundation: error)?.description ?? "\(error)"
            Cluster.abort(message)
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
        // under mpirun, each rank's line (its threads follow the ranks sharing its machine)
        let c: Collective = Cluster.mpi ?? SingleProcess()
        BLASRuntime.configureThreads(try Cluster.defaultThreads(c))
        if let mpi = Cluster.mpi {
            print("rank \(mpi.rank) of \(mpi.size): \(mpi.library)")
        } else {
            print("MPI: not started by mpirun (oreo loads libmpi only then)")
        }
        print(BLASRuntime.summary)
        print(BF16GEMM.summary)
    }
}
