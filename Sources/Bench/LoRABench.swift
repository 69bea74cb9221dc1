import Checkpoint
import Foundation
import Models
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
///
/// `--scale 1.5b,7b` runs the paper's model sizes instead (`runLoRAScale`).
func runLoRABench(args: [String]) throws {
    if let i = args.firstIndex(of: "--scale"), i + 1 < args.count {
        try runLoRAScale(args: args, models: args[i + 1])
        return
    }
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
        let (o, status) = try runChild(["lora"] + args + ["--only", lora ? "lora" : "full"])
        guard let o, let wall = o["wall"], let trained = o["trained"], let peak = o["peak_mb"] else {
            print("lora bench: the \(lora ? "LoRA" : "full") run failed (status \(status))")
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
            let (count, update) = try trainAdapters(m, rank: rank, valueHead: m === value, adam: adam)
            trained += count
            updates.append(update)
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

/// A model size of `Bench lora --scale`: its shape, the packed base it runs over, and the issue's RSS target.
private struct ScaleModel {
    let name: String, config: ModelConfig, base: BaseWeights, targetGB: Double

    static func named(_ name: String, base: BaseWeights?) -> ScaleModel? {
        switch name {
        case "1.5b":
            return ScaleModel(
                name: "Qwen2.5-1.5B shape",
                config: ModelConfig(
                    family: .qwen2, vocabSize: 151936, hiddenSize: 1536, layers: 28, heads: 12, kvHeads: 2,
                    headDim: 128, intermediateSize: 8960, maxPositions: 4096, ropeTheta: 1e6,
                    tieWordEmbeddings: true, qkvBias: true),
                base: base ?? .bf16, targetGB: 8)
        case "7b":
            return ScaleModel(
                name: "DeepSeekMath-7B shape",
                config: ModelConfig(
                    family: .llama, vocabSize: 102400, hiddenSize: 4096, layers: 30, heads: 32, kvHeads: 32,
                    intermediateSize: 11008, maxPositions: 4096, ropeTheta: 1e4, tieWordEmbeddings: false),
                base: base ?? .q8_0, targetGB: 22)
        default: return nil
        }
    }
}

/// `Bench lora --scale 1.5b,7b`: the OREO step the paper's models need, on randomly initialised models of their
/// shapes: policy and value LoRA (rank 64, every linear layer) over one frozen packed base (bf16 for 1.5B, Q8_0
/// for 7B; `--base` overrides), the exact KL against that base, batch 4 x 512, activation checkpointing. Each
/// size runs in a child process; prints the memory after loading, the peak RSS against the issue's target and
/// tokens/s. Options: --batch B (4) --seq T (512) --rank R (64) --steps N (1: the first step is timed; each 7B
/// step takes minutes on 2 cores) --base f32|bf16|q8_0 --precision fp32|bf16.
private func runLoRAScale(args: [String], models: String) throws {
    func opt(_ name: String) -> String? {
        guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
        return args[i + 1]
    }
    let batch = Int(opt("--batch") ?? "") ?? 4, seq = Int(opt("--seq") ?? "") ?? 512
    let rank = Int(opt("--rank") ?? "") ?? 64, steps = max(1, Int(opt("--steps") ?? "") ?? 1)
    let base = opt("--base").flatMap(BaseWeights.init(rawValue:))
    let precision = opt("--precision").flatMap(Precision.init(rawValue:)) ?? .fp32
    if let only = opt("--only-scale") {
        guard let m = ScaleModel.named(only, base: base) else {
            throw BenchError.usage("lora --scale 1.5b,7b (unknown size \(only))")
        }
        try runScaleConfiguration(m, batch: batch, seq: seq, rank: rank, steps: steps, precision: precision)
        return
    }
    print(
        "OREO step, policy + value LoRA r=\(rank) on every linear layer over one frozen base, exact KL against it, batch \(batch) x \(seq), activation checkpointing, \(precision.rawValue) products; random weights"
    )
    var table = Table(
        "model", "parameters", "base", "trained", "loaded RSS (GB)", "peak RSS (GB)", "target", "s / step", "tokens/s")
    for name in models.split(separator: ",").map(String.init) {
        guard let m = ScaleModel.named(name, base: base) else {
            print("lora bench: unknown model size \(name) (1.5b, 7b)")
            continue
        }
        let (o, status) = try runChild(["lora"] + args + ["--only-scale", name])
        guard let o, let wall = o["wall"], let trained = o["trained"], let peak = o["peak_gb"],
            let loaded = o["loaded_gb"], let params = o["parameters"]
        else {
            print("lora bench: the \(m.name) run failed (status \(status))")
            continue
        }
        table.add(
            m.name, fmt(params / 1e9, 2) + "B", m.base.rawValue, fmt(trained / 1e6, 0) + "M", fmt(loaded, 2),
            fmt(peak, 2), "<= \(fmt(m.targetGB, 0)) \(peak <= m.targetGB ? "ok" : "MISSED")", fmt(wall, 1),
            fmt(Double(batch * seq) / wall, 1))
    }
    table.print()
}

/// One size of `Bench lora --scale`, in its own process: prints {"wall", "trained", "parameters", "loaded_gb",
/// "peak_gb"}.
private func runScaleConfiguration(
    _ m: ScaleModel, batch: Int, seq: Int, rank: Int, steps: Int, precision: Precision
) throws {
    let n = batch * seq, config = m.config
    let (b, spans) = syntheticOREOBatch(batch: batch, seq: seq, vocab: config.vocabSize, seed: 3)
    let policy = try ModelSource.random(config, seed: 1).load(maxTokens: n, base: m.base, activations: .recomputed)
    let value = try TransformerModel(
        config: config, maxTokens: n, logitCacheBytes: 0, sharing: policy, gradients: false, activations: .recomputed,
        workspace: policy)
    let reference = try TransformerModel(
        config: config, maxTokens: n, logitCacheBytes: 0, sharing: policy, gradients: false, activations: .forwardOnly,
        workspace: policy)
    let adam = AdamWConfig(beta1: 0.9, beta2: 0.95, weightDecay: 0)
    var trained = 0
    var updates: [() -> Void] = []
    for net in [policy, value] {
        let (count, update) = try trainAdapters(net, rank: rank, valueHead: net === value, adam: adam)
        trained += count
        updates.append(update)
    }
    for net in [policy, value, reference] { try net.setPrecision(precision) }
    let loaded = Double(processMemory().resident) / 1e9
    let objective = BatchObjective(capacity: n)
    var exact = OREOConfig()
    exact.k3 = false
    var lp: [Float] = [], refLP: [Float] = [], values: [Float] = [], kl: [Float] = []
    func step() throws {
        try reference.forward(b, logProbs: &refLP)
        try policy.forward(b, logProbs: &lp, klAgainst: reference, kl: &kl)
        try value.forwardValues(b, values: &values)
        _ = try objective.oreo(
            spans: spans, stepEnds: [], logProbs: lp, refLogProbs: refLP, values: values, kl: kl, config: exact)
        value.zeroGradients()
        try value.backwardValues(dValues: objective.dValues)
        policy.zeroGradients()
        try policy.backward(dLogProbs: objective.dLogProbs, dKL: objective.dKL)
        for u in updates { u() }
    }
    var walls: [Double] = []
    for _ in 0..<steps { walls.append(try seconds { try step() }) }
    let wall = walls.count > 1 ? walls.dropFirst().sorted()[(walls.count - 1) / 2] : walls[0]
    print(
        "{\"wall\": \(wall), \"trained\": \(trained), \"parameters\": \(policy.layout.total), \"loaded_gb\": \(loaded), \"peak_gb\": \(Double(processMemory().peak) / 1e9)}"
    )
}

/// Attaches fresh LoRA adapters of `rank` on every linear layer (with a value head when asked) to `m`, freezing its
/// base; returns their parameter count and the update a step ends with (clipping, AdamW over the adapters).
private func trainAdapters(_ m: TransformerModel, rank: Int, valueHead: Bool, adam: AdamWConfig) throws -> (
    Int, () -> Void
) {
    let a = try LoRAAdapters(
        model: m, config: LoRAConfig(rank: rank, alpha: Double(rank), targets: LoRATarget.all(m.config.family)),
        valueHead: valueHead)
    a.initialize(seed: 2)
    try m.attach(a)
    m.dropBaseGradients()
    let o = AdamW(specs: a.layout, count: a.parameters.count, config: adam)
    return (
        a.parameters.count,
        {
            _ = clipGradientNorm(a.gradients, maxNorm: 1)
            o.update(parameters: a.parameters, gradients: a.gradients, lr: 1e-5)
        }
    )
}

/// Runs `executable` (this Bench binary by default; mpirun) with `arguments` in a child process, so its peak RSS is
/// its own, and returns the last JSON object line it printed (nil if none parses) with its exit status.
func runChild(_ arguments: [String], executable: String = CommandLine.arguments[0]) throws -> (
    [String: Double]?, Int32
) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last(where: { $0.hasPrefix("{") })
    let object = line.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Double] }
    return (object, p.terminationStatus)
}
