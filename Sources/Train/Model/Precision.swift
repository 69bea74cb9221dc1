/// The number format of a model's matrix products.
///
/// `bf16` is what PyTorch's CPU autocast does: f32 master weights, gradients and optimizer state; the linear
/// layers' weights rounded to bf16 after each update and their inputs (activations going forward, output
/// gradients and activations going backward) rounded where a product reads them; f32 accumulation and f32
/// outputs. Norms, softmax, attention, the LM head, the value head and every loss stay f32
/// (docs/precision.md lists every place that rounds).
public enum Precision: String, Sendable, CaseIterable, Codable {
    /// f32 everywhere (OpenBLAS sgemm).
    case fp32
    /// bf16 products with f32 accumulation (oneDNN), on CPUs with AVX512_BF16 or AMX.
    case bf16

    /// Throws when this CPU cannot run `self` natively (bf16 without AVX512_BF16 or AMX would be emulated,
    /// slower than f32, so it is refused).
    public func checkSupported() throws {
        guard self == .bf16, !BF16GEMM.isAvailable else { return }
        throw TrainError.unsupported(
            "--precision bf16 needs a CPU with AVX512_BF16 (AMD Zen 4 or later, Intel Cooper Lake or later) or AMX (Intel Sapphire Rapids or later); this one has neither, so use --precision fp32"
        )
    }
}
