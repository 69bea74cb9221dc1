import Checkpoint
import Format
import Foundation
import Infer
import Ingest
import Models
import TestSupport
import Testing
import Tokenizers
import Train

/// Batched generation on a tiny random model: batching and order do not change samples, seeds reproduce,
/// stop strings and limits end generations, and reported log-probs equal the full forward's.
@Suite struct GenerationTests {
    static func prompts(_ tok: Tokenizer) -> [[Int32]] {
        ["Hello there", "2 + 2 =", "A much longer prompt than the others, so lengths differ.", "x"].map {
            tok.encode($0).map { Int32($0) }
        }
    }

    static func run(
        _ m: TransformerModel, _ tok: Tokenizer, batch: Int, seeds: [UInt64], sampling: SamplingParameters,
        stop: [String] = [], maxNew: Int = 40
    ) throws -> [Generation] {
        let gen = try Generator(model: m, tokenizer: tok, stopTokens: [TinyWorld.eos], batchSize: batch, maxLength: 128)
        let ps = prompts(tok)
        let reqs = seeds.enumerated().map {
            GenerationRequest(prompt: ps[$0.offset % ps.count], seed: $0.element, maxNewTokens: maxNew)
        }
        return try gen.generate(reqs, sampling: sampling, stop: stop)
    }

    @Test func batchingDoesNotChangeSamples() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        let seeds: [UInt64] = [11, 12, 13, 14, 15, 16, 17]
        for sampling in [SamplingParameters.greedy, SamplingParameters(temperature: 0.9, topP: 0.9)] {
            let one = try Self.run(m, tok, batch: 1, seeds: seeds, sampling: sampling)
            let three = try Self.run(m, tok, batch: 3, seeds: seeds, sampling: sampling)  // slots refill mid-run
            let all = try Self.run(m, tok, batch: 7, seeds: seeds, sampling: sampling)
            // identical tokens; log-probs agree to rounding (batched and single-row matmuls sum differently)
            func same(_ x: [Generation], _ y: [Generation]) -> Bool {
                zip(x, y).allSatisfy {
                    $0.tokens == $1.tokens && $0.text == $1.text && $0.finish == $1.finish
                        && abs($0.logProb - $1.logProb) <= 1e-4 * max(1, abs($0.logProb))
                }
            }
            #expect(same(one, three) && same(three, all), "\(sampling): batch size changed the output")
            #expect(one.allSatisfy { $0.tokens.count <= 40 })
        }
        let a = try Self.run(m, tok, batch: 4, seeds: [5, 6], sampling: SamplingParameters())
        let b = try Self.run(m, tok, batch: 4, seeds: [5, 6], sampling: SamplingParameters())
        let c = try Self.run(m, tok, batch: 4, seeds: [7, 8], sampling: SamplingParameters())
        #expect(a.map(\.tokens) == b.map(\.tokens))
        #expect(a.map(\.tokens) != c.map(\.tokens))
    }

    @Test func logProbsEqualTheFullForward() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        let ps = Self.prompts(tok)
        let out = try Self.run(m, tok, batch: 4, seeds: [1, 2, 3, 4], sampling: SamplingParameters(temperature: 1.2))
        for (i, g) in out.enumerated() {
            #expect((g.finish == .eos) == (g.endToken == TinyWorld.eos))
            let toks = g.tokens + (g.endToken.map { [$0] } ?? [])
            let want = try TinyWorld.fullLogProb(m, prompt: ps[i], tokens: toks)
            #expect(
                abs(g.logProb - want) <= 1e-4 * max(1, abs(want)), "request \(i): \(g.logProb) vs full forward \(want)")
            #expect(
                g.text
                    == String(
                        decoding: try tok.decode(g.tokens.map { UInt32($0) }, skipSpecialTokens: true), as: UTF8.self))
        }
    }

    @Test func stopStringsAndLimitsEndGenerations() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        let free = try Self.run(m, tok, batch: 2, seeds: [3, 4], sampling: .greedy, maxNew: 60)
        var checked = 0
        for (i, g) in free.enumerated() {
            #expect(g.finish == .length && g.tokens.count == 60 || g.finish == .eos)
            guard g.tokens.count > 12 else { continue }
            // a stop string taken from the middle of the free run ends the stopped run right there
            let bytes = Array(g.text.utf8)
            let stop = String(decoding: try tok.decode([UInt32(g.tokens[10])], skipSpecialTokens: true), as: UTF8.self)
            guard !stop.isEmpty, stop.utf8.count == 1 else { continue }
            let stopped = try Self.run(m, tok, batch: 2, seeds: [3, 4], sampling: .greedy, stop: [stop], maxNew: 60)[i]
            #expect(stopped.finish == .stop && stopped.stopString == stop)
            #expect(Array(free[i].tokens.prefix(stopped.tokens.count)) == stopped.tokens)
            #expect(stopped.text.hasSuffix(stop))
            checked += 1
            #expect(!String(decoding: bytes.prefix(stopped.text.utf8.count - 1), as: UTF8.self).contains(stop))
        }
        #expect(checked > 0, "no stop string was exercised")
        let short = try Self.run(m, tok, batch: 2, seeds: [3], sampling: SamplingParameters(), maxNew: 5)
        #expect(short[0].tokens.count <= 5)
    }

    @Test func rejectsPromptsThatDoNotFit() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let m = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        let gen = try Generator(model: m, tokenizer: tok, stopTokens: [TinyWorld.eos], batchSize: 2, maxLength: 16)
        #expect(throws: InferError.self) {
            try gen.generate(
                [GenerationRequest(prompt: [Int32](repeating: 65, count: 16), maxNewTokens: 4)], sampling: .greedy)
        }
        #expect(throws: InferError.self) {
            try gen.generate([GenerationRequest(prompt: [], maxNewTokens: 4)], sampling: .greedy)
        }
        // the position limit ends a generation with .length
        let g = try gen.generate(
            [GenerationRequest(prompt: [Int32](repeating: 65, count: 12), maxNewTokens: 50)], sampling: .greedy)
        #expect(g[0].finish != .length || g[0].tokens.count == 4)
    }

    @Test func chatTemplatesAndModelFiles() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let im = try InferenceModel.load(path: dir)
        #expect(try im.chatTemplate("auto") == .chatML(defaultSystem: "You are tiny."))
        #expect(try im.chatTemplate("none") == .none)
        #expect(throws: ModelError.self) { try im.chatTemplate("jinja") }
        #expect(
            ChatTemplate.chatML(defaultSystem: "S").render("Hi")
                == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(
            ChatTemplate.chatML(defaultSystem: nil).render("Hi")
                == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(ChatTemplate.detect(fromJinja: "{{ bos_token }}{% for m in messages %}[INST] ...") == .none)
        // a Qwen2.5-style template: a tools branch splices the first message before the literal default
        let qwen =
            "{%- if tools %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}"
        #expect(ChatTemplate.detect(fromJinja: qwen) == .chatML(defaultSystem: "You are Qwen."))
        let ids = im.encodePrompt("Hi", template: .chatML(defaultSystem: nil))
        #expect(ids.first == 257 && ids.filter { $0 == 258 }.count == 1)  // markers are control tokens
        #expect(im.stopTokens.contains(TinyWorld.eos))
        #expect(throws: ModelError.self) { try InferenceModel.load(path: dir, valueHead: true) }  // no value head saved
        #expect(throws: ModelError.self) { try InferenceModel.load(path: dir + "/missing") }
    }

    /// The SmolLM2 fixture's prompts, templated and tokenized here, give transformers' ids.
    @Test func smolLM2PromptsTokenizeLikeTransformers() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.appendingPathComponent("Fixtures/generated/smollm2-generate").path
        let tokPath = root.appendingPathComponent("Fixtures/generated/tokenizers/smollm2.tokenizer.json").path
        guard FileManager.default.fileExists(atPath: dir + "/expected.safetensors"),
            FileManager.default.fileExists(atPath: tokPath)
        else {
            if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" {
                Issue.record("fixtures missing: run scripts/gen-fixtures.sh")
            }
            return
        }
        let meta =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/prompts.json")))
            as! [String: Any]
        let g = try GGUFFile(path: meta["gguf"] as! String)
        guard case .string(let jinja)? = g.metadata["tokenizer.chat_template"] else {
            Issue.record("no chat template")
            return
        }
        let template = ChatTemplate.detect(fromJinja: jinja)
        let tok = try Tokenizer.load(path: tokPath)
        let e = try SafeTensorsFile(path: dir + "/expected.safetensors")
        for (i, p) in (meta["prompts"] as! [[String: Any]]).enumerated() {
            let text = p["text"] as! String
            let rendered = (p["chat"] as! Bool) ? template.render(text) : text
            #expect(rendered == p["templated"] as! String)
            let ids = tok.encode(rendered).map { Int64($0) }
            #expect(ids == (try e.int64s("prompt.\(i)")), "prompt \(i) ids differ from transformers'")
        }
    }
}

/// The tokenizer rebuilt from SmolLM2's GGUF metadata encodes like HF's tokenizer built by the oracle.
@Suite struct GGUFTokenizerTests {
    @Test func smolLM2FromMetadataMatchesTheOracleTokenizer() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let src = root.appendingPathComponent("Fixtures/generated/smollm2/source.json").path
        let tokPath = root.appendingPathComponent("Fixtures/generated/tokenizers/smollm2.tokenizer.json").path
        guard let d = FileManager.default.contents(atPath: src), FileManager.default.fileExists(atPath: tokPath),
            let o = try JSONSerialization.jsonObject(with: d) as? [String: String], let gguf = o["gguf"]
        else {
            if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" {
                Issue.record("fixtures missing: run scripts/gen-fixtures.sh")
            }
            return
        }
        let mine = try GGUFTokenizer.load(try GGUFFile(path: gguf))
        let oracle = try Tokenizer.load(path: tokPath)
        #expect(mine.vocabSize == oracle.vocabSize && mine.eosId == 2 && mine.bosId == 1)
        let texts = [
            "Hello, world! 2024 is a year.", "<|im_start|>user\nWhat is 12 + 35?<|im_end|>\n", "naïve café — 東京 🎉",
            "  leading spaces\tand\ttabs\n\n\nnewlines", "def f(x):\n    return x ** 2  # comment",
        ]
        for t in texts { #expect(mine.encode(t) == oracle.encode(t), "\(t.debugDescription)") }
        // and on the bench text, in chunks
        let bench = try String(
            contentsOfFile: root.appendingPathComponent("Fixtures/generated/tokenizers/bench.txt").path, encoding: .utf8
        )
        let sample = String(bench.prefix(200_000))
        #expect(mine.encode(sample) == oracle.encode(sample))
    }
}
