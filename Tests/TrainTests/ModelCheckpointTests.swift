import Checkpoint
import Foundation
import Models
import TestSupport
import Testing
import Train

/// Model checkpoints: save/load round trips and HF directory layouts (sharded indexes, missing tensors).
@Suite struct ModelCheckpointTests {
    static func tempDir(_ tag: String) -> String { makeTemporaryDirectory("ckpt-" + tag) }

    @Test(arguments: [ModelFamily.gpt2, .llama, .qwen2]) func modelSaveLoadRoundTrip(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family, valueHead: true)
        try m.setParameter("value_head.weight", (0..<m.config.hiddenSize).map { Float($0) / 10 })
        let dir = Self.tempDir(family.rawValue)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelCheckpoint.save(m, directory: dir)
        let back = try ModelCheckpoint.load(directory: dir, maxTokens: 32, valueHead: true)
        #expect(back.config == m.config)
        #expect(back.parameters.toArray() == m.parameters.toArray())
        // HF layout on disk: GPT-2 Conv1D weights are [in, out]
        let f = try SafeTensorsFile(path: dir + "/model.safetensors")
        if family == .gpt2 {
            #expect(f.info("transformer.h.0.mlp.c_fc.weight")?.shape == [24, 40])
            #expect(f.info("transformer.h.0.attn.c_attn.weight")?.shape == [24, 72])
        } else {
            #expect(f.info("model.layers.0.mlp.gate_proj.weight")?.shape == [36, 24])
            #expect((f.info("lm_head.weight") != nil) == !m.config.tieWordEmbeddings)
        }
    }

    @Test func shardedIndexLoadsAndChecksMapping() throws {
        let m = try ModelGradientTests.model(.qwen2)
        let dir = Self.tempDir("shard")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelCheckpoint.save(m, directory: dir)
        try FileManager.default.removeItem(atPath: dir + "/model.safetensors")
        let recs = try ModelCheckpoint.records(of: m)
        let half = recs.count / 2
        try writeSafeTensors(Array(recs[..<half]), to: dir + "/model-00001-of-00002.safetensors")
        try writeSafeTensors(Array(recs[half...]), to: dir + "/model-00002-of-00002.safetensors")
        var map: [String: String] = [:]
        for (i, r) in recs.enumerated() {
            map[r.name] = i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"
        }
        let index = try JSONSerialization.data(withJSONObject: ["metadata": ["total_size": 0], "weight_map": map])
        try index.write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        let back = try ModelCheckpoint.load(directory: dir, maxTokens: 32)
        #expect(back.parameters.toArray() == m.parameters.toArray())
        // an index pointing a tensor at the wrong shard is rejected, naming the tensor
        map[recs[0].name] = "model-00002-of-00002.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(
            to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        do {
            _ = try ModelCheckpoint.load(directory: dir, maxTokens: 32)
            Issue.record("accepted a wrong index")
        } catch let e as SafeTensorsError { #expect(e.description.contains(recs[0].name)) }
        // path traversal in shard names is refused
        map[recs[0].name] = "../x.safetensors"
        try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(
            to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        #expect(throws: SafeTensorsError.self) { try ModelCheckpoint.load(directory: dir, maxTokens: 32) }
    }

    @Test func missingAndMisshapenTensorsAreNamed() throws {
        let m = try ModelGradientTests.model(.llama)
        let dir = Self.tempDir("missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ModelCheckpoint.save(m, directory: dir)
        var recs = try ModelCheckpoint.records(of: m)
        let victim = recs.remove(at: 3)
        try writeSafeTensors(recs, to: dir + "/model.safetensors")
        do {
            _ = try ModelCheckpoint.load(directory: dir, maxTokens: 8)
            Issue.record("loaded without \(victim.name)")
        } catch let e as SafeTensorsError { #expect(e.description.contains(victim.name)) }
        recs.insert(SafeTensorsRecord(name: victim.name, shape: [victim.values.count], values: victim.values), at: 3)
        try writeSafeTensors(recs, to: dir + "/model.safetensors")
        do {
            _ = try ModelCheckpoint.load(directory: dir, maxTokens: 8)
            Issue.record("loaded a misshapen \(victim.name)")
        } catch let e as SafeTensorsError {
            #expect(e.description.contains(victim.name) && e.description.contains("shape"))
        }
    }

    /// A checkpoint directory's config.json is named by its path (the model checks run while it is read).
    @Test func directoryConfigErrorsNameThePath() throws {
        let dir = Self.tempDir("hostile-config")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data(
            #"{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":32,"rms_norm_eps":1e-5,"rope_theta":10000,"max_position_embeddings":64}"#
                .utf8
        ).write(
            to: URL(fileURLWithPath: dir + "/config.json"))
        do {
            _ = try ModelCheckpoint.load(directory: dir, maxTokens: 4)
            Issue.record("loaded 4 heads against 3 KV heads")
        } catch {
            #expect("\(error)".hasPrefix(dir + "/config.json: field \"num_key_value_heads\""), "\(error)")
        }
    }
}
