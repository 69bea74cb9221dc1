import Checkpoint
import Foundation
import Models
import Testing
import Train

/// Decoding from packed weights (GGUF blocks, halves) against decoding from the same values in f32.
@Suite struct PackedWeightsTests {
    /// Prefills three sequences of different lengths (34 rows: the f32 sgemm path), then decodes six steps of
    /// three rows each and four of one row (batch 1 has a kernel of its own) — the packed paths when the model
    /// has packed weights; all logits, concatenated.
    static func decode(_ m: TransformerModel, weights: PackedWeights?) throws -> [Float] {
        let dec = try IncrementalDecoder(model: m, maxSequences: 3, maxLength: 40, pageSize: 4, weights: weights)
        let seqs = DecoderTests.sequences(seed: 9, lengths: [5, 20, 9], vocab: m.config.vocabSize)
        var all: [Float] = [], logits: [Float] = []
        try dec.extend([0, 1, 2], seqs, logits: &logits)
        all += logits
        for step in 0..<6 {
            try dec.extend(
                [0, 1, 2], (0..<3).map { [Int32((step * 7 + $0 * 13) % m.config.vocabSize)] }, logits: &logits)
            all += logits
        }
        for step in 0..<4 {
            try dec.extend([1], [[Int32((step * 5 + 3) % m.config.vocabSize)]], logits: &logits)
            all += logits
        }
        return all
    }

    /// Random stored bytes for `rows` rows of `n` weights in `format`, and their values as a GGUF reader
    /// dequantizes them (`GGUFFile.floats`' formulas, independent of the kernel's code).
    static func randomRows(_ format: PackedFormat, rows: Int, n: Int, rng: inout TestRNG) -> (
        bytes: [UInt8], values: [Float]
    ) {
        var bytes: [UInt8] = [], values: [Float] = []
        func half(_ x: Float) -> [UInt8] {
            let b = Float16(x).bitPattern
            return [UInt8(b & 0xFF), UInt8(b >> 8)]
        }
        func float(_ b: [UInt8], _ i: Int) -> Float { Float(Float16(bitPattern: UInt16(b[i]) | UInt16(b[i + 1]) << 8)) }
        for _ in 0..<rows {
            switch format {
            case .f16:
                for x in rng.normal(n, std: 0.2) {
                    let h = half(x)
                    bytes += h
                    values.append(float(h, 0))
                }
            case .bf16:
                for x in rng.normal(n, std: 0.2) {
                    let top = UInt16(x.bitPattern >> 16)
                    bytes += [UInt8(top & 0xFF), UInt8(top >> 8)]
                    values.append(Float(bitPattern: UInt32(top) << 16))
                }
            case .q8_0, .q4_0, .q4_1:
                for _ in 0..<(n / 32) {
                    let dBytes = half(0.004 + Float(rng.int(100)) * 1e-4), d = float(dBytes, 0)
                    let mBytes = half(-0.05 + Float(rng.int(100)) * 1e-3), m = float(mBytes, 0)
                    let q = (0..<32).map { _ in UInt8(rng.int(256)) }
                    switch format {
                    case .q8_0:
                        bytes += dBytes + q
                        values += q.map { d * Float(Int8(bitPattern: $0)) }
                    case .q4_0:
                        bytes += dBytes + q[0..<16]
                        values +=
                            q[0..<16].map { d * Float(Int($0 & 0xF) - 8) }
                            + q[0..<16].map { d * Float(Int($0 >> 4) - 8) }
                    default:
                        bytes += dBytes + mBytes + q[0..<16]
                        values += q[0..<16].map { d * Float($0 & 0xF) + m } + q[0..<16].map { d * Float($0 >> 4) + m }
                    }
                }
            }
        }
        return (bytes, values)
    }

    /// Every format: rows of random blocks, the model's f32 weights set to their dequantized values; decoding
    /// from the blocks gives the f32 decoder's logits bit for bit (fused q|k|v and gate|up of several
    /// tensors, GQA, an untied LM head).
    @Test(arguments: PackedFormat.allCases) func packedDecodingEqualsF32Decoding(format: PackedFormat) throws {
        let m = try ConversionTests.model(.llama)
        var rng = TestRNG(UInt64(format.blockBytes))
        var pieces: [PackedWeights.Piece] = []
        var covered = Set<String>()
        for (offset, outDim, inDim) in m.linearWeights() {
            for s in m.layout.specs where s.offset >= offset && s.offset < offset + outDim * inDim {
                let (bytes, values) = Self.randomRows(format, rows: s.shape[0], n: s.shape[1], rng: &rng)
                try m.setParameter(s.name, values)
                covered.insert(s.name)
                pieces.append(
                    PackedWeights.Piece(spec: s, format: format) { dst in
                        bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
                    })
            }
        }
        #expect(covered.count == 2 * 7 + 1)
        let packed = try PackedWeights(model: m, pieces: pieces)
        #expect(packed.matrixCount == m.linearWeights().count)
        #expect(packed.summary == "\(format.rawValue) x 15")
        let f32 = try Self.decode(m, weights: nil), fromBlocks = try Self.decode(m, weights: packed)
        #expect(f32.count == (7 * 3 + 4) * m.config.vocabSize)
        let same = fromBlocks == f32
        #expect(same, "\(format): max difference \(zip(fromBlocks, f32).map { abs($0 - $1) }.max()!)")
        // the model's decodingWeights is the default
        m.decodingWeights = packed
        let dec = try IncrementalDecoder(model: m, maxSequences: 1, maxLength: 8)
        #expect(dec.weights === packed)
    }

    /// A model written as a Q8_0 or F16 GGUF (llama.cpp's q/k row order, biases, a tied head) decodes from the
    /// file's blocks exactly as from its dequantized f32 weights.
    @Test(arguments: [ModelFamily.llama, .qwen2, .gpt2]) func ggufBlocksDecodeLikeTheirDequantizedWeights(
        family: ModelFamily
    ) throws {
        let dir = NSTemporaryDirectory() + "oreo-packed-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for type in [GGUFExportType.q8_0, .f16] {
            let path = dir + "/m-\(type.rawValue).gguf"
            try ModelConversion.writeGGUF(
                try ConversionTests.model(family), vocabulary: nil, to: path, type: type, name: "t")
            let g = try GGUFFile(path: path)
            let m = try g.loadModel(maxTokens: 32)
            let packed = try g.packedWeights(for: m)
            #expect(packed.matrixCount == m.linearWeights().count, "\(family) \(type)")
            let f32 = try Self.decode(m, weights: nil), fromBlocks = try Self.decode(m, weights: packed)
            let same = fromBlocks == f32
            #expect(same, "\(family) \(type): max difference \(zip(fromBlocks, f32).map { abs($0 - $1) }.max()!)")
        }
    }

    /// Rounding a model's f32 weights to bf16, f16 or Q8_0 for decoding stays close to f32 decoding.
    @Test func quantizedCopiesDecodeCloseToF32() throws {
        let m = try ConversionTests.model(.qwen2)
        let f32 = try Self.decode(m, weights: nil)
        for (format, tolerance) in [(PackedFormat.bf16, 2e-2), (.f16, 2e-3), (.q8_0, 3e-2)] {
            let packed = try PackedWeights(quantizing: m, to: format)
            #expect(packed.matrixCount == m.linearWeights().count)
            let got = try Self.decode(m, weights: packed)
            let err = relativeError(got, f32)
            #expect(err < tolerance && err > 0, "\(format): relative error \(err)")
        }
        #expect(throws: TrainError.self) { try PackedWeights(quantizing: m, to: .q4_1) }
    }

    /// Packed weights of one model are refused by a decoder of another.
    @Test func decoderRefusesAnotherModelsWeights() throws {
        let a = try ConversionTests.model(.llama), b = try ConversionTests.model(.qwen2)
        let packed = try PackedWeights(quantizing: a, to: .bf16)
        #expect(throws: TrainError.self) {
            try IncrementalDecoder(model: b, maxSequences: 1, maxLength: 8, weights: packed)
        }
    }
}
