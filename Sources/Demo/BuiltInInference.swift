import Checkpoint
import Format
import Foundation
import Infer
import Ingest
import Models
import Support
import Synchronization
import Tokenizers
import Train

/// Settings of the demo's step-level beam search (the paper's: B beams, B one-step samples each).
public struct DemoSearchSettings: Sendable, Equatable, Codable {
    /// One-step samples per beam; nil: the beam width.
    public var samplesPerBeam: Int?
    /// Temperature of the step samples.
    public var temperature = 1.0
    /// Most steps of one search (the task has at most 12 calculation lines and the answer line).
    public var maxSteps = 16
    /// Most tokens in one step.
    public var maxStepTokens = 48
    /// Which policies are also searched with their own log-prob as scorer.
    public var logProbSearch = LogProbSearch.sft

    /// The defaults.
    public init() {}
}

/// Which policies the log-prob scorer searches with (beside every value network's search).
public enum LogProbSearch: String, Sendable, Codable, CaseIterable {
    /// SFT only: search without any offline RL. The other policies' log-probs stay so close to SFT's that
    /// searching with them costs much and shows little.
    case sft
    /// SFT (search without any offline RL) and the policies with a value network (their value against their own log-prob).
    case sftAndValueModels = "sft-and-value"
    /// Every policy.
    case all
    /// None: only value-guided search.
    case none
}

/// The demo's sampler and evaluator: Infer's KV-cached generator and beam search in-process. Work is split
/// over `threads` workers, each with its own decoder over the shared weights and single-threaded BLAS
/// (small decoding matrices do not gain from a second BLAS thread, but a second worker doubles throughput).
/// Every sample and search draws from its own seeded stream, so results do not depend on the split.
public struct InProcessInference: DemoSampler, DemoEvaluator {
    /// The tokenizer.json the models were trained with.
    public let tokenizer: String
    /// Beam-search settings.
    public let search: DemoSearchSettings
    /// Sequences one worker decodes together.
    public let batchSize: Int

    /// An inference hook.
    public init(tokenizer: String, search: DemoSearchSettings = DemoSearchSettings(), batchSize: Int = 64) {
        self.tokenizer = tokenizer
        self.search = search
        self.batchSize = max(1, batchSize)
    }

    /// Report rows.
    public var settings: [(key: String, value: String)] {
        [
            (
                "beam search",
                "B beams x \(search.samplesPerBeam.map(String.init) ?? "B") one-line samples each at temperature \(JSONText.number(search.temperature)), at most \(search.maxSteps) lines of \(search.maxStepTokens) tokens; log-prob scorer for \(search.logProbSearch.rawValue)"
            )
        ]
    }

    /// A trained network for scoring: the checkpoint itself, or `base` with the checkpoint as its LoRA adapter
    /// (a value adapter carries the head).
    static func network(_ dir: String, base: String?, maxTokens: Int, valueHead: Bool) throws -> TransformerModel {
        guard let base else {
            return try ModelCheckpoint.load(directory: dir, maxTokens: maxTokens, valueHead: valueHead)
        }
        let m = try ModelSource(path: base).load(maxTokens: maxTokens)
        try m.attach(try PEFTAdapter.load(directory: dir, for: m))
        return m
    }

    func load(_ model: TrainedModel) throws -> InferenceModel {
        do {
            return try InferenceModel.load(
                path: model.base ?? model.checkpoint, tokenizer: tokenizer,
                adapter: model.base == nil ? nil : model.checkpoint)
        } catch {
            throw DemoError("\(model.checkpoint): cannot load the \(model.method.rawValue) policy: \(error)")
        }
    }

    /// Runs `body(worker, range)` over `count` items split into contiguous ranges, one worker per thread,
    /// with BLAS and the small-batch kernel single-threaded meanwhile (one worker leaves them as they are:
    /// the demo runs seeds side by side with both set to one thread); rethrows the first error.
    func parallel(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int, Range<Int>) throws -> Void) throws {
        let workers = max(1, min(threads, count))
        guard workers > 1 else { return try body(0, 0..<count) }
        try BLASRuntime.singleThreaded {
            let failure = Mutex<(any Error)?>(nil)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let range = (count * w / workers)..<(count * (w + 1) / workers)
                do { try body(w, range) } catch { failure.withLock { if $0 == nil { $0 = error } } }
            }
            if let e = failure.withLock({ $0 }) { throw e }
        }
    }

    /// `count` samples per prompt.
    public func sample(
        _ model: TrainedModel, prompts: [PromptRecord], count: Int, temperature: Double, maxTokens: Int,
        seed: UInt64, threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[SampledResponse]] {
        let m = try load(model)
        let ids = prompts.map { m.encodePrompt($0.prompt, template: .none) }
        var requests: [GenerationRequest] = []
        for (i, p) in ids.enumerated() {
            for k in 0..<count {
                requests.append(
                    GenerationRequest(prompt: p, seed: sampleSeed(seed, problem: i, sample: k), maxNewTokens: maxTokens)
                )
            }
        }
        let out = try generate(
            m, requests, sampling: SamplingParameters(temperature: temperature), threads: threads, progress: progress)
        return (0..<prompts.count).map { i in
            (0..<count).map { k in
                SampledResponse(promptIds: ids[i].map { UInt32(bitPattern: $0) }, responseIds: out[i * count + k])
            }
        }
    }

    /// Generates every request; returns each response's ids with the end token when the model emitted it.
    func generate(
        _ m: InferenceModel, _ requests: [GenerationRequest], sampling: SamplingParameters, threads: Int,
        progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[UInt32]] {
        let results = Mutex<[[UInt32]]>(Array(repeating: [], count: requests.count))
        let done = Mutex(0)
        let total = Double(requests.count)
        nonisolated(unsafe) let model = m
        let batch = batchSize
        try parallel(requests.count, threads: threads) { _, range in
            let part = Array(requests[range])
            let longest = part.map { $0.prompt.count + $0.maxNewTokens }.max() ?? 1
            let gen = try Generator(
                model: model.model, tokenizer: model.tokenizer, stopTokens: model.stopTokens,
                batchSize: batch, maxLength: min(model.model.config.maxPositions, longest))
            let eos = model.tokenizer.eosId
            _ = try gen.generate(part, sampling: sampling) { j, g in
                var ids = g.tokens.map { UInt32(bitPattern: $0) }
                if g.finish == .eos, let eos { ids.append(eos) }
                results.withLock { $0[range.lowerBound + j] = ids }
                let n = done.withLock {
                    $0 += 1
                    return $0
                }
                if n % 16 == 0 || Double(n) == total {
                    progress(HookProgress(done: Double(n), total: total, unit: "samples"))
                }
            }
        }
        return results.withLock { $0 }
    }

    /// The scorers of `model`: its value network when it has one, and the policy's log-prob as
    /// `search.logProbSearch` says.
    public func scorers(for model: TrainedModel) -> [String] {
        let logprob =
            switch search.logProbSearch {
            case .all: true
            case .none: false
            case .sft: model.method == .sft
            case .sftAndValueModels: model.method == .sft || model.hasValueHead
            }
        return (model.hasValueHead ? ["value"] : []) + (logprob ? ["logprob"] : [])
    }

    /// Greedy decoding, or beam search ranked by the decoding's scorer.
    public func decode(
        _ model: TrainedModel, prompts: [PromptRecord], decoding: Decoding, maxTokens: Int, seed: UInt64,
        threads: Int, progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [DecodedAnswer] {
        let m = try load(model)
        let ids = prompts.map { m.encodePrompt($0.prompt, template: .none) }
        guard let scorerName = decoding.scorer else {
            let requests = ids.map { GenerationRequest(prompt: $0, maxNewTokens: maxTokens) }
            let out = try generate(m, requests, sampling: .greedy, threads: threads, progress: progress)
            return out.map { DecodedAnswer(responseIds: $0, tokensGenerated: $0.count, candidatesScored: 0) }
        }
        var valueModel: TransformerModel?
        if scorerName == "value" {
            guard let dir = model.valueCheckpoint else {
                throw DemoError("\(model.method.rawValue) has no value network to search with")
            }
            do { valueModel = try Self.network(dir, base: model.valueBase, maxTokens: 1, valueHead: true) } catch {
                throw DemoError("\(dir): cannot load the value network: \(error)")
            }
        } else if scorerName != "logprob" {
            throw DemoError("unknown beam scorer \(scorerName) (value or logprob)")
        }
        var config = BeamSearchConfig()
        config.width = decoding.width
        config.samplesPerBeam = search.samplesPerBeam ?? decoding.width
        config.maxSteps = search.maxSteps
        config.maxStepTokens = search.maxStepTokens
        config.maxNewTokens = maxTokens
        config.sampling = SamplingParameters(temperature: search.temperature)
        let results = Mutex<[DecodedAnswer?]>(Array(repeating: nil, count: prompts.count))
        let done = Mutex(0)
        let total = Double(prompts.count)
        nonisolated(unsafe) let policy = m, value = valueModel
        let longest = ids.map(\.count).max() ?? 1
        let searchConfig = config
        try parallel(prompts.count, threads: threads) { _, range in
            let scorer: CandidateScorer = try value.map { try ValueScorer(model: $0) } ?? LogProbScorer()
            let beam = try BeamSearch(
                policy: policy.model, tokenizer: policy.tokenizer, stopTokens: policy.stopTokens,
                scorer: scorer, config: searchConfig, maxPromptTokens: longest)
            for i in range {
                let r = try beam.run(prompt: ids[i], seed: sampleSeed(seed, problem: i, sample: 0))
                var response = r.best.tokens.map { UInt32(bitPattern: $0) }
                if r.best.finish == .eos, let end = r.best.endToken { response.append(UInt32(bitPattern: end)) }
                let answer = DecodedAnswer(
                    responseIds: response, tokensGenerated: r.tokensGenerated, candidatesScored: r.candidatesScored)
                results.withLock { $0[i] = answer }
                let n = done.withLock {
                    $0 += 1
                    return $0
                }
                progress(HookProgress(done: Double(n), total: total, unit: "problems"))
            }
        }
        return results.withLock { $0.map { $0! } }
    }

    /// Scores along each sample, by full forward passes over packed samples.
    public func scores(
        _ model: TrainedModel, scorer: String, samples: [SampledResponse], stepEnds: [[Int]], threads: Int,
        progress: @escaping @Sendable (HookProgress) -> Void
    ) throws -> [[Double]] {
        guard samples.count == stepEnds.count else {
            throw DemoError("scores: \(samples.count) samples but \(stepEnds.count) step lists")
        }
        let capacity = 4096
        let net: TransformerModel
        let useValue = scorer == "value"
        do {
            switch scorer {
            case "value":
                guard let dir = model.valueCheckpoint else {
                    throw DemoError("\(model.method.rawValue) has no value network")
                }
                net = try Self.network(dir, base: model.valueBase, maxTokens: capacity, valueHead: true)
            case "logprob":
                net = try Self.network(model.checkpoint, base: model.base, maxTokens: capacity, valueHead: false)
            default:
                throw DemoError("unknown scorer \(scorer) (value or logprob)")
            }
        } catch let e as DemoError { throw e } catch {
            throw DemoError("\(model.checkpoint): cannot load the \(model.method.rawValue) \(scorer) model: \(error)")
        }
        let eos = try Tokenizer.load(path: tokenizer).eosId
        var out = [[Double]](repeating: [], count: samples.count)
        var i = 0
        var outputs: [Float] = []
        while i < samples.count {
            // Pack samples i..<j into one pass of at most `capacity` positions.
            var j = i, used = 0
            var batch = PackedBatch(tokens: [], sequenceLengths: [], targets: [])
            while j < samples.count {
                let s = samples[j]
                let n = s.promptIds.count + s.responseIds.count
                guard n <= min(capacity, net.config.maxPositions) else {
                    throw DemoError(
                        "a sample of \(n) tokens exceeds the model's \(min(capacity, net.config.maxPositions)) positions"
                    )
                }
                if j > i && used + n > capacity { break }
                let seq = (s.promptIds + s.responseIds).map { Int32(bitPattern: $0) }
                batch.tokens += seq
                batch.sequenceLengths.append(n)
                batch.targets += seq.indices.map { $0 + 1 < n ? seq[$0 + 1] : -1 }
                used += n
                j += 1
            }
            do {
                if useValue {
                    try net.forwardValues(batch, values: &outputs)
                } else {
                    try net.forward(batch, logProbs: &outputs)
                }
            } catch { throw DemoError("scoring samples: \(error)") }
            var offset = 0
            for k in i..<j {
                let s = samples[k]
                let p = s.promptIds.count, t = s.responseIds.count
                let finished = t > 0 && s.responseIds.last == eos
                var trace: [Double] = []
                if useValue {
                    // V(s_e) sits at the prefix's last token; the end token's own position is never trained.
                    for e in [0] + stepEnds[k] {
                        trace.append(Double(outputs[offset + p - 1 + min(e, finished ? t - 1 : t)]))
                    }
                } else {
                    // logProbs[q] is log p(token q+1 | tokens ..q): response token r sits at q = p - 1 + r.
                    var cumulative = [0.0]
                    for r in 0..<t { cumulative.append(cumulative[r] + Double(outputs[offset + p - 1 + r])) }
                    for e in [0] + stepEnds[k] { trace.append(cumulative[min(max(e, 0), t)]) }
                }
                out[k] = trace
                offset += p + t
            }
            i = j
            progress(HookProgress(done: Double(i), total: Double(samples.count), unit: "samples"))
        }
        return out
    }
}
