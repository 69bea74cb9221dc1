import Foundation
import Format
import Synchronization

/// Directories handed out by `makeTemporaryDirectory`, removed when the test process exits (a heavy run
/// writes gigabytes of checkpoints; a developer's disk should not keep them).
private let madeDirectories = Mutex<[String]>([])
private let registerRemoval: Void = {
    atexit {
        guard ProcessInfo.processInfo.environment["OREO_KEEP_TEST_FILES"] != "1" else { return }
        for dir in madeDirectories.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: dir) }
    }
}()

/// A new, empty directory under the system's temporary directory, unique to this call (process id and a
/// UUID in its name), for one test's files; removed at exit unless OREO_KEEP_TEST_FILES=1.
public func makeTemporaryDirectory(_ tag: String) -> String {
    _ = registerRemoval
    let dir = NSTemporaryDirectory() + "oreo-\(tag)-\(getpid())-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    madeDirectories.withLock { $0.append(dir) }
    return dir
}

extension Dataset {
    /// Every shard, opened (for the small datasets of tests; real readers open shards one at a time).
    public func allShards() throws -> [Shard] { try (0..<shardCount).map(shard) }
}
