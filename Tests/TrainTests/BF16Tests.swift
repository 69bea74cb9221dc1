import CAllocCounter
import Checkpoint
import Foundation
import Support
import Testing
import Train

/// bf16 rounding and the oneDNN bf16 products, against double-precision references.
@Suite struct BF16Tests {
    @Test func roundingIsToNearestWithTiesToEven() {
        let one: UInt32 = 0x3F80_0000
        // (input bits, expected bf16 bits)
        let cases: [(UInt32, UInt16)] = [
            (one, 0x3F80),
            (one | 0x8000, 0x3F80),  // exactly halfway, 1.0's last kept bit is even: down
            (one | 0x1_8000, 0x3F82),  // halfway above an odd one: up
            (one | 0x8001, 0x3F81),  // just above halfway: up
            (one | 0x7FFF, 0x3F80),  // just below: down
            (0x7F7F_FFFF, 0x7F80),  // the largest float rounds to infinity
            (0x7F80_0000, 0x7F80), (0xFF80_0000, 0xFF80),  // infinities stay
            (0x0000_0001, 0x0000), (0x8001_8000, 0x8002),  // subnormals round like the rest
        ]
        for (bits, want) in cases {
            #expect(bf16(Float(bitPattern: bits)) == want, "\(String(bits, radix: 16))")
        }
        // A NaN stays a NaN (a payload only in the low bits would otherwise round to infinity).
        for bits: UInt32 in [0x7F80_0001, 0xFFC0_0000, 0x7FFF_FFFF] {
            let r = bf16(Float(bitPattern: bits))
            #expect(Float(bitPattern: UInt32(r) << 16).isNaN && (r & 0x8000) == UInt16(bits >> 16) & 0x8000)
        }
        // The vector path (and its split over the pool) rounds as the scalar one, and widening is exact.
        var rng = SplitMix64(seed: 7)
        let n = 200_003
        var x = (0..<n).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        x[5] = .nan
        x[77] = -.infinity
        var h = [BF16Bits](repeating: 0, count: n)
        roundToBF16(x, &h, n)
        #expect((0..<n).allSatisfy { h[$0] == bf16(x[$0]) })
        var w = [Float](repeating: 0, count: n)
        widenBF16(h, &w, n)
        #expect((0..<n).allSatisfy { w[$0].bitPattern == UInt32(h[$0]) << 16 })
    }

    /// `bf16gemm` against a double-precision product of the same bf16 operands. The operands are exact, so the
    /// only error is f32 accumulation: |error| <= k * 2^-23 * sum |a||b| (a loose bound on any summation order).
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func productsMatchADoubleReference(transA: Bool, transB: Bool) throws {
        guard BF16GEMM.isAvailable else {
            print("no native bf16 on this CPU: bf16gemm not tested")
            return
        }
        var rng = SplitMix64(seed: 11)
        // Small (one thread) and large enough to be split over the pool by rows and by columns.
        for (m, n, k) in [(3, 5, 7), (40, 33, 17), (300, 96, 80), (70, 520, 64)] {
            let (lda, ldb, ldc) = ((transA ? m : k) + 3, (transB ? k : n) + 1, n + 5)
            let aRows = transA ? k : m, bRows = transB ? n : k
            let a = (0..<(aRows * lda)).map { _ in bf16(Float.random(in: -1...1, using: &rng)) }
            let b = (0..<(bRows * ldb)).map { _ in bf16(Float.random(in: -1...1, using: &rng)) }
            func av(_ i: Int, _ p: Int) -> Double {
                Double(Float(bitPattern: UInt32(transA ? a[p * lda + i] : a[i * lda + p]) << 16))
            }
            func bv(_ p: Int, _ j: Int) -> Double {
                Double(Float(bitPattern: UInt32(transB ? b[j * ldb + p] : b[p * ldb + j]) << 16))
            }
            let start = (0..<(m * ldc)).map { Float($0 % 7) - 3 }
            for accumulate in [false, true] {
                var c = start
                bf16gemm(transA, transB, m, n, k, a, lda, b, ldb, accumulate: accumulate, &c, ldc)
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = accumulate ? Double(start[i * ldc + j]) : 0, mag = abs(sum)
                        for p in 0..<k {
                            sum += av(i, p) * bv(p, j)
                            mag += abs(av(i, p) * bv(p, j))
                        }
                        worst = max(worst, abs(Double(c[i * ldc + j]) - sum) / (Double(k + 1) * 0x1p-23 * mag + 1e-30))
                    }
                    // The padding between rows of C is not written.
                    for j in n..<ldc { #expect(c[i * ldc + j] == start[i * ldc + j]) }
                }
                #expect(worst <= 1, "\(m)x\(n)x\(k) trans \(transA)/\(transB) accumulate \(accumulate): \(worst)")
            }
        }
    }

    /// oneDNN's execute builds a small execution context on the heap (its C API offers no other way); the
    /// buffers (scratchpad, packed operands) are oreo's, made once per shape. So a call allocates a few hundred
    /// bytes, the same every time, and nothing in proportion to the product.
    @Test func aProductAllocatesOnlyOneDNNsSmallContext() {
        guard BF16GEMM.isAvailable else { return }
        // Small enough to run on this thread alone, where the counter sees every allocation.
        var perCall: [(Int64, Int64)] = []
        for (m, n, k) in [(32, 48, 64), (60, 64, 64)] {
            let a = [BF16Bits](repeating: bf16(0.5), count: m * k), b = [BF16Bits](repeating: bf16(0.25), count: k * n)
            var c = [Float](repeating: 0, count: m * n)
            for _ in 0..<2 { bf16gemm(false, true, m, n, k, a, k, b, k, accumulate: true, &c, n) }
            oreo_alloc_count_begin()
            for _ in 0..<4 { bf16gemm(false, true, m, n, k, a, k, b, k, accumulate: true, &c, n) }
            let calls = oreo_alloc_count_end()
            perCall.append((calls, oreo_alloc_count_bytes()))
            #expect(c[0] == Float(6 * k) * 0.125)
        }
        #expect(perCall[0] == perCall[1], "\(perCall)")
        #expect(perCall[0].0 % 4 == 0 && perCall[0].1 / 4 < 4096, "\(perCall)")
    }

    /// The bound of a bf16 product of k terms against exact arithmetic on the unrounded operands: each operand
    /// rounds with relative error <= 2^-8 (8 significant bits), so each product within 2^-7 + 2^-16 of its own
    /// magnitude, plus f32 accumulation (k * 2^-23 of the magnitudes' sum).
    static func bound(_ magnitude: Double, k: Int) -> Double {
        (0x1p-7 + 0x1p-16 + Double(k + 1) * 0x1p-23) * magnitude
    }

    @Test func aLinearLayerInBF16IsWithinRoundingOfExact() throws {
        guard BF16GEMM.isAvailable else { return }
        let (rows, inDim, outDim) = (40, 48, 24)
        var rng = TestRNG(5)
        let x = rng.normal(rows * inDim), w = rng.normal(outDim * inDim, std: 0.2), bias = rng.normal(outDim)
        let dy = rng.normal(rows * outDim)
        var w16 = [BF16Bits](repeating: 0, count: w.count)
        roundToBF16(w, &w16, w.count)
        var scratch = [BF16Bits](repeating: 0, count: rows * (inDim + outDim))
        var y = [Float](repeating: 0, count: rows * outDim), dx = [Float](repeating: 0, count: rows * inDim)
        var dW = [Float](repeating: 0, count: w.count), db = [Float](repeating: 0, count: outDim)
        var dbF32 = [Float](repeating: 0, count: outDim), dWF32 = dW, dxF32 = dx
        w16.withUnsafeBufferPointer { w16p in
            scratch.withUnsafeMutableBufferPointer { sp in
                let op = BF16Linear(weight: w16p.baseAddress!, scratch: sp.baseAddress!, secondOffset: rows * outDim)
                linearForward(
                    x: x, ldx: inDim, weight: w, bias: bias, y: &y, ldy: outDim, rows: rows, inDim: inDim,
                    outDim: outDim, bf16: op)
                linearBackward(
                    dy: dy, ldy: outDim, x: x, ldx: inDim, weight: w, dx: &dx, lddx: inDim, accumulateDX: false,
                    dWeight: &dW, dBias: &db, rows: rows, inDim: inDim, outDim: outDim, bf16: op)
            }
        }
        linearBackward(
            dy: dy, ldy: outDim, x: x, ldx: inDim, weight: w, dx: &dxF32, lddx: inDim, accumulateDX: false,
            dWeight: &dWF32, dBias: &dbF32, rows: rows, inDim: inDim, outDim: outDim)
        var worst = 0.0
        /// `got` against the exact sum over p < k of u(p) v(p) (plus `start`), within the bound.
        func check(_ got: Float, start: Double = 0, k: Int, _ u: (Int) -> Float, _ v: (Int) -> Float) {
            var exact = start, magnitude = abs(start)
            for p in 0..<k {
                exact += Double(u(p)) * Double(v(p))
                magnitude += abs(Double(u(p)) * Double(v(p)))
            }
            worst = max(worst, abs(Double(got) - exact) / (Self.bound(magnitude, k: k) + 1e-30))
        }
        for r in 0..<rows {
            for o in 0..<outDim {
                check(y[r * outDim + o], start: Double(bias[o]), k: inDim, { x[r * inDim + $0] }, { w[o * inDim + $0] })
            }
            for i in 0..<inDim {
                check(dx[r * inDim + i], k: outDim, { dy[r * outDim + $0] }, { w[$0 * inDim + i] })
            }
        }
        for o in 0..<outDim {
            for i in 0..<inDim {
                check(dW[o * inDim + i], k: rows, { dy[$0 * outDim + o] }, { x[$0 * inDim + i] })
            }
        }
        #expect(worst <= 1, "worst error \(worst) of the bound")
        // And it is not f32: some element differs from the f32 products. The bias gradient sums the f32 dy.
        #expect(dx != dxF32 && dW != dWF32 && db == dbF32)
    }

    /// Whole tiny models of each family: bf16 log-probs and gradients stay close to f32, and a bf16 model uses
    /// its parameters as they are now (its rounded copy is redone after an update).
    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2])
    func tinyModelsInBF16StayCloseToF32(family: ModelFamily) throws {
        guard BF16GEMM.isAvailable else { return }
        var rng = TestRNG(3)
        // More rows than decoding's small-batch path takes, so the products run in bf16.
        let batch = PackedBatch(sequences: [12, 9, 8].map { n in (0..<n).map { _ in Int32(rng.int(41)) } })
        let dl = batch.targets.map { $0 >= 0 ? Float(-1) : 0 }
        func run(_ m: TransformerModel) throws -> (lp: [Float], g: [Float]) {
            var lp: [Float] = []
            try m.forward(batch, logProbs: &lp)
            m.zeroGradients()
            try m.backward(dLogProbs: dl)
            return (lp, m.gradients.toArray())
        }
        let f32 = try ModelGradientTests.model(family), low = try ModelGradientTests.model(family)
        try low.setPrecision(.bf16)
        let (lp32, g32) = try run(f32)
        let (lp16, g16) = try run(low)
        #expect(lp16 != lp32)
        #expect(relativeError(lp16, lp32) < 0.02, "log-probs \(relativeError(lp16, lp32))")
        #expect(relativeError(g16, g32) < 0.05, "gradients \(relativeError(g16, g32))")
        // After an update the rounded weights follow: the same as a fresh bf16 model given the new parameters.
        let opt = AdamW(layout: low.layout, config: AdamWConfig())
        opt.update(parameters: low.parameters, gradients: low.gradients, lr: 1e-2)
        let fresh = try ModelGradientTests.model(family)
        try fresh.parameters.copyIn(low.parameters.toArray())
        try fresh.setPrecision(.bf16)
        #expect(try run(low).lp == run(fresh).lp)
        // The same through the model's own update, which rounds in the optimizer's pass.
        low.update(opt, lr: 1e-2)
        let fresh2 = try ModelGradientTests.model(family)
        try fresh2.parameters.copyIn(low.parameters.toArray())
        try fresh2.setPrecision(.bf16)
        #expect(try run(low).lp == run(fresh2).lp)
    }

    /// Decoding a bf16 model: passes of few rows read the packed bf16 weights exactly as an fp32 model given the
    /// same packed weights does; wider passes (prompts, beams; here more rows than the model's own `maxTokens`)
    /// run bf16 products, close to the f32 logits but not equal to them.
    @Test(arguments: [ModelFamily.gpt2, .llama])
    func decodingInBF16ReadsPackedWeightsForFewRowsAndBF16ProductsForMany(family: ModelFamily) throws {
        guard BF16GEMM.isAvailable else { return }
        let low = try ModelGradientTests.model(family), f32 = try ModelGradientTests.model(family)
        try low.setPrecision(.bf16)
        let packed = try PackedWeights(quantizing: f32, to: .bf16)
        let V = low.config.vocabSize
        let seqs = DecoderTests.sequences(seed: 4, lengths: [15, 14, 16], vocab: V)
        func decoder(_ m: TransformerModel) throws -> IncrementalDecoder {
            try IncrementalDecoder(model: m, maxSequences: 3, maxLength: 32, pageSize: 4, weights: packed)
        }
        // One wide pass of 45 rows.
        var wide16: [Float] = [], wide32: [Float] = []
        try decoder(low).extend([0, 1, 2], seqs, logits: &wide16, allPositions: true)
        try decoder(f32).extend([0, 1, 2], seqs, logits: &wide32, allPositions: true)
        #expect(wide16 != wide32)
        #expect(relativeError(wide16, wide32) < 0.03, "wide pass: \(relativeError(wide16, wide32))")
        // Passes of 3 rows: identical to the fp32 model on the same packed weights.
        let d16 = try decoder(low), d32 = try decoder(f32)
        var step16: [Float] = [], step32: [Float] = []
        for p in 0..<14 {
            try d16.extend([0, 1, 2], seqs.map { [$0[p]] }, logits: &step16)
            try d32.extend([0, 1, 2], seqs.map { [$0[p]] }, logits: &step32)
            #expect(step16 == step32, "position \(p)")
        }
    }
}
