import Checkpoint
import Foundation
import Models
import Testing
import Train

/// GGUF import: the real SmolLM2-135M-Instruct file against transformers' GGUF loader, plus format checks.
@Suite struct GGUFTests {
    @Test func smolLM2MatchesTransformers() throws {
        guard let dir = fixtureDirectory(relative: "smollm2", script: "scripts/oracles/gguf_reference.py") else {
            return
        }
        let src =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/source.json")))
            as? [String: String]
        guard let path = src?["gguf"], FileManager.default.fileExists(atPath: path) else {
            Issue.record("fixture names a GGUF file that is gone; rerun scripts/oracles/gguf_reference.py")
            return
        }
        let g = try GGUFFile(path: path)
        let model = try g.loadLlamaModel(maxTokens: 32)
        let c = model.config
        #expect(c.layers == 30 && c.hiddenSize == 576 && c.heads == 9 && c.kvHeads == 3 && c.intermediateSize == 1536)
        #expect(c.vocabSize == 49152 && c.tieWordEmbeddings && c.ropeTheta == 100000)
        let e = try SafeTensorsFile(path: dir + "/expected.safetensors")
        for t in e.tensors where t.name.hasPrefix("param.") {
            let name = String(t.name.dropFirst("param.".count))
            let err = relativeError(model.parameter(name)!, try e.floats(t.name))
            #expect(err < 1e-6, "\(name) dequantized rel err \(err)")
        }
        let batch = PackedBatch(
            tokens: try e.int64s("tokens").map { Int32($0) },
            sequenceLengths: try e.int64s("seq_lengths").map { Int($0) },
            targets: try e.int64s("targets").map { Int32($0) })
        var lp: [Float] = []
        try model.forward(batch, logProbs: &lp)
        let err = relativeError(lp, try e.floats("logprobs"))
        print("SmolLM2 GGUF: logprobs rel err \(err) vs transformers")
        #expect(err < 1e-4, "SmolLM2 logprobs rel err \(err)")
    }

}
