import Support

/// Why a tokenizer.json cannot be used, or why an input or id cannot be processed.
public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Kind: Equatable, Sendable {
        /// The file could not be read.
        case unreadable(String)
        /// The file is not the JSON shape a tokenizer.json has.
        case malformed(String)
        /// A component HF `tokenizers` supports but this implementation cannot reproduce exactly.
        case unsupported(component: String, detail: String)
        /// Input bytes are not valid UTF-8 (HF `tokenizers` only accepts strings).
        case invalidUTF8(offset: Int)
        /// A token id outside the vocabulary was given to `decode`.
        case unknownId(UInt32)
    }

    /// The tokenizer.json the error concerns.
    public let path: String
    /// The failure.
    public let kind: Kind

    /// Creates an error for `path`.
    public init(path: String, _ kind: Kind) {
        self.path = path
        self.kind = kind
    }

    /// A message naming the file and the offending component.
    public var description: String {
        switch kind {
        case .unreadable(let why):
            return why == FileReadError.missing ? "no such file: \(path)" : "\(path): cannot read tokenizer: \(why)"
        case .malformed(let why):
            return
                "\(path): malformed \(path.hasSuffix("tokenizer_config.json") ? "tokenizer_config.json" : "tokenizer.json"): \(why)"
        case .unsupported(let component, let detail):
            return
                "\(path): unsupported \(component): \(detail) (refused rather than risk ids that differ from HF tokenizers)"
        case .invalidUTF8(let offset): return "\(path): input is not valid UTF-8 at byte \(offset)"
        case .unknownId(let id): return "\(path): token id \(id) is not in the vocabulary"
        }
    }
}
