import Foundation
import Format
import Infer
import TestSupport
import Rounds
import Testing

/// `oreo iterate` on the tiny model. The command only parses flags and calls `IterateRound`, so most of
/// this runs the round in-process; one test runs the built binary end to end: every stage's output, a
/// rerun that skips the finished stages, a rerun with other settings refused.
@Suite struct IterateCommandTests {
    /// The round's stage lines as the command prints them.
    final class Lines: @unchecked Sendable {
        var lines: [String] = []
        func take(_ e: RoundEvent) {
            if case .finished(let stage, let summary, let status) = e {
                lines.append("\(stage.tag) \(status.line(summary))")
            }
        }
        var text: String { lines.joined(separator: "\n") }
    }

    static func round(
        _ model: String, _ prompts: String, _ out: String, samples: Int, maxNewTokens: Int,
        flags: [String]
    ) throws -> IterateSettings {
        var s = IterateSettings(model: model, prompts: prompts, output: out)
        s.samples = samples
        s.maxNewTokens = maxNewTokens
        s.training = try IterateSettings.training(configFile: nil, flags: flags)
        return s
    }

    @Test func oneRoundThenTheNext() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("iterate")
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let prompts = try CommandTests.prompts(dir, count: 6)
        let round = dir + "/round-1"
        let args = [
            "iterate", "--model", model, "--prompts", prompts, "--out", round, "--n", "3",
            "--max-new-tokens", "10", "--method", "dpo", "--learning-rate", "1e-3", "--max-steps", "3",
            "--tokens-per-micro-batch", "512",
        ]
        let (p, log) = try CommandTests.run(args)
        // DPO needs prompts with both a correct and a wrong sample; an untrained tiny model may have none,
        // which the trainer refuses before training: then the round must stop there with that reason.
        let dataset = try Dataset(directory: round + "/data")
        #expect(dataset.trajectoryCount == 18, "\(log)")
        #expect(try CommandTests.lines(round + "/samples.jsonl").allSatisfy { $0.contains("\"response_ids\"") })
        #expect(dataset.manifest.tokenColumns.contains("ref_logprob"), "the score stage did not run: \(log)")
        let trained = p.terminationStatus == 0
        if trained {
            #expect(log.contains("[4/4 train] dpo: 3 steps"), "\(log)")
            let stageLines = log.split(separator: "\n").filter { $0.hasPrefix("[") && $0.contains("/4 ") }
            #expect(
                stageLines.count == 4 && stageLines.allSatisfy { !$0.contains("skipped") && !$0.contains("continued") },
                "a fresh round reads like one: \(log)")
            #expect(FileManager.default.fileExists(atPath: round + "/run/policy/model.safetensors"))
            #expect(log.contains("next round: oreo iterate --model \(round)/run/policy"), "\(log)")
        } else {
            #expect(log.contains("pairs"), "iterate failed for another reason: \(log)")
        }

        // Rerun: every finished stage is skipped, and says so (a refused DPO run is refused again).
        let (p2, log2) = try CommandTests.run(args)
        #expect(p2.terminationStatus == p.terminationStatus, "\(log2)")
        for stage in ["[1/4 sample] skipped (done)", "[2/4 ingest] skipped (done)", "[3/4 score] skipped (done)"]
            + (trained ? ["[4/4 train] skipped (done)"] : [])
        {
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
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let prompts = try CommandTests.prompts(dir, count: 4)
        for (k, from) in [(1, model), (2, dir + "/round-1/run/policy")] {
            var s = try IterateCommandTests.round(
                from, prompts, dir + "/round-\(k)", samples: 2, maxNewTokens: 8,
                flags: ["--method", "sft", "--max-steps", "2", "--tokens-per-micro-batch", "512"])
            s.tokenizer = model + "/tokenizer.json"
            let lines = Lines()
            let outcome = try IterateRound(settings: s).run(events: lines.take)
            #expect(outcome.statuses[.score] == .notRun)
            #expect(lines.text.contains("[3/4 score] not needed"), "\(lines.text)")
            #expect(!outcome.unfinished && outcome.policy == dir + "/round-\(k)/run/policy")
            #expect(
                FileManager.default.fileExists(atPath: dir + "/round-\(k)/run/policy/model.safetensors"),
                "\(lines.text)")
        }
    }

    @Test func aBudgetCutRoundSaysSoAndTheRerunContinuesIt() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("iterate-budget")
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let prompts = try CommandTests.prompts(dir, count: 4)
        var s = try IterateCommandTests.round(
            model, prompts, dir + "/round", samples: 2, maxNewTokens: 8,
            flags: ["--method", "sft", "--max-steps", "20", "--tokens-per-micro-batch", "256"])
        // Spent after the first session (a tenth of the run): training stops there with a checkpoint.
        s.timeBudget = 1e-6
        let first = Lines()
        let cut = try IterateRound(settings: s).run(events: first.take)
        #expect(cut.unfinished && cut.policy == nil)
        #expect(cut.statuses[.train] == StageStatus(.ran, stoppedAfter: 2, planned: 20))
        #expect(first.text.contains("[4/4 train] sft: 2 steps -> \(dir)/round/run, final loss"), "\(first.text)")
        #expect(first.text.contains("(stopped by the time budget after 2 of 20 updates)"), "\(first.text)")

        // The same round again, unbounded: the finished stages are skipped, training continues from step 2.
        s.timeBudget = nil
        let second = Lines()
        let rest = try IterateRound(settings: s).run(events: second.take)
        #expect(!rest.unfinished)
        #expect(rest.statuses[.sample] == .done && rest.statuses[.ingest] == .done)
        #expect(rest.statuses[.train] == StageStatus(.ran, continuedFrom: 2))
        #expect(
            second.text.contains("[1/4 sample] skipped (done)") && second.text.contains("[2/4 ingest] skipped (done)"),
            "\(second.text)")
        #expect(
            second.text.contains("[4/4 train] sft: 20 steps") && second.text.contains("(continued from step 2)"),
            "\(second.text)")
        // Every step was trained once.
        let steps = try CommandTests.lines(dir + "/round/run/metrics.jsonl").compactMap { line in
            (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["step"] as? Int
        }
        #expect(steps == Array(1...20))

        // A third time: nothing left to do.
        let third = Lines()
        let done = try IterateRound(settings: s).run(events: third.take)
        #expect(done.statuses.values.allSatisfy { $0 == .done || $0 == .notRun }, "\(third.text)")
        #expect(third.text.contains("[4/4 train] skipped (done)"), "\(third.text)")

        // A round from before stage records (iterate.json only): its finished stages stand.
        try FileManager.default.removeItem(atPath: dir + "/round/stages")
        let fourth = Lines()
        let adopted = try IterateRound(settings: s).run(events: fourth.take)
        #expect(
            adopted.statuses.values.allSatisfy { $0 == .done || $0 == .notRun } && !adopted.unfinished, "\(fourth.text)"
        )
    }
}
