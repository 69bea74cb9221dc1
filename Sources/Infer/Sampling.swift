import Format
import Foundation
import Support

/// How the next token is drawn from the model's logits.
public struct SamplingParameters: Sendable, Equatable, Codable {
    /// Softmax temperature; 0 means greedy (argmax, lowest id on ties).
    public var temperature: Double
    /// Keep only the k most likely tokens (ties at the k-th value kept, as in HF); 0 = off.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p (nucleus); 1 = off.
    public var topP: Double

    /// Plain sampling at temperature 1 unless told otherwise.
    public init(temperature: Double = 1, topK: Int = 0, topP: Double = 1) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
    }

    /// Argmax decoding.
    public static let greedy = SamplingParameters(temperature: 0)

    /// Checks the ranges (temperature >= 0, top-k >= 0, 0 < top-p <= 1).
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw InferError.invalid("temperature must be >= 0, got \(temperature)")
        }
        guard topK >= 0 else { throw InferError.invalid("top-k must be >= 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw InferError.invalid("top-p must be in (0, 1], got \(topP)") }
    }
}

/// Errors of sampling, search and evaluation (bad settings or inputs), with a message naming the cause.
public enum InferError: Error, CustomStringConvertible, Equatable {
    /// A setting or argument out of range.
    case invalid(String)
    /// A user file (prompts, data) is malformed: file, line, reason.
    case badLine(file: String, line: Int, reason: String)
    /// A verifier could not produce a reward.
    case verifier(String)

    /// Human-readable message.
    public var description: String {
        switch self {
        case .invalid(let s): return s
        case let .badLine(file, line, reason): return "\(file):\(line): \(reason)"
        case .verifier(let s): return "verifier: \(s)"
        }
    }
}

/// A uniform double in [0, 1) from the top 53 bits.
@inline(__always) func uniform(_ rng: inout SplitMix64) -> Double { Double(rng.next() >> 11) * 0x1p-53 }

/// One sampled token and its log-probability under the untempered, untruncated model distribution.
public struct SampledToken: Sendable, Equatable {
    /// The token id.
    public var token: Int32
    /// log softmax(logits)[token] (temperature 1, no truncation): what a policy's log-prob means.
    public var logProb: Double
}

/// Draws tokens from logits with temperature, top-k and top-p; keeps its scratch between calls, so one
/// sampler per thread samples without allocating.
public struct TokenSampler {
    /// The settings applied.
    public let parameters: SamplingParameters
    private var weights: [Double] = []
    private var kept: [Int32] = []
    private var bucketMass: [Double] = []

    /// A sampler for `parameters` (validated).
    public init(_ parameters: SamplingParameters) throws {
        try parameters.validate()
        self.parameters = parameters
    }

    /// Samples one token from `logits[0..<vocab]`.
    public mutating func sample(_ logits: ArraySlice<Float>, rng: inout SplitMix64) -> SampledToken {
        let lse = logSumExp(logits)
        if parameters.temperature == 0 {
            let t = argmax(logits)
            return SampledToken(token: Int32(t), logProb: Double(logits[logits.startIndex + t]) - lse)
        }
        let (ids, w) = truncated(logits)
        let total = w.reduce(0, +)
        let u = uniform(&rng) * total
        var acc = 0.0
        var pick = ids[ids.count - 1]
        for (i, x) in w.enumerated() {
            acc += x
            if u < acc {
                pick = ids[i]
                break
            }
        }
        return SampledToken(token: pick, logProb: Double(logits[logits.startIndex + Int(pick)]) - lse)
    }

    /// The tokens sampling can return and their probabilities (normalized): the distribution `sample` draws from.
    public mutating func distribution(_ logits: ArraySlice<Float>) -> [(token: Int32, probability: Double)] {
        if parameters.temperature == 0 { return [(Int32(argmax(logits)), 1)] }
        let (ids, w) = truncated(logits)
        let total = w.reduce(0, +)
        return zip(ids, w).map { ($0, $1 / total) }
    }

    private func argmax(_ z: ArraySlice<Float>) -> Int {
        var best = z.startIndex
        for i in z.indices where z[i] > z[best] { best = i }
        return best - z.startIndex
    }

    private func logSumExp(_ z: ArraySlice<Float>) -> Double {
        let m = Double(z.max() ?? 0)
        var s = 0.0
        for v in z { s += Foundation.exp(Double(v) - m) }
        return m + Foundation.log(s)
    }

    /// Unnormalized tempered weights of the kept tokens (ids and weights, parallel).
    private mutating func truncated(_ z: ArraySlice<Float>) -> ([Int32], [Double]) {
        let V = z.count, base = z.startIndex
        let invT = 1 / parameters.temperature
        let m = Double(z.max() ?? 0)
        if weights.count != V { weights = [Double](repeating: 0, count: V) }
        for i in 0..<V { weights[i] = Foundation.exp((Double(z[base + i]) - m) * invT) }
        kept.removeAll(keepingCapacity: true)
        if parameters.topK > 0 && parameters.topK < V {
            let threshold = kthLargest(z, parameters.topK)
            for i in 0..<V where z[base + i] >= threshold { kept.append(Int32(i)) }
        } else {
            for i in 0..<V { kept.append(Int32(i)) }
        }
        if parameters.topP < 1 { nucleus(z, m: m, invT: invT) }
        return (kept, kept.map { weights[Int($0)] })
    }

    /// The k-th largest value of z (a bounded min-heap: O(V log k)).
    private func kthLargest(_ z: ArraySlice<Float>, _ k: Int) -> Float {
        var heap: [Float] = []
        heap.reserveCapacity(k)
        for v in z {
            if heap.count < k {
                MinHeap.push(&heap, v)
            } else if v > heap[0] {
                MinHeap.replaceTop(&heap, with: v)
            }
        }
        return heap[0]
    }

    /// Narrows `kept` to the smallest most-likely prefix whose mass reaches top-p of the kept mass. Tokens
    /// are bucketed by log-probability (quarter-nat buckets below the maximum), so only the bucket where the
    /// cut falls is sorted: exact, without sorting the vocabulary.
    private mutating func nucleus(_ z: ArraySlice<Float>, m: Double, invT: Double) {
        let buckets = 256
        if bucketMass.count != buckets { bucketMass = [Double](repeating: 0, count: buckets) }
        for b in 0..<buckets { bucketMass[b] = 0 }
        func bucket(_ i: Int32) -> Int { min(buckets - 1, Int((m - Double(z[z.startIndex + Int(i)])) * invT * 4)) }
        var total = 0.0
        for i in kept {
            bucketMass[bucket(i)] += weights[Int(i)]
            total += weights[Int(i)]
        }
        let target = parameters.topP * total
        var cum = 0.0, cut = buckets - 1
        for b in 0..<buckets {
            if cum + bucketMass[b] >= target {
                cut = b
                break
            }
            cum += bucketMass[b]
        }
        var head: [Int32] = [], boundary: [Int32] = []
        for i in kept {
            let b = bucket(i)
            if b < cut { head.append(i) } else if b == cut { boundary.append(i) }
        }
        boundary.sort { weights[Int($0)] > weights[Int($1)] || (weights[Int($0)] == weights[Int($1)] && $0 < $1) }
        for i in boundary {
            head.append(i)
            cum += weights[Int(i)]
            if cum >= target { break }
        }
        kept = head
    }
}
