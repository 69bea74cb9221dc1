import Foundation
import Testing
import Format

/// A writer killed midway (SIGKILL, no chance to clean up) leaves nothing that looks complete.
@Suite struct AtomicWriteTests {
    /// The `oreo` executable built next to the test bundle.
    static var oreoBinary: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("oreo").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return dir.appendingPathComponent("oreo").path
    }

    @Test func killedWriterLeavesNoCompleteLookingOutput() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let out = dir.file("ds")
        // Kill at several moments: before the first shard closes, and between/inside later shards.
        for delay in [0.05, 0.4, 1.0] {
            try? FileManager.default.removeItem(atPath: out)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: AtomicWriteTests.oreoBinary)
            p.arguments = [
                "synth", "--out", out, "--trajectories", "2000000", "--shard-tokens", "300000",
                "--compression", "zstd-1",
            ]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            Thread.sleep(forTimeInterval: delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal, "writer finished before it was killed")

            // Not complete: opening without allowIncomplete fails (no manifest yet, or one saying incomplete).
            #expect(throws: FormatError.self) { try Dataset(directory: out) }
            let files = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
            // A half-written shard never passes as one. A kill between a shard's last write and its rename
            // leaves one whole temporary (its name still marks it unfinished); any other must fail to read.
            var wholeTemporaries: [String] = []
            for f in files where f.contains(".tmp-") {
                if let e = openAndReadAll(out + "/" + f) {
                    #expect(e is FormatError, "\(f): \(e)")
                } else {
                    wholeTemporaries.append(f)
                }
            }
            #expect(wholeTemporaries.count <= 1, "\(wholeTemporaries) all look like valid shards")
            if files.contains(Manifest.fileName) {
                // Whatever the manifest lists is whole and verifies.
                let d = try Dataset(directory: out, allowIncomplete: true)
                #expect(!d.manifest.complete)
                #expect(d.verify().allSatisfy { $0.error == nil })
                // A kill between a shard's rename and the manifest update leaves that one shard whole but
                // unlisted (the next run overwrites it); anything else on disk must be listed.
                let inFlight = String(format: "shard-%05d.oreo", d.manifest.shards.count)
                for f in files where f.hasSuffix(".oreo") && !d.manifest.shards.contains(where: { $0.file == f }) {
                    #expect(f == inFlight, "unlisted shard \(f)")
                    #expect(openAndReadAll(out + "/" + f) == nil)
                }
            }
        }
        // Writing again over the remains completes and cleans up the temporaries.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: AtomicWriteTests.oreoBinary)
        p.arguments = ["synth", "--out", out, "--trajectories", "3000", "--shard-tokens", "300000"]
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        let d = try Dataset(directory: out)
        #expect(d.trajectoryCount == 3000)
        let files = try FileManager.default.contentsOfDirectory(atPath: out)
        #expect(!files.contains { $0.contains(".tmp-") })
    }
}
