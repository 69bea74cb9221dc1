import Foundation
import Format
import Ingest
import Testing
import Demo
import Tokenizers

/// `oreo demo` end to end at a miniature size (a one-layer model, a few steps, a handful of problems: seconds),
/// run as the built binary: every stage runs, the outputs parse, every number in results.json is recounted
/// from the per-answer files, and a second run reuses what did not change.
@Suite(.serialized) struct DemoEndToEndTests {
    /// The miniature settings.
    static func args(_ dir: String, _ extra: [String] = []) -> [String] {
        [
            "demo", "--out", dir, "--seeds", "4,5", "--train", "40", "--validation", "8", "--test", "10", "--samples",
            "2",
            "--beam-widths", "2", "--sft-steps", "6", "--layers", "1", "--hidden", "16", "--heads", "2", "--mlp", "32",
            "--batch-tokens", "600", "--max-tokens", "24", "--sft-lr", "3e-2", "--threads", "2",
            "--logprob-search", "sft-and-value",
        ] + extra
    }

    static func json(_ path: String) throws -> [String: Any] {
        let data = try #require(FileManager.default.contents(atPath: path), "\(path) missing")
        return try #require(
            try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path) is not a JSON object")
    }

    static func lines(_ path: String) throws -> [[String: Any]] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test func miniatureDemoRunsEveryStageAndItsNumbersAddUp() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, out, err) = try DemoCommandTests.oreo(DemoEndToEndTests.args(dir))
        #expect(status == 0, "\(err)")
        let printed = out.split(separator: "\n").map(String.init)
        for seed in [4, 5] {
            for stage in DemoStage.allCases where stage != .tokenizer && stage != .report {
                #expect(
                    printed.contains { $0.hasPrefix("[seed \(seed)] \(stage.rawValue): ") && !$0.contains("skipped") },
                    "stage \(stage.rawValue) of seed \(seed) did not run:\n\(out)")
            }
        }
        #expect(printed.contains { $0.hasPrefix("[report]: ") })

        // results.json parses and every evaluation is the count of verifier-correct lines in its answers file.
        let results = try DemoEndToEndTests.json(dir + "/results.json")
        let evaluations = try #require(results["evaluations"] as? [[String: Any]])
        // Trained methods x greedy, SFT x log-prob beam, OREO and DQO x (value, log-prob) beam at one width; RFT
        // needs a correct sample and DPO a problem with both kinds, which a miniature model may not give.
        let samples = try #require(results["samples"] as? [[String: Any]])
        #expect(samples.count == 2 && samples.allSatisfy { ($0["train"] as? [String: Any])?["samples"] as? Int == 80 })
        let notes = try #require(results["notes"] as? [String])
        var expected = 0
        for x in samples {
            let train = try #require(x["train"] as? [String: Any])
            let seed = try #require(x["seed"] as? Int)
            let noRFT = train["correct"] as? Int == 0, noDPO = train["mixed"] as? Int == 0
            #expect(notes.contains { $0.hasPrefix("seed \(seed): RFT not trained") } == noRFT)
            #expect(notes.contains { $0.hasPrefix("seed \(seed): DPO not trained") } == noDPO)
            expected += 6 - (noRFT ? 1 : 0) - (noDPO ? 1 : 0) + 5
        }
        #expect(evaluations.count == expected)
        let tokenizer = try Tokenizer.load(path: dir + "/tokenizer.json")
        let verifier = TaskVerifier(tokenizer: tokenizer)
        for e in evaluations {
            let file = try #require(e["answers"] as? String)
            #expect(!file.hasPrefix("/"), "results.json names an absolute path: \(file)")
            let answers = try DemoEndToEndTests.lines(dir + "/" + file)
            let seed = try #require(e["seed"] as? Int)
            let prompts = try TaskFiles.readPrompts(dir + "/seed-\(seed)/data/prompts-test.jsonl")
            #expect(answers.count == 10 && e["total"] as? Int == 10)
            #expect(answers.map { $0["id"] as? String } == prompts.map(\.id))
            var correct = 0, tokens = 0
            for (a, p) in zip(answers, prompts) {
                let ids = try #require(a["response_ids"] as? [Int]).map { UInt32($0) }
                let (check, finished) = try verifier.check(p.key, responseIds: ids)
                #expect(a["correct"] as? Bool == (finished && check.correct))
                if finished && check.correct { correct += 1 }
                tokens += try #require(a["tokens_generated"] as? Int)
            }
            #expect(e["correct"] as? Int == correct)
            #expect(abs((e["accuracy"] as? Double ?? -1) - Double(correct) / 10) < 1e-12)
            #expect(e["tokens_generated"] as? Int == tokens)
        }
        // Summaries agree with the evaluations they summarize.
        for s in try #require(results["summary"] as? [[String: Any]]) {
            let perSeed = try #require(s["accuracy_per_seed"] as? [Double])
            let mean = try #require((s["accuracy"] as? [String: Any])?["mean"] as? Double)
            #expect(abs(mean - perSeed.reduce(0, +) / Double(perSeed.count)) < 1e-12)
        }
        // Scorer quality: the SFT policy's log-prob and both value networks, per seed, on the held-out samples.
        let quality = try #require(results["value_quality"] as? [[String: Any]])
        let pairs = Set(quality.map { "\($0["method"] as? String ?? "")/\($0["scorer"] as? String ?? "")" })
        #expect(pairs == ["SFT/logprob", "OREO/value", "OREO/logprob", "DQO/value", "DQO/logprob"])
        #expect(quality.count == 2 * 5)
        #expect(
            FileManager.default.fileExists(atPath: dir + "/results.md")
                && FileManager.default.fileExists(atPath: dir + "/search-tokens.svg"))
        // The samples dataset and the trained checkpoints are what the other commands read.
        #expect(try DemoCommandTests.oreo(["verify", dir + "/seed-5/shards/samples"]).0 == 0)
        let samplesData = try Dataset(directory: dir + "/seed-4/shards/samples")
        #expect(
            samplesData.manifest.counts.trajectories == 80 && samplesData.manifest.tokenColumns.contains("ref_logprob"))
        #expect(FileManager.default.fileExists(atPath: dir + "/seed-4/models/oreo/run/value/model.safetensors"))

        // Run again: everything is reused, says so, and the numbers are the same.
        let (again, out2, err2) = try DemoCommandTests.oreo(DemoEndToEndTests.args(dir))
        #expect(again == 0, "\(err2)")
        let stageLines = out2.split(separator: "\n").filter { line in
            ["ingest", "train-sft", "sample", "ingest-samples", "train", "evaluate"].contains {
                line.contains("] \($0): ")
            }
        }
        #expect(stageLines.count == 2 * 6, "\(out2)")
        for line in stageLines { #expect(line.contains(": skipped (done): "), "not skipped: \(line)") }
        #expect(!out2.contains("to continue:"), "\(out2)")
        let second = try DemoEndToEndTests.json(dir + "/results.json")
        #expect(
            (second["evaluations"] as? [[String: Any]])?.map { $0["correct"] as? Int }
                == evaluations.map { $0["correct"] as? Int })

        // Another OREO learning rate: OREO is retrained and re-evaluated, everything else is reused.
        let (third, out3, err3) = try DemoCommandTests.oreo(DemoEndToEndTests.args(dir, ["--lr", "OREO=3e-4"]))
        #expect(third == 0, "\(err3)")
        let trainLines = out3.split(separator: "\n").filter { $0.contains("] train: ") }
        #expect(trainLines.count == 2)
        for line in trainLines {
            for part in line.components(separatedBy: ", ")
            where part.contains(" updates") || part.contains("not trained") {
                #expect(
                    part.contains("OREO ") != (part.contains("(reused)") || part.contains("not trained")),
                    "\(part) in \(line)")
            }
        }
        for line in out3.split(separator: "\n") where line.contains("] evaluate: ") {
            // "N models, K decodings on 10 test problems (R reused)": only OREO's greedy, value and log-prob runs redone.
            let words = line.split(separator: " ")
            let k = words.firstIndex(of: "decodings").flatMap { Int(words[$0 - 1]) }
            let r = words.firstIndex(of: "reused)").flatMap { Int(words[$0 - 1].dropFirst()) }
            #expect(k != nil && r == k.map { $0 - 3 }, "expected the 3 OREO decodings redone: \(line)")
        }
    }

    /// With LoRA on the offline methods: OREO's policy and value are adapters over the SFT model (PEFT files in
    /// its run), and every stage after training (greedy and value-guided search, value metrics) reads base +
    /// adapter.
    @Test func loraDemoTrainsAdaptersOverTheSFTModel() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = DemoEndToEndTests.args(
            dir, ["--seeds", "4", "--methods", "OREO", "--lora-rank", "4", "--value-lora-rank", "2"])
        let (status, out, err) = try DemoCommandTests.oreo(args)
        #expect(status == 0, "\(err)")
        let printed = out.split(separator: "\n").map(String.init)
        for stage in ["train", "evaluate", "values"] {
            let ran = printed.contains { $0.hasPrefix("[seed 4] \(stage): ") && !$0.contains("skipped") }
            #expect(ran, "\(stage):\n\(out)")
        }
        let run = dir + "/seed-4/models/oreo/run"
        for net in ["policy", "value"] {
            #expect(FileManager.default.fileExists(atPath: run + "/\(net)/adapter_config.json"), "\(net) is no adapter")
        }
        let report = try String(contentsOfFile: dir + "/results.md", encoding: .utf8)
        #expect(report.contains("LoRA r 4"), "\(report)")
    }

    @Test func aKilledDemoContinuesWhereItStopped() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = DemoEndToEndTests.args(dir, ["--seeds", "4", "--sft-steps", "60"])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: DemoCommandTests.oreoBinary)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // SFT checkpoints every 6 steps: kill once the first is there (`latest` names it: a checkpoint directory
        // renamed into place a moment before `latest` is written is not yet one a run resumes from) and before the
        // run is over.
        let latest = dir + "/seed-4/models/sft/run/latest"
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline, !FileManager.default.fileExists(atPath: latest) { usleep(2000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let stopped = try String(contentsOfFile: dir + "/seed-4/models/sft/run/metrics.jsonl", encoding: .utf8).split(
            separator: "\n"
        ).count
        let (status, out, err) = try DemoCommandTests.oreo(args)
        #expect(status == 0, "\(err)")
        #expect(out.contains("[seed 4] train-sft: 60 updates"))
        // It says that it continued the killed run, from the checkpoint the kill left.
        let sftLine = out.split(separator: "\n").first { $0.hasPrefix("[seed 4] train-sft: ") }.map(String.init) ?? ""
        #expect(sftLine.contains("(continued from step ") && !sftLine.contains("continued from step 0"), "\(out)")
        // The resumed run wrote each step once: 60 lines, steps 1...60 in order.
        let metrics = try DemoEndToEndTests.lines(dir + "/seed-4/models/sft/run/metrics.jsonl")
        #expect(metrics.compactMap { $0["step"] as? Int } == Array(1...60))
        #expect(stopped < 60, "the kill came after SFT had finished; the test proved nothing")
        #expect(FileManager.default.fileExists(atPath: dir + "/results.json"))
    }

    @Test func aSpentBudgetSaysWhatItLeftAndEndsWithTheCommandThatContinues() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Spent at once: SFT still trains (a run gets at least a second), what comes after it is left out.
        let args = DemoEndToEndTests.args(dir, ["--seeds", "4", "--time-budget", "0.001s"])
        let (status, out, err) = try DemoCommandTests.oreo(args)
        #expect(status == 0, "\(err)")
        let printed = out.split(separator: "\n").map(String.init)
        for stage in ["train", "evaluate", "values"] {
            #expect(printed.contains { $0.hasPrefix("[seed 4] \(stage): skipped (budget): ") }, "\(stage):\n\(out)")
        }
        #expect(
            printed.contains { $0.hasPrefix("cut by the time budget: ") && $0.contains("seed 4: OREO not trained") },
            "\(out)")
        #expect(printed.last == "to continue: oreo " + args.joined(separator: " "), "\(out)")

        // That command skips what is done.
        let (again, out2, err2) = try DemoCommandTests.oreo(args)
        #expect(again == 0, "\(err2)")
        for stage in ["ingest", "train-sft", "sample", "ingest-samples"] {
            #expect(out2.contains("[seed 4] \(stage): skipped (done): "), "\(stage):\n\(out2)")
        }
    }
}
