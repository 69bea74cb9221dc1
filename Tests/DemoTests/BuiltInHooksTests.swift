import Foundation
import Format
import Ingest
import Models
import Support
import Rounds
import Testing
import Tokenizers
import Train
@testable import Demo

/// The built-in hooks: what the trainer's identity depends on, and what the inference hook reads off the models.
@Suite struct BuiltInHooksTests {
    @Test func aMethodsIdentityIgnoresSettingsItDoesNotRead() {
        let base = DemoTrainingSettings()
        var other = base
        other.valueLearningRate *= 4
        other.beta = 0.05
        other.preferenceBeta = 0.7
        other.ktoBeta = 0.7
        other.learningRates["OREO"] = 3e-3
        // SFT and RFT read none of these: same configuration, so the same run is reused.
        for m in [DemoMethod.sft, .rft] { #expect(base.trainConfig(m, seed: 3) == other.trainConfig(m, seed: 3)) }
        // DPO and KTO read the preference beta; OREO the value lr, beta and its lr; DQO the value lr and beta.
        for m in [DemoMethod.dpo, .kto, .oreo, .dqo] {
            #expect(base.trainConfig(m, seed: 3) != other.trainConfig(m, seed: 3))
        }
        var sft = base
        sft.sftSteps += 1
        #expect(base.trainConfig(.sft, seed: 3) != sft.trainConfig(.sft, seed: 3))
        #expect(base.trainConfig(.oreo, seed: 3) == sft.trainConfig(.oreo, seed: 3))
        #expect(base.trainConfig(.sft, seed: 3) != base.trainConfig(.sft, seed: 4))
    }

    @Test func aRunTheBudgetCutIsContinuedThenReused() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = PipelineTests.config(dir)
        config.seeds = [1]
        let data = try DemoPipeline(config: config).run()
        var t = DemoTrainingSettings()
        t.layers = 1
        t.hidden = 16
        t.heads = 2
        t.intermediate = 32
        t.sftSteps = 30
        t.batchTokens = 600
        let trainer = InProcessTrainer(training: t)
        let request = { (budget: Double) in
            TrainRequest(
                method: .sft, data: data.seeds[0].sftData, validation: nil, initialization: nil, reference: nil,
                output: dir + "/models/sft", tokenizer: data.tokenizer, seed: 1, timeBudget: budget, threads: 1)
        }
        // Spent after the first session (a tenth of the run): stopped there, with a checkpoint.
        let cut = try trainer.train(request(1e-6)) { _ in }
        #expect(cut.updates == 3 && cut.plannedUpdates == 30 && cut.continuedFrom == nil && !cut.reused)
        #expect(cut.status.line("3 updates") == "3 updates (stopped by the time budget after 3 of 30 updates)")
        #expect(cut.notes.contains { $0.contains("stopped by its time budget") })
        // With time: continued from that checkpoint to the end.
        let rest = try trainer.train(request(600)) { _ in }
        #expect(rest.updates == 30 && rest.continuedFrom == 3 && !rest.reused)
        #expect(rest.status.line("30 updates") == "30 updates (continued from step 3)")
        // Finished: reused as it is.
        let again = try trainer.train(request(600)) { _ in }
        #expect(again.reused && again.updates == 30 && again.continuedFrom == nil && again.identity == rest.identity)
        #expect(again.status == .done)
    }

    /// The report rows name a pretrained model by its file name: results.md and results.json name no
    /// directory of the machine that wrote them.
    @Test func reportRowsNameThePretrainedModelWithoutItsDirectory() {
        var t = DemoTrainingSettings()
        t.initModel = "/home/someone/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        let model = t.rows.first { $0.key == "model" }?.value
        #expect(model == "SmolLM2-135M-Instruct.Q4_1.gguf (pretrained)")
    }

    /// A tokenizer, a random policy with a value head (saved twice: as policy and as value network) and samples.
    static func world() throws -> (
        dir: String, tokenizer: String, model: TrainedModel, samples: [SampledResponse], net: TransformerModel
    ) {
        let dir = DemoTestSupport.tempDir()
        let tok = TaskTokenizer.learn(from: ["Mia has 5 apples. She buys 3 more.\n5+3=8\n#### 8"], maxMerges: 8)
        let path = try tok.write(directory: dir)
        let config = DemoTrainingSettings().modelConfig(vocab: tok.vocabSize)
        var small = config
        small.hiddenSize = 16
        small.layers = 1
        small.heads = 2
        small.kvHeads = 2
        small.headDim = 8
        small.intermediateSize = 24
        let net = try TransformerModel(config: small, maxTokens: 512, valueHead: true)
        net.initializeRandomly(seed: 7, std: 0.3)
        var g = SplitMix64(seed: 9)
        try net.setParameter("value_head.weight", (0..<16).map { _ in Float(g.unit() - 0.5) })
        try ModelCheckpoint.save(net, directory: dir + "/value")
        // The same backbone without the head as the policy (a checkpoint with a head is not a policy checkpoint).
        let policy = try TransformerModel(config: small, maxTokens: 512)
        for spec in policy.layout.specs { try policy.setParameter(spec.name, try #require(net.parameter(spec.name))) }
        try ModelCheckpoint.save(policy, directory: dir + "/policy")
        let t = try Tokenizer.load(path: path)
        let samples = [
            SampledResponse(
                promptIds: [TaskTokenizer.bosId] + t.encode("Mia has 5 apples.\n"),
                responseIds: t.encode("5+3=8\n#### 8") + [TaskTokenizer.eosId]),
            SampledResponse(
                // unfinished
                promptIds: [TaskTokenizer.bosId] + t.encode("Ben has 2.\n"), responseIds: t.encode("2+2=5\n2")),
        ]
        let model = TrainedModel(
            method: .oreo, checkpoint: dir + "/policy", hasValueHead: true, seconds: 0, updates: 0,
            valueCheckpoint: dir + "/value")
        return (dir, path, model, samples, net)
    }

    @Test func scoresReadTheValueAtEachPrefixAndTheCumulativeLogProb() throws {
        let w = try BuiltInHooksTests.world()
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        let hook = InProcessInference(tokenizer: w.tokenizer)
        let verifier = TaskVerifier(tokenizer: try Tokenizer.load(path: w.tokenizer))
        let ends = w.samples.map { verifier.lineEnds($0.responseIds) }
        let values = try hook.scores(w.model, scorer: "value", samples: w.samples, stepEnds: ends, threads: 1) { _ in }
        let logProbs = try hook.scores(w.model, scorer: "logprob", samples: w.samples, stepEnds: ends, threads: 1) {
            _ in
        }
        let policy = try ModelCheckpoint.load(directory: w.dir + "/policy", maxTokens: 512)
        for (k, s) in w.samples.enumerated() {
            // One sample alone through the full forward pass: V at position p-1+e (the end token's own position
            // excluded for a finished sample) and the sum of the response's log-probs up to e.
            let seq = (s.promptIds + s.responseIds).map { Int32(bitPattern: $0) }
            var v: [Float] = [], lp: [Float] = []
            try w.net.forwardValues(PackedBatch(sequences: [seq]), values: &v)
            try policy.forward(PackedBatch(sequences: [seq]), logProbs: &lp)
            let p = s.promptIds.count, t = s.responseIds.count
            let finished = s.responseIds.last == TaskTokenizer.eosId
            #expect(values[k].count == ends[k].count + 1 && logProbs[k].count == ends[k].count + 1)
            for (j, e) in ([0] + ends[k]).enumerated() {
                let at = p - 1 + (finished && e == t ? t - 1 : e)
                #expect(abs(values[k][j] - Double(v[at])) < 1e-5)
                let sum = (0..<e).reduce(0.0) { $0 + Double(lp[p - 1 + $1]) }
                #expect(abs(logProbs[k][j] - sum) < 1e-4)
            }
        }
    }

    @Test func decodingDoesNotDependOnTheThreads() throws {
        let w = try BuiltInHooksTests.world()
        defer { try? FileManager.default.removeItem(atPath: w.dir) }
        let hook = InProcessInference(tokenizer: w.tokenizer, batchSize: 3)
        let prompts = (0..<7).map {
            PromptRecord(id: "p\($0)", prompt: "Mia has \($0) apples.\n", key: AnswerKey(answer: $0, values: [$0]))
        }
        for d in [Decoding.greedy, .beam(width: 2, scorer: "value"), .beam(width: 2, scorer: "logprob")] {
            let one = try hook.decode(w.model, prompts: prompts, decoding: d, maxTokens: 12, seed: 5, threads: 1) { _ in
            }
            let two = try hook.decode(w.model, prompts: prompts, decoding: d, maxTokens: 12, seed: 5, threads: 2) { _ in
            }
            #expect(one == two, "\(d.label)")
            #expect(one.allSatisfy { !$0.responseIds.isEmpty && $0.responseIds.count <= 13 })
            if !d.isGreedy { #expect(one.allSatisfy { $0.candidatesScored > 0 }) }
        }
        let a = try hook.sample(w.model, prompts: prompts, count: 3, temperature: 1, maxTokens: 12, seed: 2, threads: 1)
        { _ in }
        let b = try hook.sample(w.model, prompts: prompts, count: 3, temperature: 1, maxTokens: 12, seed: 2, threads: 2)
        { _ in }
        #expect(a == b && a.count == 7 && a.allSatisfy { $0.count == 3 })
        #expect(Set(a.flatMap { $0.map(\.responseIds) }).count > 7)  // temperature 1: the samples differ
    }
}
