import Checkpoint
import Foundation
import Support

/// A linear layer LoRA can adapt, by the module name Hugging Face and PEFT use (`q` is `q_proj`).
public enum LoRATarget: String, CaseIterable, Sendable, Codable {
    /// Llama / Qwen2 attention and MLP projections.
    case q, k, v, o, gate, up, down
    /// GPT-2's fused attention input, its two output projections (attention and MLP) and its MLP input.
    case cAttn = "c_attn", cProj = "c_proj", cFc = "c_fc"

    /// The last component of the module path this target adapts (`self_attn.q_proj` ends in `q_proj`).
    public var moduleSuffix: String {
        switch self {
        case .q, .k, .v, .o, .gate, .up, .down: return rawValue + "_proj"
        case .cAttn, .cProj, .cFc: return rawValue
        }
    }

    /// Every target of a family ("all").
    public static func all(_ family: ModelFamily) -> [LoRATarget] {
        family == .gpt2 ? [.cAttn, .cProj, .cFc] : [.q, .k, .v, .o, .gate, .up, .down]
    }

    /// Parses a comma-separated list of target names, PEFT's module names (`q_proj`) or `all`, into `allCases` order.
    public static func parse(_ text: String, family: ModelFamily) throws -> [LoRATarget] {
        var out: [LoRATarget] = []
        for raw in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            if raw == "all" {
                out += all(family)
                continue
            }
            guard let t = LoRATarget(rawValue: raw) ?? allCases.first(where: { $0.moduleSuffix == raw }) else {
                throw TrainError.shape(
                    "unknown LoRA target '\(raw)' (q, k, v, o, gate, up, down; GPT-2: c_attn, c_proj, c_fc; or all)")
            }
            guard all(family).contains(t) else {
                throw TrainError.shape(
                    "LoRA target '\(raw)' is not a layer of a \(family.rawValue) model (its targets: \(all(family).map(\.rawValue).joined(separator: ", ")))"
                )
            }
            if !out.contains(t) { out.append(t) }
        }
        guard !out.isEmpty else { throw TrainError.shape("no LoRA targets given") }
        return allCases.filter(out.contains)  // one order, whatever the text's
    }
}

/// LoRA hyper-parameters: W x + (alpha / rank) B A x on each targeted layer, A [rank, in], B [out, rank].
public struct LoRAConfig: Sendable, Equatable, Codable {
    /// Rank r of the update.
    public var rank: Int
    /// Scale numerator: the update is multiplied by alpha / rank.
    public var alpha: Double
    /// Dropout probability on the adapter's input during training (0: none).
    public var dropout: Double
    /// Adapted layers.
    public var targets: [LoRATarget]

    /// A configuration (validated by `LoRAAdapters`).
    public init(rank: Int, alpha: Double, dropout: Double = 0, targets: [LoRATarget]) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targets = targets
    }

    /// alpha / rank.
    public var scale: Float { Float(alpha / Double(rank)) }
}

/// One adapter: A and B of one targeted tensor, which may be a run of rows of a fused weight (q, k and v share
/// the model's fused q|k|v matrix; gate and up its gate|up matrix).
public struct LoRAAdapter: Sendable, Equatable {
    /// The adapted module's Hugging Face path, e.g. `model.layers.0.self_attn.q_proj`.
    public let module: String
    /// Offset of the fused weight matrix in the model's parameters (the key `TransformerModel.linear` gets).
    public let weight: Int
    /// First output row of the fused matrix this adapter adds to, and how many.
    public let firstRow: Int, rows: Int
    /// Input width.
    public let inDim: Int
    /// Offsets of A [rank, inDim] and B [rows, rank] in the adapters' parameters (and gradients).
    public let a: Int, b: Int
    /// Offset of this adapter's x A^T [tokens, rank] in the adapters' activations (kept for the backward).
    public let u: Int
}

/// The LoRA adapters of one model: every A and B in one contiguous parameter buffer, their gradients in
/// another, and the activations the backward needs, all allocated once.
public final class LoRAAdapters {
    /// Hyper-parameters.
    public let config: LoRAConfig
    /// Adapters in model order.
    public let adapters: [LoRAAdapter]
    /// Every A and B.
    public let parameters: FlatBuffer
    /// Their gradients.
    public let gradients: FlatBuffer
    /// The `TensorSpec`s of `parameters` (PEFT's names, without the `base_model.model.` prefix; a value model's
    /// `value_head.weight` last), for AdamW and files.
    public let layout: [TensorSpec]
    /// Parameter count of the model layout the adapters were made for.
    public let modelParameters: Int
    /// A value model's head, trained full-rank beside the adapters (PEFT's `modules_to_save`): its offset in
    /// `parameters` (the model reads it from here while these adapters are attached).
    public let valueHead: Int?
    private let byWeight: [Int: [Int]]
    private let maxTokens: Int
    private var acts: FlatBuffer
    private var scratchRows: Int
    /// The current training pass's dropout key (nil: no dropout, as in inference; set per pass by the trainer).
    /// Masks are pure functions of (key, adapter, element), so the backward regenerates the forward's.
    public var dropoutKey: UInt64?
    /// [maxTokens, widest input] for the dropped-out input and its gradient (allocated when dropout > 0).
    private let dropScratch: FlatBuffer?

    /// Adapters for `model`'s layout on `config.targets`, A and B zero (see `initialize`), for passes of up to
    /// `maxTokens` positions. `valueHead` (default: whether the model has one) adds a full-rank value head, copied
    /// from the model's when it has one, else zero: a value network over a base without a head.
    public init(model: TransformerModel, config: LoRAConfig, valueHead withHead: Bool? = nil) throws {
        guard config.rank > 0 else { throw TrainError.shape("LoRA rank must be positive, not \(config.rank)") }
        guard config.alpha > 0, config.alpha.isFinite else {
            throw TrainError.shape("LoRA alpha must be positive, not \(config.alpha)")
        }
        guard config.dropout >= 0, config.dropout < 1 else {
            throw TrainError.shape("LoRA dropout must be in [0, 1), not \(config.dropout)")
        }
        let family = model.config.family
        for t in config.targets where !LoRATarget.all(family).contains(t) {
            throw TrainError.shape("LoRA target '\(t.rawValue)' is not a layer of a \(family.rawValue) model")
        }
        var config = config
        config.targets = LoRATarget.allCases.filter(config.targets.contains)  // one order, whatever the file's
        self.config = config
        let r = config.rank
        let fused = model.linearWeights().filter { $0.offset != model.layout.lmHead }
        var list: [LoRAAdapter] = [], specs: [TensorSpec] = []
        var total = 0, actTotal = 0
        var byWeight: [Int: [Int]] = [:]
        for s in model.layout.specs where s.shape.count == 2 && s.name.hasSuffix(".weight") {
            let module = String(s.name.dropLast(".weight".count))
            guard config.targets.contains(where: { module.hasSuffix("." + $0.moduleSuffix) }),
                let f = fused.first(where: { s.offset >= $0.offset && s.offset < $0.offset + $0.outDim * $0.inDim })
            else { continue }
            let rows = s.count / f.inDim, first = (s.offset - f.offset) / f.inDim
            let a = total, b = total + r * f.inDim
            specs.append(
                TensorSpec(name: module + ".lora_A.weight", shape: [r, f.inDim], offset: a, transposedInFile: false))
            specs.append(
                TensorSpec(name: module + ".lora_B.weight", shape: [rows, r], offset: b, transposedInFile: false))
            total = b + rows * r
            byWeight[f.offset, default: []].append(list.count)
            list.append(
                LoRAAdapter(
                    module: module, weight: f.offset, firstRow: first, rows: rows, inDim: f.inDim, a: a, b: b,
                    u: actTotal))
            actTotal += model.maxTokens * r
        }
        guard !list.isEmpty else { throw TrainError.shape("no layer of this model matches the LoRA targets") }
        if withHead ?? (model.layout.valueHead >= 0) {
            valueHead = total
            specs.append(
                TensorSpec(
                    name: "value_head.weight", shape: [1, model.config.hiddenSize], offset: total,
                    transposedInFile: false))
            total += model.config.hiddenSize
        } else {
            valueHead = nil
        }
        adapters = list
        layout = specs
        self.byWeight = byWeight
        modelParameters = model.layout.total
        maxTokens = model.maxTokens
        parameters = FlatBuffer(count: total)
        gradients = FlatBuffer(count: total)
        if let valueHead, model.layout.valueHead >= 0 {
            parameters.pointer.advanced(by: valueHead).update(
                from: model.parameters.pointer + model.layout.valueHead, count: model.config.hiddenSize)
        }
        // per adapter x A^T, then scratch of [scratchRows, rank] for dU (and a decoder pass's x A^T)
        scratchRows = model.maxTokens
        acts = FlatBuffer(count: actTotal + scratchRows * r)
        dropScratch =
            config.dropout > 0 ? FlatBuffer(count: model.maxTokens * (list.map(\.inDim).max() ?? 0)) : nil
    }

    /// PEFT's initialization: A uniform in +-1/sqrt(in) (kaiming-uniform with a = sqrt 5), B zero, so the
    /// adapted model starts as the base (a value head keeps the values it has).
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let p = parameters.pointer
        for ad in adapters { (p + ad.b).update(repeating: 0, count: ad.rows * config.rank) }
        parameters.markChanged()
        for ad in adapters {
            let bound = 1 / Double(ad.inDim).squareRoot()
            for i in 0..<(config.rank * ad.inDim) {
                p[ad.a + i] = Float((Double(rng.next() >> 11) / 0x1p53 * 2 - 1) * bound)
            }
        }
    }

    /// Sets all gradients to zero.
    public func zeroGradients() { gradients.zero() }

    /// Bytes of the adapters' parameters, gradients and activations.
    public var bytes: Int { 4 * (parameters.count + gradients.count + acts.count + (dropScratch?.count ?? 0)) }

    /// Dropout's probability and scratch when this pass drops (a kept training pass with a key), else nil.
    private func dropping(keep: Bool) -> (p: Float, key: UInt64, scratch: UnsafeMutablePointer<Float>)? {
        guard keep, config.dropout > 0, let key = dropoutKey, let scratch = dropScratch else { return nil }
        return (Float(config.dropout), key, scratch.pointer)
    }

    /// The parameter values of the tensor named `name` (a `layout` name).
    public func tensor(_ name: String) -> [Float]? { values(name, in: parameters) }

    /// The gradient of the tensor named `name`.
    public func gradient(_ name: String) -> [Float]? { values(name, in: gradients) }

    private func values(_ name: String, in buffer: FlatBuffer) -> [Float]? {
        layout.first { $0.name == name }.map {
            Array(UnsafeBufferPointer(start: buffer.pointer + $0.offset, count: $0.count))
        }
    }

    /// Adds every adapter's update into `model`'s weights: W[rows of the adapter] += (alpha / r) B A, in double
    /// (`oreo convert --merge-lora`). The model must be the one these adapters were made for, without them attached.
    public func merge(into model: TransformerModel) throws {
        guard modelParameters == model.layout.total else {
            throw TrainError.shape(
                "LoRA adapters made for a model of \(modelParameters) parameters, not \(model.layout.total)")
        }
        guard model.adapters !== self else { throw TrainError.state("detach the adapters before merging them") }
        let p = parameters.pointer, w = model.parameters.pointer, r = config.rank, s = Double(config.scale)
        for ad in adapters {
            for o in 0..<ad.rows {
                let row = w + ad.weight + (ad.firstRow + o) * ad.inDim
                for i in 0..<ad.inDim {
                    var delta = 0.0
                    for k in 0..<r { delta += Double(p[ad.b + o * r + k]) * Double(p[ad.a + k * ad.inDim + i]) }
                    row[i] = Float(Double(row[i]) + s * delta)
                }
            }
        }
        if let valueHead, model.layout.valueHead >= 0 {
            (w + model.layout.valueHead).update(from: p + valueHead, count: model.config.hiddenSize)
        }
        model.parameters.markChanged()
    }

    /// Makes the scratch hold passes of `rows` rows (a decoder's pass size; once, at its creation).
    func reserveRows(_ rows: Int) {
        guard rows > scratchRows else { return }
        let kept = acts.count - scratchRows * config.rank
        scratchRows = rows
        acts = FlatBuffer(count: kept + rows * config.rank)
    }

    /// Adds every adapter of the fused weight at `weight` to y: y[:, rows of the adapter] += s (x A^T) B^T.
    /// With `keep` (a training forward, rows <= maxTokens) x A^T is kept for `backward`.
    ///
    /// Shapes: x [rows, inDim] (stride ldx), y [rows, out] (stride ldy).
    func forward(
        x: UnsafePointer<Float>, ldx: Int, weight: Int, y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int,
        keep: Bool
    ) {
        guard let list = byWeight[weight] else { return }
        let r = config.rank, p = parameters.pointer
        let scratch = acts.pointer + acts.count - scratchRows * r
        precondition(keep ? rows <= maxTokens : rows <= scratchRows, "LoRA pass of \(rows) rows exceeds its buffers")
        let drop = dropping(keep: keep)
        for i in list {
            let ad = adapters[i]
            let u = keep ? acts.pointer + ad.u : scratch
            if let drop {
                dropoutRows(
                    x, lds: ldx, drop.scratch, ldd: ad.inDim, rows: rows, cols: ad.inDim, key: drop.key,
                    stream: UInt64(i), p: drop.p, accumulate: false)
                sgemm(false, true, rows, r, ad.inDim, 1, drop.scratch, ad.inDim, p + ad.a, ad.inDim, 0, u, r)
            } else {
                sgemm(false, true, rows, r, ad.inDim, 1, x, ldx, p + ad.a, ad.inDim, 0, u, r)
            }
            sgemm(false, true, rows, ad.rows, r, config.scale, u, r, p + ad.b, r, 1, y + ad.firstRow, ldy)
        }
    }

    /// Backward of the last kept `forward` of the fused weight at `weight`: accumulates dA and dB, and adds the
    /// adapters' part of dx.
    ///
    /// Shapes: dy [rows, out] (stride ldy), x [rows, inDim] (stride ldx), dx [rows, inDim] (stride lddx).
    func backward(
        dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, ldx: Int, weight: Int,
        dx: UnsafeMutablePointer<Float>?, lddx: Int, rows: Int
    ) {
        guard let list = byWeight[weight] else { return }
        let r = config.rank, p = parameters.pointer, g = gradients.pointer, s = config.scale
        let du = acts.pointer + acts.count - scratchRows * r
        let drop = dropping(keep: true)
        for i in list {
            let ad = adapters[i]
            let u = acts.pointer + ad.u, dySeg = dy + ad.firstRow
            // dB += s dy_seg^T u; dU = s dy_seg B; dA += dU^T x; dx += dU A (x and dx through the dropout mask)
            sgemm(true, false, ad.rows, r, rows, s, dySeg, ldy, u, r, 1, g + ad.b, r)
            sgemm(false, false, rows, r, ad.rows, s, dySeg, ldy, p + ad.b, r, 0, du, r)
            guard let drop else {
                sgemm(true, false, r, ad.inDim, rows, 1, du, r, x, ldx, 1, g + ad.a, ad.inDim)
                if let dx { sgemm(false, false, rows, ad.inDim, r, 1, du, r, p + ad.a, ad.inDim, 1, dx, lddx) }
                continue
            }
            let stream = UInt64(i)
            dropoutRows(
                x, lds: ldx, drop.scratch, ldd: ad.inDim, rows: rows, cols: ad.inDim, key: drop.key, stream: stream,
                p: drop.p, accumulate: false)
            sgemm(true, false, r, ad.inDim, rows, 1, du, r, drop.scratch, ad.inDim, 1, g + ad.a, ad.inDim)
            guard let dx else { continue }
            sgemm(false, false, rows, ad.inDim, r, 1, du, r, p + ad.a, ad.inDim, 0, drop.scratch, ad.inDim)
            dropoutRows(
                drop.scratch, lds: ad.inDim, dx, ldd: lddx, rows: rows, cols: ad.inDim, key: drop.key, stream: stream,
                p: drop.p, accumulate: true)
        }
    }
}
