import Foundation
import Format

/// A new, empty directory under the system's temporary directory, unique to this call (process id and a
/// UUID in its name), for one test's files.
public func makeTemporaryDirectory(_ tag: String) -> String {
    let dir = NSTemporaryDirectory() + "oreo-\(tag)-\(getpid())-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

extension Dataset {
    /// Every shard, opened (for the small datasets of tests; real readers open shards one at a time).
    public func allShards() throws -> [Shard] { try (0..<shardCount).map(shard) }
}
