import Dispatch
import Format
import Foundation
import Support
import Synchronization

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
                throw FormatError(
                    .io, path: path, "cannot cut rejects back to \(keep) bytes: \(String(cString: strerror(errno)))")
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
        let entry: [String: String] = [
            "where": location, "reason": reason, "line": String(decoding: line, as: UTF8.self),
        ]
        var data = try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys, .withoutEscapingSlashes])
        data.append(0x0A)
        try data.withUnsafeBytes { d in
            var done = 0
            while done < d.count {
                let n = write(fd, d.baseAddress! + done, d.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FormatError(
                        .io, path: path, offset: UInt64(size + done),
                        "write failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        size += data.count
    }

    /// Flushes to disk and returns the length.
    func sync() throws -> Int {
        if fd >= 0, fsync(fd) != 0 {
            throw FormatError(.io, path: path, "fsync failed: \(String(cString: strerror(errno)))")
        }
        return size
    }

    func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }

    deinit { abandon() }
}
