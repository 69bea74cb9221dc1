import ArgumentParser
import Checkpoint
import Foundation
import Models
import Train

/// `oreo convert`: Hugging Face safetensors directories <-> GGUF files (llama.cpp, Ollama).
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a model between an HF safetensors directory and a GGUF file (either direction).",
        discussion: """
            IN is a GGUF file or a directory with config.json and model.safetensors (or a sharded \
            model.safetensors.index.json). OUT ending in .gguf writes GGUF; anything else is a directory that gets \
            config.json, model.safetensors and, when the source has a byte-level BPE tokenizer (pre-tokenizer \
            gpt2, smollm, llama-bpe or qwen2), tokenizer.json and tokenizer_config.json.

            Families: Llama, Qwen2 (GGUF architectures llama, qwen2) and GPT-2 (gpt2). GGUF tensors may be F32, \
            F16, Q8_0, Q4_0 or Q4_1 (dequantized); Llama q/k rows are un-permuted on import and permuted back on \
            export, as llama.cpp's converter does. Files are written under a temporary name and renamed when complete.
            """)

    @Argument(help: "Source: a .gguf file or an HF model directory.") var input: String
    @Argument(help: "Destination: NAME.gguf, or a directory for safetensors.") var output: String
    @Option(help: "Safetensors storage when OUT is a directory: f32 (default), f16 or bf16 (round to nearest even).")
    var dtype: String?
    @Option(
        help: "GGUF storage of the matrices when OUT is .gguf: f32 (default), f16 or q8_0 (norms and biases stay f32).")
    var type: String?
    @Option(help: "general.name written into a GGUF (default: the source's file or directory name).") var name: String?
    @Option(
        name: .customLong("merge-lora"),
        help: "A PEFT LoRA adapter directory (adapter_config.json) of IN to merge into the written weights.")
    var mergeLoRA: String?

    func run() throws {
        let toGGUF = GGUFFile.hasGGUFExtension(output)
        if toGGUF && dtype != nil { throw ValidationError("--dtype is for safetensors output; use --type for GGUF") }
        if !toGGUF && type != nil { throw ValidationError("--type is for GGUF output; use --dtype for safetensors") }
        let st: SafeTensorsDType
        switch dtype ?? "f32" {
        case "f32": st = .F32
        case "f16": st = .F16
        case "bf16": st = .BF16
        default: throw ValidationError("--dtype takes f32, f16 or bf16, not \(dtype ?? "")")
        }
        guard let gt = GGUFExportType(rawValue: type ?? "f32") else {
            throw ValidationError("--type takes f32, f16 or q8_0, not \(type ?? "")")
        }
        let start = Date()
        let report = try ModelConversion.convert(
            input: input, output: output, dtype: st, type: gt, name: name, mergeLoRA: mergeLoRA)
        print(report.source)
        if let m = report.merged { print(m) }
        for f in report.files { print("wrote \(f)") }
        print(report.tokenizer)
        print(String(format: "%.1f MB in %.1f s", Double(report.bytes) / 1e6, Date().timeIntervalSince(start)))
    }
}
