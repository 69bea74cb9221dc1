import Checkpoint
import Foundation
import Testing

/// safetensors files and HF config.json: encoding, decoding and validation.
@Suite struct SafeTensorsFileTests {
    /// Builds a file from a raw header string and data bytes.
    static func raw(_ header: String, data: [UInt8]) -> Data {
        var h = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: h)
        h.removeAll()
        out.append(contentsOf: data)
        return out
    }

    @Test func roundTripF32AndBF16() throws {
        let recs = [
            SafeTensorsRecord(name: "a", shape: [2, 3], values: [1, -2, 3.5, 0, 1e-3, 7]),
            SafeTensorsRecord(name: "b\"quoted", shape: [1], values: [3.14159]),
        ]
        let data = try encodeSafeTensors(recs, metadata: ["format": "pt"])
        let headerLen = data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(headerLen % 8 == 0)
        let f = try SafeTensorsFile(data: data, path: "mem")
        #expect(f.metadata["format"] == "pt")
        #expect(try f.floats("a") == recs[0].values)
        #expect(try f.floats("b\"quoted") == recs[1].values)
        #expect(f.info("a")?.shape == [2, 3])
        let bf = try SafeTensorsFile(data: try encodeSafeTensors(recs, dtype: .BF16), path: "mem-bf16")
        let back = try bf.floats("a")
        for (x, y) in zip(back, recs[0].values) { #expect(abs(x - y) <= abs(y) / 128, "bf16 \(y) -> \(x)") }
        #expect(bfloat16Bits(1.0) == 0x3F80)
        #expect(bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie -> even
        #expect(bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie -> even (up)
    }

    @Test func readsF16() throws {
        let halfs: [Float16] = [1, -0.5, 65504, 0.000061035156]
        var bytes: [UInt8] = []
        for h in halfs { withUnsafeBytes(of: h.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        let f = try SafeTensorsFile(
            data: Self.raw(#"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}"#, data: bytes), path: "f16")
        #expect(try f.floats("h") == halfs.map { Float($0) })
    }

    @Test(arguments: [
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "data"),  // file too short
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, "cover"),  // trailing bytes
        (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, "needs"),  // size mismatch
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap"),  // gap at 0
        (
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8, "overlap"
        ),
        (
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8, "duplicate"
        ),
        (#"{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}"#, 4, "dtype"),
        (#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, 4, "negative"),
        (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#, 4, "overflow"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, 4, "unterminated"),
        (#"[1,2]"#, 0, "not a JSON object"),
    ]) func rejectsMalformedFiles(header: String, dataBytes: Int, expect fragment: String) {
        let data = Self.raw(header, data: [UInt8](repeating: 0, count: dataBytes))
        do {
            _ = try SafeTensorsFile(data: data, path: "bad.safetensors")
            Issue.record("accepted a malformed file (\(fragment))")
        } catch let e as SafeTensorsError {
            #expect(e.description.contains("bad.safetensors"), "error names the file: \(e)")
            #expect(e.description.contains(fragment), "error \"\(e)\" should mention \(fragment)")
        } catch { Issue.record("unexpected error \(error)") }
    }

    @Test func rejectsHugeOrShortHeaders() {
        var d = Data()
        withUnsafeBytes(of: UInt64(200_000_000).littleEndian) { d.append(contentsOf: $0) }
        d.append(contentsOf: [UInt8](repeating: 0x20, count: 16))
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(data: d, path: "huge") }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(data: Data([1, 2, 3]), path: "short") }
        var d2 = Data()
        withUnsafeBytes(of: UInt64.max.littleEndian) { d2.append(contentsOf: $0) }
        #expect(throws: SafeTensorsError.self) { try SafeTensorsFile(data: d2, path: "max") }
    }

    @Test func configParsesHFFiles() throws {
        let llama =
            #"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"vocab_size":49152,"rms_norm_eps":1e-5,"rope_theta":100000,"tie_word_embeddings":true,"max_position_embeddings":8192,"hidden_act":"silu","rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#
        let c = try ModelConfig.parse(json: Data(llama.utf8))
        #expect(c.family == .llama && c.headDim == 64 && c.kvHeads == 3 && c.tieWordEmbeddings && c.ropeTheta == 1e5)
        #expect(c.ropeScaling == .llama3(factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        let again = try ModelConfig.parse(json: try c.jsonData())
        #expect(again == c)
        let gpt =
            #"{"model_type":"gpt2","n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024,"vocab_size":50257,"activation_function":"gelu_new"}"#
        let g = try ModelConfig.parse(json: Data(gpt.utf8))
        #expect(g.intermediateSize == 3072 && g.tieWordEmbeddings && g.qkvBias && g.normEps == 1e-5)
        #expect(throws: ModelConfigError.self) { try ModelConfig.parse(json: Data(#"{"model_type":"mamba"}"#.utf8)) }
        #expect(throws: ModelConfigError.self) {
            try ModelConfig.parse(
                json: Data(
                    #"{"model_type":"llama","hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2,"vocab_size":10}"#
                        .utf8))
        }
    }
}
