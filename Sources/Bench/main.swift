import Foundation
import Train

// Usage: Bench [format|tokenizer|ingest|train|oreo|decode|gemm|lora|stream|mpi|all] [options]. Each stage prints its throughput and its ratio to a baseline
// measured in the same run.
BLASRuntime.ensurePreferredKernels()
print(BLASRuntime.summary)
let args = Array(CommandLine.arguments.dropFirst())
let stage = args.first ?? "all"
let rest = Array(args.dropFirst())
do {
    switch stage {
    case "format": try runFormatBench(args: rest)
    case "tokenizer": runTokenizerBench(args: rest)
    case "ingest": try runIngestBench(args: rest)
    case "train": runTrainBench(args: rest)
    case "oreo": try runOREOBench(args: rest)
    case "decode": try runDecodeBench(args: rest)
    case "gemm": runGEMMBench(args: rest)
    case "lora": try runLoRABench(args: rest)
    // Not part of `all`: it writes 1.1 GB of datasets and runs the oreo executable.
    case "stream": try runStreamBench(args: rest)
    // Not part of `all`: it runs oreo under mpirun (Open MPI's openmpi-bin).
    case "mpi": try runMPIBench(args: rest)
    case "all":
        try runFormatBench(args: [])
        runTokenizerBench(args: [])
        try runIngestBench(args: [])
        runTrainBench(args: [])
        try runOREOBench(args: [])
        try runDecodeBench(args: [])
        runGEMMBench(args: [])
        try runLoRABench(args: [])
    default:
        print("usage: Bench [format|tokenizer|ingest|train|oreo|decode|gemm|lora|stream|mpi|all] [options]")
        exit(2)
    }
} catch {
    FileHandle.standardError.write("Bench: \(error)\n".data(using: .utf8)!)
    exit(1)
}
