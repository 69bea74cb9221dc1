import Foundation
import Testing
import Format

@Suite struct ManifestTests {
    static func dataset(_ dir: TempDir, count: Int = 60) throws -> Manifest {
        let w = try DatasetWriter(
            directory: dir.path, options: ShardOptions(vocabSize: 800, blockBytes: 512),
            shardTokens: 2_000)
        for r in randomTrajectories(seed: 9, count: count, vocab: 800) { try w.append(r) }
        return try w.finish()
    }

    /// Rewrites manifest.json with `edit` applied to its JSON object.
    static func editJSON(_ dir: TempDir, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir.file(Manifest.fileName)
        var obj = try JSONSerialization.jsonObject(with: Data(readBytes(path))) as! [String: Any]
        edit(&obj)
        writeBytes(Array(try JSONSerialization.data(withJSONObject: obj)), path)
    }

    static func openError(_ dir: TempDir) -> FormatError? {
        do {
            _ = try Dataset(directory: dir.path)
            return nil
        } catch { return error as? FormatError }
    }

    @Test func writtenManifestIsConsistent() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let m = try ManifestTests.dataset(dir)
        #expect(m.complete && m.shards.count >= 2)
        #expect(m.tokenDType == "u16" && m.vocabSize == 800)
        let read = try Manifest.read(directory: dir.path)
        #expect(read == m)
        // The shard list decoded entry by entry from the mapping is what a whole-file decoder makes of it.
        let whole = try JSONDecoder().decode(Manifest.self, from: Data(readBytes(dir.file(Manifest.fileName))))
        #expect(Array(read.shards) == Array(whole.shards) && read.shards.count == m.shards.count)
        // Changing an entry of a list read from a file changes that entry only.
        var changed = read
        changed.shards[1].bytes += 1
        #expect(changed.shards[1].bytes == m.shards[1].bytes + 1 && changed.shards[0] == m.shards[0] && read == m)
        #expect(ManifestTests.openError(dir) == nil)
        // The statistics are the sum of the shards', counted as each was written.
        var sum = ShardStats()
        for e in m.shards { sum.add(try ShardStats(shard: Shard(path: dir.path + "/" + e.file))) }
        #expect(m.stats == sum && sum.trajectories == m.counts.trajectories)
    }

    @Test func semanticErrorsAreRefusedWithTheReason() throws {
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("format", { $0["format"] = "something.else" }),
            ("version", { $0["version"] = 99 }),
            ("token_dtype", { $0["token_dtype"] = "u32" }),
            ("vocab_size", { $0["vocab_size"] = 0 }),
            (
                "counts",
                {
                    var c = $0["counts"] as! [String: Any]
                    c["tokens"] = 1
                    $0["counts"] = c
                }
            ),
            (
                "plain file name",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[0]["file"] = "../escape.oreo"
                    $0["shards"] = s
                }
            ),
            (
                "listed twice",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[1]["file"] = s[0]["file"]
                    $0["shards"] = s
                }
            ),
            (
                "16 hex",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[0]["xxh3"] = "xyz"
                    $0["shards"] = s
                }
            ),
            ("missing field 'shards'", { $0.removeValue(forKey: "shards") }),
            (
                "missing field 'shards[1].xxh3'",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[1]["xxh3"] = nil
                    $0["shards"] = s
                }
            ),
            (
                "wrong type at 'shards[0].tokens'",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[0]["tokens"] = "many"
                    $0["shards"] = s
                }
            ),
            ("wrong type", { $0["complete"] = "yes" }),
            ("compression", { $0["compression"] = "lz4" }),
            (
                "statistics count",
                {
                    var st = $0["stats"] as! [String: Any]
                    st["trajectories"] = (st["trajectories"] as! Int) + 1
                    $0["stats"] = st
                }
            ),
        ]
        for (expected, edit) in cases {
            let dir = TempDir()
            defer { dir.cleanup() }
            _ = try ManifestTests.dataset(dir)
            try ManifestTests.editJSON(dir, edit)
            let e = ManifestTests.openError(dir)
            #expect(e?.kind == .manifest, "case \(expected)")
            #expect(e?.description.contains(expected) == true, "case \(expected): \(e?.description ?? "accepted")")
        }
    }

    @Test func manifestAndShardsMustAgree() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        _ = try ManifestTests.dataset(dir)
        let good = readBytes(dir.file(Manifest.fileName))
        let edits: [(String, (inout [String: Any]) -> Void)] = [
            (
                "bytes",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    s[0]["bytes"] = (s[0]["bytes"] as! Int) + 1
                    $0["shards"] = s
                }
            ),
            (
                "trajectories",
                {
                    var s = $0["shards"] as! [[String: Any]]
                    var c = $0["counts"] as! [String: Any]
                    s[0]["trajectories"] = (s[0]["trajectories"] as! Int) + 1
                    // Without statistics (an older manifest), so that the count reaches the shard comparison.
                    $0["stats"] = nil
                    c["trajectories"] = (c["trajectories"] as! Int) + 1
                    $0["shards"] = s
                    $0["counts"] = c
                }
            ),
            ("token columns", { $0["token_columns"] = ["ref"] }),
            ("vocabulary", { $0["vocab_size"] = 900 }),
        ]
        for (expected, edit) in edits {
            writeBytes(good, dir.file(Manifest.fileName))
            try ManifestTests.editJSON(dir, edit)
            let e = ManifestTests.openError(dir)
            #expect(e?.kind == .inconsistent, "case \(expected): \(e?.description ?? "accepted")")
            #expect(e?.description.contains(expected) == true, "case \(expected): \(e?.description ?? "")")
        }
        // A wrong whole-file checksum is found by verify, naming the shard.
        writeBytes(good, dir.file(Manifest.fileName))
        try ManifestTests.editJSON(dir) {
            var s = $0["shards"] as! [[String: Any]]
            s[0]["xxh3"] = "0000000000000000"
            $0["shards"] = s
        }
        let reports = try Dataset(directory: dir.path).verify()
        #expect(reports.filter { $0.error != nil }.count == 1)
        #expect(reports.first { $0.error != nil }!.path.hasSuffix("shard-00000.oreo"))
    }

    @Test func incompleteDatasetIsRefusedUnlessAsked() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let w = try DatasetWriter(directory: dir.path, options: ShardOptions(vocabSize: 800), shardTokens: 500)
        for r in randomTrajectories(seed: 1, count: 50, vocab: 800) { try w.append(r) }
        try w.append(TrajectoryRecord(tokens: [1], promptLength: 1, reward: 0))  // opens a shard left unfinished
        // Not finished: the shards closed so far are listed, the dataset is marked incomplete.
        let e = ManifestTests.openError(dir)
        #expect(e?.description.contains("incomplete") == true)
        let partial = try Dataset(directory: dir.path, allowIncomplete: true)
        #expect(partial.trajectoryCount > 0 && partial.trajectoryCount <= 50)
        #expect(partial.verify().allSatisfy { $0.error == nil })
    }
}
