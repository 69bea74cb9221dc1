import Checkpoint
import Train

/// Which weights decoding reads (`TransformerModel.decodingWeights`).
public enum DecodeWeights: String, CaseIterable, Sendable {
    /// A GGUF's own blocks (exactly the values of its dequantized f32 weights, 4-8x fewer bytes per token);
    /// f32 for a checkpoint directory.
    case auto
    /// The f32 parameters.
    case f32
    /// The f32 weights rounded to bfloat16 (lossy).
    case bf16
    /// The f32 weights rounded to IEEE half (lossy).
    case f16
    /// The f32 weights quantized to ggml's Q8_0 (lossy).
    case q8_0

    /// Packs (or not) `model`, loaded from `gguf` when that is set, and says what it chose. A bf16 model's `auto`
    /// is bf16 for a checkpoint directory (the values its wider passes multiply by), a GGUF's own blocks otherwise.
    func apply(to model: TransformerModel, gguf: GGUFFile?) throws -> String {
        let choice = self == .auto && gguf == nil && model.precision == .bf16 ? DecodeWeights.bf16 : self
        switch (choice, gguf) {
        case (.f32, _), (.auto, nil):
            model.decodingWeights = nil
            return "f32"
        case (.auto, let gguf?):
            model.decodingWeights = try gguf.packedWeights(for: model)
        case (.bf16, _), (.f16, _), (.q8_0, _):
            model.decodingWeights = try PackedWeights(quantizing: model, to: PackedFormat(rawValue: choice.rawValue)!)
        }
        let w = model.decodingWeights!
        return
            "\(w.summary) (\(w.matrixCount) of \(model.linearWeights().count) linear layers, \(w.byteCount / 1_000_000) MB)"
    }
}
