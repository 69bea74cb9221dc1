import Foundation
import Support

/// The tokenizer a dataset was made with.
public struct TokenizerInfo: Codable, Sendable, Equatable {
    /// Stable fingerprint of the tokenizer (checked against the model's at training time).
    public var fingerprint: String
    /// Where it came from (a path or a name), for people.
    public var source: String
    /// Creates tokenizer info.
    public init(fingerprint: String, source: String) {
        self.fingerprint = fingerprint
        self.source = source
    }
}

/// A sidecar column file of one shard.
public struct SidecarEntry: Codable, Sendable, Equatable {
    /// Column name without the `token.` prefix.
    public var column: String
    /// File name in the dataset directory.
    public var file: String
    /// File length.
    public var bytes: UInt64
    /// XXH3-64 of the file, 16 hex digits.
    public var xxh3: String
}

/// One shard as listed in the manifest.
public struct ShardEntry: Codable, Sendable, Equatable {
    /// File name in the dataset directory.
    public var file: String
    /// Counts.
    public var trajectories: UInt64, steps: UInt64, tokens: UInt64
    /// File length.
    public var bytes: UInt64
    /// XXH3-64 of the file, 16 hex digits.
    public var xxh3: String
    /// Columns added after the shard was written.
    public var sidecars: [SidecarEntry]
}

/// Dataset totals.
public struct DatasetCounts: Codable, Sendable, Equatable {
    /// Totals over all shards.
    public var trajectories: UInt64, steps: UInt64, tokens: UInt64
}

/// `manifest.json`: what a dataset directory holds (schema: `schemas/manifest.schema.json`).
public struct Manifest: Codable, Sendable, Equatable {
    /// Always "oreo.dataset".
    public var format: String = "oreo.dataset"
    /// Format version.
    public var version: Int = Int(formatVersion)
    /// False while a writer is still adding shards; readers refuse incomplete datasets by default.
    public var complete: Bool
    /// "u16" or "u32".
    public var tokenDType: String
    /// Vocabulary size.
    public var vocabSize: Int
    /// The tokenizer that produced the ids, when known.
    public var tokenizer: TokenizerInfo?
    /// Block compression the shards were written with ("raw", "zstd-3", ...).
    public var compression: String
    /// Optional per-token f32 columns every shard has.
    public var tokenColumns: [String]
    /// Totals.
    public var counts: DatasetCounts
    /// Shards in order (decoded one at a time from the file when the manifest was read).
    public var shards: ManifestShards
    /// What a trainer plans with: the sum of the shards' statistics, counted as each was closed (one value per
    /// dataset, so a manifest of many shards stays small). nil in manifests written before statistics existed.
    public var stats: ShardStats?
    /// Writer name and version.
    public var createdBy: String
    /// Free-form string properties (ingest options and statistics).
    public var properties: [String: String]

    enum CodingKeys: String, CodingKey {
        case format, version, complete, tokenizer, compression, counts, shards, properties, stats
        case tokenDType = "token_dtype", vocabSize = "vocab_size", tokenColumns = "token_columns"
        case createdBy = "created_by"
    }

    /// The manifest's file name inside a dataset directory.
    public static let fileName = "manifest.json"

    /// Checks everything that can be checked without opening the shards; `path` names the file in errors.
    public func validate(path: String) throws {
        func bad(_ reason: String) -> FormatError { FormatError(.manifest, path: path, reason) }
        guard format == "oreo.dataset" else { throw bad("format is '\(format)', expected 'oreo.dataset'") }
        guard version == Int(formatVersion) else { throw bad("version \(version), this build reads \(formatVersion)") }
        guard vocabSize > 0, vocabSize <= Int(UInt32.max) else { throw bad("vocab_size \(vocabSize) out of range") }
        guard let dtype = DType(name: tokenDType), dtype == DType.forVocabulary(vocabSize) else {
            throw bad("token_dtype '\(tokenDType)' does not match vocab_size \(vocabSize)")
        }
        guard Compression(parsing: compression) != nil else { throw bad("unknown compression '\(compression)'") }
        guard Set(tokenColumns).count == tokenColumns.count else { throw bad("token_columns has duplicates") }
        // Names twice: 8-byte hashes sorted, so a list of many shards costs little; a shared hash is looked at
        // closely only then.
        var nameHashes: [UInt64] = []
        nameHashes.reserveCapacity(shards.count)
        var totals = DatasetCounts(trajectories: 0, steps: 0, tokens: 0)
        for i in shards.indices {
            let s = try shards.checkedEntry(i)
            for f in [s.file] + s.sidecars.map(\.file) {
                guard Manifest.isPlainFileName(f) else {
                    throw bad("shard \(i): file name '\(f)' is not a plain file name")
                }
                nameHashes.append(FNV1a.hash(f))
            }
            for x in [s.xxh3] + s.sidecars.map(\.xxh3) where UInt64(x, radix: 16) == nil || x.count != 16 {
                throw bad("shard \(i): checksum '\(x)' is not 16 hex digits")
            }
            for c in s.sidecars.map(\.column) where !tokenColumns.contains(c) {
                throw bad("shard \(i): sidecar column '\(c)' is not in token_columns")
            }
            totals.trajectories += s.trajectories
            totals.steps += s.steps
            totals.tokens += s.tokens
        }
        nameHashes.sort()
        if zip(nameHashes, nameHashes.dropFirst()).contains(where: ==) {
            var names = Set<String>()
            for s in shards {
                for f in [s.file] + s.sidecars.map(\.file) where !names.insert(f).inserted {
                    throw bad("file '\(f)' is listed twice")
                }
            }
        }
        guard totals == counts else {
            throw bad(
                "counts say \(counts.trajectories)/\(counts.steps)/\(counts.tokens) trajectories/steps/tokens, shards add up to \(totals.trajectories)/\(totals.steps)/\(totals.tokens)"
            )
        }
        if let st = stats {
            try st.validate(path: path)
            guard st.trajectories == counts.trajectories, st.tokens == counts.tokens else {
                throw bad(
                    "statistics count \(st.trajectories)/\(st.tokens) trajectories/tokens, the counts \(counts.trajectories)/\(counts.tokens)"
                )
            }
        }
    }

    static func isPlainFileName(_ f: String) -> Bool {
        !f.isEmpty && f.utf8.count <= 255 && !f.contains("/") && f != "." && f != ".." && !f.contains("\0")
    }

    /// Reads and validates `<directory>/<fileName>` (by default `manifest.json`).
    public static func read(directory: String, fileName: String = Manifest.fileName) throws -> Manifest {
        let path = directory + "/" + fileName
        let file = try MappedFile(path: path)
        guard file.bytes.count <= 256 << 20 else { throw FormatError(.manifest, path: path, "manifest over 256 MiB") }
        // Strict JSON (syntax errors, duplicate keys, NaN, ... with their position), with the shard list checked
        // but left in the mapping: each entry is decoded when used.
        var m: Manifest
        do {
            let (value, starts) = try StrictJSON.parse(file.bytes, file: path, deferring: CodingKeys.shards.rawValue)
            m = try JSONValueDecoder().decode(Manifest.self, from: value, file: path)
            if let starts { m.shards = ManifestShards(mapped: file, starts: starts) }
            try m.validate(path: path)
        } catch let error as JSONSyntaxError {
            throw FormatError(
                .manifest, path: path, offset: UInt64(error.offset),
                "not valid JSON (line \(error.line), column \(error.column)): \(error.reason)")
        } catch let error as JSONFieldError {
            throw FormatError(
                .manifest, path: path,
                error.reason == "missing"
                    ? "missing field '\(error.field)'" : "wrong type at '\(error.field)': \(error.reason)")
        }
        return m
    }

    /// Writes `<directory>/<fileName>` atomically (temporary name, fsync, rename).
    public func write(directory: String, fileName: String = Manifest.fileName) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try enc.encode(self)
        try writeFileAtomically(Array(data) + [10], to: directory + "/" + fileName)
    }
}
