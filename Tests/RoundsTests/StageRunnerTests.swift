import Foundation
import Format
import Rounds
import Support
import TestSupport
import Testing

/// The stage runner: what it records, when it skips a stage, how a stage starts again, and the records
/// of runs from before it that it still reads.
@Suite struct StageRunnerTests {
    static func tempDir() -> String {
        makeTemporaryDirectory("rounds")
    }

    @Test func aFinishedStageIsSkippedOnlyForTheSameInputs() throws {
        let dir = StageRunnerTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = StageRunner(directory: dir + "/stages")
        let inputs = InputFingerprint([("model", "abc"), ("n", "3")])
        var runs = 0
        let first = try runner.run("sample", inputs: inputs, reuse: { _ in "kept" }) { start in
            #expect(start == .fresh)
            runs += 1
            return "made"
        }
        #expect(first.value == "made" && first.status == .ran && runs == 1)
        let again = try runner.run("sample", inputs: inputs, reuse: { _ in "kept" }) { _ in
            runs += 1
            return "made"
        }
        #expect(again.value == "kept" && again.status == .done && runs == 1)
        // Output gone (reuse finds nothing): the stage runs again, continuing its own inputs' run.
        let lost = try runner.run("sample", inputs: inputs, reuse: { _ in nil as String? }) { start in
            #expect(start == .continuing)
            return "remade"
        }
        #expect(lost.value == "remade" && lost.status == .ran)
        // Other inputs: the earlier output is stale.
        let other = InputFingerprint([("model", "abc"), ("n", "4")])
        #expect(runner.finished("sample", other) == nil && runner.finished("sample", inputs) != nil)
        #expect(try runner.begin("sample", other) == .replacing)
        // Begun but not finished: nothing to skip, and the next start continues it.
        #expect(runner.finished("sample", other) == nil)
        #expect(try runner.begin("sample", other) == .continuing)
    }

    @Test func aPausedStageKeepsItsResult() throws {
        let dir = StageRunnerTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = StageRunner(directory: dir)
        let inputs = InputFingerprint([("config", "{\"lr\": 0.1}")])
        try runner.pause("stage", inputs, result: Array(#"{"steps": 4}"#.utf8))
        let record = try #require(runner.record("stage"))
        #expect(!record.complete && record.matches(inputs))
        #expect(record.decode([String: Int].self) == ["steps": 4])
        #expect(runner.finished("stage", inputs) == nil)
        // The file says what the stage ran on, for people.
        let text = try String(contentsOfFile: runner.path("stage"), encoding: .utf8)
        #expect(text.contains(#""inputs": {"config": "{\"lr\": 0.1}"}"#) && text.contains(#""complete": false"#))
    }

    @Test func recordsOfEarlierDemoRunsStillCount() throws {
        let dir = StageRunnerTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = StageRunner(directory: dir)
        let inputs = InputFingerprint([("model", "sft@6"), ("samples", "2"), ("temperature", "1")])
        // The demo's first stage records: the inputs object, written when the stage finished.
        try #"{"model": "sft@6", "samples": "2", "temperature": "1"}"#.appending("\n").write(
            toFile: runner.path("sample"), atomically: true, encoding: .utf8)
        #expect(runner.finished("sample", inputs) != nil)
        #expect(
            runner.finished("sample", InputFingerprint([("model", "sft@7"), ("samples", "2"), ("temperature", "1")]))
                == nil)
        // Its trainer's: the identity was the checksum of "key value" lines, as the digest is now.
        let lines = "method SFT\nconfig {}\ninit random\nreference -\ndata 1234"
        let identity = Checksum.hex(Checksum.xxh3(Array(lines.utf8)))
        let train = InputFingerprint([
            ("method", "SFT"), ("config", "{}"), ("init", "random"), ("reference", "-"), ("data", "1234"),
        ])
        #expect(train.digest == identity)
        try #"{"complete":true,"identity":"\#(identity)","model":{"updates":6}}"#.write(
            toFile: runner.path("stage"), atomically: true, encoding: .utf8)
        let record = try #require(runner.finished("stage", train))
        #expect(record.decode([String: Int].self) == ["updates": 6])
    }

    @Test func fingerprintsOfFilesModelsAndTexts() throws {
        let dir = StageRunnerTests.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "abc".write(toFile: dir + "/a.txt", atomically: true, encoding: .utf8)
        try "abc".write(toFile: dir + "/b.txt", atomically: true, encoding: .utf8)
        #expect(InputFingerprint.file(dir + "/a.txt") == InputFingerprint.file(dir + "/b.txt"))
        try "abd".write(toFile: dir + "/b.txt", atomically: true, encoding: .utf8)
        #expect(InputFingerprint.file(dir + "/a.txt") != InputFingerprint.file(dir + "/b.txt"))
        try FileManager.default.createDirectory(atPath: dir + "/model", withIntermediateDirectories: true)
        try "w".write(toFile: dir + "/model/model.safetensors", atomically: true, encoding: .utf8)
        try "x".write(toFile: dir + "/model/config.json", atomically: true, encoding: .utf8)
        #expect(InputFingerprint.model(dir + "/model") == InputFingerprint.file(dir + "/model/model.safetensors"))
        #expect(InputFingerprint.texts(["ab", "c"]) != InputFingerprint.texts(["a", "bc"]))
        #expect(throws: (any Error).self) { try InputFingerprint.dataset(dir + "/none") }
        // Order is part of the fingerprint.
        #expect(
            InputFingerprint([("a", "1"), ("b", "2")]).digest != InputFingerprint([("b", "2"), ("a", "1")]).digest)
    }

    @Test func statusLinesSayHowAStageWent() {
        #expect(StageStatus.ran.line("60 updates") == "60 updates")
        #expect(StageStatus.done.line("run") == "skipped (done): run")
        #expect(StageStatus.leftOut.line("the time budget ran out") == "skipped (budget): the time budget ran out")
        #expect(StageStatus.training(from: 0, at: 60, of: 60) == .ran)
        #expect(
            StageStatus.training(from: 12, at: 60, of: 60).line("60 updates") == "60 updates (continued from step 12)")
        let cut = StageStatus.training(from: 12, at: 30, of: 60)
        #expect(
            cut.unfinished && !StageStatus.training(from: 12, at: 60, of: 60).unfinished
                && StageStatus.leftOut.unfinished)
        #expect(
            cut.line("30 updates")
                == "30 updates (continued from step 12; stopped by the time budget after 30 of 60 updates)")
    }

    @Test func theContinueCommandRepeatsTheArgumentsWithoutOverwrite() {
        let c = ContinueCommand(commandLine: [
            "/usr/bin/oreo", "demo", "--out", "my runs/a", "--overwrite", "--lr", "OREO=3e-4", "it's",
        ])
        #expect(c.line == #"oreo demo --out 'my runs/a' --lr OREO=3e-4 'it'\''s'"#)
    }
}
