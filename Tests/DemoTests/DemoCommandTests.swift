import Foundation
import Format
import Ingest
import Testing
import Demo

/// `oreo demo` and the other commands on its output, run as the built binary.
@Suite struct DemoCommandTests {
    static var oreoBinary: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo").path
    }

    /// Runs oreo; returns exit status, stdout and stderr.
    static func oreo(_ args: [String], stdin: String? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oreoBinary)
        p.arguments = args
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test func demoPreparesTheDataAndTheToolsReadIt() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (status, out, err) = try DemoCommandTests.oreo(["demo", "--out", dir, "--seeds", "4,5", "--train", "200", "--validation", "20", "--test", "30"])
        #expect(status == 0, "\(err)")
        let lines = out.split(separator: "\n").map(String.init)
        for stage in ["[tokenizer]: ", "[seed 4] generate: 200 train, 20 validation, 30 test problems", "[seed 5] ingest: train 200 trajectories",
                      "[seed 4] train-sft: skipped: training is not built", "[report]: "] {
            #expect(lines.contains { $0.hasPrefix(stage) }, "no line starting \(stage.debugDescription) in\n\(out)")
        }
        #expect(lines.last?.hasPrefix("no accuracy to report") == true)

        // The generated tokenizer works with oreo tokenize, exactly as the library encodes.
        let tok = try Tokenizer.load(path: dir + "/tokenizer.json")
        let problem = try TaskFiles.readPrompts(dir + "/seed-4/data/prompts-test.jsonl")[0]
        let (ts, ids, _) = try DemoCommandTests.oreo(["tokenize", "--tokenizer", dir + "/tokenizer.json", "--add-special-tokens"], stdin: problem.prompt)
        #expect(ts == 0)
        #expect(ids.split(whereSeparator: \.isWhitespace).map { UInt32($0)! } == tok.encode(problem.prompt, options: EncodeOptions(addSpecialTokens: true)))
        // And oreo ingest / verify on its files give the dataset the demo made.
        let (is_, _, ie) = try DemoCommandTests.oreo(["ingest", dir + "/seed-4/data/sft-train.jsonl", "--tokenizer", dir + "/tokenizer.json", "--out", dir + "/again"])
        #expect(is_ == 0, "\(ie)")
        let a = try Dataset(directory: dir + "/again"), b = try Dataset(directory: dir + "/seed-4/shards/sft-train")
        #expect(a.manifest.counts == b.manifest.counts && a.manifest.shards.map(\.xxh3) == b.manifest.shards.map(\.xxh3))
        #expect(try DemoCommandTests.oreo(["verify", dir + "/seed-5/shards/sft-validation"]).0 == 0)
    }

    @Test func badOptionsFailWithAMessage() throws {
        for args in [["--seeds", "1,x"], ["--seeds", "1,1"], ["--start-range", "9-2"], ["--style", "prose"], ["--time-budget", "soon"],
                     ["--operations", "/"], ["--methods", "PPO"], ["--max-value", "5"]] {
            let (status, _, err) = try DemoCommandTests.oreo(["demo", "--out", "/nonexistent/never"] + args)
            #expect(status != 0 && err.contains("Error"), "\(args): \(err)")
        }
        let (status, help, _) = try DemoCommandTests.oreo(["demo", "--help"])
        #expect(status == 0)
        for stage in DemoStage.allCases { #expect(help.contains("  \(stage.rawValue) ")) }
        #expect(help.contains("--time-budget") && help.contains("(default: 15m)"))
    }
}
