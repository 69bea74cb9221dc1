import Format
import COpenBLAS
import Foundation
import Train

/// Training-step benchmark: GPT-2-124M shape at batch 4 x 256 (default), ms/step, tokens/s and MFU against an
/// sgemm peak measured in the same run, plus PyTorch on the same config via a Python subprocess.
///
/// Options: --steps N (timed steps, default 5), --layers L, --batch B, --seq T, --no-torch.
func runTrainBench(args: [String]) {
    func opt(_ name: String, _ def: Int) -> Int {
        guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return def }
        return v
    }
    let steps = opt("--steps", 5), layers = opt("--layers", 12), batch = opt("--batch", 4), seq = opt("--seq", 256)
    print(BLASRuntime.summary)
    let peak = measureSgemmPeak()
    print(String(format: "sgemm peak (best of shapes, this run): %.1f GFLOP/s", peak))

    let config = ModelConfig(family: .gpt2, vocabSize: 50257, hiddenSize: 768, layers: layers, heads: 12,
                             maxPositions: 1024)
    let tokens = batch * seq
    let model: TransformerModel
    do { model = try TransformerModel(config: config, maxTokens: tokens) } catch { print("error: \(error)"); return }
    model.initializeRandomly(seed: 1)
    let opt = AdamW(layout: model.layout, config: AdamWConfig(beta1: 0.9, beta2: 0.95, weightDecay: 0.1))
    var rng = SplitMix64(seed: 2)
    let b = PackedBatch(sequences: (0..<batch).map { _ in (0..<seq).map { _ in Int32(rng.next() % 50257) } })
    let k = b.targets.filter { $0 >= 0 }.count
    let dl = b.targets.map { $0 >= 0 ? -1 / Float(k) : 0 }
    var lp: [Float] = []
    var times: [Double] = []
    var parts: [(Double, Double, Double)] = []
    for s in 0...steps {  // step 0 is warm-up
        let t0 = DispatchTime.now().uptimeNanoseconds
        do {
            try model.forward(b, logProbs: &lp)
            let t1 = DispatchTime.now().uptimeNanoseconds
            model.zeroGradients()
            try model.backward(dLogProbs: dl)
            let t2 = DispatchTime.now().uptimeNanoseconds
            clipGradientNorm(model.gradients, maxNorm: 1)
            opt.update(parameters: model.parameters, gradients: model.gradients, lr: 1e-4)
            let t3 = DispatchTime.now().uptimeNanoseconds
            let loss = -lp.reduce(0.0) { $0 + Double($1) } / Double(k)
            print(String(format: "step %d: %.0f ms (fwd %.0f, bwd %.0f, opt %.0f), loss %.4f", s, Double(t3 - t0) / 1e6,
                         Double(t1 - t0) / 1e6, Double(t2 - t1) / 1e6, Double(t3 - t2) / 1e6, loss))
            if s > 0 { times.append(Double(t3 - t0) / 1e6); parts.append((Double(t1 - t0) / 1e6, Double(t2 - t1) / 1e6, Double(t3 - t2) / 1e6)) }
        } catch { print("error: \(error)"); return }
    }
    let ms = median(times)
    let n = Double(model.parameters.count)
    let flopsPerToken = 6 * n + 6 * Double(layers * 768 * seq)
    let tps = Double(tokens) / (ms / 1000)
    let mfu = flopsPerToken * tps / (peak * 1e9)
    print(String(format: "oreo: %d params, %d tokens/step: median %.0f ms/step (fwd %.0f, bwd %.0f, opt %.0f), %.1f tokens/s, MFU %.1f%% of measured sgemm peak",
                 model.parameters.count, tokens, ms, median(parts.map(\.0)), median(parts.map(\.1)), median(parts.map(\.2)), tps, 100 * mfu))
    fflush(nil)  // flush all C streams: the subprocess writes to the same stdout
    if !args.contains("--no-torch") { runTorchBaseline(layers: layers, batch: batch, seq: seq, steps: steps) }
}

private func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
}

/// Best sgemm rate over training-like shapes (GPT-2 MLP / LM-head matmuls), in GFLOP/s.
private func measureSgemmPeak() -> Double {
    var best = 0.0
    for (m, nn, kk) in [(1024, 3072, 768), (1024, 768, 3072), (2048, 2048, 2048)] {
        let a = [Float](repeating: 0.01, count: m * kk), b = [Float](repeating: 0.02, count: kk * nn)
        var c = [Float](repeating: 0, count: m * nn)
        for rep in 0..<4 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(nn), Int32(kk), 1, a, Int32(kk),
                        b, Int32(nn), 0, &c, Int32(nn))
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if rep > 0 { best = max(best, 2 * Double(m * nn * kk) / dt / 1e9) }
        }
    }
    return best
}

/// Runs the same training step in PyTorch (HF GPT2LMHeadModel, fp32, AdamW) and prints its median.
private func runTorchBaseline(layers: Int, batch: Int, seq: Int, steps: Int) {
    let script = """
    import time, torch, statistics
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.set_num_threads(2); torch.manual_seed(0)
    cfg = GPT2Config(n_layer=\(layers), n_embd=768, n_head=12, n_positions=1024, vocab_size=50257, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    m = GPT2LMHeadModel(cfg); m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, 50257, (\(batch), \(seq)))
    ts = []
    for s in range(\(steps) + 1):
        t0 = time.perf_counter()
        loss = m(input_ids=x, labels=x).loss
        opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
        dt = (time.perf_counter() - t0) * 1000
        if s > 0: ts.append(dt)
        print(f"torch step {s}: {dt:.0f} ms, loss {loss.item():.4f}", flush=True)
    ms = statistics.median(ts)
    print(f"torch {torch.__version__}: median {ms:.0f} ms/step, {\(batch * seq) / (ms / 1000):.1f} tokens/s")
    """
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", script]
    var env = ProcessInfo.processInfo.environment
    env["OMP_NUM_THREADS"] = "2"
    p.environment = env
    do {
        try p.run()
        p.waitUntilExit()
        if p.terminationStatus != 0 { print("torch baseline failed (status \(p.terminationStatus)); needs pip torch + transformers") }
    } catch { print("torch baseline not run: \(error)") }
}
