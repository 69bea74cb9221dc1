import Checkpoint
import Foundation
import Format
import Support
import Train

/// Cost of one OREO step against one plain LM step on the same model and packed batch.
///
/// LM step: policy forward + NLL backward over the response tokens + AdamW. OREO step (k3, reference
/// log-probs precomputed as `oreo score` stores them): policy forward, value forward, both losses, value
/// backward, policy backward, two clips and two AdamW updates. Also the exact-KL variant (a reference model's
/// forward beside the policy and the full-vocabulary KL in the LM head). Process CPU seconds (all threads),
/// medians over interleaved repeats, so other load on the machine distorts the ratio less than wall time.
///
/// With --precision fp32,bf16 (both by default on CPUs with native bf16) the same steps run in each precision.
///
/// Options: --layers L --hidden D --vocab V --batch B --seq T --steps N --precision P. Target: OREO <= 2.2x an LM
/// step.
func runOREOBench(args: [String]) throws {
    func opt(_ name: String, _ def: Int) -> Int {
        guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return def }
        return v
    }
    let layers = opt("--layers", 8), d = opt("--hidden", 512), vocab = opt("--vocab", 32000)
    let batch = opt("--batch", 4), seq = opt("--seq", 256), steps = opt("--steps", 5)
    let config = ModelConfig(
        family: .llama, vocabSize: vocab, hiddenSize: d, layers: layers, heads: max(1, d / 64),
        kvHeads: max(1, d / 128), intermediateSize: 8 * d / 3 / 64 * 64, maxPositions: max(seq, 1024),
        tieWordEmbeddings: true)
    let n = batch * seq
    let policy = try TransformerModel(config: config, maxTokens: n)
    let value = try TransformerModel(config: config, maxTokens: n, valueHead: true)
    let reference = try TransformerModel(config: config, maxTokens: n)
    for m in [policy, value, reference] { m.initializeRandomly(seed: 1) }
    let adam = AdamWConfig(beta1: 0.9, beta2: 0.95, weightDecay: 0)
    let optP = AdamW(layout: policy.layout, config: adam), optV = AdamW(layout: value.layout, config: adam)

    let (b, spans) = syntheticOREOBatch(batch: batch, seq: seq, vocab: vocab, seed: 2)
    let prompt = seq / 4
    var refLP: [Float] = []
    try reference.forward(b, logProbs: &refLP)  // precomputed, as `oreo score` stores them
    let objective = BatchObjective(capacity: n)
    var lp: [Float] = [], values: [Float] = [], kl: [Float] = []
    var k3 = OREOConfig()
    k3.k3 = true
    let exact = OREOConfig()

    func lmStep() throws {
        try policy.forward(b, logProbs: &lp)
        _ = try objective.nll(spans: spans, logProbs: lp)
        policy.zeroGradients()
        try policy.backward(dLogProbs: objective.dLogProbs)
        clipGradientNorm(policy.gradients, maxNorm: 1)
        optP.update(parameters: policy.parameters, gradients: policy.gradients, lr: 1e-5)
    }
    func oreoStep(exactKL: Bool) throws {
        if exactKL {
            try reference.forward(b, logProbs: &refLP)
            try policy.forward(b, logProbs: &lp, klAgainst: reference, kl: &kl)
        } else {
            try policy.forward(b, logProbs: &lp)
        }
        try value.forwardValues(b, values: &values)
        _ = try objective.oreo(
            spans: spans, stepEnds: [], logProbs: lp, refLogProbs: refLP, values: values,
            kl: exactKL ? kl : nil, config: exactKL ? exact : k3)
        value.zeroGradients()
        try value.backwardValues(dValues: objective.dValues)
        policy.zeroGradients()
        if exactKL {
            try policy.backward(dLogProbs: objective.dLogProbs, dKL: objective.dKL)
        } else {
            try policy.backward(dLogProbs: objective.dLogProbs)
        }
        clipGradientNorm(value.gradients, maxNorm: 1)
        optV.update(parameters: value.parameters, gradients: value.gradients, lr: 1e-5)
        clipGradientNorm(policy.gradients, maxNorm: 1)
        optP.update(parameters: policy.parameters, gradients: policy.gradients, lr: 1e-5)
    }

    print(
        "model: llama d=\(d) layers=\(layers) vocab=\(vocab), \(policy.parameters.count) parameters; batch \(batch) x \(seq) tokens (\(n - batch * prompt) response targets)"
    )
    let precisions =
        (args.firstIndex(of: "--precision").flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
        ?? (BF16GEMM.isAvailable ? "fp32,bf16" : "fp32")).split(separator: ",").compactMap {
            Precision(rawValue: String($0))
        }
    func med(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
    var t = Table("precision", "step", "CPU s (median)", "wall s (median)", "tokens/s (wall)", "vs LM step (CPU)")
    var oreoWallBy: [Precision: Double] = [:]
    for precision in precisions {
        for m in [policy, value, reference] { try m.setPrecision(precision) }
        try lmStep()
        try oreoStep(exactKL: false)
        try oreoStep(exactKL: true)  // warm-up
        var lm: [Double] = [], oreo: [Double] = [], oreoExact: [Double] = [], lmWall: [Double] = []
        var oreoWall: [Double] = []
        for _ in 0..<steps {
            var err: Error?
            lmWall.append(seconds { lm.append(processSeconds { do { try lmStep() } catch { err = error } }) })
            oreoWall.append(
                seconds { oreo.append(processSeconds { do { try oreoStep(exactKL: false) } catch { err = error } }) })
            oreoExact.append(processSeconds { do { try oreoStep(exactKL: true) } catch { err = error } })
            if let err { throw err }
        }
        let p = precision.rawValue
        t.add(
            p, "LM (NLL on responses)", fmt(med(lm), 3), fmt(med(lmWall), 3), fmt(Double(n) / med(lmWall), 0), "1.00x")
        t.add(
            p, "OREO, k3 from stored ref", fmt(med(oreo), 3), fmt(med(oreoWall), 3),
            fmt(Double(n) / med(oreoWall), 0), fmt(med(oreo) / med(lm)) + "x")
        t.add(p, "OREO, exact KL + reference", fmt(med(oreoExact), 3), "-", "-", fmt(med(oreoExact) / med(lm)) + "x")
        oreoWallBy[precision] = med(oreoWall)
        let ratio = med(oreo) / med(lm)
        print(
            "\(p): an OREO step <= 2.2x an LM step (process CPU time): \(fmt(ratio))x \(ratio <= 2.2 ? "ok" : "ABOVE TARGET")"
        )
    }
    t.print()
    if let a = oreoWallBy[.fp32], let b = oreoWallBy[.bf16] {
        print("OREO step (k3), bf16 / fp32 tokens/s: \(fmt(a / b))x")
    }
}

/// `batch` random sequences of `seq` tokens: the first quarter prompt, the rest response (targets on response
/// tokens only), rewards alternating 0 and 1.
func syntheticOREOBatch(batch: Int, seq: Int, vocab: Int, seed: UInt64) -> (PackedBatch, [ResponseSpan]) {
    var rng = SplitMix64(seed: seed)
    let prompt = seq / 4
    var tokens: [Int32] = [], targets: [Int32] = [], spans: [ResponseSpan] = []
    for s in 0..<batch {
        let ids = (0..<seq).map { _ in Int32(rng.next() % UInt64(vocab)) }
        tokens += ids
        targets += (0..<seq).map { i in i >= prompt - 1 && i + 1 < seq ? ids[i + 1] : -1 }
        spans.append(
            ResponseSpan(first: s * seq + prompt - 1, count: seq - prompt, reward: Float(s % 2), positive: s % 2 == 1))
    }
    return (PackedBatch(tokens: tokens, sequenceLengths: Array(repeating: seq, count: batch), targets: targets), spans)
}
