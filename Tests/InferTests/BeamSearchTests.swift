import Format
import Foundation
import Infer
import Ingest
import Models
import TestSupport
import Testing
import Train

/// Step-level beam search on tiny random models: scores are read at the last token of each candidate's full
/// prefix (checked against a full forward without cache), log-probs match the full forward, the answer is
/// the best finished candidate, and width 1 at temperature 0 reproduces greedy decoding.
@Suite struct BeamSearchTests {
    /// Ends of responses for the tests: EOS plus punctuation and digits, so random models finish often.
    static let ends: Set<Int32> = Set([TinyWorld.eos] + Array("!?.,;:0123456789".utf8).map { Int32($0) })

    static func config(width: Int = 3, temperature: Double = 1) -> BeamSearchConfig {
        var c = BeamSearchConfig()
        c.width = width
        c.samplesPerBeam = width
        c.maxSteps = 6
        c.maxStepTokens = 8
        c.maxNewTokens = 30
        c.stepDelimiters = ["a", "e", "i", "o", "u", " "]
        c.sampling = SamplingParameters(temperature: temperature)
        return c
    }

    /// Wraps a scorer and rebuilds each slot's full token sequence from (parent, step), to check scores.
    final class Recording: CandidateScorer {
        let inner: CandidateScorer
        var name: String { inner.name }
        var sequences: [Int: [Int32]] = [:]
        var scored: [([Int32], Double)] = []
        init(_ inner: CandidateScorer) { self.inner = inner }
        func reserve(slots: Int, maxLength: Int, cacheTokens: Int) throws {
            try inner.reserve(slots: slots, maxLength: maxLength, cacheTokens: cacheTokens)
        }
        func begin(prompt: [Int32], root: Int) throws -> Double {
            sequences = [root: prompt]
            return try inner.begin(prompt: prompt, root: root)
        }
        func score(parents: [Int], slots: [Int], steps: [[Int32]], logProbs: [Double]) throws -> [Double] {
            let s = try inner.score(parents: parents, slots: slots, steps: steps, logProbs: logProbs)
            for i in slots.indices {
                sequences[slots[i]] = sequences[parents[i]]! + steps[i]
                scored.append((sequences[slots[i]]!, s[i]))
            }
            return s
        }
        func release(_ slot: Int) { inner.release(slot) }
    }

    @Test func valueScoresAreAtTheLastTokenOfTheFullPrefix() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policy = try TinyWorld.model(seed: 1), value = try TinyWorld.model(seed: 2, valueHead: true)
        let tok = try TinyWorld.tokenizer(dir)
        let prompt = tok.encode("Question: what is two plus two?").map { Int32($0) }
        let rec = Recording(try ValueScorer(model: value))
        let search = try BeamSearch(
            policy: policy, tokenizer: tok, stopTokens: Self.ends, scorer: rec,
            config: Self.config(), maxPromptTokens: 64)
        let r = try search.run(prompt: prompt, seed: 3)
        #expect(rec.scored.count == r.candidatesScored && r.candidatesScored >= 9)
        var worst = 0.0
        for (seq, score) in rec.scored {
            let want = try TinyWorld.fullValue(value, seq)
            worst = max(worst, abs(score - want) / max(1, abs(want)))
        }
        print(
            "beam search: \(rec.scored.count) value scores, worst rel err \(worst) vs the full forward; \(r.finished.count) finished"
        )
        #expect(worst < 1e-4)
        #expect(!r.finished.isEmpty)
        // finished candidates: scored without their end token, answer = the best of them
        for c in r.finished {
            #expect(abs(c.score - (try TinyWorld.fullValue(value, prompt + c.tokens))) <= 1e-4 * max(1, abs(c.score)))
            let toks = c.tokens + (c.endToken.map { [$0] } ?? [])
            let lp = try TinyWorld.fullLogProb(policy, prompt: prompt, tokens: toks)
            #expect(abs(c.logProb - lp) <= 1e-4 * max(1, abs(lp)), "log-prob \(c.logProb) vs full forward \(lp)")
            #expect(c.finish == .eos ? c.endToken != nil : c.tokens.count == 30)
        }
        #expect(r.best.score == r.finished.map(\.score).max())
        // reproducible for a seed
        let again = try search.run(prompt: prompt, seed: 3)
        #expect(again.best.tokens == r.best.tokens && again.finished.map(\.tokens) == r.finished.map(\.tokens))
        let other = try search.run(prompt: prompt, seed: 4)
        #expect(other.finished.map(\.tokens) != r.finished.map(\.tokens))
    }

    @Test func logProbScorerRanksByCumulativeLogProb() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policy = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        let prompt = tok.encode("Say something.").map { Int32($0) }
        let search = try BeamSearch(
            policy: policy, tokenizer: tok, stopTokens: Self.ends, scorer: LogProbScorer(),
            config: Self.config(width: 2), maxPromptTokens: 32)
        let r = try search.run(prompt: prompt, seed: 1)
        for c in r.finished { #expect(c.score == c.logProb) }
        if !r.finished.isEmpty { #expect(r.best.logProb == r.finished.map(\.logProb).max()) }
    }

    /// One beam, one sample, temperature 0: every step continues the greedy sequence, so the search's
    /// answer is greedy decoding's, across forks, deferred tokens and step boundaries.
    @Test func widthOneAtTemperatureZeroIsGreedy() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policy = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        for text in ["Tell me a story", "12 + 7 ="] {
            let prompt = tok.encode(text).map { Int32($0) }
            var c = Self.config(width: 1, temperature: 0)
            c.maxSteps = 40
            let search = try BeamSearch(
                policy: policy, tokenizer: tok, stopTokens: Self.ends, scorer: LogProbScorer(),
                config: c, maxPromptTokens: 32)
            let r = try search.run(prompt: prompt, seed: 9)
            let gen = try Generator(model: policy, tokenizer: tok, stopTokens: Self.ends, batchSize: 1, maxLength: 128)
            let g = try gen.generate([GenerationRequest(prompt: prompt, maxNewTokens: 30)], sampling: .greedy)[0]
            #expect(r.best.tokens == g.tokens, "\(text): beam \(r.best.tokens) vs greedy \(g.tokens)")
            #expect(abs(r.best.logProb - g.logProb) <= 1e-4 * max(1, abs(g.logProb)))
            #expect(r.best.steps >= 2, "the greedy answer should span several steps")
        }
    }

    @Test func rejectsBadSettings() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let policy = try TinyWorld.model(seed: 1), tok = try TinyWorld.tokenizer(dir)
        var c = Self.config()
        c.width = 0
        #expect(throws: InferError.self) {
            try BeamSearch(
                policy: policy, tokenizer: tok, stopTokens: Self.ends, scorer: LogProbScorer(), config: c,
                maxPromptTokens: 8)
        }
        #expect(throws: InferError.self) { try ValueScorer(model: policy) }  // no value head
        let s = try BeamSearch(
            policy: policy, tokenizer: tok, stopTokens: Self.ends, scorer: LogProbScorer(),
            config: Self.config(), maxPromptTokens: 8)
        #expect(throws: InferError.self) { try s.run(prompt: [Int32](repeating: 65, count: 9), seed: 0) }
    }
}

/// The library API a caller in another module uses in-process: a model in memory, sample and evaluate.
@Suite struct InProcessAPITests {
    @Test func sampleAndEvaluateInProcess() throws {
        let dir = try TinyWorld.write()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let im = InferenceModel(model: try TinyWorld.model(seed: 1), tokenizer: try TinyWorld.tokenizer(dir))
        let problems = (0..<3).map {
            Problem(id: "q\($0)", prompt: "What is \($0) + 1?", answer: "\($0 + 1)", line: $0 + 1)
        }
        var options = SampleOptions()
        options.n = 2
        options.maxNewTokens = 10
        let out = try ResumableJSONL(path: TinyWorld.tempDir("api") + "/s.jsonl", overwrite: true)
        let s = try SampleJob.run(
            model: im, template: .none, problems: problems, verifier: GSM8KVerifier(), options: options, output: out)
        try out.finish()
        #expect(s.sampled == 3 && s.lines == 6 && s.meanReward != nil)
        var seen: [EvalRecord] = []
        let greedy = try Evaluator.run(
            model: im, template: .none, problems: problems, verifier: GSM8KVerifier(),
            method: .greedy(batchSize: 2), maxNewTokens: 10, output: nil, onRecord: { seen.append($0) })
        #expect(greedy.problems == 3 && seen.count == 3 && greedy.tokensGenerated > 0)
        var c = BeamSearchConfig()
        c.width = 2
        c.samplesPerBeam = 2
        c.maxSteps = 2
        c.maxNewTokens = 10
        c.stepDelimiters = [" "]
        let search = try BeamSearch(
            policy: im.model, tokenizer: im.tokenizer, stopTokens: im.stopTokens,
            scorer: try ValueScorer(model: try TinyWorld.model(seed: 2, valueHead: true)),
            config: c, maxPromptTokens: 32)
        let beam = try Evaluator.run(
            model: im, template: .none, problems: problems, verifier: GSM8KVerifier(),
            method: .beam(search), maxNewTokens: 10, output: nil)
        #expect(beam.problems == 3 && beam.candidatesScored > 0)
    }
}

@Suite struct ValueReaderTests {
    @Test func valuesAtStateEndsMatchTheFullForward() throws {
        let value = try TinyWorld.model(seed: 2, valueHead: true)
        let r = try ValueReader(model: value)
        let prompts: [[Int32]] = [[1, 2, 3], [7, 8], [9, 10, 11, 12]]
        let responses: [[Int32]] = [[4, 5, 6, 7], [9], [13, 14, 15]]
        let ends = [[2, 4], [1], [0, 3]]
        let got = try r.values(prompts: prompts, responses: responses, ends: ends, batch: 2)
        for i in prompts.indices {
            let want =
                try [TinyWorld.fullValue(value, prompts[i])]
                + ends[i].map { try TinyWorld.fullValue(value, prompts[i] + responses[i].prefix($0)) }
            #expect(got[i].count == ends[i].count + 1)
            for (g, w) in zip(got[i], want) {
                #expect(abs(g - w) <= 1e-4 * max(1, abs(w)), "trajectory \(i): \(g) vs \(w)")
            }
        }
        #expect(throws: InferError.self) { try r.values(prompts: [[1]], responses: [[2]], ends: [[2]]) }
        #expect(throws: InferError.self) { try ValueReader(model: try TinyWorld.model(seed: 1)) }
    }
}
