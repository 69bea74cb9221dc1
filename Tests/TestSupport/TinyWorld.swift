import Checkpoint
import Format
import Foundation
import Infer
import Ingest
import Models
import Support
import Testing
import Tokenizers
import Train

/// A self-contained model directory for tests: a byte-level tokenizer.json (256 byte tokens plus
/// <|endoftext|>, <|im_start|>, <|im_end|>), a ChatML tokenizer_config.json and a tiny random Qwen2 policy
/// (and optionally a value model) saved as safetensors.
public enum TinyWorld {
    public static let vocab = 259
    public static let eos: Int32 = 258

    /// A new empty directory for one test.
    public static func tempDir(_ tag: String) -> String { makeTemporaryDirectory("infer-" + tag) }

    public static func config() -> ModelConfig {
        ModelConfig(
            family: .qwen2, vocabSize: vocab, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 8,
            intermediateSize: 48, maxPositions: 512, ropeTheta: 1e4, tieWordEmbeddings: false)
    }

    public static func model(seed: UInt64, valueHead: Bool = false) throws -> TransformerModel {
        let m = try TransformerModel(config: config(), maxTokens: 512, valueHead: valueHead)
        m.initializeRandomly(seed: seed, std: 0.35)
        if valueHead {
            var g = SplitMix64(seed: seed &+ 1)
            try m.setParameter("value_head.weight", (0..<32).map { _ in Float(g.nextGaussian() * 0.5) })
        }
        return m
    }

    /// Writes the tokenizer files and a policy (seed 1) into a new directory; returns it.
    public static func write(valueHead: Bool = false, seed: UInt64 = 1) throws -> String {
        let dir = tempDir("model")
        try ModelCheckpoint.save(try model(seed: seed, valueHead: valueHead), directory: dir)
        try writeTokenizer(into: dir)
        return dir
    }

    public static func writeTokenizer(into dir: String) throws {
        var v: [String: Any] = [:]
        for b in 0...255 { v[SyntheticTokenizer.byteString(UInt8(b))] = b }
        let added: [[String: Any]] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].enumerated().map { i, t in
            [
                "id": 256 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true,
            ]
        }
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": v, "merges": [String](),
            ],
        ]
        try JSONSerialization.data(withJSONObject: root).write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        let template =
            "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are tiny.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
        let cfg: [String: Any] = ["eos_token": "<|im_end|>", "bos_token": "<|im_start|>", "chat_template": template]
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
    }

    public static func tokenizer(_ dir: String) throws -> Tokenizer {
        try Tokenizer.load(path: dir + "/tokenizer.json")
    }

    /// Log-probs of `tokens` after `prompt` from the full forward pass (no cache), summed.
    public static func fullLogProb(_ m: TransformerModel, prompt: [Int32], tokens: [Int32]) throws -> Double {
        let seq = prompt + tokens
        var targets = [Int32](repeating: -1, count: seq.count)
        for i in 0..<tokens.count { targets[prompt.count - 1 + i] = tokens[i] }
        var lp: [Float] = []
        try m.forward(PackedBatch(tokens: seq, sequenceLengths: [seq.count], targets: targets), logProbs: &lp)
        return lp.reduce(0.0) { $0 + Double($1) }
    }

    /// V at the last token of `sequence` from the full forward pass.
    public static func fullValue(_ m: TransformerModel, _ sequence: [Int32]) throws -> Double {
        var v: [Float] = []
        try m.forwardValues(PackedBatch(sequences: [sequence]), values: &v)
        return Double(v[sequence.count - 1])
    }
}
