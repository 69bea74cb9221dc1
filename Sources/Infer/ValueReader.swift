import Foundation
import Train

/// Reads a value network along given trajectories: V(s) at the last token of each requested state, through
/// the KV-cached decoder (so a model loaded for inference, with no training buffers, can do it).
public final class ValueReader {
    /// The value model.
    public let model: TransformerModel
    private var decoder: IncrementalDecoder?

    /// A reader for `model` (which must have a value head).
    public init(model: TransformerModel) throws {
        guard model.hasValueHead else { throw InferError.invalid("the model has no value head") }
        self.model = model
    }

    /// For each trajectory i: V at the prompt's last token (the state s_0), then at the last token of
    /// prompt + response[0..<e] for every e in `ends[i]` (response-token counts, 0...response count), so
    /// `result[i].count == ends[i].count + 1`. Trajectories are decoded `batch` at a time.
    public func values(prompts: [[Int32]], responses: [[Int32]], ends: [[Int]], batch: Int = 8) throws -> [[Double]] {
        guard prompts.count == responses.count, prompts.count == ends.count else {
            throw InferError.invalid(
                "values: \(prompts.count) prompts, \(responses.count) responses, \(ends.count) end lists")
        }
        for i in prompts.indices {
            guard !prompts[i].isEmpty else { throw InferError.invalid("values: trajectory \(i) has an empty prompt") }
            for e in ends[i] where e < 0 || e > responses[i].count {
                throw InferError.invalid("values: trajectory \(i): end \(e) outside 0...\(responses[i].count)")
            }
        }
        let longest = zip(prompts, responses).map { $0.count + $1.count }.max() ?? 1
        guard longest <= model.config.maxPositions else {
            throw InferError.invalid(
                "values: a trajectory of \(longest) tokens exceeds the model's \(model.config.maxPositions) positions")
        }
        let b = max(1, min(batch, prompts.count))
        if decoder == nil || decoder!.maxSequences < b || decoder!.maxLength < longest {
            decoder = nil
            decoder = try IncrementalDecoder(model: model, maxSequences: b, maxLength: longest)
        }
        let dec = decoder!
        var out: [[Double]] = []
        var v: [Float] = []
        var start = 0
        while start < prompts.count {
            let idx = Array(start..<min(start + b, prompts.count))
            dec.releaseAll()
            try dec.extend(
                Array(0..<idx.count), idx.map { prompts[$0] + responses[$0] }, values: &v, allPositions: true)
            var offset = 0
            for i in idx {
                let p = prompts[i].count
                out.append([Double(v[offset + p - 1])] + ends[i].map { Double(v[offset + p + $0 - 1]) })
                offset += p + responses[i].count
            }
            start += idx.count
        }
        return out
    }
}
