import Checkpoint
import Foundation
import Testing
import Train

/// Whole-model checks on tiny random models of each family: backward against central differences of the
/// forward (losses summed in double, Richardson-extrapolated), packing equivalence, and the value head.
@Suite struct ModelGradientTests {
    static func config(_ family: ModelFamily) -> ModelConfig {
        switch family {
        case .gpt2:
            return ModelConfig(
                family: .gpt2, vocabSize: 41, hiddenSize: 24, layers: 2, heads: 3, intermediateSize: 40,
                maxPositions: 32)
        case .llama:
            return ModelConfig(
                family: .llama, vocabSize: 41, hiddenSize: 24, layers: 2, heads: 4, kvHeads: 2,
                headDim: 8, intermediateSize: 36, maxPositions: 32, ropeTheta: 500,
                ropeScaling: .llama3(factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8),
                tieWordEmbeddings: false, qkvBias: true, outputBias: true, mlpBias: true)
        case .qwen2:
            return ModelConfig(
                family: .qwen2, vocabSize: 41, hiddenSize: 24, layers: 2, heads: 4, kvHeads: 1,
                headDim: 6, intermediateSize: 36, maxPositions: 32, ropeTheta: 1e4, tieWordEmbeddings: true)
        }
    }

    static func batch(seed: UInt64) -> PackedBatch {
        var rng = TestRNG(seed)
        var b = PackedBatch(sequences: [6, 11, 3].map { n in (0..<n).map { _ in Int32(rng.int(41)) } })
        b.targets[0] = -1  // a "prompt" position without a target
        b.targets[7] = -1
        return b
    }

    static func model(_ family: ModelFamily, valueHead: Bool = false, logitCache: Bool = true) throws
        -> TransformerModel
    {
        let m = try TransformerModel(
            config: config(family), maxTokens: 32, valueHead: valueHead, headChunkRows: 4,
            logitCacheBytes: logitCache ? 1 << 30 : 0)
        m.initializeRandomly(seed: 7, std: 0.3)
        // non-trivial norms and biases so their gradients are exercised
        var rng = TestRNG(11)
        for s in m.layout.specs where s.shape.count == 1 {
            let base: Float =
                s.name.contains("norm") || s.name.contains("ln_") ? (s.name.hasSuffix(".bias") ? 0 : 1) : 0
            try m.setParameter(s.name, rng.normal(s.count, std: 0.2).map { $0 + base })
        }
        return m
    }

    /// Checks, tensor by tensor, d/d eps L(theta + eps u) against the analytic gradient . u.
    static func checkDirectional(_ m: TransformerModel, loss: () throws -> Double, label: String) throws {
        try checkDirectional(m.layout.specs, m.parameters, m.gradients.toArray(), loss: loss, label: label)
    }

    /// d/d eps L(theta + eps u) against the analytic gradient . u, tensor by tensor of `specs` in `parameters`.
    static func checkDirectional(
        _ specs: [TensorSpec], _ parameters: FlatBuffer, _ gradients: [Float], loss: () throws -> Double,
        label: String
    ) throws {
        let theta = parameters.toArray()
        var rng = TestRNG(99)
        for s in specs {
            // unit direction mixing the analytic gradient (large signal, catches wrong magnitudes) with a random
            // vector (catches components the analytic gradient is missing)
            let g = (0..<s.count).map { Double(gradients[s.offset + $0]) }
            let gn = max(g.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-30)
            let r = rng.normalD(s.count)
            let rn = r.reduce(0) { $0 + $1 * $1 }.squareRoot()
            var ud = (0..<s.count).map { g[$0] / gn + r[$0] / rn }
            let un = ud.reduce(0) { $0 + $1 * $1 }.squareRoot()
            ud = ud.map { $0 / un }
            let analytic = zip(g, ud).reduce(0.0) { $0 + $1.0 * $1.1 }
            func lossAt(_ eps: Double) throws -> Double {
                var t = theta
                for i in 0..<s.count { t[s.offset + i] += Float(eps * ud[i]) }
                try parameters.copyIn(t)
                return try loss()
            }
            func central(_ eps: Double) throws -> Double { (try lossAt(eps) - lossAt(-eps)) / (2 * eps) }
            // the forward runs in float (loss noise ~1e-5 absolute), so h stays large and Richardson
            // extrapolation removes the O(h^2) truncation term
            let h = 2e-2
            let fd = (4 * (try central(h / 2)) - (try central(h))) / 3
            try parameters.copyIn(theta)
            #expect(
                abs(fd - analytic) <= 2e-3 * abs(analytic) + 5e-3,
                "\(label) \(s.name): finite difference \(fd) vs analytic \(analytic)")
        }
    }

    /// With the whole-batch softmax kept for the backward (default) and with the chunked recompute.
    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2], [true, false])
    func logProbGradientsMatchFiniteDifferences(family: ModelFamily, logitCache: Bool) throws {
        let m = try Self.model(family, logitCache: logitCache)
        let b = Self.batch(seed: 3)
        var rng = TestRNG(5)
        let a = rng.normal(b.count)
        var lp: [Float] = []
        func loss() throws -> Double {
            try m.forward(b, logProbs: &lp)
            return zip(lp, a).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        _ = try loss()
        #expect(lp[0] == 0 && lp[7] == 0 && lp[5] == 0, "positions without targets report 0")
        m.zeroGradients()
        try m.backward(dLogProbs: a)
        try Self.checkDirectional(m, loss: loss, label: "\(family) logp")
    }

    @Test(arguments: [ModelFamily.gpt2, .llama]) func secondBackwardOfOneForwardAgrees(family: ModelFamily) throws {
        // the kept softmax must survive a backward: a second one of the same forward gives the same gradients
        let m = try Self.model(family), plain = try Self.model(family, logitCache: false)
        let b = Self.batch(seed: 21)
        var rng = TestRNG(22)
        let a = rng.normal(b.count)
        var lp: [Float] = [], lq: [Float] = []
        try m.forward(b, logProbs: &lp)
        try plain.forward(b, logProbs: &lq)
        #expect(relativeError(lp, lq) < 1e-6)
        m.zeroGradients()
        plain.zeroGradients()
        try m.backward(dLogProbs: a)
        let once = m.gradients.toArray()
        try plain.backward(dLogProbs: a)
        #expect(relativeError(once, plain.gradients.toArray()) < 1e-5)
        try m.backward(dLogProbs: a)
        #expect(relativeError(m.gradients.toArray(), once.map { 2 * $0 }) < 1e-5)
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2]) func valueGradientsMatchFiniteDifferences(family: ModelFamily)
        throws
    {
        let m = try Self.model(family, valueHead: true)
        var values: [Float] = []
        let b = Self.batch(seed: 4)
        #expect(m.parameter("value_head.weight")!.allSatisfy { $0 == 0 }, "value head starts at zero")
        try m.forwardValues(b, values: &values)
        #expect(values.allSatisfy { $0 == 0 })
        var rng = TestRNG(6)
        try m.setParameter("value_head.weight", rng.normal(m.config.hiddenSize))
        let c = rng.normal(b.count)
        func loss() throws -> Double {
            try m.forwardValues(b, values: &values)
            return zip(values, c).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        _ = try loss()
        m.zeroGradients()
        try m.backwardValues(dValues: c)
        try Self.checkDirectional(m, loss: loss, label: "\(family) value")
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2]) func packingEqualsSeparateSequences(family: ModelFamily) throws
    {
        let m = try Self.model(family)
        let b = Self.batch(seed: 8)
        var packed: [Float] = []
        try m.forward(b, logProbs: &packed)
        var start = 0
        for len in b.sequenceLengths {
            let one = PackedBatch(
                tokens: Array(b.tokens[start..<(start + len)]), sequenceLengths: [len],
                targets: Array(b.targets[start..<(start + len)]))
            var lp: [Float] = []
            try m.forward(one, logProbs: &lp)
            #expect(relativeError(Array(packed[start..<(start + len)]), lp) < 1e-6)
            start += len
        }
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2]) func klGradientsMatchFiniteDifferences(family: ModelFamily)
        throws
    {
        let m = try Self.model(family)
        let ref = try Self.model(family)
        let b = Self.batch(seed: 12)
        var lp: [Float] = [], kl: [Float] = [], refLP: [Float] = []
        // identical weights: KL is zero everywhere
        try ref.forward(b, logProbs: &refLP)
        try m.forward(b, logProbs: &lp, klAgainst: ref, kl: &kl)
        #expect(kl.allSatisfy { abs($0) < 1e-5 }, "KL(p || p) = \(kl.max()!)")
        ref.initializeRandomly(seed: 8, std: 0.3)
        try ref.forward(b, logProbs: &refLP)
        var rng = TestRNG(13)
        let a = rng.normal(b.count), c = rng.normal(b.count)
        func loss() throws -> Double {
            try m.forward(b, logProbs: &lp, klAgainst: ref, kl: &kl)
            return (0..<b.count).reduce(0.0) { $0 + Double(lp[$1]) * Double(a[$1]) + Double(kl[$1]) * Double(c[$1]) }
        }
        _ = try loss()
        #expect(kl.enumerated().allSatisfy { b.targets[$0.offset] < 0 ? $0.element == 0 : $0.element > 0 })
        m.zeroGradients()
        try m.backward(dLogProbs: a, dKL: c)
        #expect(ref.gradients.toArray().allSatisfy { $0 == 0 }, "the reference stays frozen")
        try Self.checkDirectional(m, loss: loss, label: "\(family) logp+KL")
        // the reference must have run on the same batch
        try ref.forward(Self.batch(seed: 13), logProbs: &refLP)
        #expect(throws: TrainError.self) { try m.forward(b, logProbs: &lp, klAgainst: ref, kl: &kl) }
    }

    @Test func invalidBatchesThrow() throws {
        let m = try Self.model(.llama)
        var lp: [Float] = []
        #expect(throws: TrainError.self) {
            try m.forward(PackedBatch(tokens: [1, 41], sequenceLengths: [2], targets: [2, -1]), logProbs: &lp)
        }
        #expect(throws: TrainError.self) {
            try m.forward(PackedBatch(tokens: [1, 2], sequenceLengths: [3], targets: [2, -1]), logProbs: &lp)
        }
        #expect(throws: TrainError.self) {
            try m.forward(PackedBatch(sequences: [[Int32](repeating: 1, count: 33)]), logProbs: &lp)
        }
        #expect(throws: TrainError.self) { try m.backward(dLogProbs: [0]) }
    }
}
