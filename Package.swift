// swift-tools-version:6.1
import PackageDescription

// Numeric kernels are compiled for the host CPU without overflow traps in release builds
// (docs/cpu-performance.md: baseline x86-64 turns SIMD FMAs into libm calls).
// Parsers of files and JSON (Format, Checkpoint, Tokenizers, Ingest, Models, the CLI) never get these flags.
let kernelSettings: [SwiftSetting] = [
    .unsafeFlags(
        ["-Ounchecked", "-target-cpu", "native", "-Xcc", "-mprefer-vector-width=512"], .when(configuration: .release))
]

let package = Package(
    name: "oreo",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "oreo", targets: ["oreo"]),
        .executable(name: "Bench", targets: ["Bench"]),
        .library(name: "Format", targets: ["Format"]),
        .library(name: "Ingest", targets: ["Ingest"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
        .library(name: "Train", targets: ["Train"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Runs", targets: ["Runs"]),
        .library(name: "Rounds", targets: ["Rounds"]),
        .library(name: "Demo", targets: ["Demo"]),
        .library(name: "Infer", targets: ["Infer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-numerics.git", from: "1.0.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libopenblas-dev) and libxxhash-dev's header.
        .systemLibrary(
            name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        // oneDNN (bf16 matrix products: Debian's OpenBLAS has no bf16 GEMM).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // XXH3 checksums from libxxhash-dev's header, compiled for the host CPU (a hashing kernel, not a parser).
        .target(name: "CXXHash", cSettings: [.unsafeFlags(["-O3", "-march=native"])]),
        // Decoding kernels Swift cannot spell (software prefetch, vpermps table lookups), for the host CPU.
        .target(name: "CDecodeKernels", cSettings: [.unsafeFlags(["-O3", "-march=native", "-ffp-contract=off"])]),
        // MPI, loaded with dlopen only when an MPI launcher started the process (Open MPI and MPICH ABIs).
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("dl")]),

        // Small utilities every layer uses: atomic file output, XXH3 checksums, FNV-1a, SplitMix64, JSON strings.
        .target(name: "Support", dependencies: ["CXXHash"]),
        // 1. On-disk columnar trajectory shards: writer, mmap reader, manifest.
        .target(name: "Format", dependencies: ["Support", "CZstd"]),
        // Checkpoint files (safetensors, GGUF, config.json): untrusted bytes, so a checked build of its own.
        .target(name: "Checkpoint", dependencies: ["Support"]),
        // tokenizer.json byte-level BPE, id for id with HF tokenizers; tokenizers rebuilt from GGUF metadata;
        // the demo task's tokenizer trainer. Parses untrusted files: a checked build.
        .target(name: "Tokenizers", dependencies: ["Support", "Checkpoint"]),
        // 2. Raw JSONL trajectories -> tokens -> shards.
        .target(name: "Ingest", dependencies: ["Support", "Format", "Tokenizers"]),
        // 3. Transformers, losses and optimizers over BLAS + SIMD kernels.
        .target(
            name: "Train",
            dependencies: [
                "Support", "Checkpoint", "COpenBLAS", "CDNNL", "CDecodeKernels",
                .product(name: "Numerics", package: "swift-numerics"),
            ],
            swiftSettings: kernelSettings),
        // Model files -> models: one loader for safetensors directories, GGUF files and random inits (weights,
        // tokenizer, chat template), checkpoint saving and safetensors <-> GGUF conversion. Reads untrusted
        // files, so a checked build; the numerics live in Train.
        .target(name: "Models", dependencies: ["Support", "Checkpoint", "Tokenizers", "Train"]),
        // Counts heap allocations by interposing malloc: linked into the tests and Bench (zero allocations per
        // training step), never into oreo.
        .target(name: "CAllocCounter"),
        // Training runs: data loader over shards, reference scoring, the OREO / baseline loop, run directories.
        //    Reads files (shards, run state), so it is a checked build; the numerics it calls live in Train.
        .target(
            name: "Runs",
            dependencies: [
                "Support", "Train", "Models", "Format", "Checkpoint", "Tokenizers",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]),
        // 4. Sampling, verifiers, value-guided beam search, evaluation: parses model output and user files,
        // so a checked build (the numeric work happens in Train).
        .target(
            name: "Infer", dependencies: ["Support", "Train", "Models", "Tokenizers", "Ingest", "Format", "Checkpoint"]),
        // One round of sample -> label -> ingest -> score -> train as stage functions, and the stage runner both
        // `oreo iterate` and `oreo demo` record, skip and continue their stages with (a checked build).
        .target(
            name: "Rounds",
            dependencies: [
                "Support", "Format", "Ingest", "Tokenizers", "Checkpoint", "Train", "Models", "Runs", "Infer",
            ]),
        // The built-in demo task: problem generator, JSONL writers, verifier, metrics, reports.
        //    Its built-in hooks run Runs and Infer in-process (a checked build: numerics live in Train).
        .target(
            name: "Demo",
            dependencies: [
                "Support", "Format", "Ingest", "Tokenizers", "Checkpoint", "Train", "Models", "Runs", "Infer", "Rounds",
            ]),
        // 5. More than one process: MPI ranks (data-parallel training, split scoring and sampling) behind the
        //    Collective protocol the runs take; a checked build.
        .target(name: "Cluster", dependencies: ["Support", "CMPI"]),
        // The command-line tool.
        .executableTarget(
            name: "oreo",
            dependencies: [
                "Support", "Format", "Ingest", "Tokenizers", "Checkpoint", "Train", "Models", "Runs", "Infer", "Demo",
                "Rounds", "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Throughput of every stage against a baseline measured in the same run.
        .executableTarget(
            name: "Bench",
            dependencies: [
                "Support", "Format", "Ingest", "Tokenizers", "Checkpoint", "Train", "Models", "Runs", "Infer", "CZstd",
                "COpenBLAS", "CAllocCounter", "Cluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], swiftSettings: kernelSettings),

        // What the test targets share: temporary directories, tokenizer fixtures and synthetic tokenizers, a tiny
        // self-contained model world.
        .target(
            name: "TestSupport",
            dependencies: ["Support", "Checkpoint", "Tokenizers", "Train", "Models", "Format", "Ingest", "Infer"],
            path: "Tests/TestSupport"),
        .testTarget(name: "SupportTests", dependencies: ["Support"]),
        .testTarget(name: "CheckpointTests", dependencies: ["TestSupport", "Checkpoint", "Support"]),
        .testTarget(
            name: "FormatTests",
            dependencies: [
                "TestSupport",
                "Format", "Support", "CZstd", .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(
            name: "TokenizersTests", dependencies: ["TestSupport", "Tokenizers", "Ingest", "Checkpoint", "Support"]),
        .testTarget(
            name: "IngestTests",
            dependencies: ["TestSupport", "Ingest", "Tokenizers", "Format", "Support", "Checkpoint"]),
        .testTarget(
            name: "TrainTests",
            dependencies: ["TestSupport", "Train", "Models", "Checkpoint", "Support", "Tokenizers", "CAllocCounter"]),
        .testTarget(
            name: "RunsTests",
            dependencies: [
                "TestSupport", "Runs", "Models", "Train", "Format", "Checkpoint", "Tokenizers", "Ingest", "Support",
            ]),
        .testTarget(
            name: "DemoTests",
            dependencies: [
                "TestSupport", "Demo", "Rounds", "Models", "Runs", "Checkpoint", "Ingest", "Tokenizers", "Format",
                "Train", "Support",
            ]),
        .testTarget(
            name: "RoundsTests",
            dependencies: [
                "TestSupport", "Rounds", "Infer", "Models", "Runs", "Train", "Ingest", "Format", "Support",
                "Checkpoint", "Tokenizers",
            ]),
        .testTarget(
            name: "InferTests",
            dependencies: [
                "TestSupport", "Infer", "Rounds", "Models", "Train", "Tokenizers", "Ingest", "Format", "Checkpoint",
                "Support",
            ]),
        // Drive `oreo` under mpirun (Open MPI on loopback).
        .testTarget(name: "ClusterTests", dependencies: ["TestSupport", "Checkpoint", "Support"]),
    ],
    swiftLanguageModes: [.v6]
)
