/// An error of the demo task (bad knobs, unreadable files, too few distinct problems) with its one-line cause.
public struct DemoError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What is wrong, naming the file or knob involved.
    public var message: String
    /// An error with `message`.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// One arithmetic operation of a problem.
public enum ArithmeticOp: String, Sendable, Codable, CaseIterable {
    /// Addition, written `+`.
    case add = "+"
    /// Subtraction, written `-`.
    case subtract = "-"
    /// Multiplication, written `*` (as in GSM8K's calculator annotations).
    case multiply = "*"

    /// `a op b`.
    public func apply(_ a: Int, _ b: Int) -> Int {
        switch self {
        case .add: a + b
        case .subtract: a - b
        case .multiply: a * b
        }
    }
}

/// One calculation step: the running value is combined with `operand` by `operation`.
public struct ProblemStep: Sendable, Hashable, Codable {
    /// The operation.
    public var operation: ArithmeticOp
    /// The right-hand operand.
    public var operand: Int

    /// A step.
    public init(_ operation: ArithmeticOp, _ operand: Int) {
        self.operation = operation
        self.operand = operand
    }
}

/// How calculation lines are written.
public enum StepStyle: String, Sendable, Codable, CaseIterable {
    /// `7+5=12`.
    case equation
    /// A short phrase ending in the calculation: `Adding 5: 7+5=12`.
    case sentence
}

/// Difficulty knobs of the generator. Defaults are the settings the calibration prototype learned in minutes
/// (docs/demo-calibration.md): start 2-20, single-digit + and -, x2/x3 with probability 0.25,
/// every value <= 99, 2-4 operations.
public struct ProblemConfig: Sendable, Equatable, Codable {
    /// Fewest calculation steps (operations) per problem.
    public var minSteps = 2
    /// Most calculation steps per problem; the count is uniform in `minSteps...maxSteps`.
    public var maxSteps = 4
    /// Range of the starting value.
    public var startRange: ClosedRange<Int> = 2...20
    /// Operations a step may use (multiplication also needs `factors`).
    public var operations: [ArithmeticOp] = ArithmeticOp.allCases
    /// Range of the operand of `+` and `-`.
    public var operandRange: ClosedRange<Int> = 1...9
    /// Multiplication factors to choose from.
    public var factors: [Int] = [2, 3]
    /// Probability that a step multiplies (when a factor keeps the value in bounds).
    public var multiplyProbability = 0.25
    /// Smallest allowed intermediate value.
    public var minValue = 0
    /// Largest allowed intermediate value.
    public var maxValue = 99
    /// How calculation lines are written.
    public var style: StepStyle = .equation

    /// The calibrated defaults.
    public init() {}

    /// Throws when the knobs cannot produce problems (every bound is checked, so generation cannot get stuck).
    public func validate() throws(DemoError) {
        guard minSteps >= 1, maxSteps >= minSteps, maxSteps <= 12 else {
            throw DemoError("steps: need 1 <= min steps (\(minSteps)) <= max steps (\(maxSteps)) <= 12")
        }
        guard minValue >= 0, maxValue > minValue, maxValue <= 1_000_000 else {
            throw DemoError("values: need 0 <= min value (\(minValue)) < max value (\(maxValue)) <= 1000000")
        }
        guard startRange.lowerBound >= minValue, startRange.upperBound <= maxValue else {
            throw DemoError("start range \(startRange) must lie within the value bounds \(minValue)...\(maxValue)")
        }
        let low = operandRange.lowerBound
        guard low >= 1, operandRange.upperBound <= maxValue else {
            throw DemoError("operand range \(operandRange) must lie within 1...\(maxValue)")
        }
        guard
            operations.contains(.add) || operations.contains(.subtract)
                || (operations.contains(.multiply) && !factors.isEmpty)
        else {
            throw DemoError("operations \(operations.map(\.rawValue)) leave no step to take")
        }
        // Then from any value in bounds either `+ low` or `- low` stays in bounds (fewer operations can
        // still get stuck; such draws are redrawn).
        guard maxValue - minValue >= 2 * low - 1 else {
            throw DemoError("operand range \(operandRange) is too wide for the value bounds \(minValue)...\(maxValue)")
        }
        guard factors.allSatisfy({ $0 >= 2 && $0 <= 100 }) else {
            throw DemoError("multiplication factors \(factors) must lie within 2...100")
        }
        guard multiplyProbability >= 0, multiplyProbability <= 1 else {
            throw DemoError("multiplication probability \(multiplyProbability) must lie within 0...1")
        }
    }
}

/// The three splits; they never share a problem (by canonical form).
public enum ProblemSplit: String, Sendable, Codable, CaseIterable {
    /// Training problems (worked solutions for SFT, prompts for sampling).
    case train
    /// Held-out problems for choosing settings.
    case validation
    /// Held-out problems for the reported accuracy.
    case test
}

/// A generated problem: its text, worked solution and everything a verifier needs.
public struct Problem: Sendable, Hashable, Codable {
    /// Unique within its split: `train-17`.
    public var id: String
    /// The word problem as the model sees it (ends with a newline).
    public var prompt: String
    /// The worked calculation lines, one per step, without the final answer line.
    public var steps: [String]
    /// The final answer.
    public var answer: Int
    /// The running value after each step (`values.last == answer`); a checker compares sampled lines to these.
    public var values: [Int]
    /// The starting value.
    public var start: Int
    /// The operations in order.
    public var operations: [ProblemStep]

    /// The final line: `#### N`.
    public var answerLine: String { "#### \(answer)" }
    /// Every line of the worked solution: the steps, then the answer line.
    public var solutionLines: [String] { steps + [answerLine] }
    /// The worked solution as one text (lines joined by newlines, no trailing newline).
    public var solution: String { solutionLines.joined(separator: "\n") }
    /// The arithmetic alone (`12|+5|-3|*2`): problems with the same canonical form count as the same problem.
    public var canonical: String { Problem.canonical(start: start, operations) }
    /// The key a verifier needs.
    public var key: AnswerKey { AnswerKey(answer: answer, values: values) }

    /// The canonical form of a start value and operations.
    public static func canonical(start: Int, _ operations: [ProblemStep]) -> String {
        var s = String(start)
        for op in operations { s += "|" + op.operation.rawValue + String(op.operand) }
        return s
    }
}
