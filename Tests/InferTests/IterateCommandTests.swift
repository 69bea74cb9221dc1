import Foundation
import Format
import Infer
import TestSupport
import Testing

/// `oreo iterate` end to end on the tiny model: every stage's output, a rerun that keeps the finished stages,
/// a rerun with other settings refused, and the round's policy usable as the next round's model.
@Suite struct IterateCommandTests {
    @Test func oneRoundThenTheNext() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("iterate")
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: dir) }
        let prompts = try CommandTests.prompts(dir, count: 6)
        let round = dir + "/round-1"
        let args = ["iterate", "--model", model, "--prompts", prompts, "--out", round, "--n", "3",
                    "--max-new-tokens", "10", "--method", "dpo", "--learning-rate", "1e-3", "--max-steps", "3",
                    "--tokens-per-micro-batch", "512"]
        let (p, log) = try CommandTests.run(args)
        // DPO needs prompts with both a correct and a wrong sample; an untrained tiny model may have none,
        // which the trainer refuses before training: then the round must stop there with that reason.
        let dataset = try Dataset(directory: round + "/data")
        #expect(dataset.trajectoryCount == 18, "\(log)")
        #expect(try CommandTests.lines(round + "/samples.jsonl").allSatisfy { $0.contains("\"response_ids\"") })
        #expect(dataset.manifest.tokenColumns.contains("ref_logprob"), "the score stage did not run: \(log)")
        if p.terminationStatus != 0 {
            #expect(log.contains("pairs"), "iterate failed for another reason: \(log)")
            return
        }
        #expect(log.contains("[4/4 train] dpo: 3 steps"), "\(log)")
        #expect(FileManager.default.fileExists(atPath: round + "/run/policy/model.safetensors"))

        // Rerun: every stage is reused.
        let (p2, log2) = try CommandTests.run(args)
        #expect(p2.terminationStatus == 0, "\(log2)")
        for stage in ["[1/4 sample] done earlier", "[2/4 ingest] done earlier", "[3/4 score] done earlier", "[4/4 train] done earlier"] {
            #expect(log2.contains(stage), "missing '\(stage)' in \(log2)")
        }
        // Other settings for the same round are refused.
        var changed = args
        changed[changed.firstIndex(of: "--n")! + 1] = "4"
        let (p3, log3) = try CommandTests.run(changed)
        #expect(p3.terminationStatus != 0 && log3.contains("--overwrite"), "\(log3)")
    }

    @Test func sftRoundNeedsNoScoreAndChainsIntoTheNext() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("iterate-sft")
        defer { try? FileManager.default.removeItem(atPath: model); try? FileManager.default.removeItem(atPath: dir) }
        let prompts = try CommandTests.prompts(dir, count: 4)
        for (k, from) in [(1, model), (2, dir + "/round-1/run/policy")] {
            let (p, log) = try CommandTests.run(["iterate", "--model", from, "--prompts", prompts, "--out", dir + "/round-\(k)",
                                                 "--n", "2", "--max-new-tokens", "8", "--method", "sft", "--max-steps", "2",
                                                 "--tokens-per-micro-batch", "512", "--tokenizer", model + "/tokenizer.json"])
            #expect(p.terminationStatus == 0, "round \(k): \(log)")
            #expect(log.contains("[3/4 score] not needed"), "\(log)")
            #expect(FileManager.default.fileExists(atPath: dir + "/round-\(k)/run/policy/model.safetensors"), "\(log)")
        }
    }
}
