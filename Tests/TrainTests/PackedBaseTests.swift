import Checkpoint
import Foundation
import Models
import Testing
import TestSupport
import Train

/// A frozen base whose blocks' matrices stay packed (bf16, Q8_0, a GGUF's own blocks) under LoRA adapters, and
/// activation checkpointing: both must compute what the plain f32 model computes on the same values.
@Suite struct PackedBaseTests {
    /// Adapters with non-zero B (so every gradient is exercised), the same values on any model of the layout.
    static func adapters(_ m: TransformerModel, valueHead: Bool = false) throws -> LoRAAdapters {
        let lora = try LoRAAdapters(
            model: m, config: LoRAConfig(rank: 4, alpha: 8, targets: LoRATarget.all(m.config.family)),
            valueHead: valueHead)
        lora.initialize(seed: 2)
        var rng = TestRNG(3)
        for s in lora.layout where s.name.hasSuffix("lora_B.weight") || s.name == "value_head.weight" {
            try lora.parameters.copyIn(rng.normal(s.count, std: 0.2), at: s.offset)
        }
        return lora
    }

    /// Log-probs and adapter gradients of a weighted log-prob loss, then values and value-adapter gradients.
    static func run(_ m: TransformerModel) throws -> (logProbs: [Float], grads: [Float], values: [Float], vg: [Float]) {
        let b = ModelGradientTests.batch(seed: 4)
        let w = TestRNG(6).normalArray(b.count)
        try m.attach(try adapters(m))
        var lp: [Float] = []
        try m.forward(b, logProbs: &lp)
        m.zeroGradients()
        try m.backward(dLogProbs: w)
        let grads = m.adapters!.gradients.toArray()
        let value = try adapters(m, valueHead: true)
        try m.attach(value)
        var v: [Float] = []
        try m.forwardValues(b, values: &v)
        m.zeroGradients()
        try m.backwardValues(dValues: w)
        let vg = value.gradients.toArray()
        try m.attach(nil)
        return (lp, grads, v, vg)
    }

    static func expectClose(
        _ a: (logProbs: [Float], grads: [Float], values: [Float], vg: [Float]),
        _ b: (logProbs: [Float], grads: [Float], values: [Float], vg: [Float]), tolerance: Double, _ label: String
    ) {
        for (name, x, y) in [
            ("log-probs", a.logProbs, b.logProbs), ("gradients", a.grads, b.grads), ("values", a.values, b.values),
            ("value gradients", a.vg, b.vg),
        ] {
            let err = relativeError(x, y)
            #expect(err <= tolerance, "\(label) \(name): relative error \(err)")
        }
    }

    /// A Q8_0 / F16 GGUF loaded with its own blocks as the base gives what its dequantized f32 model gives:
    /// forward, every adapter gradient, the value path, and decoding.
    @Test(arguments: [ModelFamily.llama, .qwen2, .gpt2])
    func ggufBlocksAsBaseMatchTheDequantizedModel(family: ModelFamily) throws {
        let dir = makeTemporaryDirectory("packed-base")
        for type in [GGUFExportType.q8_0, .f16] {
            let path = dir + "/m-\(family)-\(type.rawValue).gguf"
            try ModelConversion.writeGGUF(
                try ConversionTests.model(family), vocabulary: nil, to: path, type: type, name: "t")
            let f32 = try ModelSource.gguf(path).load(maxTokens: 32)
            let packed = try ModelSource.gguf(path).load(maxTokens: 32, base: .gguf)
            #expect(packed.parameters.count < f32.parameters.count / 2, "the matrices are not held in f32")
            #expect(packed.baseWeights?.summary == "\(type.rawValue) x \(2 * family.blockTensors)")
            #expect(packed.gradients.count == 0 && !packed.trainsBase)
            Self.expectClose(try Self.run(packed), try Self.run(f32), tolerance: 1e-5, "\(family) \(type)")
            let want = try PackedWeightsTests.decode(f32, weights: nil)
            let got = try PackedWeightsTests.decode(packed, weights: nil)
            #expect(relativeError(got, want) <= 1e-5, "\(family) \(type) decoding")
        }
    }

    /// A safetensors directory rounded to Q8_0 (or bf16) as it loads equals the same model exported to a Q8_0
    /// GGUF (or bf16 safetensors) and read back in f32, in both precisions where the CPU has bf16.
    @Test(arguments: [BaseWeights.q8_0, .bf16])
    func roundedDirectoryBaseMatchesTheRoundedModel(base: BaseWeights) throws {
        let dir = makeTemporaryDirectory("packed-dir")
        let m = try ConversionTests.model(.qwen2)
        try ModelConversion.writeDirectory(m, vocabulary: nil, to: dir + "/f32", dtype: .F32)
        // the reference: the f32 model with its blocks' matrices replaced by their rounded values, read back from a
        // Q8_0 GGUF or a bf16 safetensors export (which round the embedding too, so only the matrices are taken)
        let rounded: TransformerModel
        if base == .q8_0 {
            try ModelConversion.writeGGUF(m, vocabulary: nil, to: dir + "/q.gguf", type: .q8_0, name: "t")
            rounded = try ModelSource.gguf(dir + "/q.gguf").load(maxTokens: 32)
        } else {
            try ModelConversion.writeDirectory(m, vocabulary: nil, to: dir + "/bf16", dtype: .BF16)
            rounded = try ModelSource.directory(dir + "/bf16").load(maxTokens: 32)
        }
        let reference = try ModelSource.directory(dir + "/f32").load(maxTokens: 32)
        for s in reference.layout.specs where s.shape.count == 2 && s.offset != reference.layout.lmHead {
            try reference.setParameter(s.name, rounded.parameter(s.name)!)
        }
        let packed = try ModelSource.directory(dir + "/f32").load(maxTokens: 32, base: base)
        // chunks of 16 rows: every matrix (64 to 192 rows) is dequantized and multiplied in several
        try packed.setBaseWeights(packed.baseWeights!, chunkFloats: 16)
        Self.expectClose(try Self.run(packed), try Self.run(reference), tolerance: 1e-5, "\(base)")
        guard (try? Precision.bf16.checkSupported()) != nil else { return }
        try packed.setPrecision(.bf16)
        try reference.setPrecision(.bf16)
        // chunking splits dx's sum; a last-bit change of an f32 value can flip its later rounding to bf16 (2^-9)
        Self.expectClose(try Self.run(packed), try Self.run(reference), tolerance: 1e-3, "\(base) in bf16, chunked")
        try packed.setBaseWeights(packed.baseWeights!)
        Self.expectClose(try Self.run(packed), try Self.run(reference), tolerance: 1e-5, "\(base) in bf16")
    }

    /// A random model with a packed base: seeded (the same twice), its matrices with the requested spread.
    @Test func randomPackedBaseIsSeeded() throws {
        let c = try ConversionTests.model(.llama).config
        let a = try ModelSource.random(c, seed: 5).load(maxTokens: 32, base: .q8_0)
        let b = try ModelSource.random(c, seed: 5).load(maxTokens: 32, base: .q8_0)
        let x = try Self.run(a), y = try Self.run(b)
        #expect(x.logProbs == y.logProbs && x.grads == y.grads)
        #expect(throws: (any Error).self) { try ModelSource.random(c, seed: 5).load(maxTokens: 32, base: .gguf) }
        #expect(throws: (any Error).self) { try ModelCheckpoint.records(of: a) }
        #expect(throws: (any Error).self) { try PackedWeights(quantizing: a, to: .bf16) }
    }

    /// Recomputing each block's activations in the backward gives the kept-activation results, for full
    /// fine-tuning (every gradient) and for adapters over a packed base.
    @Test(arguments: [ModelFamily.llama, .gpt2]) func recomputeMatchesKeptActivations(family: ModelFamily) throws {
        let keep = try ModelGradientTests.model(family, valueHead: true)
        let re = try TransformerModel(
            config: keep.config, maxTokens: 32, valueHead: true, headChunkRows: 4, activations: .recomputed)
        try re.parameters.copyIn(keep.parameters.toArray())
        let b = ModelGradientTests.batch(seed: 8)
        let w = TestRNG(9).normalArray(b.count)
        var results: [[Float]] = []
        for m in [keep, re] {
            var lp: [Float] = [], v: [Float] = []
            m.zeroGradients()
            try m.forward(b, logProbs: &lp)
            try m.backward(dLogProbs: w)
            try m.forwardValues(b, values: &v)
            try m.backwardValues(dValues: w)
            results.append(lp + v + m.gradients.toArray())
        }
        #expect(relativeError(results[0], results[1]) <= 1e-6, "\(family): \(relativeError(results[0], results[1]))")
        #expect(re.bufferBytes.activations < keep.bufferBytes.activations)
        // a forward-only view (a frozen reference) computes the same log-probs from one block's activations
        let view = try TransformerModel(
            config: keep.config, maxTokens: 32, valueHead: true, headChunkRows: 4, sharing: keep, gradients: false,
            activations: .forwardOnly)
        var lp: [Float] = []
        try view.forward(b, logProbs: &lp)
        #expect(lp == Array(results[0].prefix(b.count)))
        #expect(view.bufferBytes.activations < re.bufferBytes.activations)
        #expect(throws: TrainError.self) { try view.backward(dLogProbs: w) }

        let dir = makeTemporaryDirectory("recompute")
        try ModelConversion.writeDirectory(
            try ConversionTests.model(family), vocabulary: nil, to: dir, dtype: .F32)
        let plain = try ModelSource.directory(dir).load(maxTokens: 32, base: .q8_0)
        let packedRe = try ModelSource.directory(dir).load(maxTokens: 32, base: .q8_0, activations: .recomputed)
        Self.expectClose(try Self.run(packedRe), try Self.run(plain), tolerance: 1e-6, "\(family) packed, recompute")
    }
    /// Models sharing one workspace, run as a training step runs them (policy forward, value forward and
    /// backward, policy backward): the policy's gradients equal those of a policy with its own workspace.
    @Test(arguments: [false, true]) func sharedWorkspaceKeepsThePolicysGradients(recompute: Bool) throws {
        let base = try ModelGradientTests.model(.qwen2)
        func gradients(shared: Bool) throws -> [Float] {
            let policy = try TransformerModel(
                config: base.config, maxTokens: 32, headChunkRows: 4, sharing: base, gradients: false,
                activations: recompute ? .recomputed : .kept)
            let value = try TransformerModel(
                config: base.config, maxTokens: 32, headChunkRows: 4, sharing: base, gradients: false,
                activations: recompute ? .recomputed : .kept, workspace: shared ? policy : nil)
            try policy.attach(try Self.adapters(policy))
            try value.attach(try Self.adapters(value, valueHead: true))
            value.adapters!.initialize(seed: 9)  // B = 0: the value's block activations differ from the policy's
            policy.dropBaseGradients()
            value.dropBaseGradients()
            let b = ModelGradientTests.batch(seed: 12)
            let w = TestRNG(13).normalArray(b.count)
            var lp: [Float] = [], v: [Float] = []
            try policy.forward(b, logProbs: &lp)
            try value.forwardValues(b, values: &v)
            try value.backwardValues(dValues: w)
            try policy.backward(dLogProbs: w)
            #expect(shared == (policy.workspaceBytes.id == value.workspaceBytes.id))
            return policy.adapters!.gradients.toArray() + value.adapters!.gradients.toArray()
        }
        #expect(try gradients(shared: true) == gradients(shared: false))
    }

    /// A LoRA value network decodes with its adapters' head (the base has none, or an untrained one): KV-cached
    /// values equal the full forward's, over a packed base as over an f32 one.
    @Test(arguments: [BaseWeights.f32, .q8_0]) func loraValueDecodesWithTheAdaptersHead(base: BaseWeights) throws {
        let dir = makeTemporaryDirectory("lora-value")
        try ModelConversion.writeDirectory(try ConversionTests.model(.llama), vocabulary: nil, to: dir, dtype: .F32)
        for baseHasHead in [false, true] {
            let m = try ModelSource.directory(dir).load(maxTokens: 32, valueHead: baseHasHead, base: base)
            try m.attach(try Self.adapters(m, valueHead: true))
            let seq = DecoderTests.sequences(seed: 4, lengths: [9], vocab: m.config.vocabSize)[0]
            var want: [Float] = [], got: [Float] = []
            try m.forwardValues(PackedBatch(sequences: [seq]), values: &want)
            let dec = try IncrementalDecoder(model: m, maxSequences: 1, maxLength: 16, weights: nil)
            try dec.extend([0], [seq], values: &got, allPositions: true)
            #expect(relativeError(got, want) < 1e-5, "\(base), base head \(baseHasHead)")
            #expect(want.contains { $0 != 0 })
        }
    }

    /// LoRA dropout: gradients match finite differences under a fixed mask (the backward regenerates the
    /// forward's), about a fraction p of inputs is dropped, and without a key (inference) nothing is.
    @Test func dropoutGradientsMatchFiniteDifferences() throws {
        let m = try ModelGradientTests.model(.llama)
        let lora = try LoRAAdapters(
            model: m, config: LoRAConfig(rank: 3, alpha: 6, dropout: 0.3, targets: LoRATarget.all(.llama)))
        lora.initialize(seed: 4)
        var rng = TestRNG(8)
        for s in lora.layout where s.name.hasSuffix("lora_B.weight") {
            try lora.parameters.copyIn(rng.normal(s.count, std: 0.3), at: s.offset)
        }
        try m.attach(lora)
        m.trainsBase = false
        let b = ModelGradientTests.batch(seed: 3)
        let w = TestRNG(5).normalArray(b.count)
        var lp: [Float] = []
        func loss() throws -> Double {
            try m.forward(b, logProbs: &lp)
            return zip(lp, w).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let plain = try loss()
        lora.dropoutKey = 77
        let dropped = try loss()
        #expect(dropped != plain)
        lora.zeroGradients()
        try m.backward(dLogProbs: w)
        try ModelGradientTests.checkDirectional(
            lora.layout, lora.parameters, lora.gradients.toArray(), loss: loss, label: "dropout")
        lora.dropoutKey = nil
        #expect(try loss() == plain)

        let x = [Float](repeating: 1, count: 64 * 100)
        var y = [Float](repeating: 0, count: x.count)
        dropoutRows(x, lds: 100, &y, ldd: 100, rows: 64, cols: 100, key: 3, stream: 1, p: 0.3, accumulate: false)
        let kept = y.filter { $0 != 0 }
        #expect(abs(Double(kept.count) / Double(y.count) - 0.7) < 0.03)
        #expect(kept.allSatisfy { abs($0 - 1 / 0.7) < 1e-6 })
    }
}

extension ModelFamily {
    /// Weight tensors per block in a checkpoint (q, k, v, o, gate, up, down; GPT-2: c_attn, c_proj, c_fc, c_proj).
    fileprivate var blockTensors: Int { self == .gpt2 ? 4 : 7 }
}

extension TestRNG {
    /// `n` standard normal values (a fresh generator's).
    fileprivate func normalArray(_ n: Int) -> [Float] {
        var r = self
        return r.normal(n)
    }
}
