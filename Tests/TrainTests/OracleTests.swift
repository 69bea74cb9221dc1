import Checkpoint
import Foundation
import Models
import Testing
import Train

/// Comparisons against PyTorch/transformers outputs written by scripts/oracles/torch_reference.py.
@Suite struct OracleTests {
    static let families = ["gpt2", "llama", "qwen2"]

    struct Fixture {
        let model: TransformerModel
        let batch: PackedBatch
        let expected: SafeTensorsFile
    }

    static func load(_ family: String) throws -> Fixture? {
        guard let dir = fixtureDirectory(family) else { return nil }
        let model = try ModelCheckpoint.load(directory: dir, maxTokens: 64)
        let e = try SafeTensorsFile(path: dir + "/expected.safetensors")
        let batch = PackedBatch(
            tokens: try e.int64s("tokens").map { Int32($0) },
            sequenceLengths: try e.int64s("seq_lengths").map { Int($0) },
            targets: try e.int64s("targets").map { Int32($0) })
        return Fixture(model: model, batch: batch, expected: e)
    }

    static func meanNLLGradient(_ batch: PackedBatch) -> (dLogp: [Float], k: Int) {
        let k = batch.targets.filter { $0 >= 0 }.count
        return (batch.targets.map { $0 >= 0 ? -1 / Float(k) : 0 }, k)
    }

    @Test(arguments: families) func logProbsAndGradientsMatchTorch(family: String) throws {
        guard let f = try Self.load(family) else { return }
        var lp: [Float] = []
        try f.model.forward(f.batch, logProbs: &lp)
        let want = try f.expected.floats("logprobs")
        let lpErr = relativeError(lp, want)
        #expect(lpErr <= 1e-4, "\(family) logprobs rel err \(lpErr)")
        let (dl, k) = Self.meanNLLGradient(f.batch)
        let loss = -lp.reduce(0.0) { $0 + Double($1) } / Double(k)
        let wantLoss = Double(try f.expected.floats("loss")[0])
        #expect(abs(loss - wantLoss) / abs(wantLoss) <= 1e-4, "\(family) loss \(loss) vs \(wantLoss)")
        f.model.zeroGradients()
        try f.model.backward(dLogProbs: dl)
        var compared = 0
        var worst = 0.0
        defer {
            print(
                "oracle \(family): logprobs rel err \(lpErr), worst gradient rel err \(worst) over \(compared) tensors")
        }
        for s in f.model.layout.specs {
            guard f.expected.info("grad." + s.name) != nil else {
                Issue.record("\(family): torch has no gradient for \(s.name)")
                continue
            }
            var want = try f.expected.floats("grad." + s.name)
            if s.transposedInFile {  // torch Conv1D [in, out] -> ours [out, in]
                let rows = s.shape[0], cols = s.shape[1]
                var t = want
                for r in 0..<rows { for c in 0..<cols { t[r * cols + c] = want[c * rows + r] } }
                want = t
            }
            let got = f.model.gradient(s.name)!
            let err = relativeError(got, want)
            worst = max(worst, err)
            #expect(err <= 1e-4, "\(family) grad \(s.name) rel err \(err)")
            compared += 1
        }
        #expect(compared == f.model.layout.specs.count)
    }

    /// `--precision bf16` against PyTorch's CPU autocast bf16 on the same pass: both round differently (autocast
    /// also runs attention's products and keeps the logits in bf16), so the bar is bf16-sized, and oreo's bf16
    /// must stay as close to the f32 result as autocast does (within 3x).
    @Test(arguments: families) func bf16TracksTorchAutocast(family: String) throws {
        guard BF16GEMM.isAvailable, let f = try Self.load(family), f.expected.info("logprobs_bf16") != nil else {
            return
        }
        try f.model.setPrecision(.bf16)
        var lp: [Float] = []
        try f.model.forward(f.batch, logProbs: &lp)
        let torch16 = try f.expected.floats("logprobs_bf16"), torch32 = try f.expected.floats("logprobs")
        f.model.zeroGradients()
        try f.model.backward(dLogProbs: Self.meanNLLGradient(f.batch).dLogp)
        var g: [Float] = [], g16: [Float] = [], g32: [Float] = []
        for s in f.model.layout.specs {
            var a = try f.expected.floats("grad_bf16." + s.name), b = try f.expected.floats("grad." + s.name)
            if s.transposedInFile {
                let rows = s.shape[0], cols = s.shape[1]
                let (ta, tb) = (a, b)
                for r in 0..<rows {
                    for c in 0..<cols {
                        a[r * cols + c] = ta[c * rows + r]
                        b[r * cols + c] = tb[c * rows + r]
                    }
                }
            }
            g += f.model.gradient(s.name)!
            g16 += a
            g32 += b
        }
        let lpVsTorch = relativeError(lp, torch16), gVsTorch = relativeError(g, g16)
        print(
            "bf16 \(family): log-probs vs autocast \(lpVsTorch), vs f32 \(relativeError(lp, torch32)) (autocast vs f32 \(relativeError(torch16, torch32))); gradients vs autocast \(gVsTorch), vs f32 \(relativeError(g, g32)) (autocast vs f32 \(relativeError(g16, g32)))"
        )
        #expect(lpVsTorch < 5e-3 && gVsTorch < 3e-2)
        #expect(relativeError(lp, torch32) <= 3 * relativeError(torch16, torch32) + 1e-4)
        #expect(relativeError(g, g32) <= 3 * relativeError(g16, g32) + 1e-4)
    }

    @Test(arguments: families) func tenAdamWStepsTrackTorch(family: String) throws {
        guard let f = try Self.load(family) else { return }
        let want = try f.expected.floats("adam_losses")
        let hp = try f.expected.floats("adam_hparams")  // lr, beta1, beta2, eps, weight decay, clip
        let opt = AdamW(
            layout: f.model.layout, config: AdamWConfig(beta1: hp[1], beta2: hp[2], eps: hp[3], weightDecay: hp[4]))
        let (dl, k) = Self.meanNLLGradient(f.batch)
        var lp: [Float] = []
        var got: [Double] = []
        for _ in 0..<want.count {
            try f.model.forward(f.batch, logProbs: &lp)
            got.append(-lp.reduce(0.0) { $0 + Double($1) } / Double(k))
            f.model.zeroGradients()
            try f.model.backward(dLogProbs: dl)
            clipGradientNorm(f.model.gradients, maxNorm: Double(hp[5]))
            opt.update(parameters: f.model.parameters, gradients: f.model.gradients, lr: hp[0])
        }
        print("oracle \(family) AdamW losses: oreo \(got.map { Float($0) }) torch \(want)")
        for i in want.indices {
            let rel = abs(got[i] - Double(want[i])) / abs(Double(want[i]))
            #expect(rel <= 1e-4, "\(family) step \(i): loss \(got[i]) vs torch \(want[i])")
        }
        #expect(got.last! < got.first! * 0.5, "\(family) training did not reduce the loss: \(got)")
    }
}
