import Foundation

/// Turns a model's response into a reward, given the reference answer.
public protocol Verifier: Sendable {
    /// A short name for logs and output files.
    var name: String { get }
    /// The reward of `response` to `prompt` when the reference answer is `answer` (usually 0 or 1).
    func reward(prompt: String, response: String, answer: String) throws -> Double
}

/// Number extraction shared by the verifiers: digits with optional thousands separators, a decimal part
/// and a sign (a '-' right after a letter or digit is an operator, not a sign); `$`, `%` and trailing
/// periods are not part of a number.
public enum NumberText {
    /// Every number in `text`, in order, as written with separators removed ("1,234.50" -> "1234.50").
    public static func numbers(in text: String) -> [String] {
        let b = Array(text.utf8)
        var out: [String] = []
        var i = 0
        func isDigit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
        func isWordChar(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 97 && c | 0x20 <= 122) || c == 95 }
        while i < b.count {
            let startsDigit = isDigit(b[i])
            let startsDot = b[i] == 46 && i + 1 < b.count && isDigit(b[i + 1]) && (i == 0 || !isDigit(b[i - 1]))
            guard startsDigit || startsDot else {
                i += 1
                continue
            }
            var negative = false
            if i > 0 && b[i - 1] == 45 && (i < 2 || !isWordChar(b[i - 2])) { negative = true }
            var s: [UInt8] = negative ? [45] : []
            var j = i
            // integer part with optional groups of exactly three digits after commas
            while j < b.count && isDigit(b[j]) {
                s.append(b[j])
                j += 1
            }
            let intDigits = s.count - (negative ? 1 : 0)
            if intDigits > 0 && intDigits <= 3 {
                while j + 3 < b.count && b[j] == 44 && isDigit(b[j + 1]) && isDigit(b[j + 2]) && isDigit(b[j + 3])
                    && (j + 4 >= b.count || !isDigit(b[j + 4]))
                {
                    s.append(contentsOf: b[(j + 1)...(j + 3)])
                    j += 4
                }
            }
            if j + 1 < b.count && b[j] == 46 && isDigit(b[j + 1]) {
                s.append(46)
                j += 1
                while j < b.count && isDigit(b[j]) {
                    s.append(b[j])
                    j += 1
                }
            }
            if s.first == 46 || (negative && s.count > 1 && s[1] == 46) { s.insert(48, at: negative ? 1 : 0) }
            out.append(String(decoding: s, as: UTF8.self))
            i = j
        }
        return out
    }

    /// Whether two number strings denote the same value (exact for integers; 1e-9 relative for decimals).
    public static func equal(_ a: String, _ b: String) -> Bool {
        if a == b { return true }
        guard let x = Decimal(string: a), let y = Decimal(string: b) else { return false }
        if x == y { return true }
        guard let dx = Double(a), let dy = Double(b) else { return false }
        return abs(dx - dy) <= 1e-9 * max(abs(dx), abs(dy))
    }
}

/// GSM8K style: the number after the last `####`, else the last number of the text, compared numerically.
/// The reference answer gets the same extraction, so a full GSM8K solution ("... #### 72") works as answer.
public struct GSM8KVerifier: Verifier {
    /// "gsm8k".
    public let name = "gsm8k"
    /// A GSM8K verifier.
    public init() {}

    /// The final number of `text`: the first number after the last `####`, else the last number.
    public static func extract(_ text: String) -> String? {
        if let r = text.range(of: "####", options: .backwards) {
            if let n = NumberText.numbers(in: String(text[r.upperBound...])).first { return n }
        }
        return NumberText.numbers(in: text).last
    }

    /// 1 when the final numbers agree, else 0.
    public func reward(prompt: String, response: String, answer: String) throws -> Double {
        guard let want = Self.extract(answer) else {
            throw InferError.verifier("gsm8k: the answer \"\(answer)\" contains no number")
        }
        guard let got = Self.extract(response) else { return 0 }
        return NumberText.equal(got, want) ? 1 : 0
    }
}

/// MATH style: the content of the last `\boxed{...}` (or `\fbox{...}`), braces balanced, lightly
/// normalized (spaces, `\left`/`\right`, `\!`/`\,`, `dfrac`/`tfrac`, `\text{}`, `^\circ`, `$`, a trailing
/// period, a leading `x =`), compared as text, or as numbers when both are numbers.
public struct BoxedVerifier: Verifier {
    /// "boxed".
    public let name = "boxed"
    /// A boxed-answer verifier.
    public init() {}

    /// The content of the last `\boxed{...}` / `\fbox{...}` of `text` (nil when none closes).
    public static func lastBoxed(_ text: String) -> String? {
        let b = Array(text.utf8)
        let markers = ["\\boxed", "\\fbox"].map { Array($0.utf8) }
        var last: String?
        var i = 0
        while i < b.count {
            guard b[i] == 92,
                let m = markers.first(where: { i + $0.count <= b.count && b[i..<(i + $0.count)].elementsEqual($0) })
            else {
                i += 1
                continue
            }
            var j = i + m.count
            while j < b.count && b[j] == 32 { j += 1 }
            guard j < b.count, b[j] == 123 else {
                i += 1
                continue
            }
            var depth = 0, k = j, closed = -1
            while k < b.count {
                if b[k] == 92 && k + 1 < b.count {
                    k += 2
                    continue
                }  // escaped \{ or \}
                if b[k] == 123 {
                    depth += 1
                } else if b[k] == 125 {
                    depth -= 1
                    if depth == 0 {
                        closed = k
                        break
                    }
                }
                k += 1
            }
            if closed > 0 { last = String(decoding: b[(j + 1)..<closed], as: UTF8.self) }
            i += 1
        }
        return last
    }

    /// Light normalization of a LaTeX answer for comparison.
    public static func normalize(_ s: String) -> String {
        var t = s
        for (a, b) in [
            ("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""),
            ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("^{\\circ}", ""), ("^\\circ", ""),
            ("\\$", ""), ("$", ""), ("\\%", ""), ("%", ""),
        ] {
            t = t.replacingOccurrences(of: a, with: b)
        }
        // \text{...} and \mbox{...} keep their content
        for cmd in ["\\text", "\\textbf", "\\mathrm", "\\mbox"] {
            while let r = t.range(of: cmd + "{") {
                guard let close = t[r.upperBound...].firstIndex(of: "}") else { break }
                t = String(t[..<r.lowerBound]) + String(t[r.upperBound..<close]) + String(t[t.index(after: close)...])
            }
        }
        t = t.filter { !$0.isWhitespace }
        while t.hasSuffix(".") { t.removeLast() }
        // "x=5" -> "5" (a single variable name before one '=')
        if let eq = t.firstIndex(of: "="), t.filter({ $0 == "=" }).count == 1 {
            let lhs = t[..<eq]
            if lhs.count <= 2, lhs.allSatisfy({ $0.isLetter }) { t = String(t[t.index(after: eq)...]) }
        }
        // "\frac12" -> "\frac{1}{2}"
        if t.hasPrefix("\\frac"), t.count == 7, t.dropFirst(5).allSatisfy({ $0.isNumber }) {
            let d = Array(t.dropFirst(5))
            t = "\\frac{\(d[0])}{\(d[1])}"
        }
        return t
    }

    /// 1 when the normalized last boxed answer equals the normalized reference (boxed or plain), else 0.
    public func reward(prompt: String, response: String, answer: String) throws -> Double {
        let want = Self.normalize(Self.lastBoxed(answer) ?? answer)
        guard !want.isEmpty else { throw InferError.verifier("boxed: empty reference answer") }
        guard let box = Self.lastBoxed(response) else { return 0 }
        let got = Self.normalize(box)
        if got == want { return 1 }
        let n1 = got.replacingOccurrences(of: ",", with: ""), n2 = want.replacingOccurrences(of: ",", with: "")
        if Double(n1) != nil, Double(n2) != nil { return NumberText.equal(n1, n2) ? 1 : 0 }
        return 0
    }
}

/// The whole response equals the answer after trimming surrounding whitespace (case-sensitive).
public struct ExactMatchVerifier: Verifier {
    /// "exact".
    public let name = "exact"
    /// An exact-match verifier.
    public init() {}

    /// 1 when the trimmed strings are equal, else 0.
    public func reward(prompt: String, response: String, answer: String) throws -> Double {
        response.trimmingCharacters(in: .whitespacesAndNewlines)
            == answer.trimmingCharacters(in: .whitespacesAndNewlines) ? 1 : 0
    }
}

/// An external checker: runs `/bin/sh -c COMMAND` per response, writes one JSON line
/// `{"prompt": ..., "response": ..., "answer": ...}` to its stdin and reads a reward from its stdout (a
/// number, or true/false). A non-zero exit, a timeout or other output is an error naming the command.
public struct CommandVerifier: Verifier {
    /// "command".
    public let name = "command"
    /// The shell command.
    public let command: String
    /// Seconds before the checker is killed.
    public let timeout: Double

    /// A verifier running `command` with a per-call `timeout` in seconds.
    public init(command: String, timeout: Double = 60) {
        self.command = command
        self.timeout = timeout
    }

    /// The reward the command prints.
    public func reward(prompt: String, response: String, answer: String) throws -> Double {
        let line =
            try JSONSerialization.data(
                withJSONObject: ["prompt": prompt, "response": response, "answer": answer],
                options: [.sortedKeys]) + Data("\n".utf8)
        let (status, out) = try runShell(command, input: line, timeout: timeout)
        guard status == 0 else { throw InferError.verifier("`\(command)` exited with status \(status)") }
        let text = String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "true" { return 1 }
        if text == "false" { return 0 }
        guard let v = Double(text), v.isFinite else {
            throw InferError.verifier("`\(command)` printed \"\(text.prefix(80))\", not a number or true/false")
        }
        return v
    }
}

/// Runs `/bin/sh -c command` in a process group of its own with `input` on stdin; returns the exit status
/// and stdout. On timeout the whole group (the shell and anything it started) is killed.
func runShell(_ command: String, input: Data, timeout: Double) throws -> (Int32, Data) {
    var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
    guard pipe(&inPipe) == 0 else { throw InferError.verifier("cannot create a pipe") }
    guard pipe(&outPipe) == 0 else {
        close(inPipe[0])
        close(inPipe[1])
        throw InferError.verifier("cannot create a pipe")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    for fd in [inPipe[0], inPipe[1], outPipe[0], outPipe[1]] { posix_spawn_file_actions_addclose(&actions, fd) }
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attr, 0)
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sh"), strdup("-c"), strdup(command), nil]
    defer { for a in argv { free(a) } }
    let rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ)
    close(inPipe[0])
    close(outPipe[1])
    guard rc == 0 else {
        close(inPipe[1])
        close(outPipe[0])
        throw InferError.verifier("cannot start `\(command)`: error \(rc)")
    }
    signal(SIGPIPE, SIG_IGN)  // a checker that exits without reading its input must not kill us
    input.withUnsafeBytes { raw in
        var off = 0
        while off < raw.count {
            let n = write(inPipe[1], raw.baseAddress! + off, raw.count - off)
            if n <= 0 { break }
            off += n
        }
    }
    close(inPipe[1])
    var out = Data()
    var buf = [UInt8](repeating: 0, count: 4096)
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while true {
        let left = deadline.timeIntervalSinceNow
        if left <= 0 {
            timedOut = true
            break
        }
        var fds = pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0)
        let r = poll(&fds, 1, Int32(min(left * 1000, 1000)) + 1)
        if r <= 0 { continue }
        let n = read(outPipe[0], &buf, buf.count)
        if n <= 0 { break }  // end of file: every writer in the group closed stdout
        out.append(contentsOf: buf[0..<n])
    }
    close(outPipe[0])
    if timedOut { kill(-pid, SIGKILL) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    if timedOut { throw InferError.verifier("`\(command)` did not finish within \(timeout) s") }
    // WIFEXITED / WEXITSTATUS by hand: the C macros are not imported
    return ((status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), out)
}

/// Builds a verifier from its command-line name: gsm8k, boxed, exact, or `command:SHELL COMMAND`.
public func makeVerifier(_ spec: String) throws -> any Verifier {
    switch spec {
    case "gsm8k": return GSM8KVerifier()
    case "boxed", "math": return BoxedVerifier()
    case "exact": return ExactMatchVerifier()
    default:
        if spec.hasPrefix("command:") {
            let c = String(spec.dropFirst("command:".count))
            guard !c.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw InferError.invalid("command: needs a shell command")
            }
            return CommandVerifier(command: c)
        }
        throw InferError.invalid("unknown verifier \"\(spec)\" (gsm8k, boxed, exact, command:CMD)")
    }
}
