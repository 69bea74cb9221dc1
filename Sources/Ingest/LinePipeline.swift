import Dispatch
import Format
import Foundation
import Support
import Synchronization

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
                defer {
                    s.head += 1
                    if s.head > 64 {
                        s.queue.removeFirst(s.head)
                        s.head = 0
                    }
                }
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
                    try box.processor.process(
                        l.bytes(in: mapped[l.file]), into: &out.records, sourceLine: UInt64(l.number))
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
