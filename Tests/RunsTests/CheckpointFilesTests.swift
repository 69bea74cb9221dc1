import Checkpoint
import Format
import Foundation
import Models
import Support
import Testing
import Train
import Runs

/// What a run leaves in checkpoints/: how many, and in which order their bytes and names reach the disk.
@Suite struct CheckpointFilesTests {
    /// A run that checkpoints every step, from a tiny random INIT on the toy task.
    func job(_ root: String, keep: Int, steps: Int) throws -> TrainJob {
        let m = try TransformerModel(config: tinyConfig(), maxTokens: 64)
        m.initializeRandomly(seed: 11)
        try ModelCheckpoint.save(m, directory: root + "/init")
        try writeDataset(toyTask(32, seed: 2), vocab: 16, at: root + "/data")
        var c = TrainConfig()
        c.method = .oreo
        c.maxSteps = steps
        c.loader.tokensPerMicroBatch = 32
        c.learningRate = 1e-3
        c.valueLearningRate = 1e-3
        c.warmupFraction = 0
        c.checkpointEvery = 1
        c.keepCheckpoints = keep
        return try TrainJob(config: c, model: .directory(root + "/init"), data: root + "/data", run: root + "/run")
    }

    /// `keep_checkpoints` K keeps K checkpoints besides the newest, as its help says (0: only the newest).
    @Test(arguments: [0, 1, 2])
    func keepCheckpointsKeepsThatManyBesidesTheNewest(keep: Int) throws {
        let root = temporaryDirectory("keep-\(keep)")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let summary = try job(root, keep: keep, steps: 5).run()
        #expect(summary.steps == 5)
        let kept = try FileManager.default.contentsOfDirectory(atPath: root + "/run/checkpoints").sorted()
        #expect(kept == (5 - keep...5).map { String(format: "step-%08d", $0) }, "keep_checkpoints \(keep): \(kept)")
    }

    /// Every file of a checkpoint is fsynced before the checkpoint's name appears (the rename of its
    /// temporary directory), and the directory holding that name is fsynced after it, before `latest` moves.
    @Test func checkpointFilesAreSyncedBeforeTheirNameAppears() throws {
        let root = temporaryDirectory("durable")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let j = try job(root, keep: 10, steps: 2)
        let (_, all) = try SyncEvents.record { try j.run() }
        // Other tests write files at the same time: keep this run's events.
        let events = all.filter {
            switch $0 {
            case .file(let p), .directory(let p): return p.hasPrefix(root + "/run")
            case .rename(let a, _): return a.hasPrefix(root + "/run")
            }
        }
        let checkpoints = root + "/run/checkpoints"
        for step in 1...2 {
            let final = checkpoints + String(format: "/step-%08d", step)
            let renamed = try #require(
                events.firstIndex {
                    if case .rename(let from, let to) = $0 { return to == final && from.hasPrefix(final + ".tmp-") }
                    return false
                }, "no durable rename of \(final)")
            guard case .rename(let tmp, _) = events[renamed] else { continue }
            let before = events[..<renamed], after = events[(renamed + 1)...]
            // Each file now in the checkpoint, and each directory of it, was synced under the temporary name.
            let fm = FileManager.default
            let entries = try #require(fm.subpaths(atPath: final))
            #expect(
                entries.contains("policy/model.safetensors") && entries.contains("value/model.safetensors")
                    && entries.contains("optimizer.safetensors") && entries.contains("state.json"))
            for e in entries {
                var isDir: ObjCBool = false
                _ = fm.fileExists(atPath: final + "/" + e, isDirectory: &isDir)
                let expected: SyncEvent = isDir.boolValue ? .directory(tmp + "/" + e) : .file(tmp + "/" + e)
                #expect(before.contains(expected), "\(e) of step \(step) was not synced before the rename")
            }
            #expect(before.contains(.directory(tmp)))
            // The rename itself is made durable before anything else happens to the run; then `latest` moves
            // to it and the run directory holding that link is synced.
            #expect(
                Array(after.prefix(2)) == [.directory(checkpoints), .directory(root + "/run")],
                "after the rename of step \(step): \(Array(after.prefix(3)))")
        }
        let latest = try FileManager.default.destinationOfSymbolicLink(atPath: root + "/run/latest")
        #expect(latest == "checkpoints/step-00000002")
    }
}
