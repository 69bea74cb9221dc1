import Format
import Support
import Foundation

/// The methods the demo compares, in the order the table lists them.
public enum DemoMethod: String, Sendable, Codable, CaseIterable {
    /// Supervised fine-tuning on worked solutions (the reference and every other method's start).
    case sft = "SFT"
    /// Rejection sampling: SFT on the correct samples only.
    case rft = "RFT"
    /// Direct preference optimization on correct/wrong pairs of a problem.
    case dpo = "DPO"
    /// Kahneman-Tversky optimization on unpaired correct and wrong samples.
    case kto = "KTO"
    /// Policy and value network trained jointly on the soft Bellman equation.
    case oreo = "OREO"
    /// Direct Q-function optimization.
    case dqo = "DQO"

    /// Table position of a method name (known methods first, in declaration order; others after, by name).
    static func order(_ name: String) -> (Int, String) {
        (allCases.firstIndex { $0.rawValue == name } ?? allCases.count, name)
    }
}

/// How answers were decoded: greedy, or step-level beam search of a width ranked by a scorer.
public struct Decoding: Sendable, Hashable, Codable {
    /// Beam width; 1 for greedy decoding.
    public var width: Int
    /// What ranks beam candidates ("value", "logprob", ...); nil for greedy decoding.
    public var scorer: String?

    /// A decoding.
    public init(width: Int, scorer: String?) {
        self.width = width
        self.scorer = scorer
    }

    /// Greedy decoding.
    public static let greedy = Decoding(width: 1, scorer: nil)
    /// Beam search of `width` ranked by `scorer`.
    public static func beam(width: Int, scorer: String) -> Decoding { Decoding(width: width, scorer: scorer) }

    /// Whether this is greedy decoding.
    public var isGreedy: Bool { scorer == nil }
    /// `greedy` or `beam B=4 (value)`.
    public var label: String { scorer.map { "beam B=\(width) (\($0))" } ?? "greedy" }
    /// A file-name form of the label: `greedy`, `beam4-value`.
    public var slug: String { scorer.map { "beam\(width)-\($0)" } ?? "greedy" }

    static func order(_ d: Decoding) -> (Int, String, Int) { (d.isGreedy ? 0 : 1, d.scorer ?? "", d.width) }
}

/// One evaluation: a method's model, a decoding and a seed on the test problems.
public struct Evaluation: Sendable, Equatable, Codable {
    /// The method that trained the model (`DemoMethod` raw values, or another name).
    public var method: String
    /// How answers were decoded.
    public var decoding: Decoding
    /// The run's seed.
    public var seed: UInt64
    /// Problems answered correctly.
    public var correct: Int
    /// Problems evaluated.
    public var total: Int
    /// Tokens the policy generated over all problems (every beam candidate's tokens included).
    public var tokensGenerated: Int
    /// Candidates the scorer ranked over all problems (0 for greedy decoding).
    public var candidatesScored: Int
    /// Wall time of the evaluation, if measured.
    public var seconds: Double?
    /// The per-answer file the numbers were counted from, if written.
    public var answers: String?

    /// A measurement.
    public init(
        method: String, decoding: Decoding, seed: UInt64, correct: Int, total: Int, tokensGenerated: Int,
        candidatesScored: Int = 0, seconds: Double? = nil
    ) {
        self.method = method
        self.decoding = decoding
        self.seed = seed
        self.correct = correct
        self.total = total
        self.tokensGenerated = tokensGenerated
        self.candidatesScored = candidatesScored
        self.seconds = seconds
    }

    /// Fraction answered correctly.
    public var accuracy: Double { total > 0 ? Double(correct) / Double(total) : .nan }
}

/// The value network's quality on held-out samples for one method and seed.
public struct ValueQuality: Sendable, Equatable, Codable {
    /// The method whose value network (or policy) was measured.
    public var method: String
    /// What scored the samples: "value" (the value network) or "logprob" (the policy's cumulative log-prob).
    public var scorer: String
    /// The run's seed.
    public var seed: UInt64
    /// Within-problem AUC of the final score.
    public var auc: WithinProblemAUC
    /// Value change at the first wrong step against at correct steps.
    public var stepChange: StepValueChange
    /// Pearson correlation of V(prompt) with the per-problem success rate.
    public var promptCorrelation: Double?
    /// Problems in that correlation.
    public var correlationProblems: Int

    /// A measurement of a value network.
    public init(
        method: String, scorer: String = "value", seed: UInt64, auc: WithinProblemAUC, stepChange: StepValueChange,
        promptCorrelation: Double?, correlationProblems: Int
    ) {
        self.method = method
        self.scorer = scorer
        self.seed = seed
        self.auc = auc
        self.stepChange = stepChange
        self.promptCorrelation = promptCorrelation
        self.correlationProblems = correlationProblems
    }
}

/// Counts of one set of labeled samples.
public struct SampleCounts: Sendable, Equatable, Codable {
    /// No samples.
    public init() {}

    /// Samples, and those with reward 1.
    public var samples = 0, correct = 0
    /// Problems sampled; those with both correct and wrong samples; those with none correct.
    public var problems = 0, mixed = 0, noneCorrect = 0

    /// The counts of `records`.
    public init(_ records: [SampleRecord]) {
        var byProblem: [String: (right: Int, all: Int)] = [:]
        for r in records {
            byProblem[r.problemId, default: (0, 0)].all += 1
            if r.reward > 0 { byProblem[r.problemId]!.right += 1 }
        }
        samples = records.count
        correct = records.filter { $0.reward > 0 }.count
        problems = byProblem.count
        mixed = byProblem.values.filter { $0.right > 0 && $0.right < $0.all }.count
        noneCorrect = byProblem.values.filter { $0.right == 0 }.count
    }
}

/// The SFT policy's samples of one seed: the offline data (training problems) and the held-out set.
public struct SampleStatistics: Sendable, Equatable, Codable {
    /// The seed.
    public var seed: UInt64
    /// Samples on training problems (what every method trains on).
    public var train: SampleCounts
    /// Samples on validation problems (what the scorers are measured on).
    public var validation: SampleCounts

    /// Statistics of both sets.
    public init(seed: UInt64, train: [SampleRecord], validation: [SampleRecord]) {
        self.seed = seed
        self.train = SampleCounts(train)
        self.validation = SampleCounts(validation)
    }
}

/// Accuracy of one method and decoding summarized over seeds.
public struct Summary: Sendable, Equatable {
    /// The method.
    public var method: String
    /// The decoding.
    public var decoding: Decoding
    /// Seeds measured, ascending, with their accuracy.
    public var perSeed: [(seed: UInt64, accuracy: Double)]
    /// Accuracy over seeds.
    public var accuracy: Spread
    /// Tokens generated per problem (all seeds pooled).
    public var tokensPerProblem: Double
    /// Candidates scored per problem (all seeds pooled).
    public var candidatesPerProblem: Double

    /// Summaries are equal when their numbers are.
    public static func == (a: Summary, b: Summary) -> Bool {
        a.method == b.method && a.decoding == b.decoding && a.perSeed.map(\.seed) == b.perSeed.map(\.seed)
            && a.perSeed.map(\.accuracy) == b.perSeed.map(\.accuracy) && a.accuracy == b.accuracy
            && a.tokensPerProblem == b.tokensPerProblem && a.candidatesPerProblem == b.candidatesPerProblem
    }
}

/// The demo's results: the paper's Table 1 in miniature (greedy accuracy per seed and its spread, beam
/// search at several widths, tokens generated), the search compute, and the value network's quality.
public struct ResultsReport: Sendable {
    /// Heading of the report.
    public var title: String
    /// What the run was (task knobs, sizes, model, budget), in display order.
    public var settings: [(key: String, value: String)]
    /// Every evaluation.
    public var evaluations: [Evaluation]
    /// Every value-network measurement.
    public var valueQuality: [ValueQuality]
    /// The offline data per seed.
    public var samples: [SampleStatistics]
    /// Remarks printed under the tables (what could not be measured, and why).
    public var notes: [String]
    /// The split the accuracies were measured on ("test", or "validation" while choosing settings).
    public var split: String

    /// A report.
    public init(
        title: String, settings: [(key: String, value: String)] = [], evaluations: [Evaluation] = [],
        valueQuality: [ValueQuality] = [], samples: [SampleStatistics] = [], notes: [String] = [],
        split: String = "test"
    ) {
        self.title = title
        self.settings = settings
        self.evaluations = evaluations
        self.valueQuality = valueQuality
        self.samples = samples
        self.notes = notes
        self.split = split
    }

    /// Methods in table order.
    public var methods: [String] {
        Array(Set(evaluations.map(\.method))).sorted { DemoMethod.order($0) < DemoMethod.order($1) }
    }

    /// Decodings in table order (greedy, then beams by scorer and width).
    public var decodings: [Decoding] {
        Array(Set(evaluations.map(\.decoding))).sorted { Decoding.order($0) < Decoding.order($1) }
    }

    /// Seeds with a greedy measurement, ascending.
    public var seeds: [UInt64] { Array(Set(evaluations.filter(\.decoding.isGreedy).map(\.seed))).sorted() }

    /// Accuracy of `method` with `decoding` over seeds (a seed measured twice counts its later measurement).
    public func summary(_ method: String, _ decoding: Decoding) -> Summary? {
        var bySeed: [UInt64: Evaluation] = [:]
        for m in evaluations where m.method == method && m.decoding == decoding { bySeed[m.seed] = m }
        guard !bySeed.isEmpty else { return nil }
        let ms = bySeed.keys.sorted().map { bySeed[$0]! }
        let problems = Double(ms.reduce(0) { $0 + $1.total })
        return Summary(
            method: method, decoding: decoding, perSeed: ms.map { ($0.seed, $0.accuracy) },
            accuracy: Metrics.spread(ms.map(\.accuracy)),
            tokensPerProblem: Double(ms.reduce(0) { $0 + $1.tokensGenerated }) / max(problems, 1),
            candidatesPerProblem: Double(ms.reduce(0) { $0 + $1.candidatesScored }) / max(problems, 1))
    }

    /// `method`'s accuracy with `decoding` minus SFT's greedy accuracy on the same seed, over the seeds both
    /// have: the paired difference, which the seeds' spread in SFT itself does not blur.
    public func deltaVersusSFT(_ method: String, _ decoding: Decoding) -> Spread? {
        guard let m = summary(method, decoding), let sft = summary(DemoMethod.sft.rawValue, .greedy) else { return nil }
        let base = Dictionary(sft.perSeed.map { ($0.seed, $0.accuracy) }, uniquingKeysWith: { _, b in b })
        let d = m.perSeed.compactMap { s in base[s.seed].map { s.accuracy - $0 } }
        return d.isEmpty ? nil : Metrics.spread(d)
    }

    static func signedPercent(_ s: Spread) -> String {
        let m = (s.mean >= 0 ? "+" : "") + percent(s.mean)
        return s.count > 1 ? "\(m) ± \(percent(s.standardDeviation))" : m
    }

    static func percent(_ x: Double) -> String { x.isFinite ? fixed(100 * x, 1) : "–" }

    static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return "–" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let v = (abs(x) * scale).rounded()
        let whole = Int(v / scale), frac = Int(v) - whole * Int(scale)
        let sign = x < 0 && v > 0 ? "-" : ""
        guard digits > 0 else { return sign + String(whole) }
        let f = String(frac)
        return sign + String(whole) + "." + String(repeating: "0", count: digits - f.count) + f
    }

    static func meanSD(_ s: Spread) -> String {
        s.count > 1 ? "\(percent(s.mean)) ± \(percent(s.standardDeviation))" : percent(s.mean)
    }

    static func row(_ cells: [String]) -> String { "| " + cells.joined(separator: " | ") + " |" }

    /// The report as Markdown: settings, the accuracy table, the search-compute table, the value table, notes.
    public var markdown: String {
        var out = ["# \(title)", ""]
        if !settings.isEmpty {
            out += [ResultsReport.row(["setting", "value"]), "|---|---|"]
            out += settings.map { ResultsReport.row([$0.key, $0.value]) }
            out.append("")
        }
        let seeds = self.seeds, beams = decodings.filter { !$0.isGreedy }
        if !samples.isEmpty {
            let pct = { (a: Int, b: Int) in ResultsReport.percent(Double(a) / Double(max(b, 1))) }
            out += ["## Offline data: samples of the SFT policy", ""]
            out += [
                ResultsReport.row([
                    "seed", "training samples", "correct (%)", "problems mixed (%)", "problems none correct (%)",
                    "held-out samples", "correct (%)", "held-out problems mixed (%)",
                ]),
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for x in samples.sorted(by: { $0.seed < $1.seed }) {
                out.append(
                    ResultsReport.row([
                        "\(x.seed)", "\(x.train.samples)", pct(x.train.correct, x.train.samples),
                        pct(x.train.mixed, x.train.problems), pct(x.train.noneCorrect, x.train.problems),
                        "\(x.validation.samples)", pct(x.validation.correct, x.validation.samples),
                        pct(x.validation.mixed, x.validation.problems),
                    ]))
            }
            out.append("")
        }
        if evaluations.isEmpty {
            out += ["No evaluations were run.", ""]
        } else {
            out += ["## \(split == "test" ? "Test" : "Validation (not test)") accuracy (%)", ""]
            let header =
                ["method"] + seeds.map { "seed \($0)" } + ["greedy mean ± sd", "greedy − SFT"] + beams.map(\.label) + [
                    "greedy tokens / problem"
                ]
            out.append(ResultsReport.row(header))
            out.append("|---|" + String(repeating: "---:|", count: header.count - 1))
            for method in methods {
                let g = summary(method, .greedy)
                var cells = [method]
                for seed in seeds {
                    cells.append(g?.perSeed.first { $0.seed == seed }.map { ResultsReport.percent($0.accuracy) } ?? "–")
                }
                cells.append(g.map { ResultsReport.meanSD($0.accuracy) } ?? "–")
                cells.append(
                    method == DemoMethod.sft.rawValue
                        ? "–" : deltaVersusSFT(method, .greedy).map(ResultsReport.signedPercent) ?? "–")
                for b in beams { cells.append(summary(method, b).map { ResultsReport.meanSD($0.accuracy) } ?? "–") }
                cells.append(g.map { ResultsReport.fixed($0.tokensPerProblem, 1) } ?? "–")
                out.append(ResultsReport.row(cells))
            }
            out += [
                "",
                "Mean ± sample standard deviation over seeds. \"greedy − SFT\" is the paired difference: per seed, the method's greedy accuracy minus the SFT model's it started from (mean ± sd over seeds). Beam columns are value- or log-prob-guided step-level beam search at width B.",
                "",
            ]
            out += ["## Search compute", ""]
            out += [
                ResultsReport.row([
                    "method", "decoding", "seeds", "accuracy (%)", "− SFT greedy", "tokens generated / problem",
                    "candidates scored / problem",
                ]),
                "|---|---|---:|---:|---:|---:|---:|",
            ]
            for method in methods {
                for d in decodings {
                    guard let s = summary(method, d) else { continue }
                    let delta =
                        method == DemoMethod.sft.rawValue && d.isGreedy
                        ? "–" : deltaVersusSFT(method, d).map(ResultsReport.signedPercent) ?? "–"
                    out.append(
                        ResultsReport.row([
                            method, d.label, "\(s.accuracy.count)", ResultsReport.meanSD(s.accuracy), delta,
                            ResultsReport.fixed(s.tokensPerProblem, 1), ResultsReport.fixed(s.candidatesPerProblem, 1),
                        ]))
                }
            }
            out.append("")
        }
        if !valueQuality.isEmpty {
            out += ["## Scorers on held-out samples", ""]
            out += [
                ResultsReport.row([
                    "method", "scorer", "seeds", "within-problem AUC", "Δ at first wrong step", "Δ at correct steps",
                ]),
                "|---|---|---:|---:|---:|---:|",
            ]
            var groups: [(String, String)] = []
            for q in valueQuality where !groups.contains(where: { $0 == (q.method, q.scorer) }) {
                groups.append((q.method, q.scorer))
            }
            groups.sort { a, b in
                DemoMethod.order(a.0) != DemoMethod.order(b.0)
                    ? DemoMethod.order(a.0) < DemoMethod.order(b.0) : a.1 > b.1
            }
            for (method, scorer) in groups {
                let qs = valueQuality.filter { $0.method == method && $0.scorer == scorer }
                let f = { (xs: [Double?]) -> String in
                    let v = xs.compactMap { $0 }
                    guard !v.isEmpty else { return "–" }
                    let sp = Metrics.spread(v)
                    return sp.count > 1
                        ? "\(ResultsReport.fixed(sp.mean, 3)) ± \(ResultsReport.fixed(sp.standardDeviation, 3))"
                        : ResultsReport.fixed(sp.mean, 3)
                }
                out.append(
                    ResultsReport.row([
                        method, scorer, "\(qs.count)", f(qs.map(\.auc.auc)), f(qs.map(\.stepChange.atFirstWrong)),
                        f(qs.map(\.stepChange.atCorrect)),
                    ]))
            }
            out += ["", "Per seed:", ""]
            out += [
                ResultsReport.row([
                    "method", "scorer", "seed", "within-problem AUC", "problems", "Δ at first wrong step",
                    "Δ at correct steps", "r(score(prompt), success rate)",
                ]),
                "|---|---|---:|---:|---:|---:|---:|---:|",
            ]
            for q in valueQuality.sorted(by: { a, b in
                let (x, y) = (DemoMethod.order(a.method), DemoMethod.order(b.method))
                return x != y ? x < y : a.scorer != b.scorer ? a.scorer > b.scorer : a.seed < b.seed
            }) {
                out.append(
                    ResultsReport.row([
                        q.method, q.scorer, "\(q.seed)", q.auc.auc.map { ResultsReport.fixed($0, 3) } ?? "–",
                        "\(q.auc.problems)",
                        q.stepChange.atFirstWrong.map { ResultsReport.fixed($0, 3) } ?? "–",
                        q.stepChange.atCorrect.map { ResultsReport.fixed($0, 3) } ?? "–",
                        q.promptCorrelation.map { ResultsReport.fixed($0, 3) } ?? "–",
                    ]))
            }
            out += [
                "",
                "Scores of the SFT policy's held-out samples (validation problems): \"value\" is the value network's V, \"logprob\" the policy's cumulative log-prob of the response (0 at the prompt). Δ is the mean score change over a step. AUC 0.5 is chance: search guided by a scorer can only help when it is clearly above.",
                "",
            ]
        }
        if !notes.isEmpty { out += notes.map { "- " + $0 } + [""] }
        return out.joined(separator: "\n")
    }

    /// The report as JSON: settings, every measurement, the summaries and the value evaluations.
    public var json: String {
        let n = { (x: Double) in JSONText.number(x) }
        let opt = { (x: Double?) in x.map { JSONText.number($0) } ?? "null" }
        func decoding(_ d: Decoding) -> String {
            JSONText.object([
                ("search", JSONText.string(d.isGreedy ? "greedy" : "beam")), ("width", "\(d.width)"),
                ("scorer", d.scorer.map(JSONText.string) ?? "null"),
            ])
        }
        func spread(_ s: Spread) -> String {
            JSONText.object([
                ("mean", n(s.mean)), ("sd", n(s.standardDeviation)), ("se", n(s.standardError)), ("n", "\(s.count)"),
            ])
        }
        let ms = evaluations.map { m in
            JSONText.object([
                ("method", JSONText.string(m.method)), ("decoding", decoding(m.decoding)), ("seed", "\(m.seed)"),
                ("correct", "\(m.correct)"), ("total", "\(m.total)"), ("accuracy", n(m.accuracy)),
                ("tokens_generated", "\(m.tokensGenerated)"), ("candidates_scored", "\(m.candidatesScored)"),
                ("seconds", opt(m.seconds)), ("answers", m.answers.map(JSONText.string) ?? "null"),
            ])
        }
        var sums: [String] = []
        for method in methods {
            for d in decodings {
                guard let s = summary(method, d) else { continue }
                sums.append(
                    JSONText.object([
                        ("method", JSONText.string(method)), ("decoding", decoding(d)),
                        ("seeds", JSONText.array(s.perSeed.map { "\($0.seed)" })),
                        ("accuracy_per_seed", JSONText.array(s.perSeed.map { n($0.accuracy) })),
                        ("accuracy", spread(s.accuracy)),
                        ("minus_sft_greedy", deltaVersusSFT(method, d).map(spread) ?? "null"),
                        ("tokens_per_problem", n(s.tokensPerProblem)),
                        ("candidates_per_problem", n(s.candidatesPerProblem)),
                    ]))
            }
        }
        let vq = valueQuality.map { q in
            JSONText.object([
                ("method", JSONText.string(q.method)), ("scorer", JSONText.string(q.scorer)), ("seed", "\(q.seed)"),
                ("within_problem_auc", opt(q.auc.auc)), ("auc_problems", "\(q.auc.problems)"),
                ("auc_pairs", "\(q.auc.pairs)"),
                ("value_change_first_wrong", opt(q.stepChange.atFirstWrong)),
                ("first_wrong_steps", "\(q.stepChange.firstWrongCount)"),
                ("value_change_correct", opt(q.stepChange.atCorrect)),
                ("correct_steps", "\(q.stepChange.correctCount)"),
                ("prompt_value_success_pearson", opt(q.promptCorrelation)),
                ("correlation_problems", "\(q.correlationProblems)"),
            ])
        }
        let counts = { (k: SampleCounts) in
            JSONText.object([
                ("samples", "\(k.samples)"), ("correct", "\(k.correct)"), ("problems", "\(k.problems)"),
                ("mixed", "\(k.mixed)"), ("none_correct", "\(k.noneCorrect)"),
            ])
        }
        let sampleItems = samples.map {
            JSONText.object([
                ("seed", "\($0.seed)"), ("train", counts($0.train)), ("validation", counts($0.validation)),
            ])
        }
        let list = { (items: [String]) in
            items.isEmpty ? "[]" : "[\n    " + items.joined(separator: ",\n    ") + "\n  ]"
        }
        return """
            {
              "title": \(JSONText.string(title)),
              "split": \(JSONText.string(split)),
              "settings": \(JSONText.object(settings.map { ($0.key, JSONText.string($0.value)) })),
              "evaluations": \(list(ms)),
              "summary": \(list(sums)),
              "value_quality": \(list(vq)),
              "samples": \(list(sampleItems)),
              "notes": \(JSONText.array(notes.map(JSONText.string)))
            }

            """
    }

    /// `path` relative to `base`, both taken against the current directory when relative (`..` where `path` is
    /// outside `base`).
    static func relativePath(_ path: String, to base: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        func parts(_ p: String) -> [Substring] {
            var out: [Substring] = []
            for c in (p.hasPrefix("/") ? p : cwd + "/" + p).split(separator: "/") where c != "." {
                if c == ".." { _ = out.popLast() } else { out.append(c) }
            }
            return out
        }
        let p = parts(path), b = parts(base)
        var k = 0
        while k < p.count, k < b.count, p[k] == b[k] { k += 1 }
        let rel = Array(repeating: "..", count: b.count - k) + p[k...].map(String.init)
        return rel.isEmpty ? "." : rel.joined(separator: "/")
    }

    /// Writes `results.md`, `results.json` and the search plots `search-tokens.svg` and `search-candidates.svg`
    /// into `directory` (each atomically); returns the paths written. Paths in them are relative to `directory`,
    /// so a report that is moved or shipped (docs/demo) does not name directories of the machine that wrote it.
    @discardableResult
    public func write(directory: String) throws -> [String] {
        var report = self
        for i in report.evaluations.indices {
            report.evaluations[i].answers = report.evaluations[i].answers.map {
                ResultsReport.relativePath($0, to: directory)
            }
        }
        var written: [(String, String)] = [("results.md", report.markdown), ("results.json", report.json)]
        if !evaluations.isEmpty {
            written.append(("search-tokens.svg", report.searchPlot(x: .tokensGenerated).svg))
            written.append(("search-candidates.svg", report.searchPlot(x: .candidatesScored).svg))
        }
        for (name, text) in written { try writeFileAtomically(Array(text.utf8), to: directory + "/" + name) }
        return written.map { directory + "/" + $0.0 }
    }
}
