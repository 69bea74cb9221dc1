// swift-tools-version:6.1
import PackageDescription

// Numeric kernels are compiled for the host CPU without overflow traps in release builds
// (see shared/docs/cpu-performance.md: baseline x86-64 turns SIMD FMAs into libm calls).
// Parsers of files and JSON (Format, Ingest, the CLI) never get these flags.
let kernelSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-target-cpu", "native", "-Xcc", "-mprefer-vector-width=512"], .when(configuration: .release)),
]

let package = Package(
    name: "oreo",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "oreo", targets: ["oreo"]),
        .executable(name: "Bench", targets: ["Bench"]),
        .library(name: "Format", targets: ["Format"]),
        .library(name: "Ingest", targets: ["Ingest"]),
        .library(name: "Train", targets: ["Train"]),
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
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        // XXH3 checksums from libxxhash-dev's header, compiled for the host CPU (a hashing kernel, not a parser).
        .target(name: "CXXHash", cSettings: [.unsafeFlags(["-O3", "-march=native"])]),
        // Decoding kernels Swift cannot spell (software prefetch, vpermps table lookups), for the host CPU.
        .target(name: "CDecodeKernels", cSettings: [.unsafeFlags(["-O3", "-march=native", "-ffp-contract=off"])]),

        // 1. On-disk columnar trajectory shards: writer, mmap reader, manifest.
        .target(name: "Format", dependencies: ["CZstd", "CXXHash"]),
        // 2. Raw JSONL trajectories -> tokens -> shards (tokenizer.json BPE).
        .target(name: "Ingest", dependencies: ["Format"]),
        // Checkpoint files (safetensors, GGUF, config.json): untrusted bytes, so a checked build of its own.
        .target(name: "Checkpoint", dependencies: ["Format"]),
        // 3. Transformers, losses and optimizers over BLAS + SIMD kernels.
        .target(name: "Train",
                dependencies: ["Format", "Checkpoint", "COpenBLAS", "CDecodeKernels", .product(name: "Numerics", package: "swift-numerics")],
                swiftSettings: kernelSettings),
        // Counts heap allocations by interposing malloc: linked into the tests and Bench (zero allocations per
        // training step), never into oreo.
        .target(name: "CAllocCounter"),
        // 4. Training jobs: data loader over shards, reference scoring, OREO and baselines, run directories.
        //    Reads files (shards, run state), so it is a checked build; the numerics it calls live in Train.
        .target(name: "Trainer", dependencies: ["Train", "Format", "Checkpoint", .product(name: "TOMLKit", package: "TOMLKit")]),
        // 5. Sampling, verifiers, value-guided beam search, evaluation: parses model output and user files,
        // so a checked build (the numeric work happens in Train).
        .target(name: "Infer", dependencies: ["Train", "Ingest", "Format", "Checkpoint"]),
        // One round of sample -> label -> ingest -> score -> train as stage functions, and the stage runner both
        // `oreo iterate` and `oreo demo` record, skip and continue their stages with (a checked build).
        .target(name: "Rounds", dependencies: ["Format", "Ingest", "Checkpoint", "Train", "Trainer", "Infer"]),
        // The built-in demo task: problem generator, its tokenizer, JSONL writers, verifier, metrics, reports.
        //    Its built-in hooks run Trainer and Infer in-process (a checked build: numerics live in Train).
        .target(name: "Demo", dependencies: ["Format", "Ingest", "Checkpoint", "Train", "Trainer", "Infer", "Rounds"]),
        // The command-line tool.
        .executableTarget(name: "oreo", dependencies: [
            "Format", "Ingest", "Train", "Trainer", "Infer", "Demo", "Rounds",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Throughput of every stage against a baseline measured in the same run.
        .executableTarget(name: "Bench", dependencies: [
            "Format", "Ingest", "Train", "Trainer", "Infer", "CZstd", "COpenBLAS", "CAllocCounter",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: kernelSettings),

        .testTarget(name: "FormatTests", dependencies: [
            "Format", "CZstd", .product(name: "PropertyBased", package: "swift-property-based"),
        ]),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "Format", "Checkpoint"]),
        .testTarget(name: "TrainTests", dependencies: ["Train", "Format", "CAllocCounter"]),
        .testTarget(name: "TrainerTests", dependencies: ["Trainer", "Train", "Format", "Checkpoint", "Ingest"]),
        .testTarget(name: "DemoTests", dependencies: ["Demo", "Rounds", "Ingest", "Format", "Train"]),
        .testTarget(name: "RoundsTests", dependencies: ["Rounds", "Infer", "Trainer", "Train", "Ingest", "Format"]),
        .testTarget(name: "InferTests", dependencies: ["Infer", "Rounds", "Train", "Ingest", "Format"]),
    ],
    swiftLanguageModes: [.v6]
)
