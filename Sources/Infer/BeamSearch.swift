import Format
import Foundation
import Ingest
import Support
import Tokenizers
import Train

/// Scores beam-search candidates. A candidate lives in a slot of the scorer's own state: it is its parent's
/// slot extended by the tokens of one new step, so a scorer with a KV cache forks the parent (sharing its
/// prefix) instead of re-reading the prefix.
public protocol CandidateScorer: AnyObject {
    /// A short name for logs ("value", "logprob").
    var name: String { get }
    /// Sizes the scorer's state for `slots` slots of at most `maxLength` positions, with about
    /// `cacheTokens` distinct cached positions alive at once.
    func reserve(slots: Int, maxLength: Int, cacheTokens: Int) throws
    /// Starts a problem: slot `root` holds `prompt`; returns the score of the bare prompt.
    func begin(prompt: [Int32], root: Int) throws -> Double
    /// Candidate i is slot `parents[i]` plus `steps[i]` (possibly empty), stored into slot `slots[i]`;
    /// `logProbs[i]` is the policy's cumulative log-prob of the whole response so far. Returns the scores.
    func score(parents: [Int], slots: [Int], steps: [[Int32]], logProbs: [Double]) throws -> [Double]
    /// Frees a slot.
    func release(_ slot: Int)
}

/// The value network as scorer: V at the last token of the candidate's full prefix (prompt + response so
/// far; for a finished candidate, the response without its end token), read from a KV-cached decoder of
/// the value model that mirrors the policy's slots.
public final class ValueScorer: CandidateScorer {
    /// "value".
    public let name = "value"
    /// The value model (with a value head).
    public let model: TransformerModel
    private var decoder: IncrementalDecoder?
    private var values: [Int: Double] = [:]

    /// A scorer reading `model`'s value head.
    public init(model: TransformerModel) throws {
        guard model.hasValueHead else { throw InferError.invalid("the value model has no value head") }
        self.model = model
    }

    /// Allocates the value model's decoder.
    public func reserve(slots: Int, maxLength: Int, cacheTokens: Int) throws {
        if let d = decoder, d.maxSequences >= slots, d.maxLength >= maxLength, d.pageCount * d.pageSize >= cacheTokens {
            return
        }
        decoder = nil
        decoder = try IncrementalDecoder(
            model: model, maxSequences: slots, maxLength: maxLength, cacheTokens: cacheTokens)
    }

    /// Prefills the prompt; returns V(s_0) at its last token.
    public func begin(prompt: [Int32], root: Int) throws -> Double {
        guard let d = decoder else { throw InferError.invalid("ValueScorer.reserve was not called") }
        d.releaseAll()
        values = [:]
        var v: [Float] = []
        try d.extend([root], [prompt], values: &v)
        values[root] = Double(v[0])
        return Double(v[0])
    }

    /// Forks each parent and appends the step; V at the last token of each candidate.
    public func score(parents: [Int], slots: [Int], steps: [[Int32]], logProbs: [Double]) throws -> [Double] {
        guard let d = decoder else { throw InferError.invalid("ValueScorer.reserve was not called") }
        var out = [Double](repeating: 0, count: slots.count)
        var seqs: [Int] = [], feed: [[Int32]] = [], where_: [Int] = []
        for i in slots.indices {
            try d.fork(parents[i], into: slots[i])
            if steps[i].isEmpty {
                out[i] = values[parents[i]] ?? 0
                values[slots[i]] = out[i]
            } else {
                seqs.append(slots[i])
                feed.append(steps[i])
                where_.append(i)
            }
        }
        if !seqs.isEmpty {
            var v: [Float] = []
            try d.extend(seqs, feed, values: &v)
            for (k, i) in where_.enumerated() {
                out[i] = Double(v[k])
                values[slots[i]] = out[i]
            }
        }
        return out
    }

    /// Frees a slot of the value decoder.
    public func release(_ slot: Int) {
        decoder?.release(slot)
        values[slot] = nil
    }
}

/// The policy's own cumulative log-prob of the response as score (no extra network).
public final class LogProbScorer: CandidateScorer {
    /// "logprob".
    public let name = "logprob"
    /// A log-prob scorer.
    public init() {}
    /// Nothing to allocate.
    public func reserve(slots: Int, maxLength: Int, cacheTokens: Int) throws {}
    /// The bare prompt scores 0.
    public func begin(prompt: [Int32], root: Int) throws -> Double { 0 }
    /// The cumulative log-probs themselves.
    public func score(parents: [Int], slots: [Int], steps: [[Int32]], logProbs: [Double]) throws -> [Double] {
        logProbs
    }
    /// Nothing to free.
    public func release(_ slot: Int) {}
}

/// Settings of the step-level beam search (docs/algorithm.md, "Test-time search with the value network").
public struct BeamSearchConfig: Sendable, Equatable {
    /// Beams kept after each step (B).
    public var width = 7
    /// One-step samples drawn from each beam (B in the paper).
    public var samplesPerBeam = 7
    /// Most steps before the search stops.
    public var maxSteps = 20
    /// Most tokens in one step (a step that reaches it ends there).
    public var maxStepTokens = 128
    /// Most response tokens in total (a candidate reaching it is set aside as finished, truncated).
    public var maxNewTokens = 512
    /// Strings that end a step (the token completing one is kept in the step).
    public var stepDelimiters = ["\n"]
    /// Sampling of the step continuations (temperature 1 in the paper).
    public var sampling = SamplingParameters(temperature: 1)

    /// Defaults: B = 7 beams x 7 samples, newline-delimited steps, temperature 1.
    public init() {}
}

/// One response the search produced.
public struct BeamCandidate: Sendable, Equatable {
    /// Response ids (without the end token).
    public var tokens: [Int32]
    /// Response text.
    public var text: String
    /// The scorer's score at the last token of prompt + response.
    public var score: Double
    /// The policy's cumulative log-prob (end token included when finished by it).
    public var logProb: Double
    /// How it ended: eos, length (token limits), or nil while unfinished.
    public var finish: FinishReason?
    /// The end-of-sequence id that finished it (finish == .eos).
    public var endToken: Int32?
    /// Steps it took.
    public var steps: Int
}

/// Outcome of one search.
public struct BeamSearchResult: Sendable {
    /// The answer: the finished candidate with the highest score, else the best unfinished beam.
    public var best: BeamCandidate
    /// Every finished candidate set aside, in the order found.
    public var finished: [BeamCandidate]
    /// Tokens the policy sampled.
    public var tokensGenerated: Int
    /// Candidates the scorer scored.
    public var candidatesScored: Int
}

/// Value-guided (or any `CandidateScorer`-guided) step-level beam search over a KV-cached policy: each of
/// the B beams samples `samplesPerBeam` one-step continuations (forked from the beam's cache), finished
/// candidates are set aside, the rest are scored and the top B kept, up to `maxSteps`.
public final class BeamSearch {
    /// The policy.
    public let policy: TransformerModel
    /// Its tokenizer (step delimiters are matched in text).
    public let tokenizer: Tokenizer
    /// End-of-response ids.
    public let stopTokens: Set<Int32>
    /// The candidate scorer.
    public let scorer: CandidateScorer
    /// Settings.
    public let config: BeamSearchConfig
    /// Most prompt tokens a search accepts.
    public let maxPromptTokens: Int
    private let decoder: IncrementalDecoder
    private var sampler: TokenSampler
    private let matcher: StopMatcher
    private var tokenBytes: [Int32: [UInt8]] = [:]

    /// Allocates the policy's decoder (and has the scorer allocate its own) for prompts of up to
    /// `maxPromptTokens` tokens.
    public init(
        policy: TransformerModel, tokenizer: Tokenizer, stopTokens: Set<Int32>, scorer: CandidateScorer,
        config: BeamSearchConfig, maxPromptTokens: Int
    ) throws {
        guard config.width > 0, config.samplesPerBeam > 0, config.maxSteps > 0, config.maxStepTokens > 0,
            config.maxNewTokens > 0
        else { throw InferError.invalid("beam search sizes must be positive") }
        self.policy = policy
        self.tokenizer = tokenizer
        self.stopTokens = stopTokens
        self.scorer = scorer
        self.config = config
        self.maxPromptTokens = maxPromptTokens
        sampler = try TokenSampler(config.sampling)
        matcher = StopMatcher(config.stepDelimiters)
        let slots = config.width * (1 + config.samplesPerBeam)
        let maxLength = maxPromptTokens + config.maxNewTokens + 1
        // live positions: the prompt, each beam's own history, and each candidate's new step (plus the
        // partly filled page it copies on its first write)
        let pageSize = 16
        let cache =
            maxPromptTokens + config.width * (config.maxNewTokens + pageSize)
            + slots * (config.maxStepTokens + 2 * pageSize)
        decoder = try IncrementalDecoder(
            model: policy, maxSequences: slots, maxLength: maxLength, cacheTokens: cache,
            pageSize: pageSize)
        try scorer.reserve(slots: slots, maxLength: maxLength, cacheTokens: cache)
    }

    private func bytes(of t: Int32) -> [UInt8] {
        if let b = tokenBytes[t] { return b }
        let b = (try? tokenizer.decode([UInt32(t)], skipSpecialTokens: true)) ?? []
        tokenBytes[t] = b
        return b
    }

    private struct Beam {
        var slot: Int
        var tokens: [Int32]
        var text: [UInt8]
        var logProb: Double
        var score: Double
        var steps: Int
        var pending: Int32?  // sampled, not yet in the policy's cache
        var endToken: Int32? = nil
    }

    private struct Candidate {
        var beam: Beam
        var parent: Int
        var stepStart: Int
        var finish: FinishReason?
        var done = false
        var rng: SplitMix64
    }

    /// Searches from `prompt`; `seed` makes the result reproducible.
    public func run(prompt: [Int32], seed: UInt64) throws -> BeamSearchResult {
        guard !prompt.isEmpty, prompt.count <= maxPromptTokens else {
            throw InferError.invalid("prompt of \(prompt.count) tokens (this search holds 1...\(maxPromptTokens))")
        }
        let V = policy.config.vocabSize
        let c = config
        decoder.releaseAll()
        var free = Array((1..<decoder.maxSequences).reversed())
        var logits: [Float] = []
        try decoder.extend([0], [prompt], logits: &logits)
        let rootScore = try scorer.begin(prompt: prompt, root: 0)
        var beams = [Beam(slot: 0, tokens: [], text: [], logProb: 0, score: rootScore, steps: 0, pending: nil)]
        var beamLogits = [Array(logits[0..<V])]
        var finished: [BeamCandidate] = []
        var tokensGenerated = 0, scored = 0
        var master = SplitMix64(seed: seed)
        func release(_ slot: Int) {
            decoder.release(slot)
            scorer.release(slot)
            free.append(slot)
        }
        func candidateOf(_ b: Beam, finish: FinishReason?) -> BeamCandidate {
            BeamCandidate(
                tokens: b.tokens, text: String(decoding: b.text, as: UTF8.self), score: b.score,
                logProb: b.logProb, finish: finish, endToken: b.endToken, steps: b.steps)
        }

        for _ in 0..<c.maxSteps where !beams.isEmpty {
            // Beams whose last sampled token is not yet cached feed it now (one batched pass).
            let feedIdx = beams.indices.filter { beams[$0].pending != nil }
            if !feedIdx.isEmpty {
                try decoder.extend(
                    feedIdx.map { beams[$0].slot }, feedIdx.map { [beams[$0].pending!] }, logits: &logits)
                for (k, i) in feedIdx.enumerated() {
                    beamLogits[i] = Array(logits[(k * V)..<((k + 1) * V)])
                    beams[i].pending = nil
                }
            }
            // Fork every beam into its candidates; the first token comes from the beam's own logits.
            var cands: [Candidate] = []
            for (bi, b) in beams.enumerated() {
                for _ in 0..<c.samplesPerBeam {
                    guard let slot = free.popLast() else { throw InferError.invalid("beam search ran out of slots") }
                    try decoder.fork(b.slot, into: slot)
                    var nb = b
                    nb.slot = slot
                    var cand = Candidate(
                        beam: nb, parent: b.slot, stepStart: b.tokens.count,
                        rng: SplitMix64(seed: master.next()))
                    let pick = sampler.sample(beamLogits[bi][...], rng: &cand.rng)
                    tokensGenerated += 1
                    accept(pick, &cand)
                    cands.append(cand)
                }
            }
            // Decode all unfinished steps together, one token per candidate per pass.
            while true {
                let live = cands.indices.filter { !cands[$0].done }
                if live.isEmpty { break }
                try decoder.extend(
                    live.map { cands[$0].beam.slot }, live.map { [cands[$0].beam.pending!] }, logits: &logits)
                for (k, i) in live.enumerated() {
                    cands[i].beam.pending = nil
                    let pick = sampler.sample(logits[(k * V)..<((k + 1) * V)], rng: &cands[i].rng)
                    tokensGenerated += 1
                    accept(pick, &cands[i])
                }
            }
            // Score every candidate at the last token of its full prefix (end token excluded).
            let scores = try scorer.score(
                parents: cands.map(\.parent), slots: cands.map(\.beam.slot),
                steps: cands.map { Array($0.beam.tokens[$0.stepStart...]) },
                logProbs: cands.map(\.beam.logProb))
            scored += cands.count
            for i in cands.indices {
                cands[i].beam.score = scores[i]
                cands[i].beam.steps += 1
            }
            for b in beams { release(b.slot) }
            var open: [Beam] = []
            for cd in cands {
                if let f = cd.finish {
                    finished.append(candidateOf(cd.beam, finish: f))
                    release(cd.beam.slot)
                } else {
                    open.append(cd.beam)
                }
            }
            // Stable order on ties: earlier candidates (lower beam, earlier sample) first.
            let order = open.indices.sorted {
                open[$0].score > open[$1].score || (open[$0].score == open[$1].score && $0 < $1)
            }
            beams = order.prefix(c.width).map { open[$0] }
            for i in order.dropFirst(c.width) { release(open[i].slot) }
            beamLogits = [[Float]](repeating: [], count: beams.count)
        }
        let best: BeamCandidate
        if let f = finished.indices.max(by: {
            finished[$0].score < finished[$1].score || (finished[$0].score == finished[$1].score && $0 > $1)
        }) {
            best = finished[f]
        } else if let b = beams.indices.max(by: {
            beams[$0].score < beams[$1].score || (beams[$0].score == beams[$1].score && $0 > $1)
        }) {
            best = candidateOf(beams[b], finish: nil)
        } else {
            throw InferError.invalid("beam search produced no candidate")
        }
        for b in beams { release(b.slot) }
        return BeamSearchResult(
            best: best, finished: finished, tokensGenerated: tokensGenerated, candidatesScored: scored)
    }

    /// Appends a sampled token to a candidate and decides whether its step is over.
    private func accept(_ pick: SampledToken, _ cd: inout Candidate) {
        cd.beam.logProb += pick.logProb
        if stopTokens.contains(pick.token) {
            cd.finish = .eos
            cd.beam.endToken = pick.token
            cd.done = true
            return
        }
        cd.beam.tokens.append(pick.token)
        let before = cd.beam.text.count
        cd.beam.text.append(contentsOf: bytes(of: pick.token))
        cd.beam.pending = pick.token
        let stepLength = cd.beam.tokens.count - cd.stepStart
        if cd.beam.tokens.count >= config.maxNewTokens {
            cd.finish = .length
            cd.done = true
        } else if matcher.match(cd.beam.text, newFrom: before) != nil || stepLength >= config.maxStepTokens {
            cd.done = true
        }
    }
}
