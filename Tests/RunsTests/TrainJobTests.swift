import Checkpoint
import Format
import Foundation
import Models
import TestSupport
import Testing
import Train
import Runs

/// Training runs end to end on tiny random models and synthetic datasets.
@Suite struct TrainJobTests {
    /// A config for tiny models: large rates, a batch of 16 toy sequences per step.
    func tinyTrain(_ method: TrainMethod, steps: Int = 0) -> TrainConfig {
        var c = TrainConfig()
        c.method = method
        c.maxSteps = steps
        c.loader.tokensPerMicroBatch = 64
        c.learningRate = 3e-3
        c.valueLearningRate = 3e-3
        c.oreo.beta = 0.1
        c.warmupFraction = 0
        return c
    }

    /// OREO for two epochs with a checkpoint every 3 steps in micro-batches of 24 tokens: runs that stop midway.
    func resumableOREO() -> TrainConfig {
        var c = tinyTrain(.oreo)
        c.epochs = 2
        c.checkpointEvery = 3
        c.loader.tokensPerMicroBatch = 24
        return c
    }

    /// A seeded random INIT saved at root/init and a toy dataset at root/data.
    func initAndData(_ root: String, seed: UInt64, problems: Int, dataSeed: UInt64) throws -> (
        TransformerModel, Dataset
    ) {
        let m = try TransformerModel(config: tinyConfig(), maxTokens: 64)
        m.initializeRandomly(seed: seed)
        try ModelCheckpoint.save(m, directory: root + "/init")
        return (m, try writeDataset(toyTask(problems, seed: dataSeed), vocab: 16, at: root + "/data"))
    }

    func mean(_ lines: [[String: Any]], _ key: String, _ range: Range<Int>) -> Double {
        let xs = lines[range].compactMap { $0[key] as? Double }
        return xs.reduce(0, +) / Double(max(1, xs.count))
    }

    @Test func sftLearnsTheToyTask() throws {
        let root = temporaryDirectory("sft")
        try writeDataset(toyTask(64, seed: 1).filter { $0.reward == 1 }, vocab: 16, at: root + "/data")
        var c = tinyTrain(.sft, steps: 150)
        c.epochs = 1
        let job = try TrainJob(
            config: c, model: .random(tinyConfig(), seed: 3), data: root + "/data", run: root + "/run")
        let summary = try job.run()
        #expect(summary.finished && summary.steps == 150)
        let lines = try metricLines(root + "/run")
        #expect(lines.count == 150)
        let first = mean(lines, "loss", 0..<5), last = mean(lines, "loss", 140..<150)
        #expect(first > 2 && last < 0.8, "NLL from \(first) to \(last)")
        // The trained policy loads back as INIT and gives the right answer most of the probability.
        let m = try ModelCheckpoint.load(directory: root + "/run/policy", maxTokens: 16)
        var lp: [Float] = []
        try m.forward(
            PackedBatch(tokens: [1, 3, 7, 15], sequenceLengths: [4], targets: [-1, 7, 15, -1]), logProbs: &lp)
        #expect(lp[1] > -0.7, "log p(right answer) = \(lp[1])")
    }

    /// OREO from a random INIT (also the reference, exact KL): the right answer's log-prob rises against the
    /// wrong ones', and the value network separates positive from negative trajectories.
    @Test func oreoLearnsTheToyTask() throws {
        let root = temporaryDirectory("oreo")
        try writeDataset(toyTask(64, seed: 2), vocab: 16, at: root + "/data")
        let c = tinyTrain(.oreo, steps: 200)
        let job = try TrainJob(
            config: c, model: .random(tinyConfig(), seed: 4), data: root + "/data", run: root + "/run")
        #expect(job.reference != nil && job.value != nil)
        try job.run()
        let lines = try metricLines(root + "/run")
        let gap0 = mean(lines, "logp_pos", 0..<3) - mean(lines, "logp_neg", 0..<3)
        let gap1 = mean(lines, "logp_pos", 190..<200) - mean(lines, "logp_neg", 190..<200)
        #expect(gap1 > gap0 + 2, "log-prob gap positive - negative from \(gap0) to \(gap1)")
        // The right answer's log-prob at the prompt, before and after (the EOS after it stays near the
        // reference: its residual already holds with V(s_1) = 1, so only the answer token moves).
        func answerLogProb(_ m: TransformerModel) throws -> Double {
            var lp: [Float] = []
            let seqs: [[Int32]] = (2...5).map { [1, Int32($0), Int32($0) + 4] }
            try m.forward(
                PackedBatch(
                    tokens: seqs.flatMap { $0 }, sequenceLengths: [3, 3, 3, 3],
                    targets: seqs.flatMap { [-1, $0[2], -1] }), logProbs: &lp)
            return lp.reduce(0) { $0 + Double($1) } / 4
        }
        let before = try answerLogProb(try ModelSource.random(tinyConfig(), seed: 4).load(maxTokens: 16))
        let after = try answerLogProb(job.policy)
        #expect(after > before + 1.5, "log p(right answer) from \(before) to \(after)")
        let v = mean(lines, "v_pos", 190..<200) - mean(lines, "v_neg", 190..<200)
        #expect(v > 0.2, "V(pos) - V(neg) = \(v)")
        #expect(mean(lines, "value_loss", 190..<200) < mean(lines, "value_loss", 0..<3))
        #expect((lines.last!["kl"] as? Double ?? -1) > 0)
    }

    /// Each method runs, records its own metrics, and leaves checkpoints that load back as INIT.
    @Test(arguments: TrainMethod.allCases)
    func everyMethodTrainsAndCheckpoints(method: TrainMethod) throws {
        let root = temporaryDirectory("method-\(method)")
        let initDir = root + "/init"
        let (_, ds) = try initAndData(root, seed: 5, problems: 40, dataSeed: 3)
        var c = tinyTrain(method)
        c.checkpointEvery = 2
        c.keepCheckpoints = 0
        c.loader.microBatchesPerStep = 2
        c.loader.tokensPerMicroBatch = 24
        if method == .dqo || method == .kto || method == .dpo {
            // These read the stored reference column: score it with the INIT model first.
            let ref = try ModelCheckpoint.load(directory: initDir, maxTokens: 64)
            _ = try ReferenceScorer.score(dataset: ds, model: ref)
        }
        let job = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/run")
        let summary = try job.run()
        #expect(summary.finished && summary.steps == job.totalSteps && job.totalSteps >= 2)
        let lines = try metricLines(root + "/run")
        #expect(lines.count == summary.steps)
        let last = lines.last!
        #expect((last["loss"] as? Double)?.isFinite == true && last["grad_norm"] != nil && last["tokens_per_s"] != nil)
        #expect((last["value_loss"] != nil) == method.hasValue)
        #expect((last["pair_accuracy"] != nil) == (method == .dpo))
        #expect((last["importance_weight"] != nil) == (method == .dqo))
        let policy = try ModelCheckpoint.load(directory: root + "/run/policy", maxTokens: 8)
        #expect(sameParameters(policy, job.policy))
        if method.hasValue {
            let value = try ModelCheckpoint.load(directory: root + "/run/value", maxTokens: 8, valueHead: true)
            #expect(sameParameters(value, job.value!))
            #expect(value.parameter("value_head.weight")!.contains { $0 != 0 })
        }
        let kept = try FileManager.default.contentsOfDirectory(atPath: root + "/run/checkpoints").sorted()
        #expect(kept == [String(format: "step-%08d", summary.steps)], "\(kept)")
        for f in ["config.json", "data.json", "metrics.jsonl", "latest/state.json", "latest/optimizer.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: root + "/run/" + f), "\(f)")
        }
    }

    /// An interrupted run (killed after step 5, last checkpoint at step 3) resumed reaches bitwise the
    /// weights, optimizer moments and losses of an uninterrupted run, in either precision.
    @Test(arguments: [(false, Precision.fp32), (true, .fp32), (false, .bf16)])
    func interruptedAndResumedRunIsBitwiseTheSame(k3: Bool, precision: Precision) throws {
        if precision == .bf16 && !BF16GEMM.isAvailable { return }
        let root = temporaryDirectory("resume-\(k3)-\(precision)")
        let initDir = root + "/init"
        let (_, ds) = try initAndData(root, seed: 6, problems: 48, dataSeed: 4)
        if k3 {
            _ = try ReferenceScorer.score(
                dataset: ds, model: try ModelCheckpoint.load(directory: initDir, maxTokens: 64))
        }
        var c = tinyTrain(.oreo)
        c.oreo.k3 = k3
        c.epochs = 3
        c.checkpointEvery = 3
        c.loader.tokensPerMicroBatch = 24
        c.loader.microBatchesPerStep = 2
        c.warmupFraction = 0.2
        c.precision = precision == .fp32 ? nil : precision
        let whole = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/a")
        #expect(whole.totalSteps >= 12 && whole.policy.precision == precision)
        try whole.run()

        let first = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/b")
        let stopped = try first.run(stopAfter: 5, checkpointAtStop: false)
        #expect(!stopped.finished && stopped.checkpoint!.hasSuffix("step-00000003"))
        #expect(throws: RunDirectoryError.self) {
            try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/b")
        }
        let resumed = try TrainJob(
            config: c, model: .directory(initDir), data: root + "/data", run: root + "/b", resume: true)
        #expect(resumed.step == 3 && resumed.notes.contains { $0.contains("resuming") })
        try resumed.run()
        #expect(sameParameters(whole.policy, resumed.policy))
        #expect(sameParameters(whole.value!, resumed.value!))
        let a = try metricLines(root + "/a"), b = try metricLines(root + "/b")
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) {
            for key in ["loss", "value_loss", "grad_norm", "value_grad_norm", "lr", "epoch"] {
                #expect(x[key] as? Double == y[key] as? Double, "step \(x["step"]!) \(key)")
            }
        }
        let oa = try SafeTensorsFile(path: root + "/a/latest/optimizer.safetensors")
        let ob = try SafeTensorsFile(path: root + "/b/latest/optimizer.safetensors")
        for name in ["policy.m", "policy.v", "value.m", "value.v"] { #expect(try oa.floats(name) == ob.floats(name)) }

        // A different configuration does not resume this run.
        var other = c
        other.learningRate *= 2
        #expect(throws: RunDirectoryError.self) {
            try TrainJob(
                config: other, model: .directory(initDir), data: root + "/data", run: root + "/b", resume: true)
        }
    }

    /// LoRA runs (policy and value adapters, or a full policy with a LoRA value as in the paper's 7B run): the
    /// base stays frozen, the adapters and the value head train, checkpoints hold PEFT adapters, and an
    /// interrupted run resumes to bitwise the same adapters, moments and losses.
    @Test(arguments: [true, false])
    func loraRunTrainsAdaptersAndResumesExactly(policyLoRA: Bool) throws {
        let root = temporaryDirectory("lora-\(policyLoRA)")
        let initDir = root + "/init"
        let (m, _) = try initAndData(root, seed: 6, problems: 48, dataSeed: 4)
        var c = resumableOREO()
        if policyLoRA {
            c.lora = LoRASettings()
            c.lora!.rank = 4
            c.lora!.targets = "q,v,down"
        }
        c.valueLora = LoRASettings()
        c.valueLora!.rank = 2
        c.valueLora!.alpha = 8
        let whole = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/a")
        try whole.run()
        #expect(whole.value!.trainsBase == false && whole.value!.adapters!.config.scale == 4)
        // the value network's backbone is INIT's, untouched (its head, last in its layout, lives in the adapters)
        #expect(Array(whole.value!.parameters.toArray().prefix(m.layout.total)) == m.parameters.toArray())
        if policyLoRA {
            // the exact KL's reference is the policy's frozen base itself, and computes what INIT computes
            #expect(whole.reference!.parameters === whole.policy.parameters)
            // and so is the value network's backbone; frozen bases hold no gradient buffers
            #expect(whole.value!.parameters === whole.policy.parameters)
            #expect(whole.policy.gradients.count == 0 && whole.value!.gradients.count == 0)
            // the memory report counts the one base once, and no gradients
            let mem = Dictionary(uniqueKeysWithValues: whole.memoryEstimate.map { ($0.kind, $0.bytes) })
            #expect(mem["weights"] == 4 * m.layout.total && mem["gradients"] == 0 && mem["adapters"]! > 0)
            let b = PackedBatch(sequences: [[1, 2, 3, 4, 5], [6, 7, 8]])
            var shared: [Float] = [], loaded: [Float] = []
            try whole.reference!.forward(b, logProbs: &shared)
            try ModelCheckpoint.load(directory: initDir, maxTokens: 64).forward(b, logProbs: &loaded)
            #expect(shared == loaded)
            #expect(sameParameters(whole.policy, m))
            #expect(whole.policy.adapters!.config.targets == [.q, .v, .down])
        } else {
            #expect(!sameParameters(whole.policy, m) && whole.policy.adapters == nil)
        }
        let head = whole.value!.adapters!.tensor("value_head.weight")!
        #expect(head.contains { $0 != 0 })
        // The checkpoint's value is a PEFT adapter, its head among the modules PEFT saves.
        let saved = try PEFTAdapter.load(directory: root + "/a/latest/value", for: whole.value!)
        #expect(saved.parameters.toArray() == whole.value!.adapters!.parameters.toArray())

        // A new run can start from the adapters (their rank, alpha and targets become its settings).
        if policyLoRA {
            var plain = c
            plain.lora = nil
            plain.valueLora = nil
            let next = try TrainJob(
                config: plain, model: .directory(initDir), data: root + "/data", run: root + "/c",
                adapter: root + "/a/latest/policy", valueAdapter: root + "/a/latest/value")
            #expect(next.config.lora?.rank == 4 && next.config.valueLora?.alpha == 8)
            #expect(next.policy.adapters?.parameters.toArray() == whole.policy.adapters?.parameters.toArray())
            #expect(next.value?.adapters?.parameters.toArray() == whole.value?.adapters?.parameters.toArray())
        }

        let first = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/b")
        let stopped = try first.run(stopAfter: 5, checkpointAtStop: false)
        #expect(!stopped.finished && stopped.checkpoint!.hasSuffix("step-00000003"))
        let resumed = try TrainJob(
            config: c, model: .directory(initDir), data: root + "/data", run: root + "/b", resume: true)
        #expect(resumed.step == 3)
        try resumed.run()
        for (x, y) in [(whole.policy, resumed.policy), (whole.value!, resumed.value!)] {
            #expect(sameParameters(x, y))
            #expect(x.adapters?.parameters.toArray() == y.adapters?.parameters.toArray())
        }
        let a = try metricLines(root + "/a"), b = try metricLines(root + "/b")
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) {
            for key in ["loss", "value_loss", "grad_norm", "value_grad_norm"] {
                #expect(x[key] as? Double == y[key] as? Double, "step \(x["step"]!) \(key)")
            }
        }
        let oa = try SafeTensorsFile(path: root + "/a/latest/optimizer.safetensors")
        let ob = try SafeTensorsFile(path: root + "/b/latest/optimizer.safetensors")
        for name in ["policy.m", "policy.v", "value.m", "value.v"] { #expect(try oa.floats(name) == ob.floats(name)) }
    }

    /// LoRA (with dropout on the policy's adapters) over a Q8_0 base with activation checkpointing: policy, value
    /// and reference share the one packed base (no f32 copy of its matrices) and one workspace, the run trains,
    /// and an interrupted run resumes bitwise (the dropout masks included).
    @Test func packedBaseRecomputeRunResumesExactly() throws {
        let root = temporaryDirectory("packed-run")
        let initDir = root + "/init"
        let (m, _) = try initAndData(root, seed: 6, problems: 48, dataSeed: 4)
        var c = resumableOREO()
        c.lora = LoRASettings()
        c.lora!.rank = 4
        c.lora!.dropout = 0.1
        c.valueLora = LoRASettings()
        c.valueLora!.rank = 2
        c.baseWeights = .q8_0
        c.recompute = true
        var full = c
        full.lora = nil
        #expect(throws: (any Error).self) { try full.validate() }
        let whole = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/a")
        try whole.run()
        let base = try #require(whole.policy.baseWeights)
        #expect(base.summary == "q8_0 x \(7 * m.config.layers)")
        #expect(whole.value!.baseWeights === base && whole.reference!.baseWeights === base)
        #expect(whole.value!.workspaceBytes.id == whole.policy.workspaceBytes.id)
        #expect(whole.policy.adapters!.config.dropout == 0.1 && whole.policy.adapters!.dropoutKey != nil)
        #expect(whole.policy.parameters.count == whole.policy.layout.residentTotal)
        let mem = Dictionary(uniqueKeysWithValues: whole.memoryEstimate.map { ($0.kind, $0.bytes) })
        #expect(mem["weights"] == 4 * whole.policy.layout.residentTotal + base.byteCount)
        #expect(whole.policy.adapters!.tensor("model.layers.0.self_attn.q_proj.lora_B.weight")!.contains { $0 != 0 })

        let first = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/b")
        _ = try first.run(stopAfter: 5, checkpointAtStop: false)
        var changed = c
        changed.baseWeights = .bf16
        #expect(throws: (any Error).self) {
            try TrainJob(
                config: changed, model: .directory(initDir), data: root + "/data", run: root + "/b", resume: true)
        }
        let resumed = try TrainJob(
            config: c, model: .directory(initDir), data: root + "/data", run: root + "/b", resume: true)
        try resumed.run()
        for (x, y) in [(whole.policy, resumed.policy), (whole.value!, resumed.value!)] {
            #expect(x.adapters?.parameters.toArray() == y.adapters?.parameters.toArray())
        }
        let a = try metricLines(root + "/a"), b = try metricLines(root + "/b")
        #expect(a.count == b.count)
        for (x, y) in zip(a, b) { #expect(x["loss"] as? Double == y["loss"] as? Double, "step \(x["step"]!)") }
    }

    /// `--value-model`: a full value network starts from a trained value checkpoint (its head included) instead
    /// of INIT with a zero head; INIT itself (no head), a LoRA value network and a method without one are refused.
    @Test func valueNetworkStartsFromAValueCheckpoint() throws {
        let root = temporaryDirectory("value-model")
        let initDir = root + "/init"
        _ = try initAndData(root, seed: 6, problems: 24, dataSeed: 4)
        var c = tinyTrain(.oreo, steps: 3)
        c.loader.tokensPerMicroBatch = 24
        let first = try TrainJob(config: c, model: .directory(initDir), data: root + "/data", run: root + "/a")
        try first.run()
        let trained = first.value!.parameters.toArray()
        #expect(first.value!.parameter("value_head.weight")!.contains { $0 != 0 })
        let next = try TrainJob(
            config: c, model: .directory(initDir), data: root + "/data", run: root + "/b",
            valueModel: root + "/a/value")
        #expect(next.value!.parameters.toArray() == trained)
        #expect(throws: (any Error).self) {
            try TrainJob(
                config: c, model: .directory(initDir), data: root + "/data", run: root + "/c", valueModel: initDir)
        }
        var sft = c
        sft.method = .sft
        #expect(throws: (any Error).self) {
            try TrainJob(
                config: sft, model: .directory(initDir), data: root + "/data", run: root + "/d",
                valueModel: root + "/a/value")
        }
    }

    /// A NaN loss stops the run with its step number; the last checkpoint before it stays in place and loads.
    @Test func nonFiniteLossStopsAndKeepsTheLastCheckpoint() throws {
        let root = temporaryDirectory("nan")
        // Untied embeddings: a NaN embedding row poisons exactly the sequences that contain its token.
        let cfg = ModelConfig(
            family: .llama, vocabSize: 16, hiddenSize: 32, layers: 2, heads: 2, kvHeads: 1,
            intermediateSize: 64, maxPositions: 64, tieWordEmbeddings: false)
        var records = toyTask(48, seed: 5)
        var c = tinyTrain(.sft)
        c.checkpointEvery = 1
        c.keepCheckpoints = 10
        c.loader.tokensPerMicroBatch = 16
        let probe = try DataLoader(
            dataset: try writeDataset(records, vocab: 16, at: root + "/probe"), config: c.loader,
            selection: .all, sequenceLimit: 64)
        let b = TrainingBatch()
        for _ in 0..<4 { try probe.next(into: b) }
        let poisoned = b.trajectories[0]  // first sequence of step 4: only it gets token 14
        records[poisoned].tokens[1] = 14
        for i in records.indices where i != poisoned && records[i].tokens.contains(14) { records[i].tokens[2] = 13 }
        try writeDataset(records, vocab: 16, at: root + "/data")
        let m = try TransformerModel(config: cfg, maxTokens: 64)
        m.initializeRandomly(seed: 7)
        var embed = m.parameter("model.embed_tokens.weight")!
        for j in 0..<32 { embed[14 * 32 + j] = .nan }
        try m.setParameter("model.embed_tokens.weight", embed)
        try ModelCheckpoint.save(m, directory: root + "/init")
        let job = try TrainJob(config: c, model: .directory(root + "/init"), data: root + "/data", run: root + "/run")
        do {
            try job.run()
            Issue.record("training with a NaN weight finished")
        } catch let e as NonFiniteLoss {
            #expect(e.step == 4, "\(e)")
            #expect(e.lastCheckpoint?.hasSuffix("step-00000003") == true)
            #expect(e.description.contains("step 4"))
        }
        let state =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: root + "/run/latest/state.json"))) as! [String: Any]
        #expect(state["step"] as? Int == 3)
        #expect(try metricLines(root + "/run").count == 3)
        _ = try ModelCheckpoint.load(directory: root + "/run/latest/policy", maxTokens: 8)
    }

    /// Data that cannot be trained on is refused before training, with the reason.
    @Test func badDatasetsAreRefusedBeforeTraining() throws {
        let root = temporaryDirectory("refuse")
        let data = root + "/data"
        try writeDataset(toyTask(16, seed: 6), vocab: 16, at: data)
        let model = ModelSource.random(tinyConfig(), seed: 1)
        func refusal(_ c: TrainConfig, _ m: ModelSource = model, data d: String = data) -> String {
            do {
                _ = try TrainJob(config: c, model: m, data: d, run: temporaryDirectory("refuse-run"))
                return "accepted"
            } catch { return "\(error)" }
        }
        var k3 = tinyTrain(.oreo)
        k3.oreo.k3 = true
        #expect(refusal(k3).contains("oreo score"))
        #expect(refusal(tinyTrain(.dqo)).contains("ref_logprob"))
        #expect(refusal(tinyTrain(.sft), .random(tinyConfig(vocab: 12), seed: 1)).contains("vocabulary 16"))

        let noPairs = root + "/nopairs"
        try writeDataset(
            toyTask(16, seed: 6).map {
                var r = $0
                r.group = UInt64(r.sourceLine)
                return r
            }, vocab: 16, at: noPairs)
        var dpo = tinyTrain(.dpo)
        dpo.reference = .model
        #expect(refusal(dpo, data: noPairs).contains("no pairs"))
        let negatives = root + "/negatives"
        try writeDataset(toyTask(16, seed: 6).filter { $0.reward == 0 }, vocab: 16, at: negatives)
        #expect(refusal(tinyTrain(.rft), data: negatives).contains("no trajectory with reward"))

        // A tokenizer fingerprint that differs from the model's tokenizer.json.
        let tokData = root + "/tokdata"
        try writeDataset(
            toyTask(16, seed: 6), vocab: 16, at: tokData,
            tokenizer: TokenizerInfo(fingerprint: "deadbeef", source: "other/tokenizer.json"))
        let initDir = root + "/init"
        let m = try TransformerModel(config: tinyConfig(), maxTokens: 8)
        try ModelCheckpoint.save(m, directory: initDir)
        try Data("{\"model\": {}}".utf8).write(to: URL(fileURLWithPath: initDir + "/tokenizer.json"))
        #expect(refusal(tinyTrain(.sft), .directory(initDir), data: tokData).contains("fingerprint deadbeef"))
        #expect(refusal(tinyTrain(.sft), .directory(initDir), data: data) == "accepted")

        var column = tinyTrain(.oreo)
        column.reference = .column
        #expect(refusal(column).contains("exact KL"))
    }
}

/// `ReferenceScorer` writes each token's reference log-prob once, as the model computes it.
@Suite struct ReferenceScorerTests {
    @Test func scoresEveryTokenLikeAPlainForward() throws {
        let root = temporaryDirectory("score")
        let records = randomRecords(50, vocab: 16, seed: 8)
        let ds = try writeDataset(records, vocab: 16, at: root + "/data", shardTokens: 120)
        let model = try TransformerModel(config: tinyConfig(maxPositions: 10), maxTokens: 32)
        model.initializeRandomly(seed: 9)
        var calls = 0
        let s = try ReferenceScorer.score(dataset: ds, model: model) { _, _ in calls += 1 }
        #expect(s.trajectories == 50 && s.batches < 50 && calls == s.batches)
        let scored = try Dataset(directory: root + "/data")
        #expect(scored.manifest.tokenColumns == ["ref_logprob"])
        #expect(scored.verify().allSatisfy { $0.error == nil })
        var lp: [Float] = []
        for g in [0, 7, 33, 49] {
            let (si, local) = scored.locate(g)!
            let stored = Array(try (try scored.allShards())[si].cursor().tokenValues("ref_logprob", trajectory: local))
            let ids = records[g].tokens.map { Int32($0) }
            let n = min(ids.count, 10)
            try model.forward(PackedBatch(sequences: [Array(ids[0..<n])]), logProbs: &lp)
            #expect(stored[0] == 0)
            for k in 1..<n { #expect(abs(stored[k] - lp[k - 1]) < 1e-6, "trajectory \(g) token \(k)") }
            for k in n..<ids.count { #expect(stored[k].isNaN) }
        }
        #expect(s.overlong == records.filter { $0.tokens.count > 10 }.count)
        #expect(throws: (any Error).self) { try ReferenceScorer.score(dataset: scored, model: model) }
        let small = try TransformerModel(config: tinyConfig(vocab: 8), maxTokens: 32)
        #expect(throws: DataError.self) { try ReferenceScorer.score(dataset: scored, model: small, column: "other") }
    }

    /// A run stopped after a prefix keeps its finished shards and leaves the manifest alone; the next run with
    /// the same model keeps them (and removes a killed run's temporary) and scores the rest, giving the files
    /// one uninterrupted run gives. Another model's shards are scored again.
    @Test func anInterruptedScoreContinues() throws {
        let root = temporaryDirectory("score-resume")
        let records = randomRecords(50, vocab: 16, seed: 8)
        let model = try TransformerModel(config: tinyConfig(maxPositions: 10), maxTokens: 32)
        model.initializeRandomly(seed: 9)
        let whole = try writeDataset(records, vocab: 16, at: root + "/whole", shardTokens: 120)
        let one = try ReferenceScorer.score(dataset: whole, model: model)
        #expect(one.complete && one.reusedShards == 0)
        let ds = try writeDataset(records, vocab: 16, at: root + "/data", shardTokens: 120)
        #expect(ds.shardCount >= 3)
        let first = Int(ds.manifest.shards[0].trajectories)
        let part = try ReferenceScorer.score(dataset: ds, model: model, maxTrajectories: first + 1)
        #expect(!part.complete && part.trajectories == first + 1)
        #expect(try Dataset(directory: root + "/data").manifest.tokenColumns.isEmpty)
        let stale = root + "/data/shard-00001.ref_logprob.oreocol.tmp-2147483646"
        try Data([1, 2]).write(to: URL(fileURLWithPath: stale))
        let rest = try ReferenceScorer.score(dataset: try Dataset(directory: root + "/data"), model: model)
        #expect(rest.complete && rest.reusedShards == 1 && rest.trajectories == records.count - first)
        #expect(!FileManager.default.fileExists(atPath: stale))
        let a = try Dataset(directory: root + "/whole").manifest, b = try Dataset(directory: root + "/data").manifest
        #expect(a.tokenColumns == b.tokenColumns && a.shards.map(\.sidecars) == b.shards.map(\.sidecars))

        let other = try TransformerModel(config: tinyConfig(maxPositions: 10), maxTokens: 32)
        other.initializeRandomly(seed: 10)
        let ds2 = try writeDataset(records, vocab: 16, at: root + "/data2", shardTokens: 120)
        _ = try ReferenceScorer.score(dataset: ds2, model: other, maxTrajectories: first)
        let redone = try ReferenceScorer.score(dataset: try Dataset(directory: root + "/data2"), model: model)
        #expect(redone.reusedShards == 0 && redone.trajectories == records.count)
        #expect(try Dataset(directory: root + "/data2").manifest.shards.map(\.sidecars) == b.shards.map(\.sidecars))
    }
}
