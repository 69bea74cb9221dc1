import Foundation
import Support

/// An opened dataset directory: the manifest and its shards, validated against each other.
public final class Dataset: Sendable {
    /// The directory.
    public let directory: String
    /// The manifest as read.
    public let manifest: Manifest
    /// Opened shards in manifest order.
    public let shards: [Shard]
    /// Global index of each shard's first trajectory, plus the total: [shards+1].
    public let firstTrajectory: [Int]

    /// Opens `directory`; refuses an incomplete dataset unless `allowIncomplete`.
    public init(directory: String, allowIncomplete: Bool = false) throws {
        self.directory = directory
        let manifest = try Manifest.read(directory: directory)
        let mpath = directory + "/" + Manifest.fileName
        guard manifest.complete || allowIncomplete else {
            throw FormatError(
                .manifest, path: mpath, "dataset is incomplete (a writer was interrupted or is still running)")
        }
        self.manifest = manifest
        var shards: [Shard] = []
        var first = [0]
        for e in manifest.shards {
            let shard = try Shard(
                path: directory + "/" + e.file, sidecars: e.sidecars.map { directory + "/" + $0.file })
            try Dataset.check(e, against: shard, manifest: manifest, manifestPath: mpath)
            shards.append(shard)
            first.append(first.last! + shard.trajectoryCount)
        }
        self.shards = shards
        firstTrajectory = first
    }

    static func check(_ e: ShardEntry, against s: Shard, manifest m: Manifest, manifestPath: String) throws {
        func bad(_ reason: String) -> FormatError {
            FormatError(.inconsistent, path: s.path, reason + " (manifest \(manifestPath))")
        }
        guard UInt64(s.trajectoryCount) == e.trajectories, UInt64(s.stepCount) == e.steps,
            UInt64(s.tokenCount) == e.tokens
        else {
            throw bad(
                "holds \(s.trajectoryCount)/\(s.stepCount)/\(s.tokenCount) trajectories/steps/tokens, the manifest says \(e.trajectories)/\(e.steps)/\(e.tokens)"
            )
        }
        guard UInt64(s.main.file.bytes.count) == e.bytes else {
            throw bad("is \(s.main.file.bytes.count) bytes, the manifest says \(e.bytes)")
        }
        for (sc, file) in zip(e.sidecars, s.sidecars) where UInt64(file.file.bytes.count) != sc.bytes {
            throw FormatError(
                .inconsistent, path: file.path, "is \(file.file.bytes.count) bytes, the manifest says \(sc.bytes)")
        }
        guard s.vocabSize == m.vocabSize, s.tokenDType.description == m.tokenDType else {
            throw bad(
                "vocabulary \(s.vocabSize) (\(s.tokenDType)) differs from the manifest's \(m.vocabSize) (\(m.tokenDType))"
            )
        }
        guard Set(s.tokenValueColumns) == Set(m.tokenColumns) else {
            throw bad(
                "has token columns \(s.tokenValueColumns.sorted()), the manifest lists \(m.tokenColumns.sorted())")
        }
    }

    /// Total trajectories.
    public var trajectoryCount: Int { firstTrajectory.last! }

    /// (shard index, index within the shard) of global trajectory `i`.
    public func locate(_ i: Int) -> (shard: Int, local: Int)? {
        guard i >= 0, i < trajectoryCount else { return nil }
        var lo = 0, hi = shards.count
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if firstTrajectory[mid] <= i { lo = mid } else { hi = mid }
        }
        return (lo, i - firstTrajectory[lo])
    }

    /// Result of a full verification of one file.
    public struct FileReport: Sendable {
        /// File path.
        public var path: String
        /// nil when the file is sound.
        public var error: String?
    }

    /// Checks every file's whole-file checksum against the manifest and every block and trajectory of every
    /// shard. Returns one report per file; never throws for content problems.
    public func verify(progress: (Int, Int) -> Void = { _, _ in }) -> [FileReport] {
        var reports: [FileReport] = []
        for (i, (e, shard)) in zip(manifest.shards, shards).enumerated() {
            progress(i, shards.count)
            func mismatch(_ file: BlockFile, _ expected: String) -> String? {
                let actual = Checksum.hex(Checksum.xxh3(file.file.bytes))
                return actual == expected ? nil : "file checksum \(actual) differs from the manifest's \(expected)"
            }
            var shardError = mismatch(shard.main, e.xxh3)
            for (file, entry) in zip(shard.sidecars, e.sidecars) {
                let err = mismatch(file, entry.xxh3)
                reports.append(FileReport(path: file.path, error: err))
                if err != nil, shardError == nil { shardError = "sidecar \(file.path) is damaged" }
            }
            if shardError == nil {
                do { try shard.cursor().verifyAll() } catch { shardError = "\(error)" }
            }
            reports.append(FileReport(path: shard.path, error: shardError))
        }
        progress(shards.count, shards.count)
        return reports
    }

    /// Adds per-token f32 column `name` to every shard as sidecar files, then rewrites the manifest.
    ///
    /// `values(shard, cursor, i)` returns trajectory i's values (one per token). An interrupted run leaves the
    /// previous manifest in force; running again rewrites the sidecars.
    public func addTokenColumn(
        _ name: String, compression: Compression = .zstd(level: 3),
        values: (Int, ShardCursor, Int) throws -> [Float]
    ) throws -> Manifest {
        var m = manifest
        guard !m.tokenColumns.contains(name) else {
            throw FormatError(.invalidArgument, path: directory, "dataset already has token column '\(name)'")
        }
        for (si, shard) in shards.enumerated() {
            let file =
                (m.shards[si].file.hasSuffix(".oreo") ? String(m.shards[si].file.dropLast(5)) : m.shards[si].file)
                + ".\(name).oreocol"
            let w = try SidecarWriter(path: directory + "/" + file, shard: shard, name: name, compression: compression)
            let cursor = shard.cursor()
            for i in 0..<shard.trajectoryCount { try w.append(try values(si, cursor, i)) }
            let (bytes, sum) = try w.finish()
            m.shards[si].sidecars.append(SidecarEntry(column: name, file: file, bytes: bytes, xxh3: Checksum.hex(sum)))
        }
        m.tokenColumns.append(name)
        try m.write(directory: directory)
        return m
    }
}

/// Writes a dataset directory: rolls shards at a size target and keeps the manifest current.
///
/// After every finished shard the manifest is rewritten (atomically) with `complete: false`; `finish()`
/// writes it with `complete: true`. A crash therefore leaves a readable prefix, never a dataset that looks done.
public final class DatasetWriter {
    /// The directory.
    public let directory: String
    /// Shard options.
    public let options: ShardOptions
    /// A shard is closed once it holds at least this many tokens.
    public let shardTokens: UInt64
    /// The manifest as last written.
    public private(set) var manifest: Manifest
    /// File name of the manifest this writer keeps (`manifest.json`, or a part's own manifest).
    public let manifestName: String
    /// Shards are named `<prefix>-NNNNN.oreo`.
    public let shardPrefix: String
    /// Called just before the manifest is written for a closed shard: the properties it returns (resume
    /// state, statistics) are stored with that shard, atomically.
    public var onShardClose: (() throws -> [String: String])?
    private var current: ShardWriter?

    /// Creates `directory` if needed and writes an empty, incomplete manifest.
    public init(
        directory: String, options: ShardOptions, shardTokens: UInt64 = 64 << 20,
        tokenizer: TokenizerInfo? = nil, properties: [String: String] = [:],
        manifestName: String = Manifest.fileName, shardPrefix: String = "shard"
    ) throws {
        self.directory = directory
        self.options = options
        self.shardTokens = max(1, shardTokens)
        self.manifestName = manifestName
        self.shardPrefix = shardPrefix
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw FormatError(.io, path: directory, "cannot create directory: \(error.localizedDescription)")
        }
        DatasetWriter.removeTemporaries(in: directory)
        manifest = Manifest(
            complete: false, tokenDType: options.tokenDType.description, vocabSize: options.vocabSize,
            tokenizer: tokenizer, compression: options.compression.description,
            tokenColumns: options.tokenColumns,
            counts: DatasetCounts(trajectories: 0, steps: 0, tokens: 0), shards: [],
            createdBy: "oreo \(oreoVersion)", properties: properties)
        try manifest.write(directory: directory, fileName: manifestName)
    }

    /// Continues an interrupted dataset: keeps the shards `manifest` lists and numbers new ones after them.
    public init(
        resuming manifest: Manifest, directory: String, shardTokens: UInt64,
        manifestName: String = Manifest.fileName, shardPrefix: String = "shard"
    ) throws {
        guard !manifest.complete else {
            throw FormatError(.invalidArgument, path: directory + "/" + manifestName, "dataset is already complete")
        }
        guard DType(name: manifest.tokenDType) != nil, let compression = Compression(parsing: manifest.compression)
        else {
            throw FormatError(.manifest, path: directory + "/" + manifestName, "unreadable dtype or compression")
        }
        self.directory = directory
        options = ShardOptions(
            vocabSize: manifest.vocabSize, compression: compression, tokenColumns: manifest.tokenColumns)
        self.shardTokens = max(1, shardTokens)
        self.manifestName = manifestName
        self.shardPrefix = shardPrefix
        self.manifest = manifest
        DatasetWriter.removeTemporaries(in: directory)
    }

    /// Deletes `*.tmp-*` files left by interrupted writers.
    public static func removeTemporaries(in directory: String) {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for f in items where f.contains(".tmp-") { unlink(directory + "/" + f) }
    }

    /// Appends a trajectory whose `sourceFile` field is ignored in favour of `source` (a file name).
    public func append(_ record: TrajectoryRecord, source: String = "") throws {
        let w = try openShard()
        var r = record
        r.sourceFile = w.sourceIndex(source)
        try w.append(r)
        if w.tokenCount >= shardTokens { try closeShard(complete: false) }
    }

    /// Appends trajectories `range` of `batch`, all from input `source`. When trajectory k fills the current
    /// shard, `beforeClose(k)` runs just before the shard is closed (so that `onShardClose` can report the
    /// state after k); shards roll exactly where appending the trajectories one at a time would roll them.
    public func append(
        _ batch: TrajectoryBatch, _ range: Range<Int>, source: String = "",
        beforeClose: (Int) throws -> Void = { _ in }
    ) throws {
        var k = range.lowerBound
        while k < range.upperBound {
            let w = try openShard()
            // The shard closes after the first trajectory that brings it to `shardTokens` tokens.
            var stop = k, total = w.tokenCount
            while true {
                total += UInt64(batch.tokenEnd[stop] - (stop == 0 ? 0 : batch.tokenEnd[stop - 1]))
                if total >= shardTokens || stop + 1 == range.upperBound { break }
                stop += 1
            }
            try w.append(batch, k..<(stop + 1), sourceFile: w.sourceIndex(source))
            if w.tokenCount >= shardTokens {
                try beforeClose(stop)
                try closeShard(complete: false)
            }
            k = stop + 1
        }
    }

    private func openShard() throws -> ShardWriter {
        if let current { return current }
        let name = shardPrefix + String(format: "-%05d.oreo", manifest.shards.count)
        let w = try ShardWriter(path: directory + "/" + name, options: options)
        current = w
        return w
    }

    /// Properties to store in the manifest at the next write (resume state, statistics).
    public func setProperty(_ key: String, _ value: String) { manifest.properties[key] = value }

    /// Closes the current shard (if any) and records it in the manifest.
    public func closeShard(complete: Bool = false) throws {
        if let w = current {
            current = nil
            let s = try w.finish()
            manifest.shards.append(
                ShardEntry(
                    file: s.file, trajectories: s.trajectories, steps: s.steps,
                    tokens: s.tokens, bytes: s.bytes, xxh3: Checksum.hex(s.checksum),
                    sidecars: []))
            manifest.counts.trajectories += s.trajectories
            manifest.counts.steps += s.steps
            manifest.counts.tokens += s.tokens
        }
        manifest.complete = complete
        if let onShardClose {
            for (k, v) in try onShardClose() { manifest.properties[k] = v }
        }
        try manifest.write(directory: directory, fileName: manifestName)
    }

    /// Closes the last shard and marks the dataset complete.
    public func finish() throws -> Manifest {
        try closeShard(complete: true)
        return manifest
    }
}

/// This build's version, recorded in manifests.
public let oreoVersion = "0.1.0"
