import Checkpoint
import Foundation
import Format
import Infer
import Models
import Support
import TestSupport
import Testing
import Train

/// `oreo sample` and `oreo eval` end to end on the tiny model: output that `oreo ingest` accepts, resumption
/// after SIGKILL equal to a clean run, beam search with a value model, and clear errors for bad input.
@Suite struct CommandTests {
    static var oreo: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo")
            .path
    }

    @discardableResult
    static func run(_ args: [String], wait: Bool = true) throws -> (Process, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oreo)
        p.arguments = args
        let err = Pipe()
        p.standardOutput = err
        p.standardError = err
        try p.run()
        guard wait else { return (p, "") }
        let out = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p, out)
    }

    static func prompts(_ dir: String, count: Int) throws -> String {
        let lines = (0..<count).map { i in
            #"{"prompt": "Problem \#(i): add \#(i) and \#(i + 1).", "answer": "\#(2 * i + 1)", "id": "p\#(i)"}"#
        }
        let path = dir + "/prompts.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func lines(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test func sampleOutputIngests() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("cli")
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let p = try Self.prompts(dir, count: 5)
        for format in ["text", "ids"] {
            let out = dir + "/samples-\(format).jsonl"
            let (s, log) = try Self.run([
                "sample", "--model", model, "--prompts", p, "--n", "3", "--out", out,
                "--max-new-tokens", "12", "--format", format, "--verifier", "gsm8k",
            ])
            #expect(s.terminationStatus == 0, "sample failed: \(log)")
            let ls = try Self.lines(out)
            #expect(ls.count == 15)
            #expect(!FileManager.default.fileExists(atPath: out + ".partial"))
            let first = try JSONSerialization.jsonObject(with: Data(ls[0].utf8)) as! [String: Any]
            #expect(first["reward"] is NSNumber && first["group"] is String && first["meta"] is [String: Any])
            if format == "text" { #expect((first["prompt"] as! String).hasPrefix("<|im_start|>system\nYou are tiny.")) }
            let (i, ilog) = try Self.run([
                "ingest", out, "--tokenizer", model + "/tokenizer.json", "--out", dir + "/ds-\(format)",
            ])
            #expect(i.terminationStatus == 0, "ingest failed: \(ilog)")
            #expect(try Manifest.read(directory: dir + "/ds-\(format)").counts.trajectories == 15)
        }
    }

    @Test func killedSampleResumesToTheSameLines() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("kill")
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let p = try Self.prompts(dir, count: 60)
        // One sequence per decoding batch: which sequences share a batch changes the kernels' summation order (a
        // resumed run starts its batches elsewhere), and on this random model a last-bit change in the logits
        // can flip a sampled token. Alone in its batch, a sample's logits are the same in both runs, bit for bit.
        let common = [
            "sample", "--model", model, "--prompts", p, "--n", "2", "--max-new-tokens", "48", "--batch-size", "1",
        ]
        let (victim, _) = try Self.run(common + ["--out", dir + "/a.jsonl"], wait: false)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, victim.isRunning {
            if let d = FileManager.default.contents(atPath: dir + "/a.jsonl.partial"), d.filter({ $0 == 10 }).count >= 6
            {
                break
            }
            Thread.sleep(forTimeInterval: 0.005)
        }
        let interrupted = victim.isRunning
        print("sample kill test: killed while running: \(interrupted)")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        if interrupted { #expect(!FileManager.default.fileExists(atPath: dir + "/a.jsonl")) }
        let (again, log) = try Self.run(common + ["--out", dir + "/a.jsonl"])
        #expect(again.terminationStatus == 0, "resume failed: \(log)")
        if interrupted { #expect(log.contains("resumed")) }
        let (clean, _) = try Self.run(common + ["--out", dir + "/b.jsonl"])
        #expect(clean.terminationStatus == 0)
        // same lines (prompts finish in a different order when a run resumes)
        func canonical(_ path: String) throws -> [(String, Double)] {
            try Self.lines(path).map { l -> (String, Double) in
                var o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as! [String: Any]
                var m = o["meta"] as! [String: Any]
                let lp = m.removeValue(forKey: "logprob") as! Double
                o["meta"] = m
                return (
                    String(
                        decoding: try JSONSerialization.data(withJSONObject: o, options: .sortedKeys), as: UTF8.self),
                    lp
                )
            }.sorted { $0.0 < $1.0 }
        }
        let a = try canonical(dir + "/a.jsonl"), b = try canonical(dir + "/b.jsonl")
        let diff = zip(a, b).filter { $0.0 != $1.0 || abs($0.1 - $1.1) > 1e-3 * max(1, abs($0.1)) }
        if let d = diff.first { print("sample kill test: \(diff.count) lines differ, first:\n\(d.0)\n\(d.1)") }
        #expect(diff.isEmpty && a.count == b.count)
        #expect(try Self.lines(dir + "/a.jsonl").count == 120)
    }

    @Test func evalGreedyAndBeam() throws {
        let model = try TinyWorld.write()
        let valueDir = try TinyWorld.write(valueHead: true, seed: 2)
        let dir = TinyWorld.tempDir("eval")
        defer { for d in [model, valueDir, dir] { try? FileManager.default.removeItem(atPath: d) } }
        let p = try Self.prompts(dir, count: 4)
        let (g, glog) = try Self.run([
            "eval", "--model", model, "--data", p, "--max-new-tokens", "16", "--out", dir + "/g.jsonl",
        ])
        #expect(g.terminationStatus == 0, "greedy eval failed: \(glog)")
        #expect(glog.contains("accuracy") && glog.contains("tokens generated"))
        #expect(try Self.lines(dir + "/g.jsonl").count == 4)
        let (b, blog) = try Self.run([
            "eval", "--model", model, "--data", p, "--search", "beam", "--width", "2",
            "--value", valueDir, "--max-new-tokens", "16", "--max-steps", "3",
            "--step-delimiter", " ", "--out", dir + "/b.jsonl",
        ])
        #expect(b.terminationStatus == 0, "beam eval failed: \(blog)")
        #expect(blog.contains("candidates scored"))
        let rows = try Self.lines(dir + "/b.jsonl").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        #expect(rows.count == 4 && rows.allSatisfy { $0["score"] is NSNumber && $0["reward"] is NSNumber })
        // a policy directory is not a value model
        let (bad, badlog) = try Self.run([
            "eval", "--model", model, "--data", p, "--search", "beam", "--value", model,
            "--out", dir + "/c.jsonl",
        ])
        #expect(bad.terminationStatus != 0 && badlog.contains("value_head"))
    }

    /// `--precision bf16` on sample and on beam-search eval: a checkpoint directory decodes from bf16 weights,
    /// wider passes run bf16 products, and both commands finish with their outputs.
    @Test func samplingAndBeamSearchInBF16() throws {
        guard BF16GEMM.isAvailable else { return }
        let model = try TinyWorld.write()
        let valueDir = try TinyWorld.write(valueHead: true, seed: 2)
        let dir = TinyWorld.tempDir("bf16")
        defer { for d in [model, valueDir, dir] { try? FileManager.default.removeItem(atPath: d) } }
        let im = try InferenceModel.load(path: model, precision: .bf16)
        #expect(im.model.precision == .bf16 && im.decodeWeights.hasPrefix("bf16 x"), "\(im.decodeWeights)")
        let p = try Self.prompts(dir, count: 4)
        let (s, slog) = try Self.run([
            "sample", "--model", model, "--prompts", p, "--n", "4", "--out", dir + "/s.jsonl",
            "--max-new-tokens", "12", "--precision", "bf16",
        ])
        #expect(s.terminationStatus == 0, "bf16 sample failed: \(slog)")
        #expect(slog.contains("rows in bf16 (oneDNN"), "\(slog)")
        #expect(try Self.lines(dir + "/s.jsonl").count == 16)
        let (b, blog) = try Self.run([
            "eval", "--model", model, "--data", p, "--search", "beam", "--width", "4", "--value", valueDir,
            "--max-new-tokens", "16", "--max-steps", "3", "--step-delimiter", " ", "--out", dir + "/b.jsonl",
            "--precision", "bf16",
        ])
        #expect(b.terminationStatus == 0, "bf16 beam eval failed: \(blog)")
        #expect(try Self.lines(dir + "/b.jsonl").count == 4)
    }

    /// A PEFT adapter on the command line: `oreo convert --merge-lora` writes a model that decodes to the same
    /// logits as the base with the adapter attached (what `--adapter` gives sample and eval), and both commands run.
    @Test func loraAdapterUnmergedAndMergedAgree() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("lora")
        defer { for d in [model, dir] { try? FileManager.default.removeItem(atPath: d) } }
        let base = try ModelCheckpoint.load(directory: model, maxTokens: 8)
        let lora = try LoRAAdapters(
            model: base, config: LoRAConfig(rank: 2, alpha: 4, targets: LoRATarget.all(base.config.family)))
        lora.initialize(seed: 3)
        var g = SplitMix64(seed: 5)
        for s in lora.layout where s.name.hasSuffix("lora_B.weight") {
            for i in 0..<s.count { lora.parameters.pointer[s.offset + i] = Float(g.nextGaussian() * 0.5) }
        }
        try PEFTAdapter.write(lora, family: base.config.family, to: dir + "/adapter")
        let (c, clog) = try Self.run(["convert", model, dir + "/merged", "--merge-lora", dir + "/adapter"])
        #expect(c.terminationStatus == 0, "convert --merge-lora failed: \(clog)")
        #expect(clog.contains("merged \(dir)/adapter: LoRA rank 2"))
        func logits(_ path: String, adapter: String?) throws -> [Float] {
            let m = try InferenceModel.load(path: path, decodeWeights: .f32, adapter: adapter)
            let dec = try IncrementalDecoder(model: m.model, maxSequences: 2, maxLength: 16)
            var out: [Float] = []
            try dec.extend([0, 1], [[3, 5, 7, 9, 11], [2, 4]], logits: &out, allPositions: true)
            return out
        }
        let unmerged = try logits(model, adapter: dir + "/adapter"), merged = try logits(dir + "/merged", adapter: nil)
        #expect(loraRelativeL2(unmerged, merged) < 1e-5, "\(loraRelativeL2(unmerged, merged))")
        #expect(loraRelativeL2(unmerged, try logits(model, adapter: nil)) > 1e-3)
        let p = try Self.prompts(dir, count: 3)
        let (s, slog) = try Self.run([
            "sample", "--model", model, "--adapter", dir + "/adapter", "--prompts", p, "--n", "2", "--out",
            dir + "/s.jsonl", "--max-new-tokens", "8",
        ])
        #expect(s.terminationStatus == 0 && slog.contains("LoRA adapter"), "\(slog)")
        #expect(try Self.lines(dir + "/s.jsonl").count == 6)

        // Beam search with a LoRA policy and a LoRA value network (its head in the adapter) on the same base.
        let valueBase = try ModelSource.directory(model).load(maxTokens: 8, valueHead: true)
        let valueLoRA = try LoRAAdapters(
            model: valueBase, config: LoRAConfig(rank: 2, alpha: 2, targets: LoRATarget.all(base.config.family)))
        valueLoRA.initialize(seed: 4)
        let head = valueLoRA.layout.first { $0.name == "value_head.weight" }!
        for i in 0..<head.count { valueLoRA.parameters.pointer[head.offset + i] = Float(g.nextGaussian()) }
        try PEFTAdapter.write(valueLoRA, family: base.config.family, to: dir + "/value-adapter")
        let (e, elog) = try Self.run([
            "eval", "--model", model, "--adapter", dir + "/adapter", "--data", p, "--search", "beam", "--width", "2",
            "--value", model, "--value-adapter", dir + "/value-adapter", "--max-new-tokens", "12", "--max-steps", "2",
            "--step-delimiter", " ", "--out", dir + "/e.jsonl",
        ])
        #expect(e.terminationStatus == 0 && elog.contains("candidates scored"), "\(elog)")
        #expect(try Self.lines(dir + "/e.jsonl").count == 3)

        // An adapter whose rank disagrees with its tensors is refused, naming the file and the tensor.
        let cfg = dir + "/adapter/adapter_config.json"
        let text = try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(
            of: "\"r\" : 2", with: "\"r\" : 3")
        try text.write(toFile: cfg, atomically: true, encoding: .utf8)
        let (bad, badlog) = try Self.run([
            "sample", "--model", model, "--adapter", dir + "/adapter", "--prompts", p, "--out", dir + "/b.jsonl",
        ])
        #expect(bad.terminationStatus != 0)
        #expect(badlog.contains("adapter_model.safetensors") && badlog.contains("lora_A.weight has shape"), "\(badlog)")
    }

    @Test func badInputGivesOneClearError() throws {
        let model = try TinyWorld.write()
        let dir = TinyWorld.tempDir("bad")
        defer {
            try? FileManager.default.removeItem(atPath: model)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let p = dir + "/p.jsonl"
        try "{\"prompt\": \"ok\", \"answer\": \"1\"}\n{\"prompt\": 5}\n".write(
            toFile: p, atomically: true, encoding: .utf8)
        let (s, log) = try Self.run(["sample", "--model", model, "--prompts", p, "--out", dir + "/o.jsonl"])
        #expect(s.terminationStatus != 0)
        #expect(log.contains("p.jsonl:2:"), "error should name file and line: \(log)")
        try "{\"prompt\": \"no answer\"}\n".write(toFile: p, atomically: true, encoding: .utf8)
        let (u, ulog) = try Self.run(["sample", "--model", model, "--prompts", p, "--out", dir + "/o.jsonl"])
        #expect(u.terminationStatus != 0 && ulog.contains("--allow-unlabelled"))
        let (e, elog) = try Self.run(["eval", "--model", model, "--data", p, "--out", dir + "/o.jsonl"])
        #expect(e.terminationStatus != 0 && elog.contains("answer"))
    }
}

@Suite struct ResumeTests {
    /// A partial output whose last prompt is incomplete (or from other prompts) is cut back before resuming.
    @Test func incompleteProblemsAreResampledOnce() throws {
        let dir = TinyWorld.tempDir("resume")
        let model = try TinyWorld.write()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: model)
        }
        let im = try InferenceModel.load(path: model)
        let problems = (0..<4).map {
            Problem(id: "q\($0)", prompt: "Add \($0) and 2.", answer: "\($0 + 2)", line: $0 + 1)
        }
        var o = SampleOptions()
        o.n = 3
        o.maxNewTokens = 8
        let path = dir + "/s.jsonl"
        let first = try ResumableJSONL(path: path, overwrite: true)
        _ = try SampleJob.run(
            model: im, template: .none, problems: Array(problems.prefix(2)), verifier: GSM8KVerifier(), options: o,
            output: first)
        // simulate a kill in the middle of the second prompt's lines, plus a torn last line
        var lines = try String(contentsOfFile: path + ".partial", encoding: .utf8).split(separator: "\n").map(
            String.init)
        lines = Array(lines.prefix(4))
        try (lines.joined(separator: "\n") + "\n{\"torn").write(
            toFile: path + ".partial", atomically: true, encoding: .utf8)
        let again = try ResumableJSONL(path: path, overwrite: false)
        let s = try SampleJob.run(
            model: im, template: .none, problems: problems, verifier: GSM8KVerifier(), options: o, output: again)
        try again.finish()
        #expect(s.resumed == 1 && s.sampled == 3)
        let out = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(out.count == 12)
        let ids = out.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["id"] as? String
        }
        #expect(Set(ids).count == 12, "duplicate lines after resuming")
    }
}

/// ||a - b|| / ||b|| in double.
private func loraRelativeL2(_ a: [Float], _ b: [Float]) -> Double {
    let d = zip(a, b).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
    return (d / max(b.reduce(0.0) { $0 + Double($1) * Double($1) }, 1e-300)).squareRoot()
}
