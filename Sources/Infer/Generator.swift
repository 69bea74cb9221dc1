import Format
import Foundation
import Ingest
import Support
import Tokenizers
import Train

/// One prompt to continue.
public struct GenerationRequest: Sendable, Equatable {
    /// Prompt token ids (non-empty).
    public var prompt: [Int32]
    /// Seed of this request's own random stream: its samples do not depend on batching or order.
    public var seed: UInt64
    /// Most tokens to generate (also bounded by the generator's `maxLength`).
    public var maxNewTokens: Int

    /// A request.
    public init(prompt: [Int32], seed: UInt64 = 0, maxNewTokens: Int) {
        self.prompt = prompt
        self.seed = seed
        self.maxNewTokens = maxNewTokens
    }
}

/// Why a generation ended.
public enum FinishReason: String, Sendable, Codable, Equatable {
    /// The model produced an end-of-sequence token (not part of `tokens`).
    case eos
    /// A stop string appeared in the text (the token completing it is kept).
    case stop
    /// The token limit was reached.
    case length
}

/// A finished continuation.
public struct Generation: Sendable, Equatable {
    /// Generated ids, without the end-of-sequence token.
    public var tokens: [Int32]
    /// The generated text (special tokens left out).
    public var text: String
    /// Why it ended.
    public var finish: FinishReason
    /// The stop string that ended it, if any.
    public var stopString: String?
    /// The end-of-sequence id that ended it (finish == .eos).
    public var endToken: Int32?
    /// Sum of the model's log-probs (temperature 1) of every sampled token, the end token included.
    public var logProb: Double
}

/// Finds stop strings in the bytes of a growing text, looking only at what the last token could complete.
public struct StopMatcher: Sendable {
    /// The stop strings as bytes (empty strings dropped).
    public let strings: [[UInt8]]

    /// A matcher for `stops`.
    public init(_ stops: [String]) { strings = stops.map { Array($0.utf8) }.filter { !$0.isEmpty } }

    /// The first stop string that ends at or after byte `newFrom` of `text`, if any.
    public func match(_ text: [UInt8], newFrom: Int) -> String? {
        for s in strings where text.count >= s.count {
            var start = max(0, newFrom - s.count + 1)
            while start + s.count <= text.count {
                if text[start..<(start + s.count)].elementsEqual(s) { return String(decoding: s, as: UTF8.self) }
                start += 1
            }
        }
        return nil
    }
}

/// Batched, KV-cached text generation with continuous batching: a slot freed by a finished sequence takes
/// the next prompt in the same decoding pass as the other slots' next tokens.
public final class Generator {
    /// The policy.
    public let model: TransformerModel
    /// Its tokenizer (for stop strings and text).
    public let tokenizer: Tokenizer
    /// Ids that end a generation.
    public let stopTokens: Set<Int32>
    /// The KV-cached decoder (one slot per batch row).
    public let decoder: IncrementalDecoder
    /// Tokens generated over this generator's lifetime.
    public private(set) var tokensGenerated = 0
    private var tokenBytes: [Int32: [UInt8]] = [:]

    /// A generator decoding up to `batchSize` sequences of at most `maxLength` positions (prompt included).
    public init(model: TransformerModel, tokenizer: Tokenizer, stopTokens: Set<Int32>, batchSize: Int, maxLength: Int)
        throws
    {
        self.model = model
        self.tokenizer = tokenizer
        self.stopTokens = stopTokens
        decoder = try IncrementalDecoder(model: model, maxSequences: batchSize, maxLength: maxLength)
    }

    /// The text bytes of one token (special tokens and ids unknown to the tokenizer give none).
    public func bytes(of token: Int32) -> [UInt8] {
        if let b = tokenBytes[token] { return b }
        let b = (try? tokenizer.decode([UInt32(token)], skipSpecialTokens: true)) ?? []
        tokenBytes[token] = b
        return b
    }

    private struct Live {
        var request: Int
        var tokens: [Int32] = []
        var text: [UInt8] = []
        var logProb = 0.0
        var rng: SplitMix64
        var limit: Int
        var pending: Int32 = -1
    }

    /// Continues every request; calls `onFinish(index, generation)` as each one ends (in completion order)
    /// and returns them in request order.
    public func generate(
        _ requests: [GenerationRequest], sampling: SamplingParameters, stop: [String] = [],
        onFinish: (Int, Generation) throws -> Void = { _, _ in }
    ) throws -> [Generation] {
        var sampler = try TokenSampler(sampling)
        let matcher = StopMatcher(stop)
        let maxLength = decoder.maxLength
        for (i, r) in requests.enumerated() {
            guard !r.prompt.isEmpty else { throw InferError.invalid("request \(i): empty prompt") }
            guard r.prompt.count < maxLength else {
                throw InferError.invalid(
                    "request \(i): prompt of \(r.prompt.count) tokens leaves no room within \(maxLength) positions")
            }
        }
        var results = [Generation?](repeating: nil, count: requests.count)
        var queue = Array(requests.indices.reversed())
        var slots = [Live?](repeating: nil, count: decoder.maxSequences)
        var logits: [Float] = []
        let V = model.config.vocabSize
        func finish(_ s: Int, _ reason: FinishReason, _ stopString: String? = nil, end: Int32? = nil) throws {
            guard let l = slots[s] else { return }
            let g = Generation(
                tokens: l.tokens, text: String(decoding: l.text, as: UTF8.self), finish: reason,
                stopString: stopString, endToken: end, logProb: l.logProb)
            results[l.request] = g
            slots[s] = nil
            decoder.release(s)
            try onFinish(l.request, g)
        }
        /// Samples slot `s`'s next token from row `i` of `logits`.
        func step(_ s: Int, _ i: Int) throws {
            guard var l = slots[s] else { return }
            let pick = sampler.sample(logits[(i * V)..<((i + 1) * V)], rng: &l.rng)
            l.logProb += pick.logProb
            tokensGenerated += 1
            if stopTokens.contains(pick.token) {
                slots[s] = l
                try finish(s, .eos, end: pick.token)
                return
            }
            l.tokens.append(pick.token)
            let before = l.text.count
            l.text.append(contentsOf: bytes(of: pick.token))
            l.pending = pick.token
            slots[s] = l
            if let hit = matcher.match(l.text, newFrom: before) {
                try finish(s, .stop, hit)
            } else if l.tokens.count >= l.limit {
                try finish(s, .length)
            }
        }
        while true {
            // The live sequences' next tokens, in one pass.
            var seqs: [Int] = [], feed: [[Int32]] = []
            for s in slots.indices {
                if let l = slots[s] {
                    seqs.append(s)
                    feed.append([l.pending])
                }
            }
            if !seqs.isEmpty {
                try decoder.extend(seqs, feed, logits: &logits)
                for (i, s) in seqs.enumerated() { try step(s, i) }
            }
            // Queued requests into the free slots, each prompt in a pass of its own: decoding passes then hold
            // one row per sequence, so a sequence's numbers never depend on which other prompts share its pass
            // (the same samples at any batch size, and from any share of the prompts an MPI rank is dealt).
            var admitted = false
            for s in slots.indices where slots[s] == nil {
                guard let r = queue.popLast() else { break }
                let req = requests[r]
                let limit = min(req.maxNewTokens, maxLength - req.prompt.count)
                if limit <= 0 {
                    results[r] = Generation(
                        tokens: [], text: "", finish: .length, stopString: nil, endToken: nil, logProb: 0)
                    try onFinish(r, results[r]!)
                    continue
                }
                slots[s] = Live(request: r, rng: SplitMix64(seed: req.seed), limit: limit)
                decoder.release(s)
                try decoder.extend([s], [req.prompt], logits: &logits)
                try step(s, 0)
                admitted = true
            }
            if seqs.isEmpty && !admitted && queue.isEmpty { break }
        }
        return results.map { $0! }
    }
}
