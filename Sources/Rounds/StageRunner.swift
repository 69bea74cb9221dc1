import Foundation

/// Records stages' inputs in one directory (a file per stage), skips a finished stage whose inputs match,
/// and tells a stage whether to continue an interrupted run with the same inputs or to start afresh.
public struct StageRunner: Sendable {
    /// How a stage that is not skipped starts.
    public enum Start: Sendable, Equatable {
        /// No record: nothing ran here since stages were recorded (outputs from before may be continued).
        case fresh
        /// An earlier run with the same inputs did not finish (or lost its output): continue it.
        case continuing
        /// An earlier run had other inputs: its outputs are stale.
        case replacing
    }

    /// The directory of the records.
    public let directory: String

    /// Records in `directory` (created when the first is written).
    public init(directory: String) { self.directory = directory }

    /// The record file of stage `name`.
    public func path(_ name: String) -> String { directory + "/" + name + ".json" }

    /// The record of stage `name`, if any.
    public func record(_ name: String) -> StageRecord? { StageRecord.read(path(name)) }

    /// The record of stage `name` when it finished with exactly these inputs.
    public func finished(_ name: String, _ inputs: InputFingerprint) -> StageRecord? {
        record(name).flatMap { $0.complete && $0.matches(inputs) ? $0 : nil }
    }

    /// What stage `name` produced earlier with these inputs: `load` reads it back from the record or the
    /// stage's files (nil, or a throw: the output is gone or unusable, so the stage must run again).
    public func reuse<T>(_ name: String, _ inputs: InputFingerprint, _ load: (StageRecord) throws -> T?) -> T? {
        guard let r = finished(name, inputs) else { return nil }
        return try? load(r)
    }

    /// Records that stage `name` began on `inputs` (so an interruption leaves a record to continue from,
    /// never a stale finished one) and says how it starts.
    @discardableResult
    public func begin(_ name: String, _ inputs: InputFingerprint) throws -> Start {
        let start: Start = record(name).map { $0.matches(inputs) ? .continuing : .replacing } ?? .fresh
        try makeDirectory()
        try StageRecord.write(inputs, complete: false, result: nil, to: path(name))
        return start
    }

    /// Records that stage `name` finished on `inputs`, with what it produced.
    public func finish(_ name: String, _ inputs: InputFingerprint, result: [UInt8]? = nil) throws {
        try makeDirectory()
        try StageRecord.write(inputs, complete: true, result: result, to: path(name))
    }

    /// Records what stage `name` reached on `inputs` without finishing (a run the time budget stopped).
    public func pause(_ name: String, _ inputs: InputFingerprint, result: [UInt8]? = nil) throws {
        try makeDirectory()
        try StageRecord.write(inputs, complete: false, result: result, to: path(name))
    }

    /// Forgets stage `name`.
    public func clear(_ name: String) { try? FileManager.default.removeItem(atPath: path(name)) }

    /// Stage `name` from start to record: its earlier output when it finished with these inputs (`reuse`),
    /// else `body` (told how it starts), recorded as finished when it returns.
    public func run<T>(
        _ name: String, inputs: InputFingerprint, reuse load: (StageRecord) throws -> T?,
        body: (Start) throws -> T
    ) throws -> (value: T, status: StageStatus) {
        if let value = reuse(name, inputs, load) { return (value, .done) }
        let start = try begin(name, inputs)
        let value = try body(start)
        try finish(name, inputs)
        return (value, .ran)
    }

    private func makeDirectory() throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw RoundError("\(directory): cannot create the directory: \(error.localizedDescription)")
        }
    }
}
