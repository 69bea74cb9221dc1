import Dispatch
import Format
import Foundation
import Support
import Synchronization

/// Progress of an ingest, reported after every window of lines.
public struct IngestProgress: Sendable {
    /// Input bytes consumed so far (including what a resumed run skipped).
    public var bytesDone: Int
    /// Total input bytes.
    public var bytesTotal: Int
    /// Non-blank lines read.
    public var linesRead: Int
    /// Trajectories written.
    public var written: Int
    /// Lines rejected.
    public var rejected: Int
}

/// What an ingest run produced.
public struct IngestSummary: Sendable {
    /// The dataset's manifest.
    public var manifest: Manifest
    /// Non-blank lines read, trajectories written, lines rejected, responses truncated, blank lines skipped.
    public var linesRead: Int, written: Int, rejected: Int, truncated: Int, blank: Int
    /// Whether this run continued an interrupted one.
    public var resumed: Bool
}

/// JSONL trajectories to a dataset: memory-mapped inputs, tokenization on every core, lines kept in input
/// order, shards written as they fill, resumable after an interruption, splittable into parts.
public struct IngestJob {
    /// Input JSONL files.
    public var inputs: [String]
    /// Output dataset directory.
    public var output: String
    /// Shared tokenizer tables.
    public var vocab: IngestVocabulary
    /// Tokenization options.
    public var options: IngestOptions
    /// Block compression.
    public var compression: Compression = .zstd(level: 3)
    /// Tokens per shard.
    public var shardTokens: UInt64 = 64 << 20
    /// Worker threads.
    public var threads: Int = 2
    /// This run's part (index, count): it takes the non-blank lines whose running index modulo count is index.
    public var part: (index: Int, count: Int) = (0, 1)
    /// Lines per unit of parallel work.
    public var batchLines = 512

    /// A job over `inputs` into `output`.
    public init(inputs: [String], output: String, vocab: IngestVocabulary, options: IngestOptions) {
        self.inputs = inputs; self.output = output; self.vocab = vocab; self.options = options
    }

    /// Manifest file this run keeps: `manifest.json`, or `manifest.part-I-of-N.json` for a part.
    public var manifestName: String {
        part.count == 1 ? Manifest.fileName : "manifest.part-\(part.index)-of-\(part.count).json"
    }

    var shardPrefix: String { part.count == 1 ? "shard" : "part-\(part.index)-of-\(part.count).shard" }
    var rejectsName: String { part.count == 1 ? "rejects.jsonl" : "rejects.part-\(part.index)-of-\(part.count).jsonl" }

    /// Everything a resumed run must agree on with the run it continues.
    var identity: [String: String] {
        var p = options.properties
        p["ingest.inputs"] = inputs.map { path -> String in
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            return "\(path) (\(size ?? -1) bytes)"
        }.joined(separator: "; ")
        p["ingest.part"] = "\(part.index)/\(part.count)"
        p["ingest.tokenizer"] = vocab.tokenizer.path
        return p
    }

    /// Deletes what this job (or part) wrote to `output` before: its manifest, shards and rejects.
    public func removeOutput() {
        let items = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        for f in items where f == manifestName || f == rejectsName || f.hasPrefix(shardPrefix + "-") {
            unlink(output + "/" + f)
        }
    }

    /// Runs the job; an interrupted earlier run with the same inputs and options is continued.
    public func run(progress: (IngestProgress) -> Void = { _ in }) throws -> IngestSummary {
        let files = try inputs.map { try MappedFile(path: $0) }
        for f in files { f.adviseSequential() }
        let totalBytes = files.reduce(0) { $0 + $1.bytes.count }
        let tokenizerInfo = TokenizerInfo(fingerprint: String(vocab.tokenizer.fingerprint, radix: 16), source: vocab.tokenizer.path)

        // Resume state: (file, byte offset, line number) after the last line covered by a committed shard.
        var state = ResumeState()
        var resumed = false
        let writer: DatasetWriter
        let manifestPath = output + "/" + manifestName
        if FileManager.default.fileExists(atPath: manifestPath) {
            let m = try Manifest.read(directory: output, fileName: manifestName)
            if m.complete {
                throw FormatError(.invalidArgument, path: manifestPath, "dataset is already complete; choose another --out or pass --overwrite")
            }
            for (k, v) in identity where m.properties[k] != v {
                throw FormatError(.invalidArgument, path: manifestPath,
                                  "an interrupted ingest with different settings is here (\(k): '\(m.properties[k] ?? "none")' vs '\(v)'); pass --overwrite to start again")
            }
            guard m.tokenizer == tokenizerInfo else {
                throw FormatError(.invalidArgument, path: manifestPath, "the interrupted ingest used another tokenizer; pass --overwrite")
            }
            state = ResumeState(m.properties)
            writer = try DatasetWriter(resuming: m, directory: output, shardTokens: shardTokens,
                                       manifestName: manifestName, shardPrefix: shardPrefix)
            resumed = true
        } else {
            var props = identity
            props["ingest.resume"] = ResumeState().encoded
            writer = try DatasetWriter(directory: output, options: ShardOptions(vocabSize: vocab.tokenizer.vocabSize, compression: compression),
                                       shardTokens: shardTokens, tokenizer: tokenizerInfo, properties: props,
                                       manifestName: manifestName, shardPrefix: shardPrefix)
        }
        let rejects = try RejectsFile(path: output + "/" + rejectsName, keep: resumed ? state.rejectsBytes : 0)

        // What the manifest records when a shard closes: the position after the last appended record.
        let committed = Mutex(state)
        writer.onShardClose = {
            var s = committed.withLock { $0 }
            s.rejectsBytes = try rejects.sync()
            return s.properties
        }

        var current = state
        var lines = LineCursor(files: files, start: state)
        var partIndex = state.partCounter
        /// The next batch of lines in input order (only this thread reads lines), or nil at the end.
        func nextBatch() -> [LineRef]? {
            var batch: [LineRef] = []
            while batch.count < batchLines, var l = lines.next() {
                if !l.blank {
                    l.ordinal = partIndex
                    partIndex += 1
                    if l.ordinal % part.count != part.index { continue }
                }
                batch.append(l)
            }
            return batch.isEmpty ? nil : batch
        }

        // Workers tokenize batches while this thread writes finished ones in input order, so shard writing
        // (block compression included) runs beside tokenization instead of between windows of it.
        let pipeline = LinePipeline(files: files, depth: max(1, threads) * 4,
                                    processors: (0..<max(1, threads)).map { [delimiters = SingleByteDelimiters(vocab, options.stepDelimiters)] _ in
                                        LineProcessor(vocab: vocab, options: options, delimiters: delimiters)
                                    })
        defer { pipeline.finish() }
        var pending: [[LineRef]] = []  // submitted, not yet written, in order
        while pending.count < pipeline.depth, let b = nextBatch() { pipeline.submit(b); pending.append(b) }
        var head = 0
        while head < pending.count {
            let batch = pending[head]
            let done = pipeline.take()
            pending[head] = []
            head += 1
            if let b = nextBatch() { pipeline.submit(b); pending.append(b) }
            if head >= 64 { pending.removeFirst(head); head = 0 }
            // Consecutive trajectories from one input go to the writer as one run; a rejected line or the
            // next input ends a run. `runState` is the state before the run's first line.
            var runLine = 0, runRecord = 0, record = 0, runState = current
            func flushRun(through endLine: Int) throws {
                guard record > runRecord else { return }
                let records = done.records
                try writer.append(records, runRecord..<record, source: inputs[batch[runLine].file]) { last in
                    // The shard closing after trajectory `last` records the state right after its line.
                    var s = runState, r = runRecord
                    for k in runLine..<endLine {
                        s.advance(past: batch[k], done.outcomes[k], truncated: { records.flags[r] & TrajectoryFlags.truncated.rawValue != 0 })
                        if case .record = done.outcomes[k] {
                            if r == last { break }
                            r += 1
                        }
                    }
                    committed.withLock { $0 = s }
                }
                runRecord = record
            }
            for (k, l) in batch.enumerated() {
                let outcome = done.outcomes[k]
                if case .failure(let e) = outcome {
                    try flushRun(through: k)
                    current.advance(past: l, outcome, truncated: { false })
                    let where_ = "\(inputs[l.file]):\(l.number):\(e.column)"
                    if options.onInvalid == .fail {
                        rejects.abandon()
                        throw IngestError(location: where_, reason: e.reason)
                    }
                    committed.withLock { $0 = current }
                    try l.withBytes(files) { try rejects.append(line: $0, location: where_, reason: e.reason) }
                    runLine = k + 1
                    runState = current
                    continue
                }
                if k > runLine, l.file != batch[runLine].file {
                    try flushRun(through: k)
                    runLine = k
                    runState = current
                }
                current.advance(past: l, outcome, truncated: { done.records.flags[record] & TrajectoryFlags.truncated.rawValue != 0 })
                if case .record = outcome { record += 1 }
            }
            try flushRun(through: batch.count)
            progress(IngestProgress(bytesDone: batch.last.map { lines.bytesConsumed(upTo: $0) } ?? lines.bytesConsumed,
                                    bytesTotal: totalBytes, linesRead: current.linesRead,
                                    written: current.written, rejected: current.rejected))
            pipeline.recycle(done)
        }
        committed.withLock { $0 = current }
        for (k, v) in current.properties { writer.setProperty(k, v) }
        writer.setProperty("ingest.lines_read", String(current.linesRead))
        writer.setProperty("ingest.trajectories", String(current.written))
        writer.setProperty("ingest.rejected", String(current.rejected))
        writer.setProperty("ingest.truncated", String(current.truncated))
        writer.setProperty("ingest.blank_lines", String(current.blank))
        let manifest = try writer.finish()
        return IngestSummary(manifest: manifest, linesRead: current.linesRead, written: current.written,
                             rejected: current.rejected, truncated: current.truncated, blank: current.blank, resumed: resumed)
    }
}

/// A line that stops an ingest run under `--on-invalid fail`.
public struct IngestError: Error, CustomStringConvertible {
    /// `file:line:column`.
    public var location: String
    /// What is wrong.
    public var reason: String
    /// `file:line:column: reason`.
    public var description: String { "\(location): \(reason)" }
}

/// What became of one line of a batch: blank, a trajectory (the batch's next), or refused.
enum LineOutcome: Sendable {
    case blank, record, failure(LineError)
}

/// A worker's result for one batch of lines: its trajectories in flat columns and each line's outcome.
struct ProcessedLines: Sendable {
    var records = TrajectoryBatch()
    var outcomes: [LineOutcome] = []
}

/// Batches of lines tokenized by worker threads and handed back in submission order.
///
/// The submitting thread calls `submit` and `take` alternately (at most `depth` batches outstanding) and
/// hands each result back with `recycle` once written, so its storage is filled again instead of freed;
/// each worker owns one `LineProcessor`. Memory stays bounded by `depth` batches whatever the input size.
final class LinePipeline: @unchecked Sendable {
    let depth: Int
    private let files: [MappedFile]
    private let state = Mutex(State())
    private let work = DispatchSemaphore(value: 0)
    private let slots: [Slot]
    private let group = DispatchGroup()
    private let workerCount: Int
    private var submitted = 0, taken = 0

    private struct State {
        var queue: [(index: Int, lines: [LineRef])] = []
        var head = 0
        var closed = false
        var spare: [ProcessedLines] = []
    }
    private final class Slot: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        var result = ProcessedLines()
    }

    init(files: [MappedFile], depth: Int, processors: [LineProcessor]) {
        self.files = files
        self.depth = depth
        slots = (0..<depth).map { _ in Slot() }
        workerCount = processors.count
        for p in processors {
            let box = ProcessorBox(p)
            DispatchQueue.global(qos: .userInitiated).async(group: group) { [self] in self.runWorker(box) }
        }
    }

    private final class ProcessorBox: @unchecked Sendable {
        var processor: LineProcessor
        init(_ p: LineProcessor) { processor = p }
    }

    private func runWorker(_ box: ProcessorBox) {
        while true {
            work.wait()
            let job: (index: Int, lines: [LineRef], spare: ProcessedLines?)? = state.withLock { s in
                guard s.head < s.queue.count, !s.closed else { return nil }
                defer { s.head += 1; if s.head > 64 { s.queue.removeFirst(s.head); s.head = 0 } }
                return (s.queue[s.head].index, s.queue[s.head].lines, s.spare.popLast())
            }
            guard let job else { return }
            // The mapped bytes, taken once per batch: reaching each line through the shared file objects
            // would retain them from every worker at once.
            let mapped = files.map(\.bytes)
            var out = job.spare ?? ProcessedLines()
            out.records.removeAll()
            out.outcomes.removeAll(keepingCapacity: true)
            for l in job.lines {
                if l.blank {
                    out.outcomes.append(.blank)
                    continue
                }
                do throws(LineError) {
                    try box.processor.process(l.bytes(in: mapped[l.file]), into: &out.records, sourceLine: UInt64(l.number))
                    out.outcomes.append(.record)
                } catch {
                    out.outcomes.append(.failure(error))
                }
            }
            let slot = slots[job.index % depth]
            slot.result = out
            slot.done.signal()
        }
    }

    /// Queues the next batch (fewer than `depth` batches may be outstanding).
    func submit(_ lines: [LineRef]) {
        precondition(submitted - taken < depth, "pipeline overfull")
        state.withLock { $0.queue.append((submitted, lines)) }
        submitted += 1
        work.signal()
    }

    /// Waits for the oldest outstanding batch and returns what the worker made of it.
    func take() -> ProcessedLines {
        let slot = slots[taken % depth]
        slot.done.wait()
        taken += 1
        defer { slot.result = ProcessedLines() }
        return slot.result
    }

    /// Gives a written result's storage back for a later batch.
    func recycle(_ done: ProcessedLines) {
        state.withLock { if $0.spare.count < depth { $0.spare.append(done) } }
    }

    /// Stops the workers (dropping queued batches) and waits until they have exited.
    func finish() {
        let workers = state.withLock { s -> Bool in
            if s.closed { return false }
            s.closed = true
            return true
        }
        guard workers else { return }
        // One wake-up per worker, so every waiting worker sees `closed` (surplus wake-ups are harmless).
        for _ in 0..<workerCount { work.signal() }
        group.wait()
    }
}

/// Where an ingest stands: the input position after the last processed line and the running counts.
struct ResumeState: Equatable {
    var file = 0, offset = 0, line = 0, partCounter = 0
    var linesRead = 0, written = 0, rejected = 0, truncated = 0, blank = 0, rejectsBytes = 0

    init() {}

    init(_ p: [String: String]) {
        let v = (p["ingest.resume"] ?? "").split(separator: ",").map { Int($0) ?? 0 }
        if v.count == 10 {
            (file, offset, line, partCounter, linesRead, written) = (v[0], v[1], v[2], v[3], v[4], v[5])
            (rejected, truncated, blank, rejectsBytes) = (v[6], v[7], v[8], v[9])
        }
    }

    var encoded: String {
        [file, offset, line, partCounter, linesRead, written, rejected, truncated, blank, rejectsBytes]
            .map(String.init).joined(separator: ",")
    }

    var properties: [String: String] { ["ingest.resume": encoded] }

    mutating func after(_ l: LineRef) {
        file = l.file; offset = l.next; line = l.number
        if !l.blank { partCounter = l.ordinal + 1 }
    }

    /// The state after line `l` with `outcome`; `truncated` tells whether its trajectory was cut.
    mutating func advance(past l: LineRef, _ outcome: LineOutcome, truncated: () -> Bool) {
        after(l)
        switch outcome {
        case .blank: blank += 1
        case .record:
            linesRead += 1
            written += 1
            if truncated() { self.truncated += 1 }
        case .failure: linesRead += 1; rejected += 1
        }
    }
}

/// One line of one input: file index, byte range (without the newline), 1-based number.
struct LineRef {
    var file: Int, start: Int, end: Int, number: Int, blank: Bool
    /// Offset of the following line.
    var next: Int
    /// Running index among non-blank lines of all inputs (decides the part).
    var ordinal = 0

    func withBytes<R>(_ files: [MappedFile], _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        try body(bytes(in: files[file].bytes))
    }

    /// The line's bytes (without CR before the newline) in its mapped file's bytes.
    func bytes(in b: UnsafeRawBufferPointer) -> UnsafeBufferPointer<UInt8> {
        var e = end
        if e > start, b[e - 1] == 0x0D { e -= 1 }  // CRLF
        return UnsafeRawBufferPointer(rebasing: b[start..<e]).assumingMemoryBound(to: UInt8.self)
    }
}

/// Walks the lines of the inputs from a resume position.
struct LineCursor {
    let files: [MappedFile]
    var file: Int, offset: Int, number: Int

    init(files: [MappedFile], start: ResumeState) {
        self.files = files
        file = start.file; offset = start.offset; number = start.line
    }

    var bytesConsumed: Int {
        files.prefix(file).reduce(0) { $0 + $1.bytes.count } + offset
    }

    /// Input bytes up to the end of line `l` (the cursor itself may have read further ahead).
    func bytesConsumed(upTo l: LineRef) -> Int {
        files.prefix(l.file).reduce(0) { $0 + $1.bytes.count } + l.next
    }

    mutating func next() -> LineRef? {
        while file < files.count {
            let b = files[file].bytes
            if offset >= b.count { file += 1; offset = 0; number = 0; continue }
            let start = offset
            var end = start
            if let base = b.baseAddress, let p = memchr(base + start, 0x0A, b.count - start) {
                end = base.distance(to: UnsafeRawPointer(p))
            } else {
                end = b.count
            }
            offset = end < b.count ? end + 1 : end
            number += 1
            var blank = true
            for k in start..<end where b[k] != 0x20 && b[k] != 0x09 && b[k] != 0x0D { blank = false; break }
            return LineRef(file: file, start: start, end: end, number: number, blank: blank, next: offset)
        }
        return nil
    }
}

/// `rejects.jsonl`: each invalid line verbatim with where and why, appended as lines are read; synced and
/// measured whenever a shard closes, and cut back to that length when a run resumes.
final class RejectsFile: @unchecked Sendable {
    let path: String
    private var fd: Int32 = -1
    private var size = 0

    init(path: String, keep: Int) throws {
        self.path = path
        if keep == 0 {
            unlink(path)
        } else {
            if truncate(path, off_t(keep)) != 0 {
                throw FormatError(.io, path: path, "cannot cut rejects back to \(keep) bytes: \(String(cString: strerror(errno)))")
            }
            size = keep
        }
    }

    private func open() throws {
        if fd >= 0 { return }
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        if fd < 0 { throw FormatError(.io, path: path, "cannot open: \(String(cString: strerror(errno)))") }
    }

    func append(line: UnsafeBufferPointer<UInt8>, location: String, reason: String) throws {
        try open()
        // The line itself may not be JSON, so it is stored as a JSON string.
        let entry: [String: String] = ["where": location, "reason": reason, "line": String(decoding: line, as: UTF8.self)]
        var data = try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        try data.withUnsafeBytes { d in
            var done = 0
            while done < d.count {
                let n = write(fd, d.baseAddress! + done, d.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FormatError(.io, path: path, offset: UInt64(size + done), "write failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        size += data.count
    }

    /// Flushes to disk and returns the length.
    func sync() throws -> Int {
        if fd >= 0, fsync(fd) != 0 { throw FormatError(.io, path: path, "fsync failed: \(String(cString: strerror(errno)))") }
        return size
    }

    func abandon() { if fd >= 0 { close(fd); fd = -1 } }

    deinit { abandon() }
}

extension IngestJob {
    /// Combines the finished parts `manifest.part-I-of-N.json` of `directory` into its `manifest.json`.
    public static func mergeParts(directory: String, count: Int) throws -> Manifest {
        var parts: [Manifest] = []
        for i in 0..<count {
            let name = "manifest.part-\(i)-of-\(count).json"
            let m = try Manifest.read(directory: directory, fileName: name)
            guard m.complete else { throw FormatError(.manifest, path: directory + "/" + name, "part \(i) has not finished") }
            parts.append(m)
        }
        guard var merged = parts.first else { throw FormatError(.invalidArgument, path: directory, "no parts to merge") }
        let sameKeys = merged.properties.keys.filter { $0.hasPrefix("ingest.") && !["ingest.part", "ingest.resume"].contains($0) && !isCount($0) }
        for (i, m) in parts.enumerated().dropFirst() {
            guard m.vocabSize == merged.vocabSize, m.tokenizer == merged.tokenizer, m.tokenColumns == merged.tokenColumns else {
                throw FormatError(.manifest, path: directory, "part \(i) used another tokenizer or columns than part 0")
            }
            for k in sameKeys where m.properties[k] != merged.properties[k] {
                throw FormatError(.manifest, path: directory, "part \(i) differs from part 0 in \(k)")
            }
            merged.shards += m.shards
            merged.counts.trajectories += m.counts.trajectories
            merged.counts.steps += m.counts.steps
            merged.counts.tokens += m.counts.tokens
        }
        for k in ["ingest.lines_read", "ingest.trajectories", "ingest.rejected", "ingest.truncated"] {
            merged.properties[k] = String(parts.reduce(0) { $0 + (Int($1.properties[k] ?? "") ?? 0) })
        }
        merged.properties["ingest.part"] = "merged \(count) parts"
        merged.properties["ingest.resume"] = nil
        merged.properties["ingest.blank_lines"] = parts.first?.properties["ingest.blank_lines"]
        try merged.validate(path: directory + "/" + Manifest.fileName)
        try merged.write(directory: directory)
        return merged
    }

    private static func isCount(_ k: String) -> Bool {
        ["ingest.lines_read", "ingest.trajectories", "ingest.rejected", "ingest.truncated", "ingest.blank_lines"].contains(k)
    }
}
