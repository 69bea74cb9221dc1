import Checkpoint
import Foundation
import Support
import Train

/// `Bench lora`: an OREO step (policy + value, k3 against stored reference log-probs, two AdamW updates) with
/// full fine-tuning against the same step with LoRA adapters on every linear layer of both networks (one frozen
/// base shared by both, no base gradients, AdamW over the adapters alone), on one randomly initialised
/// Llama-shaped model.
/// Each configuration runs in a child process of its own, so each peak RSS (VmHWM) is its own. Prints wall time
/// per step, tokens/s, peak RSS and the LoRA / full ratio (target >= 1.3x).
///
/// Options: --hidden D (768) --layers L (12) --heads H (12) --ffn F (2048) --vocab V (32000) --batch B (4)
/// --seq T (256) --rank R (64) --steps N (3).
func runLoRABench(args: [String]) throws {
    func opt(_ name: String, _ def: Int) -> Int {
        guard let i = args.firstIndex(of: name), i + 1 < args.count, let v = Int(args[i + 1]) else { return def }
        return v
    }
    let d = opt("--hidden", 768), layers = opt("--layers", 12), heads = opt("--heads", 12)
    let ffn = opt("--ffn", 2048), vocab = opt("--vocab", 32000), batch = opt("--batch", 4), seq = opt("--seq", 256)
    let rank = opt("--rank", 64), steps = max(1, opt("--steps", 3))
    let config = ModelConfig(
        family: .llama, vocabSize: vocab, hiddenSize: d, layers: layers, heads: heads, kvHeads: heads,
        intermediateSize: ffn, maxPositions: max(seq, 1024), tieWordEmbeddings: false)
    if let i = args.firstIndex(of: "--only"), i + 1 < args.count {
        try runLoRAConfiguration(
            lora: args[i + 1] == "lora", config: config, batch: batch, seq: seq, rank: rank, steps: steps)
        return
    }
    print(
        "model: llama d=\(d) layers=\(layers) heads=\(heads) ffn=\(ffn) vocab=\(vocab); batch \(batch) x \(seq); LoRA rank \(rank) on q,k,v,o,gate,up,down"
    )
    var table = Table("training", "trained parameters", "wall s / step", "tokens/s", "peak RSS (MB)")
    var rates: [Bool: Double] = [:]
    for lora in [false, true] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        p.arguments = ["lora"] + args + ["--only", lora ? "lora" : "full"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("{") }),
            let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Double],
            let wall = o["wall"], let trained = o["trained"], let peak = o["peak_mb"]
        else {
            print("lora bench: the \(lora ? "LoRA" : "full") run failed (status \(p.terminationStatus))")
            continue
        }
        rates[lora] = Double(batch * seq) / wall
        table.add(
            lora ? "LoRA r=\(rank), policy + value" : "full, policy + value", fmt(trained / 1e6, 1) + "M",
            fmt(wall, 3), fmt(Double(batch * seq) / wall, 0), fmt(peak, 0))
    }
    table.print()
    if let f = rates[false], let l = rates[true] {
        print("LoRA / full tokens/s: \(fmt(l / f))x (target >= 1.3x) \(l / f >= 1.3 ? "ok" : "BELOW TARGET")")
    }
}

/// One configuration of `Bench lora`, in its own process: prints {"wall", "trained", "peak_mb"}.
private func runLoRAConfiguration(
    lora: Bool, config: ModelConfig, batch: Int, seq: Int, rank: Int, steps: Int
) throws {
    let n = batch * seq
    let (b, spans) = syntheticOREOBatch(batch: batch, seq: seq, vocab: config.vocabSize, seed: 3)
    var k3 = OREOConfig()
    k3.k3 = true
    let adam = AdamWConfig(beta1: 0.9, beta2: 0.95, weightDecay: 0)
    let policy = try TransformerModel(config: config, maxTokens: n)
    policy.initializeRandomly(seed: 1)
    // Under LoRA, as `oreo train` runs it: the value network is the policy's frozen base plus adapters that
    // carry its head (one copy of the weights, no base gradients).
    let value =
        lora
        ? try TransformerModel(config: config, maxTokens: n, sharing: policy, gradients: false)
        : try TransformerModel(config: config, maxTokens: n, valueHead: true)
    if !lora { value.initializeRandomly(seed: 1) }
    var refLP: [Float] = []
    try policy.forward(b, logProbs: &refLP)  // as `oreo score` would store them
    var trained = 0
    var updates: [() -> Void] = []
    for m in [policy, value] {
        if lora {
            let a = try LoRAAdapters(
                model: m, config: LoRAConfig(rank: rank, alpha: Double(rank), targets: LoRATarget.all(.llama)),
                valueHead: m === value)
            a.initialize(seed: 2)
            try m.attach(a)
            m.dropBaseGradients()
            let o = AdamW(specs: a.layout, count: a.parameters.count, config: adam)
            trained += a.parameters.count
            updates.append {
                _ = clipGradientNorm(a.gradients, maxNorm: 1)
                o.update(parameters: a.parameters, gradients: a.gradients, lr: 1e-5)
            }
        } else {
            let o = AdamW(layout: m.layout, config: adam)
            trained += m.parameters.count
            updates.append {
                _ = clipGradientNorm(m.gradients, maxNorm: 1)
                m.update(o, lr: 1e-5)
            }
        }
    }
    let objective = BatchObjective(capacity: n)
    var lp: [Float] = [], values: [Float] = []
    func step() throws {
        try policy.forward(b, logProbs: &lp)
        try value.forwardValues(b, values: &values)
        _ = try objective.oreo(
            spans: spans, stepEnds: [], logProbs: lp, refLogProbs: refLP, values: values, kl: nil, config: k3)
        value.zeroGradients()
        try value.backwardValues(dValues: objective.dValues)
        policy.zeroGradients()
        try policy.backward(dLogProbs: objective.dLogProbs)
        for u in updates { u() }
    }
    try step()  // warm-up
    var walls: [Double] = []
    for _ in 0..<steps { walls.append(try seconds { try step() }) }
    let wall = walls.sorted()[walls.count / 2]
    print("{\"wall\": \(wall), \"trained\": \(trained), \"peak_mb\": \(Double(processMemory().peak) / 1_048_576)}")
}
