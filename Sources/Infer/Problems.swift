import Checkpoint
import Format
import Foundation
import Support
import Train

/// One prompt of a prompts / evaluation file.
public struct Problem: Sendable, Equatable {
    /// The id: the line's "id", else its 1-based line number.
    public var id: String
    /// The prompt text ("prompt", or "question" as in GSM8K's files).
    public var prompt: String
    /// The reference answer, if the line has one (numbers become their JSON text).
    public var answer: String?
    /// 1-based line number in the file.
    public var line: Int

    /// A problem.
    public init(id: String, prompt: String, answer: String?, line: Int) {
        self.id = id
        self.prompt = prompt
        self.answer = answer
        self.line = line
    }
}

/// Reads prompt files: JSON Lines, one object per line with "prompt" (or "question"), optional "answer"
/// (string or number) and optional "id" (string or integer). Blank lines are skipped.
public enum ProblemFile {
    /// Every problem of `path`; a malformed line is an error naming the file, line and reason.
    public static func read(_ path: String) throws -> [Problem] {
        let data: Data
        do { data = try readFile(path) } catch { throw InferError.invalid(error.description) }
        var out: [Problem] = []
        var seen = Set<String>()
        var lineNo = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            let bytes = raw.last == UInt8(ascii: "\r") ? raw.dropLast() : raw
            if bytes.allSatisfy({ $0 == 32 || $0 == 9 }) { continue }
            func fail(_ why: String) -> InferError { .badLine(file: path, line: lineNo, reason: why) }
            let value: JSONValue
            do { value = try StrictJSON.parse(Array(bytes), file: path) } catch {
                throw fail("not valid JSON: at column \(error.column): \(error.reason)")
            }
            guard case .object = value else { throw fail("not a JSON object") }
            func member(_ k: String) -> JSONValue? { value[k] }
            guard case .string(let prompt)? = member("prompt") ?? member("question") else {
                throw fail("needs a string \"prompt\" (or \"question\")")
            }
            var answer: String?
            switch member("answer") {
            case .string(let a)?: answer = a
            case .number(let a)?: answer = a.text
            case nil, .null?: break
            default: throw fail("\"answer\" must be a string or a number")
            }
            var id = String(lineNo)
            switch member("id") {
            case .string(let v)?: id = v
            case .number(let v)? where v.int != nil: id = v.text
            case nil: break
            default: throw fail("\"id\" must be a string or an integer")
            }
            guard seen.insert(id).inserted else { throw fail("duplicate id \"\(id)\"") }
            out.append(Problem(id: id, prompt: prompt, answer: answer, line: lineNo))
        }
        return out
    }
}

/// JSON Lines output written to `PATH.partial` as records complete (flushed per batch), so an interrupted
/// job resumes after its last complete line; `finish()` renames it to PATH.
public final class ResumableJSONL {
    /// The final path.
    public let path: String
    /// Where lines go until the job completes.
    public var partialPath: String { path + ".partial" }
    private let handle: FileHandle
    /// The complete lines already in the partial file when it was opened (parsed), for resuming.
    public let existing: [[String: Any]]

    /// Opens (or, with `overwrite`, restarts) the partial output of `path`, cutting an incomplete last line.
    public init(path: String, overwrite: Bool) throws {
        self.path = path
        let fm = FileManager.default
        let partial = path + ".partial"
        if overwrite { try? fm.removeItem(atPath: partial) }
        var lines: [[String: Any]] = []
        var keep = 0
        if let d = fm.contents(atPath: partial) {
            var start = 0
            let bytes = [UInt8](d)
            for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(bytes[start..<i])) as? [String: Any] else {
                    break
                }
                lines.append(o)
                start = i + 1
                keep = start
            }
        } else {
            guard fm.createFile(atPath: partial, contents: nil) else {
                throw InferError.invalid("\(partial): cannot create")
            }
        }
        existing = lines
        guard let h = FileHandle(forUpdatingAtPath: partial) else {
            throw InferError.invalid("\(partial): cannot open")
        }
        do {
            try h.truncate(atOffset: UInt64(keep))
            try h.seekToEnd()
        } catch { throw InferError.invalid("\(partial): \(error.localizedDescription)") }
        handle = h
    }

    /// Replaces the partial file's content with `records` (resuming drops lines it cannot use).
    public func rewrite(keeping records: [[String: Any]]) throws {
        do {
            try handle.truncate(atOffset: 0)
            try handle.seek(toOffset: 0)
        } catch { throw InferError.invalid("\(partialPath): \(error.localizedDescription)") }
        try append(records)
    }

    /// Appends records as JSON lines (keys sorted) and flushes them to disk.
    public func append(_ records: [[String: Any]]) throws {
        try appendEncoded(try Self.encode(records, path: partialPath))
    }

    /// Records as the JSON lines `append` writes (keys sorted); `path` names the output in the error.
    public static func encode(_ records: [[String: Any]], path: String) throws -> [UInt8] {
        var d = Data()
        for r in records {
            // JSONSerialization's own refusal reads "Error Domain=NSCocoaErrorDomain Code=3840 ...": name the field.
            if let key = nonFiniteField(r) {
                throw InferError.invalid(
                    "\(path): field \"\(key)\" of a record is not a finite number (NaN or infinity); JSON cannot hold it"
                )
            }
            d.append(try JSONSerialization.data(withJSONObject: r, options: [.sortedKeys, .withoutEscapingSlashes]))
            d.append(UInt8(ascii: "\n"))
        }
        return [UInt8](d)
    }

    /// Appends lines `encode` made and flushes them to disk.
    public func appendEncoded(_ bytes: [UInt8]) throws {
        do {
            try handle.write(contentsOf: Data(bytes))
            try handle.synchronize()
        } catch { throw InferError.invalid("\(partialPath): write failed: \(error.localizedDescription)") }
    }

    /// Closes the partial file and renames it to the final path.
    public func finish() throws {
        try? handle.close()
        let fm = FileManager.default
        try? fm.removeItem(atPath: path)
        do { try fm.moveItem(atPath: partialPath, toPath: path) } catch {
            throw InferError.invalid("cannot rename \(partialPath) to \(path): \(error.localizedDescription)")
        }
    }
}

/// The dotted key of the first NaN or infinite number in a record, if any.
func nonFiniteField(_ value: Any, _ prefix: String = "") -> String? {
    switch value {
    case let d as Double: return d.isFinite ? nil : prefix
    case let f as Float: return f.isFinite ? nil : prefix
    case let o as [String: Any]:
        for (k, v) in o.sorted(by: { $0.key < $1.key }) {
            if let bad = nonFiniteField(v, prefix.isEmpty ? k : prefix + "." + k) { return bad }
        }
        return nil
    case let a as [Any]:
        for (i, v) in a.enumerated() { if let bad = nonFiniteField(v, prefix + "[\(i)]") { return bad } }
        return nil
    default: return nil
    }
}
