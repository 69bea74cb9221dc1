import Foundation
import Infer
import Testing

/// Each verifier on strings that break naive implementations.
@Suite struct VerifierTests {
    @Test func numberExtraction() {
        #expect(NumberText.numbers(in: "The total is 1,234,567 dollars.") == ["1234567"])
        #expect(NumberText.numbers(in: "lists 1,2,3 and 12,34") == ["1", "2", "3", "12", "34"])
        #expect(NumberText.numbers(in: "5-3 = 2, but -3 is negative; x-1") == ["5", "3", "2", "-3", "1"])
        #expect(NumberText.numbers(in: "costs $3.50. Then 42.") == ["3.50", "42"])
        #expect(NumberText.numbers(in: "half is .5 or 0.5, 10%") == ["0.5", "0.5", "10"])
        #expect(NumberText.numbers(in: "1,0000 is not grouped") == ["1", "0000"])
        #expect(NumberText.numbers(in: "no digits here") == [])
        #expect(NumberText.numbers(in: "(-7)") == ["-7"])
    }

    @Test func gsm8k() throws {
        let v = GSM8KVerifier()
        func r(_ response: String, _ answer: String) throws -> Double {
            try v.reward(prompt: "", response: response, answer: answer)
        }
        #expect(try r("She has 3 + 4 = 7 apples.\n#### 7", "7") == 1)
        // the number after #### wins over later numbers
        #expect(try r("#### 18\nCheck: 18 = 9 * 2", "18") == 1)
        #expect(try r("The answer is 1,000.", "#### 1000") == 1)  // a GSM8K solution as the reference
        #expect(try r("Janet makes $18 every day. #### $18", "18") == 1)
        #expect(try r("so 3.0 in total", "3") == 1)
        #expect(try r("5 - 8 = -3", "-3") == 1)
        #expect(try r("5-8", "-3") == 0)  // an operator, not a sign: the last number is 8
        #expect(try r("I think 12, no wait, 13", "12") == 0)  // last number
        #expect(try r("no number at all", "4") == 0)
        #expect(try r("#### and then 5", "5") == 1)  // nothing after #### is a number: fall back to the last one
        #expect(try r("72.", "Natalia sold 48/2 = 24 clips.\n#### 72") == 1)
        #expect(throws: InferError.self) { try r("4", "four") }
    }

    @Test func boxed() throws {
        let v = BoxedVerifier()
        func r(_ response: String, _ answer: String) throws -> Double {
            try v.reward(prompt: "", response: response, answer: answer)
        }
        #expect(BoxedVerifier.lastBoxed("a \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}")
        #expect(BoxedVerifier.lastBoxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}")  // escaped braces do not count
        #expect(BoxedVerifier.lastBoxed("\\boxed{unclosed {x}") == nil)
        #expect(BoxedVerifier.lastBoxed("\\fbox{3} and \\boxed {4}") == "4")
        #expect(try r("so $\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}") == 1)
        #expect(try r("\\boxed{\\frac12}", "\\frac{1}{2}") == 1)
        #expect(try r("\\boxed{ x = 5 }", "5") == 1)
        #expect(try r("\\boxed{90^\\circ}", "90") == 1)
        #expect(try r("\\boxed{\\text{(B)}}", "(B)") == 1)
        #expect(try r("\\boxed{\\left( 1, 2 \\right)}", "(1,2)") == 1)
        #expect(try r("\\boxed{1,000}", "1000") == 1)
        #expect(try r("\\boxed{2.50}", "\\boxed{2.5}") == 1)
        #expect(try r("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}") == 0)
        #expect(try r("the answer is 5", "5") == 0)  // no box, no credit
        #expect(try r("\\boxed{5} wait \\boxed{6}", "5") == 0)  // the last box counts
    }

    @Test func exact() throws {
        let v = ExactMatchVerifier()
        #expect(try v.reward(prompt: "", response: "  Paris\n", answer: "Paris") == 1)
        #expect(try v.reward(prompt: "", response: "paris", answer: "Paris") == 0)
        #expect(try v.reward(prompt: "", response: "Paris.", answer: "Paris") == 0)
    }

    @Test func externalCommand() throws {
        // the checker reads the JSON line and compares the response with the answer
        let py =
            "import json,sys; d=json.loads(sys.stdin.readline()); print(1.0 if d['response'].strip()==d['answer'] else 0.25)"
        let v = CommandVerifier(command: "python3 -c \"\(py)\"")
        #expect(try v.reward(prompt: "p", response: " 42 \n", answer: "42") == 1)
        #expect(try v.reward(prompt: "p", response: "quote \" and newline \n and \\ backslash", answer: "42") == 0.25)
        #expect(
            try CommandVerifier(command: "cat >/dev/null; echo true").reward(prompt: "", response: "", answer: "") == 1)
        #expect(throws: InferError.self) {
            try CommandVerifier(command: "cat >/dev/null; echo maybe").reward(prompt: "", response: "", answer: "")
        }
        #expect(throws: InferError.self) {
            try CommandVerifier(command: "exit 3").reward(prompt: "", response: "", answer: "")
        }
        #expect(throws: InferError.self) {
            try CommandVerifier(command: "sleep 5", timeout: 0.2).reward(prompt: "", response: "", answer: "")
        }
        #expect(throws: InferError.self) { try makeVerifier("bogus") }
        #expect(try makeVerifier("command:echo 1").name == "command")
    }
}
