import Format
import Support
import Testing
import Demo

/// The problem generator: bounds, determinism, disjoint splits, varied text, the verifier.
@Suite struct GeneratorTests {
    static let sizes = SplitSizes(train: 2000, validation: 300, test: 300)

    static func generator(_ seed: UInt64 = 1, _ edit: (inout ProblemConfig) -> Void = { _ in }) throws
        -> ProblemGenerator
    {
        var c = ProblemConfig()
        edit(&c)
        return try ProblemGenerator(config: c, seed: seed)
    }

    @Test func problemsRespectTheKnobsAndTheirOwnArithmetic() throws {
        let g = try GeneratorTests.generator()
        let problems = try g.problems(.train, count: 3000)
        var multiplies = 0, steps = 0
        for p in problems {
            #expect((2...4).contains(p.operations.count))
            #expect((2...20).contains(p.start))
            #expect(p.values.count == p.operations.count && p.steps.count == p.operations.count)
            var v = p.start
            for (k, op) in p.operations.enumerated() {
                switch op.operation {
                case .add, .subtract: #expect((1...9).contains(op.operand))
                case .multiply:
                    #expect([2, 3].contains(op.operand))
                    multiplies += 1
                }
                let next = op.operation.apply(v, op.operand)
                #expect(next == p.values[k] && (0...99).contains(next))
                #expect(p.steps[k] == "\(v)\(op.operation.rawValue)\(op.operand)=\(next)")
                v = next
                steps += 1
            }
            #expect(p.answer == v && p.solutionLines.last == "#### \(v)")
            #expect(p.prompt.hasSuffix("?\n") && !p.prompt.dropLast().contains("\n"))
            // The prompt states every operand of + and - and the start.
            let words = p.prompt.split(whereSeparator: { $0 == " " || $0 == "." })
            #expect(words.contains("\(p.start)"))
            for op in p.operations where op.operation != .multiply { #expect(words.contains("\(op.operand)")) }
        }
        // x2/x3 are drawn with probability 0.25 when they fit under 99 (they often do not).
        let share = Double(multiplies) / Double(steps)
        #expect(share > 0.12 && share < 0.25, "multiplication share \(share)")
    }

    @Test func sameSeedSameProblemsOtherSeedOthers() throws {
        let a = try GeneratorTests.generator(7).splits(GeneratorTests.sizes)
        let b = try GeneratorTests.generator(7).splits(GeneratorTests.sizes)
        let c = try GeneratorTests.generator(8).splits(GeneratorTests.sizes)
        #expect(a == b)
        #expect(a.test.map(\.canonical) != c.test.map(\.canonical))
        // A longer split extends the shorter one; other splits' sizes do not matter.
        let longer = try GeneratorTests.generator(7).problems(.test, count: 500)
        #expect(Array(longer.prefix(300)) == a.test)
    }

    /// Pinned output: the generator must give these exact problems on every platform and Swift version.
    @Test func pinnedProblems() throws {
        let g = try GeneratorTests.generator(42)
        let p = try g.problems(.train, count: 3)
        #expect(p.map(\.canonical) == GeneratorTests.pinnedCanonical)
        #expect(p[0].prompt == GeneratorTests.pinnedPrompt)
        #expect(p[0].solution == GeneratorTests.pinnedSolution)
    }
    static let pinnedCanonical = ["6|-2|-3", "20|+3|+5|*2|+2", "8|*2|*3"]
    static let pinnedPrompt =
        "Ben starts with 6 apples. Next he drops 2 on the way home. He gives away 3. How many apples does Ben have in the end?\n"
    static let pinnedSolution = "6-2=4\n4-3=1\n#### 1"

    @Test func splitsNeverShareAProblem() throws {
        let s = try GeneratorTests.generator(3).splits(GeneratorTests.sizes)
        var owner: [String: ProblemSplit] = [:]
        for split in ProblemSplit.allCases {
            let ids = Set(s[split].map(\.id))
            #expect(ids.count == s[split].count)
            for p in s[split] {
                #expect(
                    owner[p.canonical] == nil,
                    "\(p.canonical) in \(split) and \(owner[p.canonical].map { "\($0)" } ?? "")")
                owner[p.canonical] = split
            }
        }
        #expect(owner.count == GeneratorTests.sizes.train + GeneratorTests.sizes.validation + GeneratorTests.sizes.test)
    }

    @Test func textIsVaried() throws {
        let problems = try GeneratorTests.generator(5).problems(.train, count: 500)
        // Wording alone (numbers removed): many distinct sentences, names and objects.
        let wording = Set(problems.map { $0.prompt.filter { !$0.isNumber } })
        #expect(wording.count > 450)
        let first = Set(problems.map { $0.prompt.split(separator: " ").first! })
        #expect(first.count > 20)
    }

    @Test func sentenceStyleEndsInTheCalculation() throws {
        let g = try GeneratorTests.generator(2) {
            $0.style = .sentence
            $0.minSteps = 6
            $0.maxSteps = 6
        }
        for p in try g.problems(.test, count: 100) {
            #expect(p.steps.count == 6)
            for (k, line) in p.steps.enumerated() {
                #expect(line.contains(": ") && line.hasSuffix("=\(p.values[k])"))
            }
            #expect(
                p.key.check(p.solution)
                    == SolutionCheck(reward: 1, finalAnswer: p.answer, firstWrongStep: nil, lineCount: 7))
        }
    }

    @Test func operationsKnob() throws {
        let g = try GeneratorTests.generator(6) {
            $0.operations = [.add, .multiply]
            $0.maxSteps = 6
        }
        let ps = try g.problems(.train, count: 500)
        #expect(
            ps.allSatisfy {
                $0.operations.allSatisfy { $0.operation != .subtract } && $0.values.allSatisfy { $0 <= 99 }
            })
        #expect(ps.contains { $0.operations.contains { $0.operation == .multiply } })
        // Subtraction alone gets stuck at small values; those draws are redrawn, never out of bounds.
        let down = try GeneratorTests.generator(6) {
            $0.operations = [.subtract]
            $0.startRange = 2...4
            $0.minSteps = 2
            $0.maxSteps = 2
            $0.operandRange = 1...2
        }
        // 8 such problems exist; training owns 3 of them.
        let few = try down.problems(.train, count: 3)
        #expect(few.allSatisfy { $0.values.allSatisfy { $0 >= 0 } })
        #expect(throws: DemoError.self) { try down.problems(.train, count: 4) }
        #expect(throws: DemoError.self) { try GeneratorTests.generator { $0.operations = [] } }
        #expect(throws: DemoError.self) {
            try GeneratorTests.generator {
                $0.operations = [.multiply]
                $0.factors = []
            }
        }
    }

    @Test func tooSmallAProblemSpaceIsAnErrorNotAHang() throws {
        let g = try GeneratorTests.generator { c in
            c.minSteps = 1
            c.maxSteps = 1
            c.startRange = 2...3
            c.operandRange = 1...1
            c.factors = []
        }
        // 2 starts x (+1 or -1) = 4 problems in all.
        #expect(throws: DemoError.self) { try g.problems(.train, count: 5) }
        #expect(try g.problems(.train, count: 0).isEmpty)
    }

    @Test func badKnobsAreRefused() {
        let edits: [(inout ProblemConfig) -> Void] = [
            { $0.minSteps = 0 }, { $0.maxSteps = 1 }, { $0.startRange = 0...120 }, { $0.operandRange = 0...3 },
            {
                $0.maxValue = 5
                $0.startRange = 2...5
                $0.operandRange = 4...4
            }, { $0.factors = [1] },
            { $0.multiplyProbability = 1.5 }, { $0.minValue = -1 },
        ]
        for edit in edits {
            #expect(throws: DemoError.self) { try GeneratorTests.generator(1, edit) }
        }
    }

    @Test func drawIsUniformAndInRange() {
        var rng = SplitMix64(seed: 9)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[rng.draw(3...9) - 3] += 1 }
        // Each bin expects 10,000 with sd ~93.
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 }, "\(counts)")
        #expect((0..<1000).allSatisfy { _ in rng.draw(5...5) == 5 })
        let u = (0..<10_000).map { _ in rng.unit() }
        #expect(u.allSatisfy { $0 >= 0 && $0 < 1 } && abs(u.reduce(0, +) / 1e4 - 0.5) < 0.02)
    }
}

/// The verifier: reward from the final answer, first wrong line from the running values.
@Suite struct VerifierTests {
    static let key = AnswerKey(answer: 18, values: [12, 9, 18])

    @Test func workedSolutionIsRight() {
        let c = VerifierTests.key.check("7+5=12\n12-3=9\n9*2=18\n#### 18")
        #expect(c == SolutionCheck(reward: 1, finalAnswer: 18, firstWrongStep: nil, lineCount: 4))
        // Trailing newlines and spaces do not matter; commuted operands and x for * are fine.
        #expect(VerifierTests.key.check("5+7=12\n12 - 3 = 9\n9x2=18\n#### 18\n\n").firstWrongStep == nil)
    }

    @Test func firstWrongLineIsFound() {
        let k = VerifierTests.key
        #expect(k.check("7+5=13\n13-3=10\n10*2=20\n#### 20").firstWrongStep == 0)
        #expect(k.check("7+5=12\n12-3=10\n10*2=20\n#### 20").firstWrongStep == 1)
        // True arithmetic, wrong value (another operand) and wrong arithmetic with the right value both fail.
        #expect(k.check("7+5=12\n12-4=8\n8*2=16\n#### 16").firstWrongStep == 1)
        #expect(k.check("7+5=12\n12-4=9\n9*2=18\n#### 18").firstWrongStep == 1)
        // Right answer through a wrong line: reward 1, but the line is still reported.
        let lucky = k.check("7+5=12\n12-4=9\n9*2=18\n#### 18")
        #expect(lucky.reward == 1 && lucky.firstWrongStep == 1)
        #expect(k.check("7+5=12\n12-3=9\n#### 9").firstWrongStep == 2)  // a step skipped
        #expect(k.check("7+5=12\n12-3=9\n9*2=18\n#### 17").firstWrongStep == 3)
        #expect(k.check("7+5=12\n12-3=9\n9*2=18").firstWrongStep == 3)  // answer line missing
        #expect(k.check("7+5=12\n12-3=9\n9*2=18\n#### 18\n18+1=19").firstWrongStep == 4)  // a line too many
        #expect(k.check("").firstWrongStep == 0)
        #expect(k.check("7+5=12\nhello\n").firstWrongStep == 1)
    }

    @Test func rewardNeedsTheAnswerAtTheEnd() {
        let k = VerifierTests.key
        #expect(k.check("#### 18").reward == 1)
        #expect(k.check("#### 17\n#### 18").reward == 1)  // the last marker counts
        #expect(k.check("#### 18\n#### 17").reward == 0)
        #expect(k.check("#### 18 apples").reward == 0)
        #expect(k.check("#### 188").reward == 0)
        #expect(k.check("#### -18").reward == 0 && k.check("#### -18").finalAnswer == -18)
        #expect(k.check("####18").reward == 0 && k.check("#### ").finalAnswer == nil)
        #expect(k.check("#### 99999999999999999999").finalAnswer == nil)  // no overflow trap
        #expect(k.check("99999999999*99999999999=1\n").firstWrongStep == 0)
    }
}
