import Support

/// The character classes the byte-level regexes distinguish, as Oniguruma (HF tokenizers) defines them.
enum ScalarClass {
    /// Anything not a letter, number or whitespace: `[^\s\p{L}\p{N}]`.
    static let other: UInt8 = 0
    /// `\p{L}`: general categories Lu, Ll, Lt, Lm, Lo.
    static let letter: UInt8 = 1
    /// `\p{N}`: Nd, Nl, No (also Rust's `char::is_numeric`, which the Digits pre-tokenizer uses).
    static let number: UInt8 = 2
    /// `\s` other than CR and LF: U+0009, U+000B, U+000C, U+0085 and Zs/Zl/Zp.
    static let space: UInt8 = 3
    /// CR or LF, which the Llama-3 family treats apart from other whitespace.
    static let newline: UInt8 = 4

    /// Classifies one scalar from the Unicode tables of the standard library.
    /// Never inlined: inlined, its metadata set-up would run on every call of the hot splitters.
    @inline(never)
    static func compute(_ value: UInt32) -> UInt8 {
        if value == 0x0A || value == 0x0D { return newline }
        // Oniguruma's \s is these controls plus Zs/Zl/Zp, which is also Unicode's White_Space set.
        if (0x09...0x0C).contains(value) || value == 0x85 { return space }
        guard let scalar = Unicode.Scalar(value) else { return other }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        case .spaceSeparator, .lineSeparator, .paragraphSeparator: return space
        default: return other
        }
    }

    /// Scalars below this have their class in `table`.
    static let tableLimit: UInt32 = 0x20000

    /// Classes of the first two planes (BMP and emoji), built once on first use and never freed.
    static let table = FrozenBuffer((0..<Int(tableLimit)).map { compute(UInt32($0)) })

    /// The class of a scalar value.
    static func of(_ value: UInt32) -> UInt8 {
        value < tableLimit ? table.pointer[Int(value)] : compute(value)
    }

    /// Whether a scalar is whitespace (`\s`, Rust `char::is_whitespace`).
    @inline(__always)
    static func isWhitespace(_ value: UInt32) -> Bool { of(value) >= space }

    /// Rust regex `\w`: Alphabetic, marks, decimal digits, connector punctuation, join controls.
    static func isWordCharacter(_ value: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(value) else { return false }
        let p = scalar.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
