import Checkpoint
import Foundation
import Support
import TestSupport
import Testing

/// Mutated config.json and GGUF files: refused when loaded, with the file and the field or key named, and never
/// with Foundation's wording ("Error Domain=NSCocoaErrorDomain ...").
@Suite struct HostileCheckpointTests {
    static let llama =
        #"{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":32,"rms_norm_eps":1e-5,"rope_theta":10000,"max_position_embeddings":64}"#

    /// The message `ModelConfig.parse` gives for `text` (empty when it parses).
    static func configError(_ text: String, path: String = "/m/config.json") -> String {
        do {
            _ = try ModelConfig.parse(json: Data(text.utf8), source: path)
            return ""
        } catch { return "\(error)" }
    }

    static func replacing(_ key: String, with value: String) -> String {
        guard let r = llama.range(of: "\"\(key)\":") else { return String(llama.dropLast()) + ",\"\(key)\":\(value)}" }
        let end = llama[r.upperBound...].firstIndex { $0 == "," || $0 == "}" }!
        return llama.replacingCharacters(in: r.upperBound..<end, with: value)
    }

    @Test(
        "config.json values the kernels cannot use are refused at load, naming the file and the field",
        arguments: [
            ("rms_norm_eps", "-1", #"/m/config.json: field "rms_norm_eps": must be a positive finite number, got -1"#),
            ("rms_norm_eps", "0", #"field "rms_norm_eps": must be a positive finite number, got 0"#),
            ("rms_norm_eps", "1e-60", #"field "rms_norm_eps": must be a positive finite number, got 1e-60"#),
            ("rope_theta", "0", #"/m/config.json: field "rope_theta": must be a positive finite number, got 0"#),
            ("rope_theta", "-5", #"field "rope_theta": must be a positive finite number, got -5"#),
            (
                "num_key_value_heads", "3",
                #"/m/config.json: field "num_key_value_heads": 3 key/value heads do not divide the 4 attention heads"#
            ),
            ("num_attention_heads", "3", #"field "num_attention_heads": 3 heads do not divide hidden_size 64"#),
            ("hidden_size", "64.5", #"/m/config.json: field "hidden_size": expected an integer, got 64.5"#),
            ("hidden_size", "-64", #"field "hidden_size": must be an integer in 1..."#),
            ("vocab_size", "\"32\"", #"field "vocab_size": expected an integer, got "32""#),
            (
                "rope_scaling", #"{"rope_type":"linear","factor":"2"}"#,
                #"field "rope_scaling.factor": expected a number, got "2""#
            ),
            (
                "rope_scaling", #"{"rope_type":"linear","factor":-2}"#,
                #"field "rope_scaling.factor": must be a positive finite number, got -2"#
            ),
            ("intermediate_size", "null", #"field "intermediate_size": missing"#),
        ])
    func configValues(key: String, value: String, message: String) {
        let m = Self.configError(Self.replacing(key, with: value))
        #expect(m.contains(message), "\(m)")
        #expect(!m.contains("Error Domain") && !m.contains("NSCocoa"))
    }

    @Test(
        "config.json syntax errors give the byte offset, line, column and reason",
        arguments: [
            (replacing("rms_norm_eps", with: "NaN"), "NaN and Infinity are not JSON numbers"),
            (replacing("rope_theta", with: "1e999"), "number 1e999 is out of range"),
            (String(llama.prefix(60)), "unterminated"),
            (
                llama.replacingOccurrences(of: #""vocab_size":32"#, with: #""vocab_size":32,"vocab_size":33"#),
                "duplicate key \"vocab_size\""
            ),
            (llama + "}", "unexpected characters after the JSON value"),
        ])
    func configSyntax(text: String, reason: String) {
        let m = Self.configError(text)
        #expect(m.hasPrefix("/m/config.json: invalid JSON at byte "), "\(m)")
        #expect(m.contains("(line 1, column ") && m.contains(reason), "\(m)")
        #expect(!m.contains("not a JSON object") && !m.contains("Error Domain"))
    }

    @Test func configRoundTripsThroughCodable() throws {
        let c = ModelConfig(
            family: .qwen2, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, kvHeads: 1, intermediateSize: 96,
            maxPositions: 48, ropeTheta: 1e6, ropeScaling: .linear(factor: 2), tieWordEmbeddings: true)
        let data = try c.jsonData(extra: ["bos_token_id": 1, "eos_token_id": 2])
        #expect(try ModelConfig.parse(json: data) == c)
        let o = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        #expect(
            o["bos_token_id"] as? Int == 1 && o["rms_norm_eps"] as? Double == 1e-6
                && o["model_type"] as? String == "qwen2")
        #expect((o["rope_scaling"] as? [String: Any])?["rope_type"] as? String == "linear")
        // transformers >= 5 spells the theta inside rope_parameters
        let v5 = Self.llama.replacingOccurrences(
            of: #""rope_theta":10000"#, with: #""rope_parameters":{"rope_type":"default","rope_theta":50000}"#)
        #expect(try ModelConfig.parse(json: Data(v5.utf8)).ropeTheta == 50000)
    }

    /// GGUF metadata written by oreo's writer with one value replaced.
    static func gguf(_ dir: String, _ name: String, replacing key: String, with value: GGUFMetadataValue) throws
        -> String
    {
        let c = ModelConfig(
            family: .llama, vocabSize: 96, hiddenSize: 64, layers: 2, heads: 4, kvHeads: 2, intermediateSize: 96,
            maxPositions: 48, ropeTheta: 5e5, tieWordEmbeddings: false)
        let meta = c.ggufMetadata(name: "t", fileType: 0).map { $0.0 == key ? ($0.0, value) : $0 }
        let path = dir + "/" + name
        try writeGGUF([], metadata: meta, to: path)
        return path
    }

    @Test(
        "GGUF hyper-parameters are checked when read, naming the metadata key",
        arguments: [
            ("llama.rope.freq_base", GGUFMetadataValue.float32(.nan), "must be a positive finite number, got nan"),
            ("llama.rope.freq_base", .float32(.infinity), "must be a positive finite number, got inf"),
            ("llama.attention.layer_norm_rms_epsilon", .float32(.nan), "must be a positive finite number, got nan"),
            ("llama.attention.layer_norm_rms_epsilon", .float32(-1), "must be a positive finite number, got -1"),
            ("llama.attention.head_count_kv", .uint32(3), "3 key/value heads do not divide the 4 attention heads"),
            ("llama.embedding_length", .string("64"), "expected an integer, got the string \"64\""),
            ("llama.rope.freq_base", .string("1e4"), "expected a number"),
        ])
    func ggufValues(key: String, value: GGUFMetadataValue, message: String) throws {
        let dir = makeTemporaryDirectory("ckpt-" + "hostile-gguf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try Self.gguf(dir, "m.gguf", replacing: key, with: value)
        do {
            _ = try GGUFFile(path: path).modelConfig()
            Issue.record("accepted \(key) = \(value)")
        } catch let e as GGUFError {
            #expect(e.description.hasPrefix("\(path): metadata \(key): "), "\(e)")
            #expect(e.description.contains(message), "\(e)")
        }
    }

    /// A repeated metadata key: which copy counts would depend on the reader.
    @Test func duplicateGGUFMetadataKeysAreRefused() throws {
        let dir = makeTemporaryDirectory("ckpt-" + "hostile-dup")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/dup.gguf"
        try writeGGUF(
            [],
            metadata: [
                ("general.architecture", .string("llama")), ("oreo.test.keyA", .uint32(1)),
                ("oreo.test.keyB", .uint32(2)),
            ],
            to: path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let b = Array("oreo.test.keyB".utf8)
        let at = (0...(bytes.count - b.count)).first { Array(bytes[$0..<($0 + b.count)]) == b }!
        bytes[at + b.count - 1] = UInt8(ascii: "A")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(
            throws: GGUFError.metadata(
                file: path, key: "oreo.test.keyA", why: "appears twice (second time at byte \(at - 8))")
        ) {
            _ = try GGUFFile(path: path)
        }
    }

    /// A tensor relabelled from F32 to F16 reads as half-precision infinities: refused, naming the tensor.
    @Test func relabelledTensorTypeIsRefused() throws {
        let dir = makeTemporaryDirectory("ckpt-" + "hostile-type")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/t.gguf"
        // As f32 each value is small and finite; its low half is 0x7C00, an f16 infinity.
        let values = [Float](repeating: Float(bitPattern: 0x3C00_7C00), count: 64)
        try writeGGUF([GGUFTensorRecord(name: "w", shape: [64], values: values, type: .f32)], metadata: [], to: path)
        #expect(try GGUFFile(path: path).floats("w") == values)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let name = Array("w".utf8)
        // tensor info: name length (u64), name, n_dims (u32), ne (u64), type (u32)
        let at = (0..<(bytes.count - 9)).first {
            bytes[$0] == 1 && bytes[($0 + 1)..<($0 + 8)].allSatisfy { $0 == 0 } && bytes[$0 + 8] == name[0]
        }!
        let typeAt = at + 8 + 1 + 4 + 8
        #expect(bytes[typeAt] == 0)
        bytes[typeAt] = 1  // F16
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do {
            _ = try GGUFFile(path: path).floats("w")
            Issue.record("read infinities as weights")
        } catch {
            #expect("\(error)".hasPrefix(#"\#(path): tensor "w": element 0 is inf"#), "\(error)")
            #expect(!"\(error)".contains("Error Domain"))
        }
    }
}
