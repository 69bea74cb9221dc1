import Format
import Support

/// Shares of the problem space given to each split (by a seeded hash of the canonical form).
public struct PartitionWeights: Sendable, Equatable, Codable {
    /// Weight of the training split.
    public var train: Int
    /// Weight of the validation split.
    public var validation: Int
    /// Weight of the test split.
    public var test: Int

    /// Weights; the default gives 80% of the problem space to training, 10% each to validation and test.
    public init(train: Int = 8, validation: Int = 1, test: Int = 1) {
        self.train = train
        self.validation = validation
        self.test = test
    }

    func weight(_ s: ProblemSplit) -> Int {
        switch s {
        case .train: train
        case .validation: validation
        case .test: test
        }
    }
}

/// How many problems each split gets.
public struct SplitSizes: Sendable, Equatable, Codable {
    /// Training problems.
    public var train: Int
    /// Validation problems.
    public var validation: Int
    /// Test problems.
    public var test: Int

    /// Sizes of the three splits.
    public init(train: Int, validation: Int, test: Int) {
        self.train = train
        self.validation = validation
        self.test = test
    }

    /// The size of split `s`.
    public subscript(_ s: ProblemSplit) -> Int {
        switch s {
        case .train: train
        case .validation: validation
        case .test: test
        }
    }
}

/// The problems of the three splits.
public struct ProblemSplits: Sendable, Equatable {
    /// Training problems.
    public var train: [Problem]
    /// Validation problems.
    public var validation: [Problem]
    /// Test problems.
    public var test: [Problem]

    /// The problems of split `s`.
    public subscript(_ s: ProblemSplit) -> [Problem] {
        switch s {
        case .train: train
        case .validation: validation
        case .test: test
        }
    }
}

/// Seeded generator of verifiable multi-step word problems in the GSM8K mould.
///
/// Each canonical problem (start value and operations) belongs to exactly one split, decided by a seeded hash,
/// so splits never share a problem whatever their sizes; each split is drawn from its own stream, so a split
/// depends only on the seed, the knobs and its own size (a longer split extends a shorter one).
public struct ProblemGenerator: Sendable {
    /// The difficulty knobs.
    public let config: ProblemConfig
    /// The seed of the partition and of every split's stream.
    public let seed: UInt64
    /// Shares of the problem space per split.
    public let partition: PartitionWeights

    /// A generator; throws when the knobs cannot produce problems.
    public init(config: ProblemConfig = ProblemConfig(), seed: UInt64, partition: PartitionWeights = PartitionWeights())
        throws(DemoError)
    {
        try config.validate()
        guard partition.train >= 0, partition.validation >= 0, partition.test >= 0,
            partition.train + partition.validation + partition.test > 0
        else {
            throw DemoError("partition weights must be non-negative and not all zero")
        }
        self.config = config
        self.seed = seed
        self.partition = partition
    }

    /// The split that owns the problem with canonical form `canonical`.
    public func owner(of canonical: String) -> ProblemSplit {
        let total = UInt64(partition.train + partition.validation + partition.test)
        var slot = stableHash(canonical, seed: seed) % total
        for s in ProblemSplit.allCases {
            let w = UInt64(partition.weight(s))
            if slot < w { return s }
            slot -= w
        }
        return .test
    }

    /// The first `count` distinct problems of split `s`; throws when the knobs allow too few distinct problems.
    public func problems(_ s: ProblemSplit, count: Int) throws(DemoError) -> [Problem] {
        guard count >= 0 else { throw DemoError("\(s.rawValue) size \(count) is negative") }
        guard count == 0 || partition.weight(s) > 0 else {
            throw DemoError("the \(s.rawValue) split has partition weight 0")
        }
        var rng = SplitMix64.stream(seed, UInt64(ProblemSplit.allCases.firstIndex(of: s) ?? 0) + 1)
        var seen = Set<String>()
        var out: [Problem] = []
        out.reserveCapacity(count)
        // Rejections from other splits' shares and duplicates cost a few draws per problem; running far past
        // that means the knobs' problem space is nearly exhausted.
        let limit = 1_000 + count * 200
        var draws = 0
        while out.count < count {
            draws += 1
            if draws > limit {
                throw DemoError(
                    "only \(out.count) distinct \(s.rawValue) problems after \(limit) draws: the knobs allow too few distinct problems for \(count) (allow more steps, a wider start or operand range, or ask for fewer)"
                )
            }
            guard let (start, ops, values) = arithmetic(&rng) else { continue }
            let canonical = Problem.canonical(start: start, ops)
            guard owner(of: canonical) == s, seen.insert(canonical).inserted else { continue }
            out.append(render(start: start, ops, values: values, id: "\(s.rawValue)-\(out.count)", rng: &rng))
        }
        return out
    }

    /// All three splits.
    public func splits(_ sizes: SplitSizes) throws(DemoError) -> ProblemSplits {
        ProblemSplits(
            train: try problems(.train, count: sizes.train),
            validation: try problems(.validation, count: sizes.validation),
            test: try problems(.test, count: sizes.test))
    }

    /// A start value and operations within the knobs' bounds, with the running values; nil when the draw got
    /// stuck (no allowed operation keeps the value in bounds), to be drawn again.
    func arithmetic(_ rng: inout SplitMix64) -> (Int, [ProblemStep], [Int])? {
        let c = config
        let start = rng.draw(c.startRange)
        let n = rng.draw(c.minSteps...c.maxSteps)
        var value = start
        var ops: [ProblemStep] = []
        var values: [Int] = []
        let low = c.operandRange.lowerBound
        for _ in 0..<n {
            let factors =
                value > 0 && c.operations.contains(.multiply) ? c.factors.filter { value * $0 <= c.maxValue } : []
            let canAdd = c.operations.contains(.add) && value + low <= c.maxValue
            let canSubtract = c.operations.contains(.subtract) && value - low >= c.minValue
            let step: ProblemStep
            if !factors.isEmpty && (rng.chance(c.multiplyProbability) || !(canAdd || canSubtract)) {
                step = ProblemStep(.multiply, rng.pick(factors))
            } else if canAdd || canSubtract {
                let add = canAdd && (!canSubtract || rng.chance(0.5))
                let high =
                    add
                    ? min(c.operandRange.upperBound, c.maxValue - value)
                    : min(c.operandRange.upperBound, value - c.minValue)
                step = ProblemStep(add ? .add : .subtract, rng.draw(low...high))
            } else {
                return nil
            }
            value = step.operation.apply(value, step.operand)
            ops.append(step)
            values.append(value)
        }
        return (start, ops, values)
    }
}
