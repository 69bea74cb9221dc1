import Checkpoint
import Foundation
import Models
import Testing
import Tokenizers
import Train

/// `oreo convert`: safetensors <-> GGUF round trips per family and storage type, rejected inputs, and (with
/// OREO_HEAVY_TESTS=1) transformers reading what oreo wrote.
@Suite struct ConversionTests {
    /// A small model of `family` whose rows are multiples of 32, so Q8_0 applies to every matrix.
    static func model(_ family: ModelFamily, scaling: RoPEScaling = .none) throws -> TransformerModel {
        let c: ModelConfig
        switch family {
        case .gpt2:
            c = ModelConfig(
                family: .gpt2, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, intermediateSize: 128,
                maxPositions: 48)
        case .llama:
            c = ModelConfig(
                family: .llama, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, kvHeads: 2, intermediateSize: 96,
                maxPositions: 48, ropeTheta: 5e5, ropeScaling: scaling, tieWordEmbeddings: false)
        case .qwen2:
            c = ModelConfig(
                family: .qwen2, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, kvHeads: 1, intermediateSize: 96,
                maxPositions: 48, ropeTheta: 1e6, tieWordEmbeddings: true)
        }
        let m = try TransformerModel(config: c, maxTokens: 32)
        m.initializeRandomly(seed: 3, std: 0.3)
        var rng = TestRNG(5)
        for s in m.layout.specs where s.shape.count == 1 {
            try m.setParameter(
                s.name,
                rng.normal(s.count, std: 0.2).map { $0 + (s.name.contains("norm") || s.name.contains("ln_") ? 1 : 0) })
        }
        return m
    }

    static let batch = PackedBatch(sequences: [[1, 5, 9, 33, 70, 2, 8], [4, 95, 0, 12, 60]])

    static func logProbs(_ m: TransformerModel) throws -> [Float] {
        var lp: [Float] = []
        try m.forward(batch, logProbs: &lp)
        return lp
    }

    /// Largest error allowed for a value stored as `type`, given the largest magnitude in its 32-block.
    static func tolerance(_ type: GGUFExportType, shape: [Int], value: Float, blockMax: Float) -> Float {
        switch type.tensorType(shape: shape) {
        case .f32: return 0
        case .f16: return abs(value) * 0x1p-11 + 0x1p-24
        default: return blockMax * (0.5 / 127 + 0x1p-11) * 1.0001  // half a step, plus the f16 scale's rounding
        }
    }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2], GGUFExportType.allCases)
    func ggufRoundTrip(family: ModelFamily, type: GGUFExportType) throws {
        let m = try Self.model(family)
        let dir = ModelCheckpointTests.tempDir("gguf-\(family)-\(type)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // safetensors -> GGUF -> safetensors, through the same entry point as `oreo convert`
        try ModelCheckpoint.save(m, directory: dir + "/src")
        _ = try ModelConversion.convert(input: dir + "/src", output: dir + "/m.gguf", type: type)
        _ = try ModelConversion.convert(input: dir + "/m.gguf", output: dir + "/back")
        let back = try ModelCheckpoint.load(directory: dir + "/back", maxTokens: 32)
        #expect(back.config == m.config)
        var worst: Float = 0
        for s in m.layout.specs {
            let a = m.parameter(s.name)!, b = back.parameter(s.name)!
            let row = s.shape.last!
            for i in a.indices {
                let blk = i / 32 * 32
                let blockMax = a[blk..<min(blk + 32, (i / row + 1) * row)].map(abs).max()!
                let tol = Self.tolerance(type, shape: s.shape, value: a[i], blockMax: blockMax)
                worst = max(worst, abs(a[i] - b[i]))
                if abs(a[i] - b[i]) > tol {
                    Issue.record("\(family) \(type) \(s.name)[\(i)]: \(a[i]) -> \(b[i]) (tolerance \(tol))")
                    return
                }
            }
        }
        let err = relativeError(try Self.logProbs(back), try Self.logProbs(m))
        print("GGUF \(family) \(type): worst parameter error \(worst), logprob rel err \(err)")
        if type == .f32 { #expect(err == 0) } else { #expect(err < (type == .f16 ? 1e-3 : 2e-2)) }
        // the file itself: llama.cpp's tensor names, types and metadata
        let g = try GGUFFile(path: dir + "/m.gguf")
        #expect(g.string("general.architecture") == family.ggufArchitecture)
        #expect(g.metadata["general.file_type"]?.int == Int(type.fileType))
        let embd = g.info("token_embd.weight")
        #expect(embd?.ne == [64, 96])
        #expect(embd?.type == type.tensorType(shape: [96, 64]).rawValue)
        #expect(g.info("blk.0.attn_norm.weight")?.type == 0)
        #expect((g.info("output.weight") != nil) == !m.config.tieWordEmbeddings)
        if family == .gpt2 {
            #expect(g.info("blk.1.attn_qkv.weight")?.ne == [64, 192] && g.info("position_embd.weight") != nil)
        } else {
            #expect(g.info("blk.1.attn_k.weight")?.ne == [64, 16 * m.config.kvHeads])
        }
    }

    @Test func llamaRowsArePermutedLikeLlamaCpp() throws {
        let m = try Self.model(.llama)
        let dir = ModelCheckpointTests.tempDir("perm")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelConversion.writeGGUF(m, vocabulary: nil, to: dir + "/m.gguf", type: .f32, name: "t")
        let g = try GGUFFile(path: dir + "/m.gguf")
        let q = m.parameter("model.layers.0.self_attn.q_proj.weight")!, gq = try g.floats("blk.0.attn_q.weight")
        // GGUF row 2j + i of a head is HF row i * hd/2 + j (hd = 16): row 1 is HF row 8, row 2 is HF row 1
        #expect(Array(gq[64..<128]) == Array(q[(8 * 64)..<(9 * 64)]))
        #expect(Array(gq[128..<192]) == Array(q[64..<128]))
        #expect(gq != q)
        // Qwen2 runs llama.cpp's NeoX RoPE: no permutation
        let w = try Self.model(.qwen2)
        try ModelConversion.writeGGUF(w, vocabulary: nil, to: dir + "/q.gguf", type: .f32, name: "t")
        #expect(
            try GGUFFile(path: dir + "/q.gguf").floats("blk.0.attn_q.weight") == w.parameter(
                "model.layers.0.self_attn.q_proj.weight")!)
    }

    @Test(arguments: [
        RoPEScaling.linear(factor: 2),
        .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64),
    ])
    func ropeScalingSurvivesGGUF(scaling: RoPEScaling) throws {
        let m = try Self.model(.llama, scaling: scaling)
        let dir = ModelCheckpointTests.tempDir("rope")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelConversion.writeGGUF(m, vocabulary: nil, to: dir + "/m.gguf", type: .f32, name: "t")
        let g = try GGUFFile(path: dir + "/m.gguf")
        let back = try g.loadModel(maxTokens: 32)
        #expect(back.config == m.config)
        #expect(try Self.logProbs(back) == Self.logProbs(m))
        if scaling.isLlama3 {
            // llama.cpp's factors: 1 for short wavelengths, the full factor for long ones
            let f = try g.floats("rope_freqs.weight")
            #expect(f.count == 8 && f.first == 1 && f.last == 8)
        }
    }

    @Test(arguments: [SafeTensorsDType.F16, .BF16])
    func halfPrecisionSafetensors(dtype: SafeTensorsDType) throws {
        let m = try Self.model(.qwen2)
        let dir = ModelCheckpointTests.tempDir("half")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelCheckpoint.save(m, directory: dir + "/src")
        _ = try ModelConversion.convert(input: dir + "/src", output: dir + "/half", dtype: dtype)
        let f = try SafeTensorsFile(path: dir + "/half/model.safetensors")
        #expect(f.tensors.allSatisfy { $0.dtype == dtype })
        let back = try ModelCheckpoint.load(directory: dir + "/half", maxTokens: 32)
        let ulp: Float = dtype == .F16 ? 0x1p-11 : 0x1p-8
        let a = m.parameters.toArray(), b = back.parameters.toArray()
        for i in a.indices where abs(a[i] - b[i]) > abs(a[i]) * ulp + 0x1p-24 {
            Issue.record("\(dtype) element \(i): \(a[i]) -> \(b[i])")
            return
        }
        // nearest-even: exact ties go to the even neighbour
        let ties = try encodeSafeTensors(
            [SafeTensorsRecord(name: "t", shape: [2], values: [1 + 0x1p-11, 1 + 3 * 0x1p-11])], dtype: .F16)
        #expect(try SafeTensorsFile(data: ties, path: "ties").floats("t") == [1, 1 + 4 * 0x1p-11])
        // values F16 cannot hold are an error naming the tensor, not a silent infinity
        #expect(throws: SafeTensorsError.self) {
            try encodeSafeTensors([SafeTensorsRecord(name: "big", shape: [1], values: [70000])], dtype: .F16)
        }
    }

    @Test func q8_0MatchesLlamaCppReference() {
        // d = max|x| / 127 (here exactly 1), q = round(x / d) with halves away from zero
        var x = [Float](repeating: 0.4, count: 32)
        x[0] = 127
        x[1] = 2.5
        x[2] = -2.5
        x[3] = -126.6
        let bytes = x.withUnsafeBufferPointer { quantizeQ8_0($0) }
        #expect(bytes.count == 34)
        #expect(Float16(bitPattern: UInt16(bytes[0]) | UInt16(bytes[1]) << 8) == 1)
        #expect((0..<5).map { Int8(bitPattern: bytes[2 + $0]) } == [127, 3, -3, -127, 0])
        let zeros = [Float](repeating: 0, count: 32).withUnsafeBufferPointer { quantizeQ8_0($0) }
        #expect(zeros.allSatisfy { $0 == 0 })
    }

    @Test func rejectsBadInputs() throws {
        let dir = ModelCheckpointTests.tempDir("bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func fails(_ input: String, _ output: String, _ fragment: String) {
            do {
                _ = try ModelConversion.convert(input: input, output: output)
                Issue.record("converted \(input)")
            } catch {
                #expect("\(error)".contains(fragment), "error \"\(error)\" should mention \(fragment)")
            }
        }
        fails(dir + "/nothing", dir + "/o.gguf", "no such file")
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: dir + "/x.bin"))
        fails(dir + "/x.bin", dir + "/o", "neither a model directory nor a GGUF")
        // a GGUF with an unsupported architecture, and one whose tensor disagrees with its metadata
        let m = try Self.model(.llama)
        var meta = m.config.ggufMetadata(name: "t", fileType: 0)
        var tensors = try ModelConversion.ggufTensors(of: m, type: .f32)
        meta[0] = ("general.architecture", .string("mamba"))
        try writeGGUF(tensors, metadata: meta, to: dir + "/arch.gguf")
        fails(dir + "/arch.gguf", dir + "/o", "mamba")
        meta[0] = ("general.architecture", .string("llama"))
        tensors[1].shape = [63]
        tensors[1].values.removeLast()
        try writeGGUF(tensors, metadata: meta, to: dir + "/shape.gguf")
        fails(dir + "/shape.gguf", dir + "/o", "blk.0.attn_norm.weight")
        tensors = try ModelConversion.ggufTensors(of: m, type: .f32)
        tensors.append(GGUFTensorRecord(name: "blk.0.extra.weight", shape: [4], values: [1, 2, 3, 4], type: .f32))
        try writeGGUF(tensors, metadata: meta, to: dir + "/extra.gguf")
        fails(dir + "/extra.gguf", dir + "/o", "blk.0.extra.weight")
        // truncated file: the extent check names the tensor that runs past the end
        let whole = try Data(contentsOf: URL(fileURLWithPath: dir + "/extra.gguf"))
        try whole.prefix(whole.count - 100).write(to: URL(fileURLWithPath: dir + "/cut.gguf"))
        fails(dir + "/cut.gguf", dir + "/o", "past the end")
        // the writer refuses a Q8_0 tensor whose rows are not whole blocks
        #expect(throws: GGUFError.self) {
            try writeGGUF(
                [GGUFTensorRecord(name: "w", shape: [2, 24], values: .init(repeating: 1, count: 48), type: .q8_0)],
                metadata: [], to: dir + "/q.gguf")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/q.gguf"))
    }

    // MARK: - transformers reads what oreo wrote (OREO_HEAVY_TESTS=1)

    static var heavy: Bool { ProcessInfo.processInfo.environment["OREO_HEAVY_TESTS"] == "1" }
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Log-probs of `batch` from transformers loading `source` (an HF directory, or a GGUF file).
    static func transformersLogProbs(_ source: String, gguf: Bool, batch: PackedBatch, scratch: String) throws -> (
        lp: [Float], info: [String: Any]?
    ) {
        let b = scratch + "/batch.safetensors", out = scratch + "/oracle.safetensors"
        try writeSafeTensors(
            [
                SafeTensorsRecord(name: "tokens", shape: [batch.count], values: batch.tokens.map(Float.init)),
                SafeTensorsRecord(
                    name: "seq_lengths", shape: [batch.sequenceLengths.count],
                    values: batch.sequenceLengths.map(Float.init)),
                SafeTensorsRecord(name: "targets", shape: [batch.count], values: batch.targets.map(Float.init)),
            ], to: b)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [
            "python3", root + "/scripts/oracles/model_logprobs.py", gguf ? "--gguf" : "--hf", source, "--batch", b,
            "--out", out,
        ]
        let log = scratch + "/oracle.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let tail =
                (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(5).joined(
                    separator: "\n") ?? ""
            throw TrainError.state("model_logprobs.py failed on \(source):\n\(tail)")
        }
        let info =
            gguf
            ? try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + ".json")))
                as? [String: Any] : nil
        return (try SafeTensorsFile(path: out).floats("logprobs"), info)
    }

    @Test(.enabled(if: heavy)) func smolLM2ConvertedLoadsInTransformers() throws {
        guard let fix = fixtureDirectory(relative: "smollm2", script: "scripts/oracles/gguf_reference.py") else {
            return
        }
        let src =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fix + "/source.json")))
            as? [String: String]
        let gguf = try #require(src?["gguf"])
        let dir = ModelCheckpointTests.tempDir("smol")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let report = try ModelConversion.convert(input: gguf, output: dir + "/hf")
        #expect(report.tokenizer.contains("49152 tokens"))
        let ours = try GGUFFile(path: gguf).loadModel(maxTokens: 64)
        var rng = TestRNG(17)
        let batch = PackedBatch(sequences: [
            (0..<13).map { _ in Int32(rng.int(49152)) }, (0..<9).map { _ in Int32(rng.int(49152)) },
        ])
        var lp: [Float] = []
        try ours.forward(batch, logProbs: &lp)
        let (hf, _) = try Self.transformersLogProbs(dir + "/hf", gguf: false, batch: batch, scratch: dir)
        let err = relativeError(lp, hf)
        print("SmolLM2 GGUF -> safetensors: transformers on the directory vs oreo on the GGUF, logprob rel err \(err)")
        #expect(err < 1e-4)
        // and back: oreo's own F32 and Q8_0 GGUF exports of the converted directory, read by gguf + transformers
        for type in [GGUFExportType.f32, .q8_0] {
            let path = dir + "/smol-\(type).gguf"
            _ = try ModelConversion.convert(input: dir + "/hf", output: path, type: type)
            let (tl, info) = try Self.transformersLogProbs(path, gguf: true, batch: batch, scratch: dir)
            var mine: [Float] = []
            try GGUFFile(path: path).loadModel(maxTokens: 64).forward(batch, logProbs: &mine)
            let e = relativeError(mine, tl), drift = relativeError(tl, hf)
            print(
                "SmolLM2 exported \(type): transformers vs oreo on the same GGUF rel err \(e); vs the source \(drift)")
            #expect(e < 1e-4)
            #expect(drift < (type == .f32 ? 1e-6 : 3e-2))
            let tensors = info?["tensors"] as? [String: [String: Any]]
            #expect(tensors?["blk.0.attn_q.weight"]?["type"] as? String == (type == .f32 ? "F32" : "Q8_0"))
            #expect(tensors?["blk.0.attn_norm.weight"]?["type"] as? String == "F32")
            #expect(info?["tokens"] as? Int == 49152)
        }
    }

    @Test(.enabled(if: heavy), arguments: [ModelFamily.gpt2, .llama, .qwen2])
    func tinyExportsLoadInTransformers(family: ModelFamily) throws {
        // transformers' GPT-2 GGUF config mapping has no n_positions / n_inner: use GPT-2's defaults there
        let m: TransformerModel
        if family == .gpt2 {
            m = try TransformerModel(
                config: ModelConfig(
                    family: .gpt2, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, maxPositions: 1024),
                maxTokens: 32)
            m.initializeRandomly(seed: 9, std: 0.3)
        } else {
            m = try Self.model(family)
        }
        let dir = ModelCheckpointTests.tempDir("tiny-\(family)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let want = try Self.logProbs(m)
        try ModelCheckpoint.save(m, directory: dir + "/hf")
        let (hf, _) = try Self.transformersLogProbs(dir + "/hf", gguf: false, batch: Self.batch, scratch: dir)
        #expect(relativeError(hf, want) < 1e-5)
        for type in [GGUFExportType.f32, .q8_0] {
            // transformers takes a GPT-2 GGUF's vocabulary size from its tokenizer: give it 96 single-byte tokens
            let vocab =
                family == .gpt2
                ? BPEVocabulary(
                    tokens: (0..<96).map { String(UnicodeScalar(UInt8(33 + $0))) },
                    tokenTypes: .init(repeating: 1, count: 96),
                    merges: [], preTokenizer: "gpt2", bos: nil, eos: nil, addBOS: false, chatTemplate: nil)
                : nil
            try ModelConversion.writeGGUF(m, vocabulary: vocab, to: dir + "/m.gguf", type: type, name: "tiny")
            let (tl, info) = try Self.transformersLogProbs(dir + "/m.gguf", gguf: true, batch: Self.batch, scratch: dir)
            let mine = try Self.logProbs(try GGUFFile(path: dir + "/m.gguf").loadModel(maxTokens: 32))
            let e = relativeError(tl, mine)
            print(
                "tiny \(family) \(type) GGUF: transformers vs oreo rel err \(e), vs the F32 model \(relativeError(tl, want))"
            )
            #expect(e < 1e-5)
            #expect(info?["architecture"] as? String == family.ggufArchitecture)
        }
    }
}
