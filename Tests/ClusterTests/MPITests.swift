import Checkpoint
import Foundation
import Support
import TestSupport
import Testing

/// `oreo` under `mpirun` on loopback: data-parallel training equals one process with the same global batch,
/// score / sample / eval write the files one process writes, a rank that dies or fails ends the job with a
/// message naming it, and a run resumes with another number of ranks. Skipped without Open MPI's mpirun
/// (an error when OREO_REQUIRE_FIXTURES=1, as in CI).
@Suite(.serialized) struct MPITests {
    static var oreo: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo")
            .path
    }

    static let mpirun: String? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Whether mpirun is here; records a failure when fixtures are required.
    static func available() -> Bool {
        if mpirun != nil { return true }
        if Fixtures.required { Issue.record("mpirun not found: install openmpi-bin (scripts/setup.sh)") }
        return false
    }

    struct Outcome {
        var status: Int32, output: String, seconds: Double
    }

    /// Runs `oreo ARGS` alone (`ranks` nil) or under mpirun; kills it after `timeout` seconds.
    @discardableResult
    static func run(
        _ args: [String], ranks: Int? = nil, tag: String = "", timeout: Double = 300, dir: String,
        whileRunning: ((Process) throws -> Void)? = nil
    ) throws -> Outcome {
        let p = Process()
        if let ranks {
            p.executableURL = URL(fileURLWithPath: mpirun!)
            p.arguments =
                ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", "-x", "OREO_TEST_TAG", oreo] + args
        } else {
            p.executableURL = URL(fileURLWithPath: oreo)
            p.arguments = args
        }
        var env = ProcessInfo.processInfo.environment
        env["OREO_TEST_TAG"] = tag
        p.environment = env
        let log = dir + "/log-\(UUID().uuidString).txt"
        FileManager.default.createFile(atPath: log, contents: nil)
        let h = FileHandle(forWritingAtPath: log)!
        p.standardOutput = h
        p.standardError = h
        let t0 = Date()
        try p.run()
        try whileRunning?(p)
        while p.isRunning && Date().timeIntervalSince(t0) < timeout { usleep(20_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            Issue.record("oreo \(args.joined(separator: " ")) did not end within \(timeout) s")
        }
        p.waitUntilExit()
        try? h.close()
        let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return Outcome(status: p.terminationStatus, output: out, seconds: Date().timeIntervalSince(t0))
    }

    /// A tiny model directory (with tokenizer) and a synthetic dataset over its vocabulary, scored.
    static func world(_ tag: String) throws -> (dir: String, model: String, data: String) {
        let dir = makeTemporaryDirectory("mpi-" + tag)
        let model = try TinyWorld.write()
        let data = dir + "/data"
        let synth = try run(
            ["synth", "--out", data, "--trajectories", "240", "--mean-tokens", "40", "--vocab", "259", "--seed", "3"],
            dir: dir)
        #expect(synth.status == 0, "\(synth.output)")
        let score = try run(["score", "--model", model, "--data", data, "--threads", "1"], dir: dir)
        #expect(score.status == 0, "\(score.output)")
        return (dir, model, data)
    }

    static func metrics(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    /// Largest per-tensor ||a - b|| / ||a|| between two safetensors files with the same tensors.
    static func relativeDifference(_ a: String, _ b: String) throws -> Double {
        let fa = try SafeTensorsFile(path: a), fb = try SafeTensorsFile(path: b)
        #expect(fa.tensors.map(\.name).sorted() == fb.tensors.map(\.name).sorted())
        var worst = 0.0
        for t in fa.tensors {
            let x = try fa.floats(t.name), y = try fb.floats(t.name)
            var d = 0.0, n = 0.0
            for i in x.indices {
                d += (Double(x[i]) - Double(y[i])) * (Double(x[i]) - Double(y[i]))
                n += Double(x[i]) * Double(x[i])
            }
            worst = max(worst, n > 0 ? (d / n).squareRoot() : d.squareRoot())
        }
        return worst
    }

    static func trainArgs(_ method: String, data: String, model: String, steps: Int = 20) -> [String] {
        [
            "train", "--method", method, "--model", model, "--data", data, "--max-steps", "\(steps)",
            "--micro-batches-per-step", "2", "--tokens-per-micro-batch", "256", "--learning-rate", "1e-3",
            "--value-learning-rate", "1e-3", "--kl", "k3", "--threads", "1",
        ]
    }

    /// Two ranks with one micro-batch each train as one process with both: every step's loss and the weights
    /// after 20 steps agree (the all-reduce adds two whole micro-batch gradients where one process adds the
    /// second micro-batch's partial products into the first's: the same sums in another order, ~1e-7 apart).
    @Test(arguments: ["oreo", "dpo"])
    func twoRanksTrainAsOneProcess(method: String) throws {
        guard Self.available() else { return }
        let w = try Self.world("train-" + method)
        let args = Self.trainArgs(method, data: w.data, model: w.model)
        let one = try Self.run(args + ["--out", w.dir + "/one"], dir: w.dir)
        #expect(one.status == 0, "\(one.output)")
        let two = try Self.run(args + ["--out", w.dir + "/two"], ranks: 2, dir: w.dir)
        #expect(two.status == 0, "\(two.output)")
        #expect(two.output.contains("2 ranks"))
        let toml = try String(contentsOfFile: w.dir + "/two/config.toml", encoding: .utf8)
        #expect(toml.contains("ranks = 2"))
        let a = try Self.metrics(w.dir + "/one"), b = try Self.metrics(w.dir + "/two")
        #expect(a.count == 20 && b.count == 20)
        for (x, y) in zip(a, b) {
            let lx = x["loss"] as! Double, ly = y["loss"] as! Double
            #expect(abs(lx - ly) <= 1e-6 * abs(lx), "step \(x["step"]!): \(lx) vs \(ly)")
            #expect(x["sequences"] as! Int == y["sequences"] as! Int)
            #expect(x["tokens"] as! Int == y["tokens"] as! Int)
        }
        // the first step starts from the same weights: bit for bit
        #expect(a[0]["loss"] as! Double == b[0]["loss"] as! Double)
        for net in method == "oreo" ? ["policy", "value"] : ["policy"] {
            let d = try Self.relativeDifference(
                w.dir + "/one/\(net)/model.safetensors", w.dir + "/two/\(net)/model.safetensors")
            #expect(d == 0, "\(net): relative difference \(d)")
        }
    }

    /// A 2-rank run killed (SIGKILL on rank 1) ends at once with mpirun naming the rank; its last checkpoint
    /// resumes with 1 rank and ends within rounding of an uninterrupted single-process run.
    @Test func aKilledRankEndsTheJobAndTheRunResumesWithOneRank() throws {
        guard Self.available() else { return }
        let w = try Self.world("kill")
        let args = Self.trainArgs("oreo", data: w.data, model: w.model, steps: 120) + ["--checkpoint-every", "4"]
        let tag = UUID().uuidString
        let run = w.dir + "/run"
        let killed = try Self.run(args + ["--out", run], ranks: 2, tag: tag, timeout: 120, dir: w.dir) { _ in
            // wait for a checkpoint, then kill rank 1
            let t0 = Date()
            while Date().timeIntervalSince(t0) < 60,
                ((try? Self.metrics(run).count) ?? 0) < 9
            {
                usleep(50_000)
            }
            guard let pid = Self.rankProcess(tag: tag, rank: 1) else {
                Issue.record("rank 1 not found")
                return
            }
            kill(pid, SIGKILL)
        }
        #expect(killed.status != 0)
        #expect(killed.output.contains("rank 1"), "\(killed.output)")
        #expect(killed.seconds < 100)
        // resume with one rank to the end, and compare with one process throughout
        let resumed = try Self.run(args + ["--out", run, "--resume"], dir: w.dir)
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("resuming"))
        let one = try Self.run(args + ["--out", w.dir + "/one"], dir: w.dir)
        #expect(one.status == 0)
        for net in ["policy", "value"] {
            let d = try Self.relativeDifference(
                w.dir + "/one/\(net)/model.safetensors", run + "/\(net)/model.safetensors")
            #expect(d == 0, "\(net): relative difference \(d)")
        }
        let toml = try String(contentsOfFile: run + "/config.toml", encoding: .utf8)
        #expect(toml.contains("ranks = 1"))
    }

    /// The pid of rank `rank` of the job started with OREO_TEST_TAG=tag.
    static func rankProcess(tag: String, rank: Int) -> pid_t? {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for p in procs {
            guard let pid = Int32(p), let env = FileManager.default.contents(atPath: "/proc/\(p)/environ") else {
                continue
            }
            let vars = Set(env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            if vars.contains("OREO_TEST_TAG=\(tag)") && vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }

    /// Rank 0 failing alone (its checkpoint cannot be written) aborts the job, naming the rank, with no hang;
    /// every rank failing the same way before training prints one message.
    @Test func aFailingRankEndsTheJob() throws {
        guard Self.available() else { return }
        let w = try Self.world("fail")
        let run = w.dir + "/run"
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: run + "/checkpoints"))
        let args = Self.trainArgs("sft", data: w.data, model: w.model, steps: 50) + ["--checkpoint-every", "2"]
        let failed = try Self.run(args + ["--out", run], ranks: 2, timeout: 120, dir: w.dir)
        #expect(failed.status != 0)
        #expect(failed.output.contains("oreo: rank 0 of 2: \(run)/checkpoints"), "\(failed.output)")
        let missing = try Self.run(
            Self.trainArgs("sft", data: w.dir + "/nothing", model: w.model) + ["--out", w.dir + "/r2"], ranks: 2,
            timeout: 120, dir: w.dir)
        #expect(missing.status != 0)
        #expect(missing.output.contains("nothing"))
        #expect(missing.output.components(separatedBy: "/nothing").count - 1 == 1, "\(missing.output)")
    }

    /// `oreo score`, `sample` and `eval` under mpirun write byte for byte what one process writes.
    @Test func scoreSampleAndEvalFilesEqualOneProcess() throws {
        guard Self.available() else { return }
        let w = try Self.world("files")
        // score: the dataset directory after a 3-rank run equals the one after a 1-process run
        let copy = w.dir + "/copy"
        try FileManager.default.copyItem(atPath: w.data, toPath: copy)
        for (data, ranks) in [(w.data, nil), (copy, 3)] as [(String, Int?)] {
            let s = try Self.run(
                ["score", "--model", w.model, "--data", data, "--column", "c2", "--tokens-per-batch", "200"],
                ranks: ranks, dir: w.dir)
            #expect(s.status == 0, "\(s.output)")
        }
        for f in try FileManager.default.contentsOfDirectory(atPath: w.data).sorted() {
            #expect(
                FileManager.default.contents(atPath: w.data + "/" + f)
                    == FileManager.default.contents(atPath: copy + "/" + f), "\(f)")
        }
        // sample and eval
        let prompts = w.dir + "/prompts.jsonl"
        let lines = (0..<13).map { i in
            #"{"prompt": "Problem \#(i): add \#(i) and \#(i + 1).", "answer": "\#(2 * i + 1)", "id": "p\#(i)"}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: prompts, atomically: true, encoding: .utf8)
        for ranks in [nil, 2, 3] as [Int?] {
            let name = "\(ranks ?? 1)"
            let s = try Self.run(
                [
                    "sample", "--model", w.model, "--prompts", prompts, "--n", "3", "--max-new-tokens", "10",
                    "--verifier", "gsm8k", "--batch-size", "2", "--out", w.dir + "/samples-\(name).jsonl",
                ], ranks: ranks, dir: w.dir)
            #expect(s.status == 0, "\(s.output)")
            let e = try Self.run(
                [
                    "eval", "--model", w.model, "--data", prompts, "--max-new-tokens", "10", "--verifier", "gsm8k",
                    "--batch-size", "2", "--out", w.dir + "/eval-\(name).jsonl",
                ], ranks: ranks, dir: w.dir)
            #expect(e.status == 0, "\(e.output)")
        }
        for kind in ["samples", "eval"] {
            let one = FileManager.default.contents(atPath: w.dir + "/\(kind)-1.jsonl")
            #expect(one != nil && !one!.isEmpty)
            for n in [2, 3] {
                #expect(FileManager.default.contents(atPath: w.dir + "/\(kind)-\(n).jsonl") == one, "\(kind) \(n)")
            }
        }
    }
}
