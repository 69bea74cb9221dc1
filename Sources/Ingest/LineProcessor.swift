import CXXHash
import Format
import Support
import Tokenizers

/// Facts about a tokenizer that every ingest thread shares: token byte lengths (for steps in token space).
public final class IngestVocabulary: Sendable {
    /// The tokenizer.
    public let tokenizer: Tokenizer
    /// Decoded byte length of every id (0 for ids that decode to nothing).
    let byteLength: [Int32]
    /// Decoded bytes of every id, flattened (offsets in `byteStart`).
    let bytes: [UInt8]
    let byteStart: [Int]

    /// Tables for `tokenizer`.
    public init(_ tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        var lengths: [Int32] = []
        var flat: [UInt8] = []
        var starts: [Int] = []
        lengths.reserveCapacity(tokenizer.vocabSize)
        for id in 0..<tokenizer.vocabSize {
            let b = (try? tokenizer.decode([UInt32(id)])) ?? []
            starts.append(flat.count)
            flat.append(contentsOf: b)
            lengths.append(Int32(b.count))
        }
        starts.append(flat.count)
        byteLength = lengths
        bytes = flat
        byteStart = starts
    }
}

/// Why a line was refused: byte column (1-based) in the line and the reason.
public struct LineError: Error, Sendable {
    /// 1-based byte column.
    public var column: Int
    /// What is wrong.
    public var reason: String
}

/// Turns one JSONL line into a trajectory record. One per thread: it owns the JSON scanner, the encoder
/// and scratch buffers, which are reused from line to line.
public struct LineProcessor {
    let vocab: IngestVocabulary
    let options: IngestOptions
    var encoder: Encoder
    var scanner = JSONScanner()
    var scratch: [UInt8] = []
    var responseBytes: [UInt8] = []
    var stepOffsets: [Int] = []
    var stepText: [UInt8] = []
    var stepCuts: [Int] = []
    var keySpans: [KeySpan] = []
    var keyBytes: [UInt8] = []
    /// The one-trajectory batch behind `process(_:)`.
    var single = TrajectoryBatch()
    /// Single-byte delimiters only: which bytes delimit and which tokens hold them.
    let delimiters: SingleByteDelimiters?
    // This processor's own copies of what every line reads from the shared vocabulary and tokenizer (their
    // reference counts would bounce between the cores of the worker threads).
    let delimiterView: SingleByteDelimiters.View?
    let bos: [UInt32]
    let eos: UInt32?
    let vocabSize: Int

    /// A processor for `vocab` and `options`.
    public init(vocab: IngestVocabulary, options: IngestOptions) {
        self.init(vocab: vocab, options: options, delimiters: SingleByteDelimiters(vocab, options.stepDelimiters))
    }

    /// A processor sharing the delimiter tables of the other processors of one job.
    init(vocab: IngestVocabulary, options: IngestOptions, delimiters: SingleByteDelimiters?) {
        self.vocab = vocab
        self.options = options
        self.delimiters = delimiters
        delimiterView = delimiters?.view
        bos = vocab.tokenizer.templateIds.prefix.map { $0 }
        eos = vocab.tokenizer.eosId
        vocabSize = vocab.tokenizer.vocabSize
        encoder = vocab.tokenizer.makeEncoder(
            options: EncodeOptions(
                recognizeSpecialTokens: options.recognizeSpecialTokens,
                addSpecialTokens: false))
    }

    /// Parses and tokenizes `line`; the record's provenance fields are left for the caller.
    public mutating func process(_ line: UnsafeBufferPointer<UInt8>) throws(LineError) -> TrajectoryRecord {
        var batch = single
        single = TrajectoryBatch()
        defer { single = batch }
        batch.removeAll()
        try process(line, into: &batch, sourceLine: 0)
        return batch.record(0)
    }

    /// Parses and tokenizes `line` into the next trajectory of `batch`, with source line `sourceLine`; an
    /// invalid line throws and leaves the batch as it was.
    public mutating func process(
        _ line: UnsafeBufferPointer<UInt8>, into batch: inout TrajectoryBatch,
        sourceLine: UInt64
    ) throws(LineError) {
        do {
            try build(line, &batch, sourceLine)
            return
        } catch let e as JSONScanner.Failure {
            batch.rollBack()
            throw LineError(column: e.offset + 1, reason: e.reason)
        } catch let e as LineError {
            batch.rollBack()
            throw e
        } catch {
            batch.rollBack()
            throw LineError(column: 1, reason: "\(error)")
        }
    }

    /// The members of a trajectory line, found in one pass.
    struct Fields {
        var reward, prompt, response, steps, promptIDs, responseIDs, stepEnds, group, id, meta: Int?
    }

    /// The top-level members by key (escaped keys unescaped); a key given twice is refused, since readers
    /// disagree on which copy counts (Python's json keeps the last, others the first).
    private mutating func fields(_ root: Int, _ line: UnsafeBufferPointer<UInt8>) throws -> Fields {
        var f = Fields()
        keySpans.removeAll(keepingCapacity: true)
        keyBytes.removeAll(keepingCapacity: true)
        var k = scanner[root].firstChild
        while k >= 0 {
            let value = scanner[k].next
            let node = scanner[k]
            if node.escaped {
                let start = keyBytes.count
                try scanner.withText(k, in: line, scratch: &scratch) { keyBytes.append(contentsOf: $0) }
                keySpans.append(KeySpan(inLine: false, start: start, count: keyBytes.count - start, node: k))
            } else {
                keySpans.append(KeySpan(inLine: true, start: node.start, count: node.end - node.start, node: k))
            }
            k = scanner[value].next
        }
        try keyBytes.withUnsafeBufferPointer { side in
            func bytes(_ s: KeySpan) -> UnsafeBufferPointer<UInt8> {
                UnsafeBufferPointer(rebasing: (s.inLine ? line : side)[s.start..<(s.start + s.count)])
            }
            // Few keys: compare pairs; many (a hostile line): hash them.
            if keySpans.count <= 32 {
                for j in keySpans.indices {
                    let b = bytes(keySpans[j])
                    for i in 0..<j where keySpans[i].count == b.count && bytes(keySpans[i]).elementsEqual(b) {
                        throw fail(keySpans[j].node, "duplicate key '\(String(decoding: b, as: UTF8.self))'")
                    }
                }
            } else {
                var seen = Set<[UInt8]>()
                for span in keySpans where !seen.insert(Array(bytes(span))).inserted {
                    throw fail(span.node, "duplicate key '\(String(decoding: bytes(span), as: UTF8.self))'")
                }
            }
            for span in keySpans {
                let key = bytes(span)
                guard let base = key.baseAddress else { continue }
                let value = scanner[span.node].next
                func equals(_ name: StaticString) -> Bool { memEqual(base, name.utf8Start, key.count) }
                switch key.count {
                case 2: if equals("id") { f.id = value }
                case 4: if equals("meta") { f.meta = value }
                case 5: if equals("steps") { f.steps = value } else if equals("group") { f.group = value }
                case 6: if equals("reward") { f.reward = value } else if equals("prompt") { f.prompt = value }
                case 8: if equals("response") { f.response = value }
                case 9: if equals("step_ends") { f.stepEnds = value }
                case 10: if equals("prompt_ids") { f.promptIDs = value }
                case 12: if equals("response_ids") { f.responseIDs = value }
                default: break
                }
            }
        }
        return f
    }

    /// Where a top-level key's text is: in the line (unescaped keys) or in `keyBytes`.
    struct KeySpan {
        var inLine: Bool
        var start: Int, count: Int
        var node: Int
    }

    private func fail(_ node: Int?, _ reason: String) -> LineError {
        LineError(column: node.map { scanner[$0].start + 1 } ?? 1, reason: reason)
    }

    /// Prompt and response tokens go straight to the end of `batch.tokens`, step ends to `batch.stepEnds`.
    private mutating func build(
        _ line: UnsafeBufferPointer<UInt8>, _ batch: inout TrajectoryBatch, _ sourceLine: UInt64
    ) throws {
        let root = try scanner.parse(line)
        guard scanner[root].kind == .object else { throw fail(root, "a trajectory line must be a JSON object") }
        let field = try fields(root, line)

        guard let rewardNode = field.reward else { throw fail(root, "missing field 'reward'") }
        let reward: Float
        switch scanner[rewardNode].kind {
        case .true: reward = 1
        case .false: reward = 0
        case .number:
            let v = scanner.double(rewardNode, in: line) ?? .nan
            guard v.isFinite, Float(v).isFinite else { throw fail(rewardNode, "'reward' \(v) is not a finite number") }
            reward = Float(v)
        default: throw fail(rewardNode, "'reward' must be a number or a boolean")
        }

        let start = batch.openStart.tokens, stepStart = batch.openStart.steps
        precondition(
            batch.tokens.count == start && batch.stepEnds.count == stepStart, "a batch's open trajectory is not empty")
        var promptCount = 0
        var flags: TrajectoryFlags = []
        if let pIDs = field.promptIDs {
            for (f, node) in [("prompt", field.prompt), ("response", field.response), ("steps", field.steps)]
            where node != nil {
                throw fail(root, "'prompt_ids' and '\(f)' cannot both be given")
            }
            guard let rIDs = field.responseIDs else { throw fail(root, "missing field 'response_ids'") }
            try ids(pIDs, line, "prompt_ids", into: &batch.tokens)
            promptCount = batch.tokens.count - start
            // The first response token is predicted from the prompt, and a trajectory without response tokens
            // trains nothing: the data loader would skip either, so they are refused here, where the line is known.
            guard promptCount > 0 else {
                throw fail(pIDs, "'prompt_ids' is empty: a trajectory needs at least one prompt token")
            }
            try ids(rIDs, line, "response_ids", into: &batch.tokens)
            let responseCount = batch.tokens.count - start - promptCount
            guard responseCount > 0 else {
                throw fail(rIDs, "'response_ids' is empty: a trajectory needs at least one response token")
            }
            if let se = field.stepEnds {
                guard scanner[se].kind == .array else { throw fail(se, "'step_ends' must be an array of integers") }
                guard scanner[se].count > 0 else {
                    throw fail(
                        se,
                        "'step_ends' is empty: end the last step at the response length \(responseCount), or omit 'step_ends' to split at step delimiters"
                    )
                }
                var previous = 0
                for e in scanner.children(se) {
                    guard let v = scanner.integer(e, in: line), v > Int64(previous), v <= Int64(responseCount) else {
                        throw fail(e, "'step_ends' must increase and stay within the \(responseCount) response tokens")
                    }
                    previous = Int(v)
                    batch.stepEnds.append(UInt32(promptCount + previous))
                }
                // Tokens after the last step would belong to no step (and a typo in an end would go unnoticed).
                guard previous == responseCount else {
                    throw fail(
                        se,
                        "'step_ends' must end at the last response token: its last value is \(previous), the response has \(responseCount) tokens"
                    )
                }
            } else {
                delimiterSteps(
                    batch.tokens, from: start + promptCount, promptLength: promptCount, into: &batch.stepEnds)
            }
        } else {
            guard let pNode = field.prompt else {
                throw fail(root, "missing field 'prompt' (or 'prompt_ids' for pre-tokenized lines)")
            }
            guard scanner[pNode].kind == .string else { throw fail(pNode, "'prompt' must be a string") }
            if options.addBOS { batch.tokens.append(contentsOf: bos) }
            try encode(pNode, line, into: &batch.tokens)
            promptCount = batch.tokens.count - start
            guard promptCount > 0 else {
                throw fail(
                    pNode,
                    "'prompt' is empty and no BOS token precedes it: a trajectory needs at least one prompt token")
            }
            switch (field.response, field.steps) {
            case (let r?, nil):
                guard scanner[r].kind == .string else { throw fail(r, "'response' must be a string") }
                try encode(r, line, into: &batch.tokens)
                delimiterSteps(
                    batch.tokens, from: start + promptCount, promptLength: promptCount, into: &batch.stepEnds)
            case (nil, let s?):
                try explicitSteps(s, line, prompt: promptCount, tokens: &batch.tokens, into: &batch.stepEnds)
            case (nil, nil): throw fail(root, "missing field 'response' (or 'steps')")
            default: throw fail(root, "'response' and 'steps' cannot both be given")
            }
            let lastResponse = batch.tokens.count > start + promptCount ? batch.tokens.last : nil
            if let eos, options.eos != .never, options.eos == .always || lastResponse != eos {
                batch.tokens.append(eos)
                flags.insert(.eosAppended)
                let total = batch.tokens.count - start
                if batch.stepEnds.count > stepStart, let last = batch.stepEnds.last, Int(last) == total - 1 {
                    batch.stepEnds[batch.stepEnds.count - 1] += 1
                } else {
                    batch.stepEnds.append(UInt32(total))
                }
            } else if options.eos == .always {
                throw fail(root, "--eos always, but the tokenizer has no EOS token")
            }
            guard batch.tokens.count > start + promptCount else {
                throw fail(
                    field.response ?? field.steps,
                    "the response is empty (and no EOS is appended): a trajectory needs at least one response token")
            }
        }

        let total = batch.tokens.count - start
        if options.maxLength > 0 && total > options.maxLength {
            guard promptCount < options.maxLength else {
                throw fail(root, "the prompt alone has \(promptCount) tokens, --max-length is \(options.maxLength)")
            }
            batch.tokens.removeLast(total - options.maxLength)
            flags.insert(.truncated)
            flags.remove(.eosAppended)
            let end = UInt32(options.maxLength)
            var kept = stepStart
            for j in stepStart..<batch.stepEnds.count where batch.stepEnds[j] < end {
                batch.stepEnds[kept] = batch.stepEnds[j]
                kept += 1
            }
            batch.stepEnds.removeSubrange(kept...)
            if options.maxLength > promptCount { batch.stepEnds.append(end) }
        }

        let group: UInt64
        if let g = field.group {
            switch scanner[g].kind {
            case .number:
                guard let v = scanner.integer(g, in: line), v >= 0 else {
                    throw fail(g, "'group' must be a non-negative integer or a string")
                }
                group = UInt64(v)
            case .string:
                group = try scanner.withText(g, in: line, scratch: &scratch) { oreo_xxh3_64($0.baseAddress, $0.count) }
            default: throw fail(g, "'group' must be a non-negative integer or a string")
            }
        } else {
            group = batch.tokens.withUnsafeBytes { all in
                let size = MemoryLayout<UInt32>.stride
                return oreo_xxh3_64(all.baseAddress.map { $0 + start * size }, promptCount * size)
            }
        }

        let idNode = field.id, metaNode = field.meta
        if idNode != nil || metaNode != nil {
            batch.meta.append(UInt8(ascii: "{"))
            if let idNode { batch.meta += Array("\"id\":".utf8) + scanner.rawBytes(idNode, in: line) }
            if let metaNode {
                if idNode != nil { batch.meta.append(UInt8(ascii: ",")) }
                batch.meta += Array("\"meta\":".utf8) + scanner.rawBytes(metaNode, in: line)
            }
            batch.meta.append(UInt8(ascii: "}"))
        }
        batch.commit(promptLength: promptCount, reward: reward, group: group, flags: flags, sourceLine: sourceLine)
    }

    private mutating func encode(_ node: Int, _ line: UnsafeBufferPointer<UInt8>, into ids: inout [UInt32]) throws {
        // The scanner has validated the string's UTF-8 (and unescaping only writes whole scalars), so the
        // encoder's own validation pass is skipped.
        try scanner.withText(node, in: line, scratch: &scratch) { encoder.encodeValid($0, &ids) }
    }

    private func ids(_ node: Int, _ line: UnsafeBufferPointer<UInt8>, _ name: String, into out: inout [UInt32]) throws {
        guard scanner[node].kind == .array else { throw fail(node, "'\(name)' must be an array of token ids") }
        let limit = Int64(vocabSize)
        var c = scanner[node].firstChild
        while c >= 0 {
            guard let v = scanner.integer(c, in: line), v >= 0, v < limit else {
                throw fail(c, "'\(name)' holds something that is not a token id below the vocabulary size \(limit)")
            }
            out.append(UInt32(v))
            c = scanner[c].next
        }
    }

    /// Step ends where a run of delimiters ends in the response's token bytes (`tokens[from...]`), moved back
    /// to the last token boundary at or before it; the response end closes the last step.
    mutating func delimiterSteps(_ tokens: [UInt32], from: Int, promptLength: Int, into ends: inout [UInt32]) {
        tokens.withUnsafeBufferPointer { all in
            let response = UnsafeBufferPointer(rebasing: all[from...])
            if let delimiterView {
                SingleByteDelimiters.steps(response, promptLength: promptLength, delimiterView, into: &ends)
            } else {
                multiByteDelimiterSteps(response, promptLength: promptLength, into: &ends)
            }
        }
    }

    private mutating func multiByteDelimiterSteps(
        _ response: UnsafeBufferPointer<UInt32>, promptLength: Int,
        into ends: inout [UInt32]
    ) {
        responseBytes.removeAll(keepingCapacity: true)
        stepOffsets.removeAll(keepingCapacity: true)
        for id in response {
            let i = Int(id)
            responseBytes.append(contentsOf: vocab.bytes[vocab.byteStart[i]..<vocab.byteStart[i + 1]])
            stepOffsets.append(responseBytes.count)  // token ends, cumulative
        }
        var lastToken = 0
        var p = 0
        let delims = options.stepDelimiters.filter { !$0.isEmpty }
        var runEnd = -1
        func close(at byte: Int) {
            // Largest token boundary <= byte.
            var lo = 0, hi = stepOffsets.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if stepOffsets[mid] <= byte { lo = mid + 1 } else { hi = mid }
            }
            if lo > lastToken {
                ends.append(UInt32(promptLength + lo))
                lastToken = lo
            }
        }
        while p < responseBytes.count {
            var matched = 0
            for d in delims where p + d.count <= responseBytes.count {
                var ok = true
                for k in 0..<d.count where responseBytes[p + k] != d[k] {
                    ok = false
                    break
                }
                if ok { matched = max(matched, d.count) }
            }
            if matched > 0 {
                p += matched
                runEnd = p
            } else {
                if runEnd >= 0 {
                    close(at: runEnd)
                    runEnd = -1
                }
                p += 1
            }
        }
        if response.count > lastToken { ends.append(UInt32(promptLength + response.count)) }
    }

    /// Encodes a `steps` array joined with the configured separator onto `tokens`; each step ends at the last
    /// token boundary at or before the end of its text (and separator).
    private mutating func explicitSteps(
        _ node: Int, _ line: UnsafeBufferPointer<UInt8>, prompt: Int,
        tokens: inout [UInt32], into ends: inout [UInt32]
    ) throws {
        guard scanner[node].kind == .array else { throw fail(node, "'steps' must be an array of strings") }
        guard scanner[node].count > 0 else {
            throw fail(node, "'steps' is empty: a trajectory needs at least one step")
        }
        stepText.removeAll(keepingCapacity: true)
        stepCuts.removeAll(keepingCapacity: true)
        var item = scanner[node].firstChild
        while item >= 0 {
            guard scanner[item].kind == .string else { throw fail(item, "every element of 'steps' must be a string") }
            try scanner.withText(item, in: line, scratch: &scratch) { stepText.append(contentsOf: $0) }
            if scanner[item].next >= 0 { stepText.append(contentsOf: options.stepJoin) }
            stepCuts.append(stepText.count)
            item = scanner[item].next
        }
        let responseStart = tokens.count
        try stepText.withUnsafeBytes { try encoder.encode(bytes: $0, into: &tokens) }
        var decodedLength = 0
        stepOffsets.removeAll(keepingCapacity: true)
        for id in tokens[responseStart...] {
            decodedLength += Int(vocab.byteLength[Int(id)])
            stepOffsets.append(decodedLength)
        }
        guard decodedLength == stepText.count else {
            throw fail(
                node,
                "the tokenizer's normalizer changed the step text, so step boundaries cannot be placed; give 'response' with step delimiters instead"
            )
        }
        var last = 0
        for cut in stepCuts {
            var lo = 0, hi = stepOffsets.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if stepOffsets[mid] <= cut { lo = mid + 1 } else { hi = mid }
            }
            if lo > last {
                ends.append(UInt32(prompt + lo))
                last = lo
            }
        }
    }
}

/// Single-byte step delimiters (the default, newline): which bytes delimit, and per token whether none, all
/// or some of its bytes do, so step ends come from the token ids without their bytes. Built once per job.
final class SingleByteDelimiters: Sendable {
    let byte: FrozenBuffer<Bool>
    /// 0, 1 or 2 per token: none, all or some of its bytes delimit.
    let kinds: FrozenBuffer<UInt8>
    /// One bit per token, set when its kind is not 0: small enough for the first-level cache.
    let any: FrozenBuffer<UInt64>
    /// Token bytes, flattened (token `t` is `bytes[byteStart[t] ..< byteStart[t + 1]]`).
    let bytes: FrozenBuffer<UInt8>
    let byteStart: FrozenBuffer<Int>

    /// The tables for `delimiters`, or nil when one of them is longer than a byte.
    init?(_ vocab: IngestVocabulary, _ delimiters: [[UInt8]]) {
        let delims = delimiters.filter { !$0.isEmpty }
        guard delims.allSatisfy({ $0.count == 1 }) else { return nil }
        var table = [Bool](repeating: false, count: 256)
        for d in delims { table[Int(d[0])] = true }
        var kinds = [UInt8](repeating: 0, count: vocab.byteLength.count)
        var bits = [UInt64](repeating: 0, count: (kinds.count + 63) / 64)
        vocab.bytes.withUnsafeBufferPointer { bytes in
            for id in kinds.indices {
                var some = false, all = true
                for i in vocab.byteStart[id]..<vocab.byteStart[id + 1] {
                    if table[Int(bytes[i])] { some = true } else { all = false }
                }
                kinds[id] = some ? (all ? 1 : 2) : 0
                if some { bits[id >> 6] |= 1 << UInt64(id & 63) }
            }
        }
        byte = FrozenBuffer(table)
        self.kinds = FrozenBuffer(kinds)
        any = FrozenBuffer(bits)
        bytes = FrozenBuffer(vocab.bytes)
        byteStart = FrozenBuffer(vocab.byteStart)
    }

    /// Plain pointers to the tables, valid while this object lives.
    struct View {
        let byte: UnsafePointer<Bool>, kinds: UnsafePointer<UInt8>, any: UnsafePointer<UInt64>
        let bytes: UnsafePointer<UInt8>, byteStart: UnsafePointer<Int>
    }

    var view: View {
        View(
            byte: byte.pointer, kinds: kinds.pointer, any: any.pointer, bytes: bytes.pointer,
            byteStart: byteStart.pointer)
    }

    /// Appends the step ends of `response` (ids below the vocabulary size the tables were built for): a run of
    /// delimiters ends at the first non-delimiter byte after it, and the step ends before the token holding
    /// that byte; the response end closes the last step.
    static func steps(_ response: UnsafeBufferPointer<UInt32>, promptLength: Int, _ d: View, into ends: inout [UInt32])
    {
        var lastToken = 0
        var inRun = false
        @inline(__always) func holds(_ t: Int) -> Bool { d.any[t &>> 6] &>> UInt64(t & 63) & 1 != 0 }
        let n = response.count
        var k = 0
        while k < n {
            // Outside a run, tokens without a delimiter byte change nothing.
            if !inRun {
                while k < n && !holds(Int(response[k])) { k &+= 1 }
                if k == n { break }
            }
            let t = Int(response[k])
            switch holds(t) ? d.kinds[t] : 0 {
            case 0:
                if k > lastToken {
                    ends.append(UInt32(promptLength + k))
                    lastToken = k
                }
                inRun = false
            case 1:
                inRun = true
            default:
                for i in d.byteStart[t]..<d.byteStart[t + 1] {
                    if d.byte[Int(d.bytes[i])] {
                        inRun = true
                    } else if inRun {
                        if k > lastToken {
                            ends.append(UInt32(promptLength + k))
                            lastToken = k
                        }
                        inRun = false
                    }
                }
            }
            k &+= 1
        }
        if n > lastToken { ends.append(UInt32(promptLength + n)) }
    }
}
