/// What the task's verifier says about one sampled solution.
public struct SolutionCheck: Sendable, Equatable {
    /// 1 when the text ends with `#### N` and N is the answer, else 0 (whether it also ended with EOS is the
    /// sampler's to decide).
    public var reward: Double
    /// The integer after the last `#### `, when there is one.
    public var finalAnswer: Int?
    /// Index of the first wrong line (0-based; the lines are the steps, then the answer line), or nil when
    /// every line is right and there is no line too many. A missing line counts as wrong at its index.
    public var firstWrongStep: Int?
    /// Lines in the text (trailing empty lines not counted).
    public var lineCount: Int

    /// Whether the answer is right.
    public var correct: Bool { reward > 0 }

    /// A verdict.
    public init(reward: Double, finalAnswer: Int?, firstWrongStep: Int?, lineCount: Int) {
        self.reward = reward
        self.finalAnswer = finalAnswer
        self.firstWrongStep = firstWrongStep
        self.lineCount = lineCount
    }
}

/// What a verifier needs to know about a problem: the answer and the running value after every step.
public struct AnswerKey: Sendable, Hashable, Codable {
    /// The final answer.
    public var answer: Int
    /// The running value after each calculation step (`values.last == answer`).
    public var values: [Int]

    /// A key.
    public init(answer: Int, values: [Int]) {
        self.answer = answer
        self.values = values
    }

    /// Checks a sampled solution (the response text only, without the prompt).
    public func check(_ response: String) -> SolutionCheck {
        let final = AnswerKey.finalAnswer(response)
        var lines = response.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.utf8) }
        while let last = lines.last, last.allSatisfy(AnswerKey.isSpace) { lines.removeLast() }
        var firstWrong: Int? = nil
        for k in 0..<max(lines.count, values.count + 1) {
            guard k < lines.count else {
                firstWrong = k
                break
            }  // a missing line
            let right: Bool
            if k < values.count {
                right = AnswerKey.calculation(lines[k]).map { $0.holds && $0.result == values[k] } ?? false
            } else if k == values.count {
                right = AnswerKey.answerLine(lines[k]) == answer
            } else {
                right = false  // a line after the answer
            }
            if !right {
                firstWrong = k
                break
            }
        }
        return SolutionCheck(
            reward: final == answer ? 1 : 0, finalAnswer: final, firstWrongStep: firstWrong,
            lineCount: lines.count)
    }

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    /// The integer after the last `#### ` when only whitespace follows it; nil otherwise.
    public static func finalAnswer(_ text: String) -> Int? {
        let b = Array(text.utf8)
        let marker = Array("#### ".utf8)
        guard b.count >= marker.count else { return nil }
        var at = -1
        for i in stride(from: b.count - marker.count, through: 0, by: -1)
        where Array(b[i..<(i + marker.count)]) == marker {
            at = i
            break
        }
        guard at >= 0 else { return nil }
        guard let (n, end) = integer(b, at: at + marker.count), b[end...].allSatisfy(isSpace) else { return nil }
        return n
    }

    /// A line that is exactly `#### N` (surrounding spaces allowed): N.
    static func answerLine(_ line: [UInt8]) -> Int? {
        var s = line[...]
        while let f = s.first, isSpace(f) { s = s.dropFirst() }
        while let l = s.last, isSpace(l) { s = s.dropLast() }
        let marker = Array("#### ".utf8)
        guard s.starts(with: marker) else { return nil }
        let rest = Array(s.dropFirst(marker.count))
        guard let (n, end) = integer(rest, at: 0), end == rest.count else { return nil }
        return n
    }

    /// Digits a number may have: products of two such numbers cannot overflow.
    static let maxDigits = 9

    /// An optionally negative decimal integer at `i` (at most `maxDigits` digits): value and the index after it.
    static func integer(_ b: [UInt8], at i: Int) -> (Int, Int)? {
        var j = i
        var negative = false
        if j < b.count, b[j] == UInt8(ascii: "-") {
            negative = true
            j += 1
        }
        let digitsStart = j
        var v = 0
        while j < b.count, isDigit(b[j]), j - digitsStart < maxDigits {
            v = v * 10 + Int(b[j] - 0x30)
            j += 1
        }
        guard j > digitsStart, j == b.count || !isDigit(b[j]) else { return nil }
        return (negative ? -v : v, j)
    }

    /// The calculation `a op b = c` that ends a line (spaces allowed around the symbols; `x` and `×` count
    /// as `*`): whether it holds and its result.
    static func calculation(_ line: [UInt8]) -> (holds: Bool, result: Int)? {
        var b = line[...]
        while let l = b.last, isSpace(l) || l == UInt8(ascii: ".") { b = b.dropLast() }
        guard let eq = b.lastIndex(of: UInt8(ascii: "=")) else { return nil }
        let right = Array(b[(eq + 1)...])
        var i = 0
        while i < right.count, right[i] == 0x20 { i += 1 }
        guard let (c, end) = integer(right, at: i), end == right.count else { return nil }
        // Read `a op b` backwards from the `=`.
        let left = Array(b[..<eq])
        var j = left.count
        func skipSpaces() { while j > 0, left[j - 1] == 0x20 { j -= 1 } }
        func number() -> Int? {
            let end = j
            while j > 0, isDigit(left[j - 1]), end - j < maxDigits { j -= 1 }
            guard j < end, j == 0 || !isDigit(left[j - 1]) else { return nil }
            var v = 0
            for d in left[j..<end] { v = v * 10 + Int(d - 0x30) }
            return v
        }
        skipSpaces()
        guard let rhs = number() else { return nil }
        skipSpaces()
        let op: ArithmeticOp
        if j >= 1, let o = ArithmeticOp(rawValue: String(UnicodeScalar(left[j - 1]))) {
            op = o
            j -= 1
        } else if j >= 1, left[j - 1] == UInt8(ascii: "x") {
            op = .multiply
            j -= 1
        } else if j >= 2, left[j - 2] == 0xC3, left[j - 1] == 0x97 {  // U+00D7 ×
            op = .multiply
            j -= 2
        } else {
            return nil
        }
        skipSpaces()
        guard var lhs = number() else { return nil }
        if j > 0, left[j - 1] == UInt8(ascii: "-"), j == 1 || !isDigit(left[j - 2]) { lhs = -lhs }
        return (op.apply(lhs, rhs) == c, c)
    }
}
