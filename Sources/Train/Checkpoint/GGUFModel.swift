import Checkpoint

extension GGUFFile {
    /// Builds a trainable model from a Llama GGUF (weights dequantized to F32, q/k rows un-permuted).
    public func loadLlamaModel(maxTokens: Int, valueHead: Bool = false) throws -> TransformerModel {
        let cfg = try llamaConfig()
        let model = try TransformerModel(config: cfg, maxTokens: maxTokens, valueHead: valueHead)
        for s in model.layout.specs where s.offset != model.layout.valueHead {
            guard let g = Self.ggufName(s.name), let t = info(g) else {
                throw SafeTensorsError.tensor(file: path, name: s.name, why: "missing (GGUF name \(Self.ggufName(s.name) ?? "?"))")
            }
            guard Array(t.ne.reversed()) == s.shape else {
                throw SafeTensorsError.tensor(file: path, name: g, why: "shape \(Array(t.ne.reversed())), model expects \(s.shape)")
            }
            var v = try floats(g)
            if s.name.hasSuffix("q_proj.weight") || s.name.hasSuffix("q_proj.bias") {
                v = Self.unpermuteRotary(v, heads: cfg.heads, rowsPerHead: cfg.headDim, cols: s.shape.count == 2 ? s.shape[1] : 1)
            } else if s.name.hasSuffix("k_proj.weight") || s.name.hasSuffix("k_proj.bias") {
                v = Self.unpermuteRotary(v, heads: cfg.kvHeads, rowsPerHead: cfg.headDim, cols: s.shape.count == 2 ? s.shape[1] : 1)
            }
            try model.parameters.copyIn(v, at: s.offset)
        }
        return model
    }
}
