import Support

/// The pre-tokenizer regexes this implementation reproduces, identified by their exact pattern text.
enum RegexFamily: Sendable, Equatable {
    /// GPT-2: `'s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (also ByteLevel use_regex).
    case gpt2
    /// Llama-3 and cl100k: case-insensitive contractions, `\p{N}{1,3}`, newline runs apart.
    case llama3
    /// Qwen2: the Llama-3 pattern with single digits `\p{N}`.
    case qwen2

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The family whose pattern is exactly `pattern`, or nil.
    init?(pattern: String) {
        switch pattern {
        case RegexFamily.gpt2Pattern: self = .gpt2
        case RegexFamily.llama3Pattern: self = .llama3
        case RegexFamily.qwen2Pattern: self = .qwen2
        default: return nil
        }
    }
}

/// One pre-tokenization step: splits a range of text into contiguous pieces.
enum PreTokenizerStep: Sendable, Equatable {
    /// A `Split` (Isolated) with a known regex, or `ByteLevel(use_regex: true)` for GPT-2.
    case regex(RegexFamily)
    /// `Digits`: each numeric character alone, or runs of them, isolated.
    case digits(individual: Bool)

    /// The small integer the splitter switches on.
    var code: UInt8 {
        switch self {
        case .regex(.gpt2): return 0
        case .regex(.llama3): return 1
        case .regex(.qwen2): return 2
        case .digits(let individual): return individual ? 3 : 4
        }
    }
}
