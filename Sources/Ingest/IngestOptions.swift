import Format
import Support

/// What to do with a line that is not a valid trajectory.
public enum InvalidLinePolicy: String, Sendable, CaseIterable {
    /// Stop at the first invalid line with `file:line:column: reason`.
    case fail
    /// Copy the line with its reason into `DATASET/rejects.jsonl` and go on.
    case skip
}

/// When to append the tokenizer's EOS token to text responses.
public enum EOSPolicy: String, Sendable, CaseIterable {
    /// Append unless the response already ends with EOS (or the tokenizer has none).
    case auto
    /// Always append (fails when the tokenizer has no EOS).
    case always
    /// Never append.
    case never
}

/// How trajectory lines become token sequences; everything here is recorded in the dataset's manifest.
public struct IngestOptions: Sendable, Equatable {
    /// Longest trajectory in tokens (prompt + response); longer responses are cut and flagged. 0: no limit.
    public var maxLength: Int = 0
    /// Invalid lines: stop, or skip into rejects.jsonl.
    public var onInvalid: InvalidLinePolicy = .fail
    /// Step delimiters, matched in the response's token bytes (default: newline).
    public var stepDelimiters: [[UInt8]] = [[0x0A]]
    /// Text put between the elements of a `steps` array to form the response.
    public var stepJoin: [UInt8] = [0x0A]
    /// EOS handling for text responses (pre-tokenized ids are kept verbatim).
    public var eos: EOSPolicy = .auto
    /// Put the tokenizer's template prefix (BOS) before text prompts, as HF `add_special_tokens=True` does.
    public var addBOS: Bool = true
    /// Whether special tokens written literally in prompt or response text become control tokens (HF's
    /// default) or are encoded as plain text (safer for untrusted text).
    public var recognizeSpecialTokens: Bool = true

    /// Defaults: no length limit, fail on invalid lines, newline steps, EOS auto, BOS, special tokens recognized.
    public init() {}

    /// The options as manifest properties (and the key a resumed run must match).
    public var properties: [String: String] {
        [
            "ingest.max_length": String(maxLength),
            "ingest.step_delimiters": stepDelimiters.map { escapeForDisplay($0) }.joined(separator: " | "),
            "ingest.step_join": escapeForDisplay(stepJoin),
            "ingest.eos": eos.rawValue,
            "ingest.bos": addBOS ? "template" : "none",
            "ingest.special_tokens_in_text": recognizeSpecialTokens ? "control" : "text",
            "ingest.on_invalid": onInvalid.rawValue,
        ]
    }
}

/// Bytes shown with \n, \t, \r and \\ escaped (for manifests and messages).
func escapeForDisplay(_ b: [UInt8]) -> String {
    var s = ""
    for scalar in String(decoding: b, as: UTF8.self).unicodeScalars {
        switch scalar {
        case "\n": s += "\\n"
        case "\t": s += "\\t"
        case "\r": s += "\\r"
        case "\\": s += "\\\\"
        default: s.unicodeScalars.append(scalar)
        }
    }
    return s
}

/// Parses a delimiter written with \n, \t, \r, \\ escapes.
public func unescapeDelimiter(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = Array(s.utf8).makeIterator()
    while let c = it.next() {
        guard c == UInt8(ascii: "\\"), let e = it.next() else {
            out.append(c)
            continue
        }
        switch e {
        case UInt8(ascii: "n"): out.append(0x0A)
        case UInt8(ascii: "t"): out.append(0x09)
        case UInt8(ascii: "r"): out.append(0x0D)
        default: out.append(e)
        }
    }
    return out
}
