import Checkpoint
import Format
import Foundation
import Models
import Support
import Train

/// What a checkpoint records besides the weights: enough to continue the run exactly.
public struct RunState: Sendable, Equatable, Codable {
    /// Optimizer steps completed.
    public var step: Int
    /// Steps the run was planned for.
    public var totalSteps: Int
    /// Where the data loader stands (with the run's seed, the whole data and random state: the order is a
    /// pure function of seed and epoch, and nothing else draws random numbers during training).
    public var position: LoaderPosition
    /// Seed of the data order.
    public var seed: UInt64
    /// AdamW step counts of the policy and value optimizers.
    public var policyOptimizerStep: Int, valueOptimizerStep: Int
    /// Wall seconds and tokens trained so far.
    public var elapsedSeconds: Double, tokens: Int
}

/// A run directory that cannot be used: its files are unreadable, malformed, or belong to another run.
public struct RunDirectoryError: Error, CustomStringConvertible {
    /// One line naming the file (or directory) and what is wrong.
    public let description: String
    /// An error with its message.
    public init(_ description: String) { self.description = description }
}

/// The files of one run: config, data record, metrics, checkpoints (each written to a temporary name and
/// renamed), and the `latest` / `policy` / `value` links.
struct RunDirectory {
    let path: String
    var checkpoints: String { path + "/checkpoints" }
    var configFile: String { path + "/config.json" }
    var metricsFile: String { path + "/metrics.jsonl" }
    var latestLink: String { path + "/latest" }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        e.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return Array(try e.encode(value)) + [10]
    }

    /// Reads a file `encode` wrote: syntax errors with their position, structure errors with the field.
    static func decode<T: Decodable>(_ type: T.Type, file: String) throws -> T {
        let data: Data
        do { data = try readFile(file) } catch { throw RunDirectoryError(error.description) }
        // As `encode` writes it: snake_case keys, non-finite numbers as strings.
        let options = JSONValueDecoder.Options(convertFromSnakeCase: true, nonFiniteStrings: ("inf", "-inf", "nan"))
        do {
            return try StrictJSON.decode(T.self, from: data, file: file, options: options)
        } catch let e as JSONSyntaxError {
            throw RunDirectoryError(e.description)
        } catch let e as JSONFieldError {
            throw RunDirectoryError("\(e.description) (not a valid \(T.self))")
        }
    }

    func write<T: Encodable>(_ value: T, to name: String) throws {
        try writeFileAtomically(try RunDirectory.encode(value), to: path + "/" + name)
    }

    /// The checkpoint directory `latest` points at, if any.
    func latestCheckpoint() -> String? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: latestLink) else { return nil }
        let full = target.hasPrefix("/") ? target : path + "/" + target
        return FileManager.default.fileExists(atPath: full + "/state.json") ? full : nil
    }

    /// Points `link` (relative to the run) at `target` (relative to the run) by renaming a fresh symlink over it.
    func relink(_ link: String, to target: String) throws {
        let full = path + "/" + link, tmp = full + ".tmp-\(getpid())"
        unlink(tmp)
        guard symlink(target, tmp) == 0, rename(tmp, full) == 0 else {
            throw RunDirectoryError("\(full): cannot update the link to \(target): \(String(cString: strerror(errno)))")
        }
        syncDirectory(path)  // the link's new target survives a power loss
    }

    /// Writes checkpoint `step` (policy, value, optimizer moments, state) under a temporary name, renames it
    /// into place, moves `latest` to it and prunes all but the newest `keep` besides it.
    func saveCheckpoint(
        step: Int, policy: TransformerModel, value: TransformerModel?, policyOptimizer: AdamW,
        valueOptimizer: AdamW?, state: RunState, tokenizerFiles: [(name: String, bytes: [UInt8])], keep: Int
    ) throws -> String {
        let fm = FileManager.default
        let name = String(format: "step-%08d", step)
        let final = checkpoints + "/" + name, tmp = final + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        do { try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true) } catch {
            throw RunDirectoryError("\(tmp): cannot create: \(error.localizedDescription)")
        }
        // A LoRA network is saved as its PEFT adapter (the frozen base is INIT).
        func save(_ m: TransformerModel, _ name: String) throws {
            if let a = m.adapters {
                try PEFTAdapter.write(a, family: m.config.family, to: tmp + "/" + name)
            } else {
                try ModelCheckpoint.save(m, directory: tmp + "/" + name)
            }
        }
        try save(policy, "policy")
        for f in tokenizerFiles { try writeFileAtomically(f.bytes, to: tmp + "/policy/" + f.name) }
        if let value { try save(value, "value") }
        var records = [
            SafeTensorsRecord(name: "policy.m", shape: [policyOptimizer.m.count], values: policyOptimizer.m.toArray()),
            SafeTensorsRecord(name: "policy.v", shape: [policyOptimizer.v.count], values: policyOptimizer.v.toArray()),
        ]
        if let valueOptimizer {
            records += [
                SafeTensorsRecord(name: "value.m", shape: [valueOptimizer.m.count], values: valueOptimizer.m.toArray()),
                SafeTensorsRecord(name: "value.v", shape: [valueOptimizer.v.count], values: valueOptimizer.v.toArray()),
            ]
        }
        try writeSafeTensors(records, to: tmp + "/optimizer.safetensors", metadata: ["format": "oreo.adamw"])
        try writeFileAtomically(try RunDirectory.encode(state), to: tmp + "/state.json")
        if fm.fileExists(atPath: final) { try? fm.removeItem(atPath: final) }
        // Every file and directory of the checkpoint reaches the disk before its name does, and the name
        // before `latest` points at it: after a power loss a step-N that exists is complete.
        try renameDurably(tmp, to: final)
        try relink("latest", to: "checkpoints/" + name)
        prune(keep: keep, current: name)
        return final
    }

    /// Deletes leftovers of interrupted writes and every checkpoint but `current` and the newest `keep` others
    /// (`keep_checkpoints` counts the checkpoints kept besides the newest, as its help says).
    func prune(keep: Int, current: String) {
        let fm = FileManager.default
        let items = ((try? fm.contentsOfDirectory(atPath: checkpoints)) ?? []).sorted()
        for f in items where f.contains(".tmp-") { try? fm.removeItem(atPath: checkpoints + "/" + f) }
        let done = items.filter { $0.hasPrefix("step-") && !$0.contains(".tmp-") && $0 != current }
        for f in done.dropLast(max(0, keep)) { try? fm.removeItem(atPath: checkpoints + "/" + f) }
    }

    /// Restores the optimizer moments and step counts written by `saveCheckpoint`.
    static func loadOptimizer(_ checkpoint: String, policy: AdamW, value: AdamW?, state: RunState) throws {
        let file = try SafeTensorsFile(path: checkpoint + "/optimizer.safetensors")
        func restore(_ opt: AdamW, _ prefix: String) throws {
            let m = try file.floats(prefix + ".m"), v = try file.floats(prefix + ".v")
            guard m.count == opt.m.count, v.count == opt.v.count else {
                throw RunDirectoryError(
                    "\(file.path): \(prefix) moments hold \(m.count) values, the model has \(opt.m.count) parameters")
            }
            try opt.m.copyIn(m)
            try opt.v.copyIn(v)
        }
        try restore(policy, "policy")
        policy.restore(step: state.policyOptimizerStep)
        if let value {
            try restore(value, "value")
            value.restore(step: state.valueOptimizerStep)
        }
    }

    /// Keeps the first `steps` lines of metrics.jsonl (a resumed run rewrites the lines after its checkpoint).
    func truncateMetrics(toSteps steps: Int) throws {
        guard let data = FileManager.default.contents(atPath: metricsFile) else { return }
        var kept: [UInt8] = []
        var lines = 0
        for line in data.split(separator: 10, omittingEmptySubsequences: true) where lines < steps {
            kept += line + [10]
            lines += 1
        }
        try writeFileAtomically(kept, to: metricsFile)
    }
}

/// Differences between two encodable values as "key: a -> b" lines (nested keys joined with dots).
func differences<T: Encodable>(_ a: T, _ b: T) throws -> [String] {
    func flat(_ v: T) throws -> [String: String] {
        let obj = try JSONSerialization.jsonObject(with: Data(try RunDirectory.encode(v)))
        var out: [String: String] = [:]
        func walk(_ x: Any, _ prefix: String) {
            if let d = x as? [String: Any] {
                for (k, v) in d { walk(v, prefix.isEmpty ? k : prefix + "." + k) }
            } else {
                out[prefix] = "\(x)"
            }
        }
        walk(obj, "")
        return out
    }
    let fa = try flat(a), fb = try flat(b)
    return Set(fa.keys).union(fb.keys).sorted().compactMap { k in
        fa[k] == fb[k] ? nil : "\(k): \(fa[k] ?? "-") -> \(fb[k] ?? "-")"
    }
}
