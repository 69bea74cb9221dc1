import CAllocCounter
import Checkpoint
import Foundation
import Testing
import Train

/// A training step allocates nothing after the first: heap allocation calls of this thread are counted (malloc
/// interposed by the CAllocCounter target) across several forward / backward / clip / AdamW steps.
@Suite struct AllocationTests {
    /// Runs `steps` counted steps after `warmup` uncounted ones; returns allocation calls and bytes.
    static func count(warmup: Int = 2, steps: Int = 4, _ step: () throws -> Void) rethrows -> (
        calls: Int64, bytes: Int64
    ) {
        for _ in 0..<warmup { try step() }
        oreo_alloc_count_begin()
        // no `try` may leave counting on: the step's errors are recorded after the count ends
        var failure: Error?
        for _ in 0..<steps {
            do { try step() } catch {
                failure = error
                break
            }
        }
        let calls = oreo_alloc_count_end()
        if let failure { Issue.record(failure) }
        return (calls, oreo_alloc_count_bytes())
    }

    @Test func counterSeesAllocations() {
        // the counter itself works: an Array allocation and a class instance are seen
        let (calls, bytes) = Self.count(warmup: 0, steps: 1) {
            let a = [Float](repeating: 1, count: 1000 + Int.random(in: 0..<2))
            #expect(a.count > 0)
            _ = FlatBuffer(count: 10)
        }
        #expect(calls >= 3 && bytes >= 4000, "counted \(calls) calls, \(bytes) bytes")
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2])
    func trainingStepAllocatesNothing(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family, valueHead: true)
        let opt = AdamW(layout: m.layout, config: AdamWConfig(weightDecay: 0.1))
        let batch = PackedBatch(sequences: [[1, 4, 9, 16, 25, 3], [7, 7, 2, 11], [5, 6, 8, 10, 12, 14, 1, 3]])
        var lp: [Float] = [], values: [Float] = []
        var dl = [Float](repeating: 0, count: batch.count), dv = dl
        let (calls, bytes) = try Self.count {
            try m.forward(batch, logProbs: &lp)
            for i in dl.indices { dl[i] = batch.targets[i] >= 0 ? -1 / Float(batch.count) : 0 }
            m.zeroGradients()
            try m.backward(dLogProbs: dl)
            try m.forwardValues(batch, values: &values)
            for i in dv.indices { dv[i] = values[i] - 0.5 }
            try m.backwardValues(dValues: dv)
            clipGradientNorm(m.gradients, maxNorm: 1)
            opt.update(parameters: m.parameters, gradients: m.gradients, lr: 1e-3)
        }
        #expect(calls == 0, "\(family): \(calls) heap allocations (\(bytes) bytes) in 4 training steps")
    }

    @Test(arguments: [ModelFamily.llama, .qwen2])
    func klStepAllocatesNothing(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family), ref = try ModelGradientTests.model(family)
        let batch = PackedBatch(sequences: [[1, 4, 9, 16, 25, 3], [7, 7, 2, 11]])
        var lp: [Float] = [], rlp: [Float] = [], kl: [Float] = []
        let dl = [Float](repeating: -0.1, count: batch.count), dk = [Float](repeating: 0.05, count: batch.count)
        let (calls, bytes) = try Self.count {
            try ref.forward(batch, logProbs: &rlp)
            try m.forward(batch, logProbs: &lp, klAgainst: ref, kl: &kl)
            m.zeroGradients()
            try m.backward(dLogProbs: dl, dKL: dk)
        }
        #expect(calls == 0, "\(family) with KL: \(calls) heap allocations (\(bytes) bytes) in 4 steps")
    }
}
