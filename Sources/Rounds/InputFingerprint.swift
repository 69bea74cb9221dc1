import Foundation
import Format
import Support

/// What a stage ran on, as named items (settings, and checksums of its input files, models and datasets):
/// the one way `oreo demo` and `oreo iterate` tell whether a stage's output still holds for its inputs.
public struct InputFingerprint: Sendable, Equatable {
    /// One named input.
    public struct Item: Sendable, Equatable {
        /// The input's name.
        public var key: String
        /// Its value or checksum.
        public var value: String
    }

    /// The items in the order added (the order is part of the fingerprint).
    public private(set) var items: [Item] = []

    /// A fingerprint of these items, in order.
    public init(_ items: [(String, String)] = []) {
        for (k, v) in items { add(k, v) }
    }

    /// Adds an item.
    public mutating func add(_ key: String, _ value: String) { items.append(Item(key: key, value: value)) }

    /// The items as one JSON object of strings, in order: what a stage record keeps for people to read.
    public var json: String {
        "{" + items.map { jsonStringLiteral($0.key) + ": " + jsonStringLiteral($0.value) }.joined(separator: ", ") + "}"
    }

    /// A checksum of the items (one `key value` line each); equal digests mean equal inputs.
    public var digest: String {
        Checksum.hex(Checksum.xxh3(Array(items.map { "\($0.key) \($0.value)" }.joined(separator: "\n").utf8)))
    }

    /// A checksum of a file's bytes (mapped), or its path, size and date when it is too big to read on every run.
    public static func file(_ path: String) -> String {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? -1
        if size >= 0, size <= 1 << 30,
            let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        {
            return Checksum.hex(data.withUnsafeBytes { Checksum.xxh3($0) })
        }
        let date = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\(path):\(size):\(date)"
    }

    /// The identity of a model's weights: its safetensors files' checksums (a directory) or the file's (a GGUF).
    public static func model(_ path: String) -> String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter {
                $0.hasSuffix(".safetensors")
            }.sorted()
            return files.map { file(path + "/" + $0) }.joined(separator: "+")
        }
        return file(path)
    }

    /// The identity of a dataset: its shards' checksums (sidecar columns such as ref_logprob left out, so
    /// scoring a dataset does not change what trained on it).
    public static func dataset(_ directory: String) throws -> String {
        try Manifest.read(directory: directory).shards.map(\.xxh3).joined(separator: "+")
    }

    /// A checksum of texts (order matters).
    public static func texts(_ texts: [String]) -> String {
        var bytes: [UInt8] = []
        for t in texts {
            bytes += Array(t.utf8)
            bytes.append(0)
        }
        return Checksum.hex(Checksum.xxh3(bytes))
    }
}
