import Support

/// Hand-written equivalents of the pre-tokenizer regexes over UTF-8 bytes.
///
/// Each function returns where the piece that starts at `i` ends. Every character is matched by
/// some alternative of these patterns, so a split is just a walk of consecutive pieces, and a
/// piece never looks past `end` (HF runs the regex on each split separately).
enum Splitter {
    /// End of the piece starting at `i` for the step with code `step` (`PreTokenizerStep.code`).
    @inline(__always)
    static func pieceEnd(
        _ step: UInt8, _ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ ct: UnsafePointer<UInt8>
    ) -> Int {
        switch step {
        case 0: return gpt2(b, i, end, ct)
        case 1: return llama3(b, i, end, maxDigits: 3, ct)
        case 2: return llama3(b, i, end, maxDigits: 1, ct)
        default: return digits(b, i, end, individual: step == 3, ct)
        }
    }

    /// End of the piece at `i` when it is one of the common ASCII shapes of the GPT-2 (`step` 0), Llama-3 (1)
    /// or Qwen2 (2) regex, else -1 (the general splitter decides). The shapes, and why no earlier
    /// alternative of the regex can match them:
    /// - ASCII letters, then any letters: only contractions come first, and they start with an apostrophe.
    /// - One glue byte and ASCII letters (GPT-2: a space; the others: an ASCII space or symbol other than
    ///   CR, LF and the apostrophe): the optional prefix of `?\p{L}+`, with contractions ruled out.
    /// - An ASCII symbol (not the apostrophe) or a space before one, not followed by a letter: the symbol
    ///   run of ` ?[^\s\p{L}\p{N}]+`, and for Llama-3 and Qwen2 the CR/LF run after it.
    /// - Llama-3 and Qwen2: ASCII digits, up to three or one (`\p{N}{1,3}`, `\p{N}`); when a non-ASCII byte
    ///   could continue the number, the general splitter decides.
    @inline(__always)
    static func commonPieceEnd(
        _ step: UInt8, _ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ ct: UnsafePointer<UInt8>
    ) -> Int {
        let c0 = b[i]
        guard c0 < 0x80 else { return -1 }
        let k0 = ct[Int(c0)]
        if k0 == ScalarClass.letter { return run(b, i + 1, end, ScalarClass.letter, ct) }
        guard i + 1 < end, b[i + 1] < 0x80 else { return -1 }
        let gpt2 = step == 0
        let k1 = ct[Int(b[i + 1])]
        var j: Int
        if k1 == ScalarClass.letter {
            let glued = gpt2 ? c0 == 0x20 : k0 == ScalarClass.space || (k0 == ScalarClass.other && c0 != 0x27)
            return glued ? run(b, i + 2, end, ScalarClass.letter, ct) : -1
        } else if k0 == ScalarClass.other && c0 != 0x27 {
            j = run(b, i + 1, end, ScalarClass.other, ct)
        } else if c0 == 0x20 && k1 == ScalarClass.other {
            j = run(b, i + 2, end, ScalarClass.other, ct)
        } else if k0 == ScalarClass.number && !gpt2 {
            let maxDigits = step == 1 ? 3 : 1
            j = i + 1
            while j - i < maxDigits && j < end && b[j] < 0x80 && ct[Int(b[j])] == ScalarClass.number { j += 1 }
            return j - i < maxDigits && j < end && b[j] >= 0x80 ? -1 : j
        } else {
            return -1
        }
        if !gpt2 { while j < end && (b[j] == 0x0A || b[j] == 0x0D) { j += 1 } }
        return j
    }

    /// End of the run of scalars of class `cls` starting at `i`.
    @inline(__always)
    static func run(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ cls: UInt8, _ ct: UnsafePointer<UInt8>)
        -> Int
    {
        var j = i
        if cls == ScalarClass.letter {
            // ASCII letters eight at a time; stops at the first other byte, which the loop below judges.
            let raw = UnsafeRawPointer(b.baseAddress!)
            while j + 8 <= end {
                let nonLetters = asciiNonLetters(raw.loadUnaligned(fromByteOffset: j, as: UInt64.self))
                if nonLetters != 0 {
                    j += nonLetters.trailingZeroBitCount >> 3
                    break
                }
                j += 8
            }
        }
        while j < end {
            let c = b[j]
            if c < 0x80 {
                if ct[Int(c)] != cls { break }
                j += 1
            } else {
                let (k, len) = UTF8Scan.classAt(b, j, ct)
                if k != cls { break }
                j += len
            }
        }
        return j
    }

    /// High bit set in each byte of `w` that is not an ASCII letter (SWAR; carries cannot cross bytes
    /// because every addend is below 0x80 after masking).
    @inline(__always)
    static func asciiNonLetters(_ w: UInt64) -> UInt64 {
        let x = (w | 0x2020_2020_2020_2020) & 0x7F7F_7F7F_7F7F_7F7F  // ASCII case folded
        let atLeastA = x &+ 0x1F1F_1F1F_1F1F_1F1F  // high bit iff x >= 0x61 ('a')
        let pastZ = x &+ 0x0505_0505_0505_0505  // high bit iff x >= 0x7B (past 'z')
        let letters = atLeastA & ~pastZ & ~w & 0x8080_8080_8080_8080
        return ~letters & 0x8080_8080_8080_8080
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the run, minus its last scalar when a non-space follows.
    @inline(__always)
    static func whitespaceTail(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ ct: UnsafePointer<UInt8>) -> Int
    {
        var j = i, last = i, count = 0
        while j < end {
            let (k, len) = UTF8Scan.classAt(b, j, ct)
            if k < ScalarClass.space { break }
            last = j
            j += len
            count += 1
        }
        // The last space of a run belongs to the word after it.
        if j == end || count == 1 { return j }
        return last
    }

    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
    static func gpt2(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, _ ct: UnsafePointer<UInt8>) -> Int {
        let c0 = b[i]
        if c0 == 0x27, i + 1 < end {  // case-sensitive ASCII contractions
            let c1 = b[i + 1]
            if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return i + 2 }  // s t m d
            if i + 2 < end {
                let c2 = b[i + 2]
                if (c1 == 0x72 || c1 == 0x76) && c2 == 0x65 { return i + 3 }  // re ve
                if c1 == 0x6C && c2 == 0x6C { return i + 3 }  // ll
            }
        }
        if c0 == 0x20, i + 1 < end {
            let (k, _) = UTF8Scan.classAt(b, i + 1, ct)
            if k <= ScalarClass.number { return run(b, i + 1, end, k, ct) }
        }
        let (k, _) = UTF8Scan.classAt(b, i, ct)
        if k <= ScalarClass.number { return run(b, i, end, k, ct) }
        return whitespaceTail(b, i, end, ct)
    }

    /// Llama-3 / cl100k (`maxDigits` 3) and Qwen2 (`maxDigits` 1).
    static func llama3(
        _ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, maxDigits: Int, _ ct: UnsafePointer<UInt8>
    ) -> Int {
        let c0 = b[i]
        if c0 == 0x27, i + 1 < end, let n = contractionLength(b, i + 1, end) { return i + 1 + n }
        let (k, len) = UTF8Scan.classAt(b, i, ct)
        if k == ScalarClass.letter { return run(b, i, end, ScalarClass.letter, ct) }
        // [^\r\n\p{L}\p{N}]?\p{L}+ : one space or symbol glued to the word after it.
        if (k == ScalarClass.other || k == ScalarClass.space) && i + len < end
            && UTF8Scan.classAt(b, i + len, ct).cls == ScalarClass.letter
        {
            return run(b, i + len, end, ScalarClass.letter, ct)
        }
        if k == ScalarClass.number {
            var j = i + len, n = 1
            while n < maxDigits && j < end {
                let (k2, len2) = UTF8Scan.classAt(b, j, ct)
                if k2 != ScalarClass.number { break }
                j += len2
                n += 1
            }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var start = -1
        if k == ScalarClass.other {
            start = i
        } else if c0 == 0x20 && i + 1 < end && UTF8Scan.classAt(b, i + 1, ct).cls == ScalarClass.other {
            start = i + 1
        }
        if start >= 0 {
            var j = run(b, start, end, ScalarClass.other, ct)
            while j < end && (b[j] == 0x0A || b[j] == 0x0D) { j += 1 }
            return j
        }
        // `\s*[\r\n]+`: whitespace up to and including the run's last CR/LF.
        var j = i, lastNewlineEnd = -1
        while j < end {
            let (k2, len2) = UTF8Scan.classAt(b, j, ct)
            if k2 < ScalarClass.space { break }
            j += len2
            if k2 == ScalarClass.newline { lastNewlineEnd = j }
        }
        if lastNewlineEnd >= 0 { return lastNewlineEnd }
        return whitespaceTail(b, i, end, ct)
    }

    /// Length of `s|t|re|ve|m|ll|d` case-insensitively after an apostrophe at `i - 1`, or nil.
    /// Oniguruma case folding also matches U+017F LATIN SMALL LETTER LONG S as `s`.
    @inline(__always)
    static func contractionLength(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int) -> Int? {
        let c1 = b[i] | 0x20
        if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {
            return b[i] >= 0x41 && b[i] <= 0x7A ? 1 : nil
        }
        if b[i] == 0xC5 && i + 1 < end && b[i + 1] == 0xBF { return 2 }
        guard i + 1 < end, b[i] >= 0x41 && b[i] <= 0x7A else { return nil }
        let c2 = b[i + 1] | 0x20
        guard b[i + 1] >= 0x41 && b[i + 1] <= 0x7A else { return nil }
        if (c1 == 0x72 || c1 == 0x76) && c2 == 0x65 { return 2 }
        if c1 == 0x6C && c2 == 0x6C { return 2 }
        return nil
    }

    /// `Digits`: numeric scalars isolated one by one (or as runs), everything else in runs.
    static func digits(
        _ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ end: Int, individual: Bool, _ ct: UnsafePointer<UInt8>
    ) -> Int {
        let (k, len) = UTF8Scan.classAt(b, i, ct)
        if k == ScalarClass.number { return individual ? i + len : run(b, i, end, ScalarClass.number, ct) }
        var j = i + len
        while j < end {
            let (k2, len2) = UTF8Scan.classAt(b, j, ct)
            if k2 == ScalarClass.number { break }
            j += len2
        }
        return j
    }
}
