import Checkpoint
import Foundation
import Support
import Testing
import Train

/// LoRA adapters on every linear layer a family has: gradients against finite differences, a frozen base that
/// gets no weight gradient, identity at initialization, and equality with the merged weights.
@Suite struct LoRATests {
    static func adapted(_ family: ModelFamily, valueHead: Bool = false, rank: Int = 3) throws -> (
        TransformerModel, LoRAAdapters
    ) {
        let m = try ModelGradientTests.model(family, valueHead: valueHead)
        let lora = try LoRAAdapters(
            model: m, config: LoRAConfig(rank: rank, alpha: 2 * Double(rank), targets: LoRATarget.all(family)))
        lora.initialize(seed: 4)
        // B is zero after PEFT's initialization, which leaves dA zero too: give B values so both are checked.
        var rng = TestRNG(8)
        for s in lora.layout where s.name.hasSuffix("lora_B.weight") || s.name == "value_head.weight" {
            try lora.parameters.copyIn(rng.normal(s.count, std: 0.3), at: s.offset)
        }
        try m.attach(lora)
        m.trainsBase = false
        return (m, lora)
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2])
    func adapterGradientsMatchFiniteDifferences(family: ModelFamily) throws {
        let (m, lora) = try Self.adapted(family)
        let b = ModelGradientTests.batch(seed: 3)
        var rng = TestRNG(5)
        let w = rng.normal(b.count)
        var lp: [Float] = []
        func loss() throws -> Double {
            try m.forward(b, logProbs: &lp)
            return zip(lp, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        _ = try loss()
        m.zeroGradients()
        lora.zeroGradients()
        try m.backward(dLogProbs: w)
        try ModelGradientTests.checkDirectional(
            lora.layout, lora.parameters, lora.gradients.toArray(), loss: loss, label: "\(family)")
        // A frozen base: its linear weights and biases get no gradient (norms and embeddings still do, unused).
        for (offset, outDim, inDim) in m.linearWeights() where offset != m.layout.lmHead {
            let g = UnsafeBufferPointer(start: m.gradients.pointer + offset, count: outDim * inDim)
            #expect(g.allSatisfy { $0 == 0 })
        }
    }

    /// The value network's path (final hidden state . value head) through the adapters.
    @Test func valueAdapterGradientsMatchFiniteDifferences() throws {
        let (m, lora) = try Self.adapted(.llama, valueHead: true)
        let b = ModelGradientTests.batch(seed: 6)
        var rng = TestRNG(7)
        let w = rng.normal(b.count)
        var v: [Float] = []
        func loss() throws -> Double {
            try m.forwardValues(b, values: &v)
            return zip(v, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        _ = try loss()
        lora.zeroGradients()
        try m.backwardValues(dValues: w)
        try ModelGradientTests.checkDirectional(
            lora.layout, lora.parameters, lora.gradients.toArray(), loss: loss, label: "value")
    }

    /// Freshly initialized adapters (B = 0) leave the model's log-probs exactly as they were; trained ones give
    /// the log-probs of the base with W + (alpha / r) B A merged into its weights.
    @Test(arguments: [ModelFamily.gpt2, .qwen2])
    func initialAdaptersAreTheIdentityAndMergedWeightsAgree(family: ModelFamily) throws {
        let base = try ModelGradientTests.model(family)
        let b = ModelGradientTests.batch(seed: 9)
        var want: [Float] = [], got: [Float] = []
        try base.forward(b, logProbs: &want)
        let fresh = try LoRAAdapters(
            model: base, config: LoRAConfig(rank: 4, alpha: 8, targets: LoRATarget.all(family)))
        fresh.initialize(seed: 1)
        try base.attach(fresh)
        try base.forward(b, logProbs: &got)
        #expect(got == want)

        let (m, lora) = try Self.adapted(family)
        try m.forward(b, logProbs: &got)
        let merged = try ModelGradientTests.model(family)
        var p = merged.parameters.toArray()
        let a = lora.parameters.pointer, r = lora.config.rank, s = Double(lora.config.scale)
        for ad in lora.adapters {
            for o in 0..<ad.rows {
                for i in 0..<ad.inDim {
                    var delta = 0.0
                    for k in 0..<r { delta += Double(a[ad.b + o * r + k]) * Double(a[ad.a + k * ad.inDim + i]) }
                    p[ad.weight + (ad.firstRow + o) * ad.inDim + i] += Float(s * delta)
                }
            }
        }
        try merged.parameters.copyIn(p)
        try merged.forward(b, logProbs: &want)
        #expect(relativeError(got, want) < 1e-5, "\(relativeError(got, want))")
        // and the trained adapters do change them
        var plain: [Float] = []
        try base.attach(nil)
        try base.forward(b, logProbs: &plain)
        #expect(relativeError(got, plain) > 1e-3)
    }

    @Test func targetsParseAndAreCheckedAgainstTheFamily() throws {
        #expect(try LoRATarget.parse("q,v_proj, down", family: .llama) == [.q, .v, .down])
        #expect(try LoRATarget.parse("all", family: .gpt2) == [.cAttn, .cProj, .cFc])
        #expect(throws: TrainError.self) { try LoRATarget.parse("c_attn", family: .llama) }
        #expect(throws: TrainError.self) { try LoRATarget.parse("qq", family: .llama) }
        let m = try ModelGradientTests.model(.llama)
        #expect(throws: TrainError.self) {
            try LoRAAdapters(model: m, config: LoRAConfig(rank: 0, alpha: 1, targets: [.q]))
        }
        // q, k and v are rows of one fused matrix: three adapters on it, at their rows.
        let lora = try LoRAAdapters(model: m, config: LoRAConfig(rank: 2, alpha: 2, targets: [.q, .k, .v]))
        let c = m.config
        let first = lora.adapters.prefix(3)
        #expect(first.map(\.firstRow) == [0, c.heads * c.headDim, (c.heads + c.kvHeads) * c.headDim])
        #expect(first.allSatisfy { $0.weight == m.layout.blocks[0].qkvW })
        #expect(lora.layout[0].name == "model.layers.0.self_attn.q_proj.lora_A.weight")
    }

    /// Training the adapters of a frozen base: the loss falls, the base's parameters stay bit for bit.
    @Test func trainingAdaptersLeavesTheBaseUntouched() throws {
        let m = try ModelGradientTests.model(.llama)
        let lora = try LoRAAdapters(model: m, config: LoRAConfig(rank: 4, alpha: 8, targets: [.q, .v, .down]))
        lora.initialize(seed: 2)
        try m.attach(lora)
        m.trainsBase = false
        let base = m.parameters.toArray()
        let opt = AdamW(specs: lora.layout, count: lora.parameters.count, config: AdamWConfig(weightDecay: 0))
        let b = ModelGradientTests.batch(seed: 12)
        let (dl, _) = OracleTests.meanNLLGradient(b)
        var lp: [Float] = []
        var losses: [Double] = []
        for _ in 0..<20 {
            try m.forward(b, logProbs: &lp)
            losses.append(-lp.reduce(0.0) { $0 + Double($1) })
            lora.zeroGradients()
            try m.backward(dLogProbs: dl)
            opt.update(parameters: lora.parameters, gradients: lora.gradients, lr: 1e-2)
        }
        #expect(losses.last! < 0.8 * losses.first!, "\(losses)")
        #expect(m.parameters.toArray() == base)
    }

    /// A frozen view of another model's parameters (a LoRA policy's reference): the same log-probs without a copy,
    /// its norms left as they are, and a backward refused.
    @Test func aModelSharingParametersComputesTheSameAndRefusesBackward() throws {
        let m = try ModelGradientTests.model(.qwen2)
        let view = try TransformerModel(config: m.config, maxTokens: 32, sharing: m, gradients: false)
        #expect(view.parameters === m.parameters && view.gradients.count == 0)
        let b = ModelGradientTests.batch(seed: 14)
        var a: [Float] = [], c: [Float] = []
        try m.forward(b, logProbs: &a)
        try view.forward(b, logProbs: &c)
        #expect(a == c)
        #expect(throws: TrainError.self) { try view.backward(dLogProbs: c) }
        #expect(throws: TrainError.self) {
            try TransformerModel(config: m.config, maxTokens: 8, valueHead: true, sharing: m)
        }
    }
}
