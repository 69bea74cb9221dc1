import Checkpoint
import Format
import Foundation
import Ingest
import Models
import TestSupport
import Testing
import Tokenizers
import Train
import Runs

/// Real checkpoint formats as INIT: the oracle fixtures' HF directories (GPT-2, Llama, Qwen2) and, with
/// OREO_HEAVY_TESTS=1, SmolLM2-135M from its GGUF.
@Suite struct InitModelTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/generated").path

    func fixture(_ relative: String) -> String? {
        let p = InitModelTests.fixtures + "/" + relative
        if FileManager.default.fileExists(atPath: p) { return p }
        if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" {
            Issue.record("fixture \(p) missing")
        } else {
            print("SKIP: fixture \(p) missing (scripts/gen-fixtures.sh)")
        }
        return nil
    }

    /// The value network starts as INIT's backbone plus a zero head; OREO trains both; the checkpoints
    /// written load back as INIT (GPT-2's transposed Conv1D weights included) and equal the trained models.
    @Test(arguments: ["gpt2", "llama", "qwen2"])
    func hfDirectoryAsInit(family: String) throws {
        guard let dir = fixture("models/\(family)") else { return }
        let root = temporaryDirectory("init-\(family)")
        try writeDataset(toyTask(32, seed: 9), vocab: 16, at: root + "/data")
        var c = TrainConfig()
        c.maxSteps = 3
        c.learningRate = 1e-3
        c.valueLearningRate = 1e-3
        c.loader.tokensPerMicroBatch = 32
        let job = try TrainJob(config: c, model: .directory(dir), data: root + "/data", run: root + "/run")
        let initial = try ModelCheckpoint.load(directory: dir, maxTokens: 8)
        #expect(sameParameters(initial, job.policy) && sameParameters(initial, job.reference!))
        for s in initial.layout.specs {
            #expect(job.value!.parameter(s.name) == initial.parameter(s.name), "\(s.name)")
        }
        #expect(job.value!.parameter("value_head.weight")!.allSatisfy { $0 == 0 })
        let summary = try job.run()
        #expect(!sameParameters(initial, job.policy))
        let policy = try ModelCheckpoint.load(directory: summary.policy!, maxTokens: 8)
        let value = try ModelCheckpoint.load(directory: summary.value!, maxTokens: 8, valueHead: true)
        #expect(sameParameters(policy, job.policy) && sameParameters(value, job.value!))
        #expect(policy.config == initial.config)
        #expect(FileManager.default.fileExists(atPath: summary.policy! + "/generation_config.json"))
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["OREO_HEAVY_TESTS"] == "1"))
    func smolLM2GGUFAsInit() throws {
        guard let src = fixture("smollm2/source.json"),
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src)))
                as? [String: String],
            let gguf = json["gguf"], FileManager.default.fileExists(atPath: gguf)
        else { return }
        let root = temporaryDirectory("smollm2")
        var records = toyTask(8, seed: 10)
        for i in records.indices { records[i].tokens = records[i].tokens.map { $0 * 1000 + 17 } }
        try writeDataset(records, vocab: 49152, at: root + "/data")
        var c = TrainConfig()
        c.maxSteps = 2
        c.loader.tokensPerMicroBatch = 32
        let job = try TrainJob(config: c, model: .gguf(gguf), data: root + "/data", run: root + "/run")
        let summary = try job.run()
        #expect(summary.last.map { $0.loss.isFinite && ($0.kl ?? -1) >= 0 } == true)
        let policy = try ModelCheckpoint.load(directory: summary.policy!, maxTokens: 8)
        #expect(sameParameters(policy, job.policy))
        #expect(FileManager.default.fileExists(atPath: summary.policy! + "/tokenizer.json"))
    }

    /// A checkpoint trained from a GGUF carries the tokenizer its metadata describes (so `oreo eval RUN/policy`
    /// needs no --tokenizer): it encodes as HF's SmolLM2 tokenizer, and names EOS.
    @Test func ggufInitGivesItsCheckpointsATokenizer() throws {
        guard let src = fixture("smollm2/source.json"), let hf = fixture("tokenizers/smollm2.tokenizer.json"),
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src)))
                as? [String: String],
            let gguf = json["gguf"], FileManager.default.fileExists(atPath: gguf)
        else { return }
        let files = ModelSource.gguf(gguf).tokenizerFiles()
        #expect(files.map(\.name) == ["tokenizer.json", "tokenizer_config.json"])
        let dir = temporaryDirectory("gguf-tokenizer")
        for f in files { try Data(f.bytes).write(to: URL(fileURLWithPath: dir + "/" + f.name)) }
        let mine = try Tokenizer.load(path: dir + "/tokenizer.json"), theirs = try Tokenizer.load(path: hf)
        for text in [
            "Tom has 3 apples and buys 15 more.\n#### 18", "  def f(x):\r\n\treturn x**2  # ok",
            "<|im_start|>user\nHi<|im_end|>",
        ] {
            #expect(mine.encode(text) == theirs.encode(text), "\(text)")
        }
        let config = try JSONSerialization.jsonObject(with: Data(files[1].bytes)) as? [String: Any]
        #expect(config?["eos_token"] as? String == "<|im_end|>")
        #expect(
            ModelSource.random(ModelConfig(family: .llama, vocabSize: 8, hiddenSize: 8, layers: 1, heads: 1), seed: 1)
                .tokenizerFiles().isEmpty)
    }
}
