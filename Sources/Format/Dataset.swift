import Foundation
import Support
import Synchronization

/// An opened dataset directory: the manifest, with its shards opened on demand.
///
/// Opening reads the manifest and each shard's header, tail and footer, and checks them against each other (a
/// few pages per shard, no column data; the shards are closed again). A shard is opened again when first used,
/// and its blocks are checked as they are read. At most `openShardLimit` shards stay mapped at once (a dataset
/// may list more shards than a process may map files), so memory does not grow with the dataset.
public final class Dataset: Sendable {
    /// The directory.
    public let directory: String
    /// The manifest as read.
    public let manifest: Manifest
    /// Global index of each shard's first trajectory, plus the total: [shards+1].
    public let firstTrajectory: [Int]
    /// Shards kept open (mapped) at once; the least recently used is closed beyond this (cursors keep theirs).
    public let openShardLimit: Int
    private let opened: Mutex<OpenShards>

    /// Opens `directory`; refuses an incomplete dataset unless `allowIncomplete`.
    public init(directory: String, allowIncomplete: Bool = false, openShardLimit: Int = 64) throws {
        self.directory = directory
        let manifest = try Manifest.read(directory: directory)
        let mpath = directory + "/" + Manifest.fileName
        guard manifest.complete || allowIncomplete else {
            throw FormatError(
                .manifest, path: mpath, "dataset is incomplete (a writer was interrupted or is still running)")
        }
        self.manifest = manifest
        var first = [0]
        first.reserveCapacity(manifest.shards.count + 1)
        // Every file's size and every footer against the manifest now, so that a mismatch stops a job before it
        // starts; each entry is decoded once here.
        for e in manifest.shards {
            try Dataset.checkSize(directory + "/" + e.file, e.bytes, manifestPath: mpath)
            for sc in e.sidecars { try Dataset.checkSize(directory + "/" + sc.file, sc.bytes, manifestPath: mpath) }
            _ = try Dataset.open(e, directory: directory, manifest: manifest)
            guard e.trajectories <= UInt64(Int.max) - UInt64(first.last!) else {
                throw FormatError(.manifest, path: mpath, "trajectory counts overflow")
            }
            first.append(first.last! + Int(e.trajectories))
        }
        firstTrajectory = first
        self.openShardLimit = max(1, openShardLimit)
        opened = Mutex(OpenShards())
    }

    /// Number of shards.
    public var shardCount: Int { manifest.shards.count }

    /// Path of shard `i`.
    public func shardPath(_ i: Int) -> String { directory + "/" + manifest.shards[i].file }

    /// Shard `i`, opened (and checked against the manifest) on first use.
    public func shard(_ i: Int) throws -> Shard {
        precondition(i >= 0 && i < shardCount, "shard \(i) out of range 0..<\(shardCount)")
        if let s = opened.withLock({ $0.take(i) }) { return s }
        let shard = try openShard(i)
        opened.withLock { $0.insert(i, shard, limit: openShardLimit) }
        return shard
    }

    private func openShard(_ i: Int) throws -> Shard {
        try Dataset.open(manifest.shards[i], directory: directory, manifest: manifest)
    }

    private static func open(_ e: ShardEntry, directory: String, manifest: Manifest) throws -> Shard {
        let shard = try Shard(path: directory + "/" + e.file, sidecars: e.sidecars.map { directory + "/" + $0.file })
        try check(e, against: shard, manifest: manifest, manifestPath: directory + "/" + Manifest.fileName)
        return shard
    }

    /// The dataset's statistics: the sum of its shards', from the manifest, or for datasets written before
    /// statistics existed, the sum of each shard's from a cache file beside the shard (`<shard>.stats.json`, tied to the shard's
    /// checksum), computed from the shard's scalar columns the first time and cached when the directory is
    /// writable.
    public func statistics() throws -> ShardStats {
        if let s = manifest.stats { return s }
        var total = ShardStats()
        for (i, e) in manifest.shards.enumerated() {
            let cache = shardPath(i) + ".stats.json"
            if let data = FileManager.default.contents(atPath: cache),
                (try? StrictJSON.parse(data, file: cache)) != nil,
                let c = try? JSONDecoder().decode(CachedShardStats.self, from: data), c.shardXXH3 == e.xxh3,
                c.stats.trajectories == e.trajectories, c.stats.tokens == e.tokens,
                (try? c.stats.validate(path: cache)) != nil
            {
                total.add(c.stats)
                continue
            }
            let s = try ShardStats(shard: try shard(i))
            if let bytes = try? JSONEncoder().encode(CachedShardStats(shardXXH3: e.xxh3, stats: s)) {
                try? writeFileAtomically(Array(bytes), to: cache)
            }
            total.add(s)
        }
        return total
    }

    /// A listed file must exist with its listed size (one `stat`: no data is read).
    static func checkSize(_ path: String, _ bytes: UInt64, manifestPath: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw FormatError(.io, path: path, FileReadError.errno(errno, path: path).reason)
        }
        guard UInt64(st.st_size) == bytes else {
            throw FormatError(
                .inconsistent, path: path,
                "is \(st.st_size) bytes, the manifest says \(bytes) (manifest \(manifestPath))")
        }
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
        var lo = 0, hi = shardCount
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
    public func verify() -> [FileReport] {
        var reports: [FileReport] = []
        verify { reports.append($0) }
        return reports
    }

    /// `verify()`, handing each file's report to `report` as soon as it is known (nothing kept per shard).
    public func verify(progress: (Int, Int) -> Void = { _, _ in }, report: (FileReport) -> Void) {
        for (i, e) in manifest.shards.enumerated() {
            progress(i, shardCount)
            let shard: Shard
            // Each shard is visited once: one already open is used, others are not kept open afterwards.
            do { shard = try opened.withLock({ $0.take(i) }) ?? openShard(i) } catch {
                report(FileReport(path: shardPath(i), error: "\(error)"))
                continue
            }
            func mismatch(_ file: BlockFile, _ expected: String) -> String? {
                file.file.adviseSequential()
                let actual = Checksum.hex(Checksum.xxh3(file.file.bytes))
                return actual == expected ? nil : "file checksum \(actual) differs from the manifest's \(expected)"
            }
            var shardError = mismatch(shard.main, e.xxh3)
            for (file, entry) in zip(shard.sidecars, e.sidecars) {
                let err = mismatch(file, entry.xxh3)
                report(FileReport(path: file.path, error: err))
                if err != nil, shardError == nil { shardError = "sidecar \(file.path) is damaged" }
            }
            if shardError == nil {
                do { try shard.cursor().verifyAll() } catch { shardError = "\(error)" }
            }
            report(FileReport(path: shard.path, error: shardError))
        }
        progress(shardCount, shardCount)
    }

    /// Adds per-token f32 column `name` to every shard as sidecar files, then rewrites the manifest.
    ///
    /// `values(shard, cursor, i)` returns trajectory i's values (one per token). Each shard's sidecar appears
    /// under its final name when complete, and the manifest changes only once every shard has one, so an
    /// interrupted run leaves the previous manifest in force. Running again keeps the finished sidecars whose
    /// `producer` (what computed the values: a model's fingerprint) is the same, and writes the rest; stale
    /// temporaries of dead writers are removed first. With `maxTrajectories`, the run stops once that many
    /// trajectories have values: the shards finished by then are kept for the next run, and the manifest is not
    /// changed.
    public func addTokenColumn(
        _ name: String, compression: Compression = .zstd(level: 3), producer: String = "",
        maxTrajectories: Int = .max, values: (Int, ShardCursor, Int) throws -> [Float]
    ) throws -> TokenColumnResult {
        var m = manifest
        guard !m.tokenColumns.contains(name) else {
            throw FormatError(.invalidArgument, path: directory, "dataset already has token column '\(name)'")
        }
        DatasetWriter.removeTemporaries(in: directory)
        var result = TokenColumnResult()
        for si in 0..<shardCount {
            let shard = try self.shard(si)
            let file =
                (m.shards[si].file.hasSuffix(".oreo") ? String(m.shards[si].file.dropLast(5)) : m.shards[si].file)
                + ".\(name).oreocol"
            let path = directory + "/" + file
            if let kept = Dataset.finishedSidecar(path, of: shard, column: name, producer: producer) {
                m.shards[si].sidecars.append(SidecarEntry(column: name, file: file, bytes: kept.bytes, xxh3: kept.xxh3))
                result.reusedShards += 1
                continue
            }
            let w = try SidecarWriter(
                path: path, shard: shard, name: name, compression: compression, producer: producer)
            let cursor = shard.cursor()
            for i in 0..<shard.trajectoryCount {
                // Dropping the unfinished writer removes its temporary file.
                if result.trajectories >= maxTrajectories { return result }
                try w.append(try values(si, cursor, i))
                result.trajectories += 1
            }
            let (bytes, sum) = try w.finish()
            m.shards[si].sidecars.append(SidecarEntry(column: name, file: file, bytes: bytes, xxh3: Checksum.hex(sum)))
            result.writtenShards += 1
        }
        m.tokenColumns.append(name)
        try m.write(directory: directory)
        result.manifest = m
        return result
    }

    /// A sidecar at `path` that an earlier run finished for `shard`, with the same column and producer: its
    /// size and whole-file checksum (its blocks are checked when read, like every block). nil otherwise.
    static func finishedSidecar(_ path: String, of shard: Shard, column: String, producer: String) -> (
        bytes: UInt64, xxh3: String
    )? {
        guard FileManager.default.fileExists(atPath: path),
            let f = try? BlockFile(path: path, magic: Container.sidecarMagic)
        else { return nil }
        let footer = f.footer
        guard footer.trajectories == UInt64(shard.trajectoryCount), footer.tokens == UInt64(shard.tokenCount),
            footer.sources == SidecarWriter.sources(producer), footer.columns.count == 1,
            footer.columns[0].name == ColumnName.tokenPrefix + column, footer.columns[0].dtype == .f32
        else { return nil }
        f.file.adviseSequential()
        return (UInt64(f.file.bytes.count), Checksum.hex(Checksum.xxh3(f.file.bytes)))
    }
}

/// What `Dataset.addTokenColumn` did.
public struct TokenColumnResult: Sendable {
    /// The manifest with the new column; nil when `maxTrajectories` stopped the run first.
    public var manifest: Manifest?
    /// Shards whose finished sidecar from an earlier run (same producer) was kept.
    public var reusedShards = 0
    /// Shards whose sidecar this run wrote.
    public var writtenShards = 0
    /// Trajectories whose values this run computed.
    public var trajectories = 0
}

/// The shards a `Dataset` keeps open, least recently used first.
struct OpenShards {
    private var entries: [(index: Int, shard: Shard)] = []

    /// Shard `i` if open, marked most recently used.
    mutating func take(_ i: Int) -> Shard? {
        guard let k = entries.firstIndex(where: { $0.index == i }) else { return nil }
        let e = entries.remove(at: k)
        entries.append(e)
        return e.shard
    }

    /// Adds shard `i` (another thread may have opened it meanwhile: keep one), closing the oldest beyond `limit`.
    mutating func insert(_ i: Int, _ shard: Shard, limit: Int) {
        if take(i) != nil { return }
        entries.append((i, shard))
        if entries.count > limit { entries.removeFirst(entries.count - limit) }
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
        manifest.stats = ShardStats()
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

    /// Deletes `*.tmp-PID` files left by writers that are no longer running (a live process's are its own).
    public static func removeTemporaries(in directory: String) {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for f in items {
            guard let r = f.range(of: ".tmp-", options: .backwards) else { continue }
            if let pid = Int32(f[r.upperBound...]), pid != getpid(), kill(pid, 0) == 0 || errno == EPERM { continue }
            unlink(directory + "/" + f)
        }
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
            // The statistics trainers plan with, from the scalar columns just written (no token is read).
            let stats = try ShardStats(shard: try Shard(path: directory + "/" + s.file))
            manifest.shards.append(
                ShardEntry(
                    file: s.file, trajectories: s.trajectories, steps: s.steps,
                    tokens: s.tokens, bytes: s.bytes, xxh3: Checksum.hex(s.checksum),
                    sidecars: []))
            manifest.stats?.add(stats)
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
