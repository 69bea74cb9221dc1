import Foundation
import Format
import Support

/// A stage's record file: the inputs it ran on, whether it finished, and what it produced (JSON).
///
/// Files: `{"identity": DIGEST, "complete": BOOL, "inputs": {...}, "result": ...}`. Two older forms are read
/// too, so directories from before this format keep their finished stages: the demo's plain inputs object
/// (a finished stage) and its trainer's `{"identity", "complete", "model"}`.
public struct StageRecord: Sendable, Equatable {
    /// The inputs' digest (`InputFingerprint.digest`).
    public var identity: String
    /// Whether the stage finished.
    public var complete: Bool
    /// The result the stage stored, as JSON.
    public var result: [UInt8]?
    /// The inputs object of an older record that kept only that.
    var legacyInputs: String?

    /// A record of a stage run on `inputs`.
    public init(inputs: InputFingerprint, complete: Bool, result: [UInt8]? = nil) {
        identity = inputs.digest
        self.complete = complete
        self.result = result
    }

    /// Whether the stage ran on exactly these inputs.
    public func matches(_ inputs: InputFingerprint) -> Bool {
        if let legacyInputs { return legacyInputs == inputs.json }
        return identity == inputs.digest
    }

    /// The stored result decoded as `T` (nil: none, or not a `T`).
    public func decode<T: Decodable>(_ type: T.Type) -> T? {
        result.flatMap { try? JSONDecoder().decode(T.self, from: Data($0)) }
    }

    /// The record in `path`, nil when there is none or it cannot be read (a stage without a usable record runs).
    static func read(_ path: String) -> StageRecord? {
        guard let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        guard let identity = object["identity"] as? String else {
            // The demo's first records: the inputs object itself, written when the stage finished.
            var r = StageRecord(inputs: InputFingerprint(), complete: true)
            r.identity = ""
            r.legacyInputs = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
            return r
        }
        var r = StageRecord(inputs: InputFingerprint(), complete: object["complete"] as? Bool ?? false)
        r.identity = identity
        if let result = object["result"] ?? object["model"], !(result is NSNull),
            let bytes = try? JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        {
            r.result = Array(bytes)
        }
        return r
    }

    /// Writes the record to `path` atomically.
    static func write(_ inputs: InputFingerprint, complete: Bool, result: [UInt8]?, to path: String) throws {
        let text =
            "{"
            + [
                "\"identity\": " + jsonStringLiteral(inputs.digest),
                "\"complete\": \(complete)",
                "\"inputs\": " + inputs.json,
                "\"result\": " + (result.map { String(decoding: $0, as: UTF8.self) } ?? "null"),
            ].joined(separator: ", ") + "}\n"
        try writeFileAtomically(Array(text.utf8), to: path)
    }
}
