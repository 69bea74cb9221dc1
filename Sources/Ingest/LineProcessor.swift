import CXXHash
import Format

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
    var promptScratch: [UInt32] = []
    var responseScratch: [UInt32] = []
    var stepOffsets: [Int] = []
    /// Single-byte delimiters only: which bytes delimit, and per token whether it holds any of them.
    let delimiterByte: [Bool]?
    let tokenHasDelimiter: [Bool]

    /// A processor for `vocab` and `options`.
    public init(vocab: IngestVocabulary, options: IngestOptions) {
        self.vocab = vocab
        self.options = options
        let delims = options.stepDelimiters.filter { !$0.isEmpty }
        if delims.allSatisfy({ $0.count == 1 }) {
            var table = [Bool](repeating: false, count: 256)
            for d in delims { table[Int(d[0])] = true }
            delimiterByte = table
            tokenHasDelimiter = (0..<vocab.byteLength.count).map { id in
                vocab.bytes[vocab.byteStart[id]..<vocab.byteStart[id + 1]].contains { table[Int($0)] }
            }
        } else {
            delimiterByte = nil
            tokenHasDelimiter = []
        }
        encoder = vocab.tokenizer.makeEncoder(options: EncodeOptions(recognizeSpecialTokens: options.recognizeSpecialTokens,
                                                                     addSpecialTokens: false))
    }

    /// Parses and tokenizes `line`; the record's provenance fields are left for the caller.
    public mutating func process(_ line: UnsafeBufferPointer<UInt8>) throws(LineError) -> TrajectoryRecord {
        do {
            return try build(line)
        } catch let e as JSONScanner.Failure {
            throw LineError(column: e.offset + 1, reason: e.reason)
        } catch let e as LineError {
            throw e
        } catch {
            throw LineError(column: 1, reason: "\(error)")
        }
    }

    private func fail(_ node: Int?, _ reason: String) -> LineError {
        LineError(column: node.map { scanner[$0].start + 1 } ?? 1, reason: reason)
    }

    private mutating func build(_ line: UnsafeBufferPointer<UInt8>) throws -> TrajectoryRecord {
        let root = try scanner.parse(line)
        guard scanner[root].kind == .object else { throw fail(root, "a trajectory line must be a JSON object") }

        guard let rewardNode = scanner.member(root, "reward") else { throw fail(root, "missing field 'reward'") }
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

        // Prompt and response ids go to buffers kept from line to line (taken out of self for the duration,
        // so the mutating helpers below can fill them); the record gets one exactly sized array.
        var prompt = promptScratch, response = responseScratch
        promptScratch = []; responseScratch = []
        prompt.removeAll(keepingCapacity: true); response.removeAll(keepingCapacity: true)
        defer { promptScratch = prompt; responseScratch = response }
        var stepEnds: [UInt32] = []
        var flags: TrajectoryFlags = []
        if let pIDs = scanner.member(root, "prompt_ids") {
            for (f, node) in [("prompt", scanner.member(root, "prompt")), ("response", scanner.member(root, "response")),
                              ("steps", scanner.member(root, "steps"))] where node != nil {
                throw fail(root, "'prompt_ids' and '\(f)' cannot both be given")
            }
            guard let rIDs = scanner.member(root, "response_ids") else { throw fail(root, "missing field 'response_ids'") }
            prompt = try ids(pIDs, line, "prompt_ids")
            response = try ids(rIDs, line, "response_ids")
            if let se = scanner.member(root, "step_ends") {
                guard scanner[se].kind == .array else { throw fail(se, "'step_ends' must be an array of integers") }
                var previous = 0
                for e in scanner.children(se) {
                    guard let v = scanner.integer(e, in: line), v > Int64(previous), v <= Int64(response.count) else {
                        throw fail(e, "'step_ends' must increase and stay within the \(response.count) response tokens")
                    }
                    previous = Int(v)
                    stepEnds.append(UInt32(prompt.count + previous))
                }
            } else {
                stepEnds = delimiterSteps(response, promptLength: prompt.count)
            }
        } else {
            guard let pNode = scanner.member(root, "prompt") else {
                throw fail(root, "missing field 'prompt' (or 'prompt_ids' for pre-tokenized lines)")
            }
            guard scanner[pNode].kind == .string else { throw fail(pNode, "'prompt' must be a string") }
            if options.addBOS { prompt.append(contentsOf: vocab.tokenizer.templateIds.prefix) }
            try encode(pNode, line, into: &prompt)
            let rNode = scanner.member(root, "response")
            let sNode = scanner.member(root, "steps")
            switch (rNode, sNode) {
            case (let r?, nil):
                guard scanner[r].kind == .string else { throw fail(r, "'response' must be a string") }
                try encode(r, line, into: &response)
                stepEnds = delimiterSteps(response, promptLength: prompt.count)
            case (nil, let s?):
                stepEnds = try explicitSteps(s, line, prompt: prompt.count, into: &response)
            case (nil, nil): throw fail(root, "missing field 'response' (or 'steps')")
            default: throw fail(root, "'response' and 'steps' cannot both be given")
            }
            if let eos = vocab.tokenizer.eosId, options.eos != .never, options.eos == .always || response.last != eos {
                response.append(eos)
                flags.insert(.eosAppended)
                if let last = stepEnds.last, Int(last) == prompt.count + response.count - 1 {
                    stepEnds[stepEnds.count - 1] += 1
                } else {
                    stepEnds.append(UInt32(prompt.count + response.count))
                }
            } else if options.eos == .always {
                throw fail(root, "--eos always, but the tokenizer has no EOS token")
            }
        }

        if options.maxLength > 0 && prompt.count + response.count > options.maxLength {
            guard prompt.count < options.maxLength else {
                throw fail(root, "the prompt alone has \(prompt.count) tokens, --max-length is \(options.maxLength)")
            }
            response.removeLast(prompt.count + response.count - options.maxLength)
            flags.insert(.truncated)
            flags.remove(.eosAppended)
            let end = UInt32(options.maxLength)
            stepEnds = stepEnds.filter { $0 < end }
            if response.count > 0 { stepEnds.append(end) }
        }

        let group: UInt64
        if let g = scanner.member(root, "group") {
            switch scanner[g].kind {
            case .number:
                guard let v = scanner.integer(g, in: line), v >= 0 else { throw fail(g, "'group' must be a non-negative integer or a string") }
                group = UInt64(v)
            case .string:
                group = try scanner.withText(g, in: line, scratch: &scratch) { oreo_xxh3_64($0.baseAddress, $0.count) }
            default: throw fail(g, "'group' must be a non-negative integer or a string")
            }
        } else {
            group = prompt.withUnsafeBytes { oreo_xxh3_64($0.baseAddress, $0.count) }
        }

        var meta: [UInt8] = []
        let idNode = scanner.member(root, "id")
        let metaNode = scanner.member(root, "meta")
        if idNode != nil || metaNode != nil {
            meta = Array("{".utf8)
            if let idNode { meta += Array("\"id\":".utf8) + scanner.rawBytes(idNode, in: line) }
            if let metaNode {
                if idNode != nil { meta.append(UInt8(ascii: ",")) }
                meta += Array("\"meta\":".utf8) + scanner.rawBytes(metaNode, in: line)
            }
            meta.append(UInt8(ascii: "}"))
        }
        var tokens: [UInt32] = []
        tokens.reserveCapacity(prompt.count + response.count)
        tokens.append(contentsOf: prompt)
        tokens.append(contentsOf: response)
        return TrajectoryRecord(tokens: tokens, promptLength: prompt.count, reward: reward, group: group,
                                stepEnds: stepEnds, flags: flags, meta: meta)
    }

    private mutating func encode(_ node: Int, _ line: UnsafeBufferPointer<UInt8>, into ids: inout [UInt32]) throws {
        // The scanner has validated the string's UTF-8 (and unescaping only writes whole scalars), so the
        // encoder's own validation pass is skipped.
        try scanner.withText(node, in: line, scratch: &scratch) { encoder.encodeValid($0, &ids) }
    }

    private func ids(_ node: Int, _ line: UnsafeBufferPointer<UInt8>, _ name: String) throws -> [UInt32] {
        guard scanner[node].kind == .array else { throw fail(node, "'\(name)' must be an array of token ids") }
        var out: [UInt32] = []
        out.reserveCapacity(scanner[node].count)
        let limit = Int64(vocab.tokenizer.vocabSize)
        for c in scanner.children(node) {
            guard let v = scanner.integer(c, in: line), v >= 0, v < limit else {
                throw fail(c, "'\(name)' holds something that is not a token id below the vocabulary size \(limit)")
            }
            out.append(UInt32(v))
        }
        return out
    }

    /// Step ends where a run of delimiters ends in the response's token bytes, moved back to the last token
    /// boundary at or before it; the response end closes the last step.
    mutating func delimiterSteps(_ response: [UInt32], promptLength: Int) -> [UInt32] {
        if let table = delimiterByte { return singleByteDelimiterSteps(response, promptLength: promptLength, table) }
        responseBytes.removeAll(keepingCapacity: true)
        stepOffsets.removeAll(keepingCapacity: true)
        for id in response {
            let i = Int(id)
            responseBytes.append(contentsOf: vocab.bytes[vocab.byteStart[i]..<vocab.byteStart[i + 1]])
            stepOffsets.append(responseBytes.count)  // token ends, cumulative
        }
        var ends: [UInt32] = []
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
                for k in 0..<d.count where responseBytes[p + k] != d[k] { ok = false; break }
                if ok { matched = max(matched, d.count) }
            }
            if matched > 0 {
                p += matched
                runEnd = p
            } else {
                if runEnd >= 0 { close(at: runEnd); runEnd = -1 }
                p += 1
            }
        }
        if response.count > lastToken { ends.append(UInt32(promptLength + response.count)) }
        return ends
    }

    /// The same rule for single-byte delimiters, without materializing the response bytes: a run ends at the
    /// first non-delimiter byte after it, and the step ends before the token holding that byte.
    private func singleByteDelimiterSteps(_ response: [UInt32], promptLength: Int, _ table: [Bool]) -> [UInt32] {
        var ends: [UInt32] = []
        ends.reserveCapacity(16)
        var lastToken = 0
        var inRun = false
        vocab.bytes.withUnsafeBufferPointer { bytes in
            for (k, id) in response.enumerated() {
                let t = Int(id)
                if !tokenHasDelimiter[t] {
                    if inRun {
                        if k > lastToken { ends.append(UInt32(promptLength + k)); lastToken = k }
                        inRun = false
                    }
                    continue
                }
                for i in vocab.byteStart[t]..<vocab.byteStart[t + 1] {
                    if table[Int(bytes[i])] {
                        inRun = true
                    } else if inRun {
                        if k > lastToken { ends.append(UInt32(promptLength + k)); lastToken = k }
                        inRun = false
                    }
                }
            }
        }
        if response.count > lastToken { ends.append(UInt32(promptLength + response.count)) }
        return ends
    }

    /// Encodes a `steps` array joined with the configured separator; each step ends at the last token
    /// boundary at or before the end of its text (and separator).
    private mutating func explicitSteps(_ node: Int, _ line: UnsafeBufferPointer<UInt8>, prompt: Int,
                                        into response: inout [UInt32]) throws -> [UInt32] {
        guard scanner[node].kind == .array else { throw fail(node, "'steps' must be an array of strings") }
        var text: [UInt8] = []
        var cuts: [Int] = []
        let items = scanner.children(node)
        for (k, item) in items.enumerated() {
            guard scanner[item].kind == .string else { throw fail(item, "every element of 'steps' must be a string") }
            try scanner.withText(item, in: line, scratch: &scratch) { text.append(contentsOf: $0) }
            if k + 1 < items.count { text.append(contentsOf: options.stepJoin) }
            cuts.append(text.count)
        }
        try text.withUnsafeBytes { try encoder.encode(bytes: $0, into: &response) }
        var decodedLength = 0
        var tokenEnds: [Int] = []
        for id in response {
            decodedLength += Int(vocab.byteLength[Int(id)])
            tokenEnds.append(decodedLength)
        }
        guard decodedLength == text.count else {
            throw fail(node, "the tokenizer's normalizer changed the step text, so step boundaries cannot be placed; give 'response' with step delimiters instead")
        }
        var ends: [UInt32] = []
        var last = 0
        for cut in cuts {
            var lo = 0, hi = tokenEnds.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if tokenEnds[mid] <= cut { lo = mid + 1 } else { hi = mid }
            }
            if lo > last { ends.append(UInt32(prompt + lo)); last = lo }
        }
        return ends
    }
}
