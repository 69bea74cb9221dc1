import Checkpoint
import Foundation
import Testing
import Train

/// AdamW against a scalar double-precision transcription of torch.optim.AdamW; schedule and clipping.
@Suite struct OptimizerTests {
    @Test func adamWMatchesReference() throws {
        let cfg = ModelConfig(
            family: .qwen2, vocabSize: 11, hiddenSize: 16, layers: 1, heads: 2, kvHeads: 1,
            intermediateSize: 24, maxPositions: 8)
        let layout = ParameterLayout(config: cfg, valueHead: false)
        var rng = TestRNG(21)
        let p = buf(rng.normal(layout.total)), g = zeros(layout.total)
        let ac = AdamWConfig(beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1)
        let opt = AdamW(layout: layout, config: ac)
        var rp = p.toArray().map { Double($0) }
        var rm = [Double](repeating: 0, count: layout.total), rv = rm
        let decays = layout.specs.flatMap { s in [Bool](repeating: s.decays, count: s.count) }
        for step in 1...5 {
            let grads = rng.normal(layout.total)
            try g.copyIn(grads)
            let lr = 0.01 * Double(step)
            opt.update(parameters: p, gradients: g, lr: Float(lr))
            for i in 0..<layout.total {
                let gi = Double(grads[i])
                if decays[i] { rp[i] *= 1 - lr * 0.1 }
                rm[i] = 0.9 * rm[i] + 0.1 * gi
                rv[i] = 0.95 * rv[i] + 0.05 * gi * gi
                let bc1 = 1 - pow(0.9, Double(step)), bc2 = 1 - pow(0.95, Double(step))
                rp[i] -= lr / bc1 * rm[i] / (rv[i].squareRoot() / bc2.squareRoot() + 1e-8)
            }
        }
        #expect(relativeError(p.toArray(), rp) < 1e-6)
        #expect(decays.contains(true) && decays.contains(false))
    }

    @Test func cosineScheduleWithWarmup() {
        let s = CosineSchedule(baseLR: 1e-3, minLR: 1e-4, totalSteps: 100, warmupFraction: 0.03)
        #expect(s.warmupSteps == 3)
        #expect(abs(s.learningRate(step: 0) - 1e-3 / 3) < 1e-12)
        #expect(abs(s.learningRate(step: 2) - 1e-3) < 1e-12)
        #expect(abs(s.learningRate(step: 3) - 1e-3) < 1e-12)
        #expect(abs(s.learningRate(step: 3 + 97 / 2) - (1e-4 + 0.5 * 9e-4 * (1 + cos(Double.pi * 48 / 97)))) < 1e-12)
        #expect(abs(s.learningRate(step: 100) - 1e-4) < 1e-12)
        for k in 3..<99 { #expect(s.learningRate(step: k + 1) <= s.learningRate(step: k)) }
    }

    @Test func clippingAndAccumulation() {
        let g = buf([Float](repeating: 2, count: 100))  // norm 20
        var acc = GradientAccumulation(microBatches: 4)
        let flags = (0..<4).map { _ in acc.didAccumulate() }
        #expect(flags == [false, false, false, true])
        let norm = acc.finish(g, maxNorm: 1)
        #expect(abs(norm - 5) < 1e-5)  // averaged over 4 micro-batches: 0.5 per element
        #expect(abs(gradientNorm(g) - 1) < 1e-5)
        #expect(acc.seen == 0)
        let small = buf([Float](repeating: 0.01, count: 4))
        #expect(abs(clipGradientNorm(small, maxNorm: 1) - 0.02) < 1e-7)
        #expect(small.toArray() == [Float](repeating: 0.01, count: 4))
    }
}
