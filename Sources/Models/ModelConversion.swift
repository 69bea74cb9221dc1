import Checkpoint
import Foundation
import Support
import Tokenizers
import Train

/// Storage of the matrices in an exported GGUF file (norms, biases and RoPE factors always stay F32, as
/// llama.cpp's converter keeps them).
public enum GGUFExportType: String, Sendable, CaseIterable {
    /// Lossless.
    case f32
    /// IEEE half, nearest-even.
    case f16
    /// llama.cpp's 8-bit blocks (matrices whose rows are not a multiple of 32 fall back to F16).
    case q8_0

    /// `general.file_type` (llama_ftype): ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7.
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q8_0: return 7
        }
    }

    /// The ggml type a tensor of `shape` gets.
    public func tensorType(shape: [Int]) -> GGMLType {
        if shape.count < 2 { return .f32 }
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return shape.last! % 32 == 0 ? .q8_0 : .f16
        }
    }
}

/// A model read from a checkpoint, with its tokenizer when the source carries one both formats can express.
public struct LoadedCheckpoint {
    /// The model (F32 parameters).
    public let model: TransformerModel
    /// The tokenizer, if any.
    public let vocabulary: BPEVocabulary?
    /// Why no tokenizer came along, when the source has one that could not be carried.
    public let tokenizerNote: String?
    /// Short description of the source's storage ("GGUF Q4_1 x 210, ...", "safetensors BF16").
    public let sourceTypes: String
}

/// What `ModelConversion.convert` wrote.
public struct ConversionReport: Sendable {
    /// Files written, in order.
    public var files: [String] = []
    /// Bytes written.
    public var bytes: Int = 0
    /// A line about the source: family, size, storage.
    public var source: String = ""
    /// A line about the tokenizer (written, or why not).
    public var tokenizer: String = ""
    /// A line about the LoRA adapter merged into the weights, if any.
    public var merged: String?
}

/// `oreo convert`: HF safetensors directories <-> GGUF files, through the trainer's own model (so every tensor
/// is validated against the architecture on the way).
public enum ModelConversion {
    /// Reads a GGUF file or an HF directory (config.json + model.safetensors or a sharded index, and
    /// tokenizer.json / tokenizer_config.json when present).
    public static func open(_ path: String, maxTokens: Int = 1) throws -> LoadedCheckpoint {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw SafeTensorsError.io(file: path, why: FileReadError.missing)
        }
        if isDir.boolValue {
            let model = try ModelCheckpoint.load(directory: path, maxTokens: maxTokens)
            let dtypes = Set(
                try SafeTensorsCollection(directory: path).files.values.flatMap { $0.tensors.map(\.dtype.rawValue) })
            var vocab: BPEVocabulary?, note: String?
            let tj = path + "/tokenizer.json"
            if let data = FileManager.default.contents(atPath: tj) {
                do {
                    vocab = try BPEVocabulary(
                        tokenizerJSON: data, path: tj,
                        config: FileManager.default.contents(atPath: path + "/tokenizer_config.json"))
                } catch { note = "\(error)" }
            } else {
                note = "no tokenizer.json in \(path)"
            }
            return LoadedCheckpoint(
                model: model, vocabulary: vocab, tokenizerNote: note,
                sourceTypes: "safetensors " + dtypes.sorted().joined(separator: "/"))
        }
        guard GGUFFile.isGGUF(path: path) else {
            throw SafeTensorsError.invalid(file: path, why: "neither a model directory nor a GGUF file")
        }
        let g = try GGUFFile(path: path)
        let model = try g.loadModel(maxTokens: maxTokens)
        var vocab: BPEVocabulary?, note: String?
        if g.metadata["tokenizer.ggml.model"] != nil {
            do { vocab = try BPEVocabulary(gguf: g) } catch { note = "\(error)" }
        } else {
            note = "no tokenizer in \(path)"
        }
        var counts: [String: Int] = [:]
        for t in g.tensors {
            counts[GGMLType(rawValue: t.type).map { "\($0)".uppercased() } ?? "type \(t.type)", default: 0] += 1
        }
        let types = counts.sorted { $0.value > $1.value }.map { "\($0.key) x \($0.value)" }.joined(separator: ", ")
        return LoadedCheckpoint(model: model, vocabulary: vocab, tokenizerNote: note, sourceTypes: "GGUF " + types)
    }

    /// The model's tensors under llama.cpp names and layouts (q/k rows permuted for Llama), typed for `type`.
    public static func ggufTensors(of model: TransformerModel, type: GGUFExportType) throws -> [GGUFTensorRecord] {
        let c = model.config, p = model.parameters.pointer
        var out: [GGUFTensorRecord] = []
        for s in model.layout.specs where s.offset != model.layout.valueHead {
            guard let g = GGUFFile.ggufName(s.name, family: c.family) else {
                throw GGUFError.tensor(file: "<gguf export>", name: s.name, why: "has no GGUF name")
            }
            var v = Array(UnsafeBufferPointer(start: p + s.offset, count: s.count))
            if c.family.ggufPermutesRotary, let heads = rotaryHeads(s.name, c) {
                v = GGUFFile.permuteRotary(
                    v, heads: heads, rowsPerHead: c.headDim, cols: s.shape.count == 2 ? s.shape[1] : 1)
            }
            out.append(GGUFTensorRecord(name: g, shape: s.shape, values: v, type: type.tensorType(shape: s.shape)))
        }
        if case let .llama3(f, lo, hi, orig) = c.ropeScaling {
            let factors = llama3RopeFactors(
                headDim: c.headDim, theta: c.ropeTheta, factor: f, lowFreqFactor: lo,
                highFreqFactor: hi, originalMaxPositions: orig)
            out.append(GGUFTensorRecord(name: "rope_freqs.weight", shape: [factors.count], values: factors, type: .f32))
        }
        return out
    }

    /// Writes `model` (and `vocabulary`, padded with unused tokens to the model's vocabulary) as a GGUF file.
    public static func writeGGUF(
        _ model: TransformerModel, vocabulary: BPEVocabulary?, to path: String,
        type: GGUFExportType, name: String
    ) throws {
        var meta = model.config.ggufMetadata(name: name, fileType: type.fileType)
        if var v = vocabulary {
            let n = model.config.vocabSize
            guard v.tokens.count <= n else {
                throw GGUFError.invalid(file: path, why: "tokenizer has \(v.tokens.count) tokens, the model only \(n)")
            }
            // as llama.cpp's converter: embedding rows beyond the tokenizer become unused [PADi] tokens
            for i in v.tokens.count..<n {
                v.tokens.append("[PAD\(i)]")
                v.tokenTypes.append(5)
            }
            meta += v.ggufMetadata()
        }
        try Checkpoint.writeGGUF(try ggufTensors(of: model, type: type), metadata: meta, to: path)
    }

    /// Writes an HF directory: config.json (with BOS/EOS ids), model.safetensors in `dtype`, and
    /// tokenizer.json + tokenizer_config.json when a vocabulary is given.
    public static func writeDirectory(
        _ model: TransformerModel, vocabulary: BPEVocabulary?, to dir: String,
        dtype: SafeTensorsDType
    ) throws {
        if FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json") {
            throw SafeTensorsError.io(
                file: dir, why: "holds a sharded checkpoint (model.safetensors.index.json); write to an empty directory"
            )
        }
        var extras: [String: Int] = [:]
        if let b = vocabulary?.bos { extras["bos_token_id"] = b }
        if let e = vocabulary?.eos { extras["eos_token_id"] = e }
        try ModelCheckpoint.save(model, directory: dir, dtype: dtype, configExtras: extras)
        if let v = vocabulary {
            try writeFileAtomically(Array(try v.tokenizerJSON()), to: dir + "/tokenizer.json")
            try writeFileAtomically(
                Array(try v.tokenizerConfigJSON(maxLength: model.config.maxPositions)),
                to: dir + "/tokenizer_config.json")
        }
    }

    /// Converts `input` (GGUF file or HF directory) to `output` (a path ending in .gguf, else a directory).
    public static func convert(
        input: String, output: String, dtype: SafeTensorsDType = .F32,
        type: GGUFExportType = .f32, name: String? = nil, mergeLoRA adapter: String? = nil
    ) throws -> ConversionReport {
        let src = try open(input)
        var report = ConversionReport()
        if let adapter {
            let lora = try PEFTAdapter.load(directory: adapter, for: src.model)
            try lora.merge(into: src.model)
            report.merged =
                "merged \(adapter): LoRA rank \(lora.config.rank), alpha \(lora.config.alpha), \(lora.adapters.count) adapted tensors"
        }
        let c = src.model.config
        report.source = String(
            format: "read %@: %@, %d layers, d %d, %d/%d heads, vocabulary %d, %.1fM parameters (%@)",
            input, c.family.rawValue, c.layers, c.hiddenSize, c.heads, c.kvHeads, c.vocabSize,
            Double(src.model.parameters.count) / 1e6, src.sourceTypes)
        let modelName = name ?? URL(fileURLWithPath: input).deletingPathExtension().lastPathComponent
        if GGUFFile.hasGGUFExtension(output) {
            try writeGGUF(src.model, vocabulary: src.vocabulary, to: output, type: type, name: modelName)
            report.files = [output]
        } else {
            try writeDirectory(src.model, vocabulary: src.vocabulary, to: output, dtype: dtype)
            report.files =
                ["config.json", "model.safetensors"]
                + (src.vocabulary != nil ? ["tokenizer.json", "tokenizer_config.json"] : [])
            report.files = report.files.map { output + "/" + $0 }
        }
        report.bytes = report.files.reduce(0) {
            $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0)
        }
        if let v = src.vocabulary {
            report.tokenizer =
                "tokenizer: \(v.tokens.count) tokens, \(v.merges.count) merges, pre-tokenizer \(v.preTokenizer)"
        } else {
            report.tokenizer = "tokenizer: not written (\(src.tokenizerNote ?? "none in the source"))"
        }
        return report
    }
}
