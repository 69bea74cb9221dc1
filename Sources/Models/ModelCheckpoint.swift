import Checkpoint
import Foundation
import Support
import Train

/// A checkpoint directory's tensors: one `model.safetensors` or a sharded `model.safetensors.index.json`.
public struct SafeTensorsCollection: Sendable {
    /// Opened files by file name.
    public let files: [String: SafeTensorsFile]
    /// Which file holds each tensor.
    public let location: [String: String]

    /// Opens `directory`, preferring the sharded index when present; validates every file and that each
    /// tensor the index names is in its shard (and only there).
    public init(directory: String) throws {
        let fm = FileManager.default
        let indexPath = directory + "/model.safetensors.index.json"
        var files: [String: SafeTensorsFile] = [:]
        var location: [String: String] = [:]
        if fm.fileExists(atPath: indexPath) {
            guard let bytes = fm.contents(atPath: indexPath) else {
                throw SafeTensorsError.io(file: indexPath, why: "cannot read")
            }
            guard bytes.count < SafeTensorsFile.maxHeaderBytes else {
                throw SafeTensorsError.invalid(file: indexPath, why: "index too large")
            }
            let index: JSONValue
            do { index = try StrictJSON.parse(bytes, file: indexPath) } catch {
                throw SafeTensorsError.invalid(file: indexPath, why: "invalid JSON at \(error.position)")
            }
            guard case .object(let map)? = index["weight_map"] else {
                throw SafeTensorsError.invalid(file: indexPath, why: "no weight_map object")
            }
            for (name, v) in map {
                guard case .string(let file) = v, !file.isEmpty, !file.contains("/"), !file.hasPrefix(".") else {
                    throw SafeTensorsError.tensor(
                        file: indexPath, name: name, why: "shard name is not a plain file name")
                }
                location[name] = file
            }
            for file in Set(location.values).sorted() {
                files[file] = try SafeTensorsFile(path: directory + "/" + file)
            }
            for (name, file) in location where files[file]?.info(name) == nil {
                throw SafeTensorsError.tensor(
                    file: directory + "/" + file, name: name, why: "listed in the index but not in the shard")
            }
            for (file, f) in files {
                for t in f.tensors where location[t.name] != file {
                    throw SafeTensorsError.tensor(
                        file: directory + "/" + file, name: t.name, why: "not mapped to this shard by the index")
                }
            }
        } else {
            let single = "model.safetensors"
            let f = try SafeTensorsFile(path: directory + "/" + single)
            files[single] = f
            for t in f.tensors { location[t.name] = single }
        }
        self.files = files
        self.location = location
    }

    /// The file path and header entry of `name`, if present.
    public func find(_ name: String) -> (SafeTensorsFile, SafeTensorInfo)? {
        guard let f = location[name].flatMap({ files[$0] }), let i = f.info(name) else { return nil }
        return (f, i)
    }
}

/// Loading and saving models as HF-style directories (config.json + safetensors).
public enum ModelCheckpoint {
    /// Buffers of HF models that are not parameters.
    static func isIgnorable(_ name: String) -> Bool {
        name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias") || name.hasSuffix("rotary_emb.inv_freq")
    }

    /// Reads `directory/config.json` and the weights into a new model sized for `maxTokens`.
    public static func load(
        directory: String, maxTokens: Int, valueHead: Bool = false, activations: ActivationMode = .kept
    ) throws -> TransformerModel {
        let cfgPath = directory + "/config.json"
        let cfgData: Data
        do { cfgData = try readFile(cfgPath) } catch { throw SafeTensorsError.io(file: cfgPath, why: error.reason) }
        let config = try ModelConfig.parse(json: cfgData, source: cfgPath)
        let model = try TransformerModel(
            config: config, maxTokens: maxTokens, valueHead: valueHead, activations: activations)
        try loadWeights(into: model, from: SafeTensorsCollection(directory: directory), directory: directory)
        return model
    }

    /// Copies every parameter of `model` from `tensors` (HF names; GPT-2 with or without `transformer.`); the
    /// blocks' matrices of a packed layout are returned as pieces of its packed base in `packing` instead, each
    /// read (and rounded) when the pieces are packed.
    @discardableResult
    public static func loadWeights(
        into model: TransformerModel, from tensors: SafeTensorsCollection, directory: String,
        packing: PackedFormat? = nil
    ) throws -> [PackedWeights.Piece] {
        var used = Set<String>()
        var pieces: [PackedWeights.Piece] = []
        defer { model.parameters.markChanged() }
        for s in model.layout.specs {
            var candidates = [s.name]
            if s.name.hasPrefix("transformer.") { candidates.append(String(s.name.dropFirst("transformer.".count))) }
            guard let hit = candidates.lazy.compactMap({ n in tensors.find(n).map { (n, $0) } }).first else {
                if s.offset == model.layout.valueHead { continue }  // fresh value heads start at zero
                throw SafeTensorsError.tensor(file: directory, name: s.name, why: "missing from checkpoint")
            }
            let (name, (file, info)) = hit
            used.insert(name)
            let fileShape = s.transposedInFile ? s.shape.reversed() : s.shape
            guard info.shape == Array(fileShape) else {
                throw SafeTensorsError.tensor(
                    file: file.path, name: name, why: "shape \(info.shape), model expects \(Array(fileShape))")
            }
            if model.layout.isPacked(s.offset) {
                guard let format = packing else {
                    throw SafeTensorsError.tensor(
                        file: file.path, name: name, why: "no packed format for the base given")
                }
                pieces.append(
                    PackedWeights.Piece(spec: s, format: format) { dst in
                        let v = try modelValues(file.floats(name), s)
                        try v.withUnsafeBufferPointer {
                            try PackedWeights.pack($0, as: format, name: s.name, into: dst)
                        }
                    })
            } else {
                try model.parameters.copyIn(try modelValues(file.floats(name), s), at: s.offset)
            }
        }
        for name in tensors.location.keys where !used.contains(name) && !isIgnorable(name) {
            if name == "lm_head.weight" && model.config.tieWordEmbeddings { continue }
            throw SafeTensorsError.tensor(
                file: tensors.location[name].map { directory + "/" + $0 } ?? directory, name: name,
                why: "unexpected tensor for a \(model.config.family.rawValue) model")
        }
        return pieces
    }

    /// A file's values of `s` in the model's layout (GPT-2's Conv1D weights, [in, out] in files, transposed).
    private static func modelValues(_ v: [Float], _ s: TensorSpec) -> [Float] {
        guard s.transposedInFile else { return v }
        let rows = s.shape[0], cols = s.shape[1]  // stored here [rows, cols]; file [cols, rows]
        var t = [Float](repeating: 0, count: v.count)
        for r in 0..<rows { for c in 0..<cols { t[r * cols + c] = v[c * rows + r] } }
        return t
    }

    /// The model's tensors under HF names and HF layouts (Conv1D weights transposed back).
    public static func records(of model: TransformerModel) throws -> [SafeTensorsRecord] {
        guard !model.layout.packedBlockMatrices else {
            throw ModelError("a model whose base is packed (\(model.baseWeights?.summary ?? "")) cannot be saved whole")
        }
        let p = model.parameters.pointer
        return model.layout.specs.map { s in
            if s.transposedInFile {
                let rows = s.shape[0], cols = s.shape[1]
                var t = [Float](repeating: 0, count: s.count)
                for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = p[s.offset + r * cols + c] } }
                return SafeTensorsRecord(name: s.name, shape: [cols, rows], values: t)
            }
            return SafeTensorsRecord(
                name: s.name, shape: s.shape,
                values: Array(UnsafeBufferPointer(start: p + s.offset, count: s.count)))
        }
    }

    /// Writes `directory/config.json` and `directory/model.safetensors` (created if needed), each under a
    /// temporary name renamed into place when complete. `configExtras` (integer keys such as bos_token_id) are added to config.json.
    public static func save(
        _ model: TransformerModel, directory: String, dtype: SafeTensorsDType = .F32,
        configExtras: [String: Int] = [:]
    ) throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw SafeTensorsError.io(file: directory, why: "cannot create directory")
        }
        let cfgPath = directory + "/config.json"
        try writeFileAtomically(Array(try model.config.jsonData(extra: configExtras)), to: cfgPath)
        try writeSafeTensors(
            records(of: model), to: directory + "/model.safetensors", metadata: ["format": "pt"], dtype: dtype)
        // Each file was fsynced before its rename; the directory's own entry in its parent must be durable too.
        syncDirectory(of: directory)
    }
}
