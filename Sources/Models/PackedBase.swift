import Checkpoint
import Foundation
import Support
import Train

extension ModelSource {
    /// Builds the model for batches of `maxTokens` positions, with a zero-initialized value head when asked.
    /// Its blocks' weight matrices are f32 (trainable), or stored as `base` (bf16, Q8_0, or a GGUF's own blocks)
    /// and frozen, for LoRA over a base that would not fit in f32: tensors are then read one at a time, so the
    /// f32 base is never whole in memory. `activations`: see `TransformerModel.init`.
    public func load(
        maxTokens: Int, valueHead: Bool = false, base: BaseWeights = .f32, activations: ActivationMode = .kept
    ) throws -> TransformerModel {
        guard base != .f32 else {
            return try loadF32(maxTokens: maxTokens, valueHead: valueHead, activations: activations)
        }
        let model = try TransformerModel(
            config: try config(), maxTokens: maxTokens, valueHead: valueHead, packedBase: true, activations: activations
        )
        let pieces: [PackedWeights.Piece]
        switch self {
        case .directory(let p):
            guard let format = base.format else {
                throw ModelError("--base-weights gguf needs a GGUF model; \(p) is a directory (use bf16 or q8_0)")
            }
            pieces = try ModelCheckpoint.loadWeights(
                into: model, from: SafeTensorsCollection(directory: p), directory: p, packing: format)
        case .gguf(let p):
            pieces = try GGUFFile(path: p).load(into: model, packing: base)
        case .random(_, let seed):
            guard let format = base.format else {
                throw ModelError("--base-weights gguf needs a GGUF model, not \(description) (use bf16 or q8_0)")
            }
            model.initializeRandomly(seed: seed)
            pieces = Self.randomPieces(model, seed: seed, format: format)
        }
        try model.setBaseWeights(PackedWeights(model: model, pieces: pieces))
        return model
    }

    /// The packed matrices of a random model: standard deviation 0.02 (output projections scaled by
    /// 1 / sqrt(2 layers), as `initializeRandomly`), uniform rather than normal because a 7B base has 6 billion of
    /// them to draw; each tensor from its own seeded stream, generated when packed.
    private static func randomPieces(_ model: TransformerModel, seed: UInt64, format: PackedFormat)
        -> [PackedWeights.Piece]
    {
        model.layout.specs.enumerated().compactMap { i, s in
            guard model.layout.isPacked(s.offset) else { return nil }
            let std = model.initialStd(of: s)
            return PackedWeights.Piece(spec: s, format: format) { dst in
                var rng = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(i + 1))
                let half = Float(std * 3.0.squareRoot())  // uniform on [-h, h] has std h / sqrt 3
                let v = (0..<s.count).map { _ in Float(rng.next() >> 40) * 0x1p-23 * half - half }
                try v.withUnsafeBufferPointer { try PackedWeights.pack($0, as: format, name: s.name, into: dst) }
            }
        }
    }
}
