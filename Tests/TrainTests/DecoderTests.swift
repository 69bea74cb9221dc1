import Checkpoint
import Foundation
import Models
import Testing
import Train

/// KV-cached incremental decoding against the full packed forward pass, on tiny random models of every
/// family (GQA, q/k/v biases, learned positions, RoPE scaling), batched over sequences of different lengths.
@Suite struct DecoderTests {
    static let families: [ModelFamily] = [.gpt2, .llama, .qwen2]

    static func sequences(seed: UInt64, lengths: [Int], vocab: Int) -> [[Int32]] {
        var rng = TestRNG(seed)
        return lengths.map { n in (0..<n).map { _ in Int32(rng.int(vocab)) } }
    }

    /// Full-vocabulary logits of every position from the full forward: final hidden states times the LM head.
    static func fullLogits(_ m: TransformerModel, _ seqs: [[Int32]]) throws -> [[Float]] {
        if seqs.count > 1 { return try seqs.flatMap { try fullLogits(m, [$0]) } }
        var lp: [Float] = []
        try m.forward(PackedBatch(sequences: seqs), logProbs: &lp)
        let h = m.finalHiddenStates(), d = m.config.hiddenSize, V = m.config.vocabSize
        let w = m.parameter(
            m.config.family == .gpt2
                ? "transformer.wte.weight"
                : (m.config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"))!
        return (0..<(h.count / d)).map { r in
            (0..<V).map { v in Float((0..<d).reduce(0.0) { $0 + Double(h[r * d + $1]) * Double(w[v * d + $1]) }) }
        }
    }

    static func maxRelativeRowError(_ got: [Float], _ want: [Float]) -> Double { relativeError(got, want) }

    /// Prefill a different-length prefix of each sequence, then step one token per unfinished sequence in one
    /// batch: the logits after every token equal the full forward's.
    @Test(arguments: families) func incrementalLogitsMatchFullForward(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family)
        let V = m.config.vocabSize
        let seqs = Self.sequences(seed: 3, lengths: [9, 17, 4, 30], vocab: V)
        let want = try Self.fullLogits(m, seqs)
        var offsets = [0]
        for s in seqs { offsets.append(offsets.last! + s.count) }
        // pages of 4 positions and passes of 5 rows: prefills span pages and passes
        let dec = try IncrementalDecoder(model: m, maxSequences: 4, maxLength: 32, pageSize: 4, maxRows: 5)
        let prefix = [3, 1, 4, 12]
        var logits: [Float] = []
        try dec.extend(
            [0, 1, 2, 3], (0..<4).map { Array(seqs[$0][0..<prefix[$0]]) }, logits: &logits, allPositions: true)
        var worst = 0.0
        var row = 0
        for s in 0..<4 {
            for p in 0..<prefix[s] {
                worst = max(worst, relativeError(Array(logits[(row * V)..<((row + 1) * V)]), want[offsets[s] + p]))
                row += 1
            }
        }
        var pos = prefix
        while true {
            let live = (0..<4).filter { pos[$0] < seqs[$0].count }
            if live.isEmpty { break }
            try dec.extend(live, live.map { [seqs[$0][pos[$0]]] }, logits: &logits)
            #expect(logits.count == live.count * V)
            for (i, s) in live.enumerated() {
                worst = max(worst, relativeError(Array(logits[(i * V)..<((i + 1) * V)]), want[offsets[s] + pos[s]]))
                pos[s] += 1
            }
        }
        for s in 0..<4 { #expect(dec.length(s) == seqs[s].count) }
        print("decoder \(family): worst logits rel err \(worst) vs full forward")
        #expect(worst < 2e-5, "\(family): incremental logits rel err \(worst)")
    }

    /// Attention rows split over threads give bit-identical logits.
    @Test func threadedAttentionMatchesSingleThreaded() throws {
        let m = try ModelGradientTests.model(.llama)
        let seqs = Self.sequences(seed: 4, lengths: [20, 9, 28], vocab: m.config.vocabSize)
        func run() throws -> [Float] {
            let dec = try IncrementalDecoder(model: m, maxSequences: 3, maxLength: 32, pageSize: 4)
            var out: [Float] = []
            try dec.extend([0, 1, 2], seqs, logits: &out, allPositions: true)
            return out
        }
        let saved = IncrementalDecoder.parallelAttentionWork
        defer { IncrementalDecoder.parallelAttentionWork = saved }
        IncrementalDecoder.parallelAttentionWork = 1 << 40
        let single = try run()
        IncrementalDecoder.parallelAttentionWork = 1
        #expect(try run() == single)
    }

    /// Forked slots share their prefix pages and diverge on copy-on-write without disturbing each other.
    @Test(arguments: families) func forkedContinuationsMatchFreshDecoding(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family)
        let V = m.config.vocabSize
        let prompt = Self.sequences(seed: 5, lengths: [10], vocab: V)[0]  // ends inside a page of 4
        let tails = Self.sequences(seed: 6, lengths: [5, 7, 3], vocab: V)
        let dec = try IncrementalDecoder(model: m, maxSequences: 4, maxLength: 32, cacheTokens: 44, pageSize: 4)
        try dec.extend([0], [prompt])
        let freeAfterPrompt = dec.freePageCount
        for i in 0..<3 { try dec.fork(0, into: i + 1) }
        #expect(dec.freePageCount == freeAfterPrompt, "fork copied pages")
        var got: [Float] = []
        try dec.extend([1, 2, 3], tails, logits: &got, allPositions: true)
        // the source slot still decodes its own prefix correctly after its forks wrote into the shared page
        var own: [Float] = []
        try dec.extend([0], [tails[0]], logits: &own, allPositions: true)
        var row = 0
        for (i, t) in tails.enumerated() {
            let want = try Self.fullLogits(m, [prompt + t])
            for p in 0..<t.count {
                let err = relativeError(Array(got[(row * V)..<((row + 1) * V)]), want[prompt.count + p])
                #expect(err < 2e-5, "\(family) fork \(i) position \(p): rel err \(err)")
                if i == 0 {
                    let e0 = relativeError(Array(own[(p * V)..<((p + 1) * V)]), want[prompt.count + p])
                    #expect(e0 < 2e-5, "\(family) source after forks, position \(p): rel err \(e0)")
                }
                row += 1
            }
        }
        for s in 0..<4 { dec.release(s) }
        #expect(dec.freePageCount == dec.pageCount, "pages leaked")
    }

    @Test(arguments: families) func incrementalValuesMatchFullForward(family: ModelFamily) throws {
        let m = try ModelGradientTests.model(family, valueHead: true)
        var rng = TestRNG(21)
        try m.setParameter("value_head.weight", rng.normal(m.config.hiddenSize))
        let seqs = Self.sequences(seed: 8, lengths: [7, 13], vocab: m.config.vocabSize)
        var want: [Float] = []
        try m.forwardValues(PackedBatch(sequences: seqs), values: &want)
        let dec = try IncrementalDecoder(model: m, maxSequences: 2, maxLength: 32, pageSize: 4)
        var got: [Float] = []
        try dec.extend([0, 1], [Array(seqs[0][0..<3]), Array(seqs[1][0..<6])], values: &got)
        #expect(
            abs(got[0] - want[2]) <= 1e-4 * max(1, abs(want[2]))
                && abs(got[1] - want[7 + 5]) <= 1e-4 * max(1, abs(want[12])))
        var pos = [3, 6]
        while pos[0] < 7 || pos[1] < 13 {
            let live = (0..<2).filter { pos[$0] < seqs[$0].count }
            try dec.extend(live, live.map { [seqs[$0][pos[$0]]] }, values: &got)
            for (i, s) in live.enumerated() {
                let w = want[(s == 0 ? 0 : 7) + pos[s]]
                #expect(
                    abs(got[i] - w) <= 1e-4 * max(1, abs(w)), "\(family) slot \(s) pos \(pos[s]): V \(got[i]) vs \(w)")
                pos[s] += 1
            }
        }
    }

    @Test func rejectsBadRequests() throws {
        let m = try ModelGradientTests.model(.llama)
        let dec = try IncrementalDecoder(model: m, maxSequences: 2, maxLength: 8, cacheTokens: 8, pageSize: 4)
        var out: [Float] = []
        #expect(throws: TrainError.self) { try dec.extend([2], [[1]], logits: &out) }
        #expect(throws: TrainError.self) { try dec.extend([0, 0], [[1], [2]], logits: &out) }
        #expect(throws: TrainError.self) { try dec.extend([0], [[Int32(m.config.vocabSize)]], logits: &out) }
        #expect(throws: TrainError.self) { try dec.extend([0], [Array(repeating: 1, count: 9)], logits: &out) }
        #expect(throws: TrainError.self) { try dec.extend([0], [[1]], values: &out) }
        try dec.extend([0], [Array(repeating: 1, count: 8)])
        // the pool (2 pages) is full: a second slot cannot grow
        #expect(throws: TrainError.self) { try dec.extend([1], [[1]], logits: &out) }
        #expect(dec.length(1) == 0)
    }
}

/// Greedy decoding of the real SmolLM2-135M-Instruct (from its GGUF) against transformers' `generate`.
@Suite struct SmolLM2GenerateTests {
    @Test func greedyContinuationsMatchTransformersGenerate() throws {
        guard let dir = fixtureDirectory(relative: "smollm2-generate", script: "scripts/oracles/generate_reference.py")
        else { return }
        let meta =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/prompts.json")))
            as? [String: Any]
        guard let path = meta?["gguf"] as? String, FileManager.default.fileExists(atPath: path),
            let maxNew = meta?["max_new_tokens"] as? Int, let prompts = meta?["prompts"] as? [[String: Any]]
        else {
            Issue.record("prompts.json names no GGUF file that exists; rerun scripts/oracles/generate_reference.py")
            return
        }
        let gguf = try GGUFFile(path: path)
        let model = try gguf.loadLlamaModel(maxTokens: 1)
        let packed = try gguf.packedWeights(for: model)
        #expect(packed.summary == "q8_0 x 1, q4_1 x 210" && packed.matrixCount == model.linearWeights().count)
        let e = try SafeTensorsFile(path: dir + "/expected.safetensors")
        let n = prompts.count
        let promptIds = try (0..<n).map { try e.int64s("prompt.\($0)").map { Int32($0) } }
        let want = try (0..<n).map { try e.int64s("generated.\($0)").map { Int32($0) } }
        let eos: Int32 = 2
        // all prompts decode together in one batch of different lengths, from the f32 weights and from the
        // GGUF's own Q4_1 / Q8_0 blocks (the same values: the same tokens, logits equal bit for bit)
        var firstLogits: [[Float]] = []
        for weights in [nil, packed] {
            let dec = try IncrementalDecoder(model: model, maxSequences: n, maxLength: 256, weights: weights)
            var logits: [Float] = []
            try dec.extend(Array(0..<n), promptIds, logits: &logits)
            firstLogits.append(logits)
            let V = model.config.vocabSize
            var got = [[Int32]](repeating: [], count: n)
            var live = Array(0..<n)
            for _ in 0..<maxNew {
                var next: [Int32] = []
                for i in live.indices {
                    let row = logits[(i * V)..<((i + 1) * V)]
                    next.append(Int32(row.indices.max { row[$0] < row[$1] }! - i * V))
                }
                var stillLive: [Int] = [], feed: [[Int32]] = []
                for (i, s) in live.enumerated() {
                    got[s].append(next[i])
                    if next[i] != eos && got[s].count < maxNew {
                        stillLive.append(s)
                        feed.append([next[i]])
                    }
                }
                live = stillLive
                if live.isEmpty { break }
                try dec.extend(live, feed, logits: &logits)
            }
            for s in 0..<n {
                print(
                    "SmolLM2 greedy prompt \(s) (\(weights == nil ? "f32" : "GGUF blocks")): \(got[s].count) tokens, transformers \(want[s].count), equal: \(got[s] == want[s])"
                )
                #expect(got[s] == want[s], "prompt \(s): oreo \(got[s]) vs transformers \(want[s])")
            }
        }
        let same = firstLogits[0] == firstLogits[1]
        #expect(same, "prefill logits from the GGUF's blocks differ from the f32 weights'")
    }
}

/// The decoding matmul against a double-precision reference on awkward shapes (tails in every dimension).
@Suite struct SmallBatchLinearTests {
    @Test(arguments: [1, 3, 4, 7, 16]) func matchesReference(rows: Int) {
        var rng = TestRNG(UInt64(rows))
        for (inDim, outDim) in [(37, 9), (64, 130), (16, 4), (5, 3)] {
            let x = rng.normal(rows * (inDim + 2)), w = rng.normal(outDim * inDim), b = rng.normal(outDim)
            for (bias, accumulate) in [(false, false), (true, false), (true, true)] {
                let y0 = rng.normal(rows * (outDim + 1))
                var y = y0
                x.withUnsafeBufferPointer { xp in
                    w.withUnsafeBufferPointer { wp in
                        b.withUnsafeBufferPointer { bp in
                            y.withUnsafeMutableBufferPointer { yp in
                                smallBatchLinear(
                                    x: xp.baseAddress!, ldx: inDim + 2, weight: wp.baseAddress!,
                                    bias: bias ? bp.baseAddress! : nil,
                                    y: yp.baseAddress!, ldy: outDim + 1, rows: rows, inDim: inDim, outDim: outDim,
                                    accumulate: accumulate)
                            }
                        }
                    }
                }
                var worst = 0.0
                for r in 0..<rows {
                    for o in 0..<outDim {
                        var want = (0..<inDim).reduce(0.0) {
                            $0 + Double(x[r * (inDim + 2) + $1]) * Double(w[o * inDim + $1])
                        }
                        if bias { want += Double(b[o]) }
                        if accumulate { want += Double(y0[r * (outDim + 1) + o]) }
                        worst = max(worst, abs(Double(y[r * (outDim + 1) + o]) - want) / max(1, abs(want)))
                    }
                    // the padding column is untouched
                    #expect(y[r * (outDim + 1) + outDim] == y0[r * (outDim + 1) + outDim])
                }
                #expect(worst < 1e-5, "rows \(rows) in \(inDim) out \(outDim) bias \(bias) acc \(accumulate): \(worst)")
            }
        }
    }
}
