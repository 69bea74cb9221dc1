import Dispatch
import Format
import Foundation
import Support
import Synchronization

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
        file = l.file
        offset = l.next
        line = l.number
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
        case .failure:
            linesRead += 1
            rejected += 1
        }
    }
}
