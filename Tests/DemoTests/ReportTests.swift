import Foundation
#if canImport(FoundationXML)
    import FoundationXML
#endif
import Testing
import Demo

/// The results table (Markdown, JSON) and the search plot (SVG parsed back as XML).
@Suite struct ReportTests {
    /// Three seeds of SFT, OREO (value and log-prob beams) and RFT (greedy only, one seed missing).
    static let report: ResultsReport = {
        var ms: [Evaluation] = []
        for (k, seed) in [UInt64(1), 2, 3].enumerated() {
            ms.append(
                Evaluation(
                    method: "SFT", decoding: .greedy, seed: seed, correct: 360 + 10 * k, total: 1000,
                    tokensGenerated: 30_000))
            ms.append(
                Evaluation(
                    method: "OREO", decoding: .greedy, seed: seed, correct: 370 + 20 * k, total: 1000,
                    tokensGenerated: 31_000))
            if seed != 2 {
                ms.append(
                    Evaluation(
                        method: "RFT", decoding: .greedy, seed: seed, correct: 350, total: 1000, tokensGenerated: 29_000
                    ))
            }
            for w in [2, 4, 8] {
                ms.append(
                    Evaluation(
                        method: "OREO", decoding: .beam(width: w, scorer: "value"), seed: seed,
                        correct: 380 + 5 * w + k,
                        total: 1000, tokensGenerated: 31_000 * w * w, candidatesScored: 4_000 * w * w))
                ms.append(
                    Evaluation(
                        method: "OREO", decoding: .beam(width: w, scorer: "logprob"), seed: seed, correct: 360 + w,
                        total: 1000, tokensGenerated: 31_000 * w * w, candidatesScored: 4_000 * w * w))
            }
        }
        let vq = ValueQuality(
            method: "OREO", seed: 1, auc: WithinProblemAUC(auc: 0.55, problems: 640, pairs: 9000),
            stepChange: StepValueChange(atFirstWrong: -0.05, firstWrongCount: 500, atCorrect: 0.01, correctCount: 3000),
            promptCorrelation: 0.56, correlationProblems: 1000)
        return ResultsReport(
            title: "oreo demo", settings: [("seeds", "1, 2, 3"), ("train problems", "5000")],
            evaluations: ms, valueQuality: [vq], notes: ["a note"])
    }()

    @Test func summariesOverSeeds() throws {
        let r = ReportTests.report
        #expect(r.methods == ["SFT", "RFT", "OREO"])
        #expect(r.seeds == [1, 2, 3])
        #expect(
            r.decodings.map(\.label) == [
                "greedy", "beam B=2 (logprob)", "beam B=4 (logprob)", "beam B=8 (logprob)",
                "beam B=2 (value)", "beam B=4 (value)", "beam B=8 (value)",
            ])
        let s = try #require(r.summary("OREO", .greedy))
        #expect(s.perSeed.map(\.accuracy) == [0.37, 0.39, 0.41])
        #expect(abs(s.accuracy.mean - 0.39) < 1e-12 && abs(s.accuracy.standardDeviation - 0.02) < 1e-12)
        #expect(s.tokensPerProblem == 31)
        let b = try #require(r.summary("OREO", .beam(width: 4, scorer: "value")))
        #expect(b.tokensPerProblem == 31 * 16 && b.candidatesPerProblem == 64)
        #expect(r.summary("RFT", .greedy)?.perSeed.map(\.seed) == [1, 3])
        #expect(r.summary("SFT", .beam(width: 2, scorer: "value")) == nil)
    }

    @Test func markdownTable() {
        let md = ReportTests.report.markdown
        let lines = md.split(separator: "\n").map(String.init)
        let header = lines.first { $0.hasPrefix("| method | seed 1") }
        #expect(
            header
                == "| method | seed 1 | seed 2 | seed 3 | greedy mean ± sd | greedy − SFT | beam B=2 (logprob) | beam B=4 (logprob) | beam B=8 (logprob) | beam B=2 (value) | beam B=4 (value) | beam B=8 (value) | greedy tokens / problem |"
        )
        #expect(lines.contains("| SFT | 36.0 | 37.0 | 38.0 | 37.0 ± 1.0 | – | – | – | – | – | – | – | 30.0 |"))
        #expect(lines.contains("| RFT | 35.0 | – | 35.0 | 35.0 ± 0.0 | -2.0 ± 1.4 | – | – | – | – | – | – | 29.0 |"))
        #expect(
            lines.contains(
                "| OREO | 37.0 | 39.0 | 41.0 | 39.0 ± 2.0 | +2.0 ± 1.0 | 36.2 ± 0.0 | 36.4 ± 0.0 | 36.8 ± 0.0 | 39.1 ± 0.1 | 40.1 ± 0.1 | 42.1 ± 0.1 | 31.0 |"
            ))
        #expect(lines.contains("| OREO | beam B=8 (value) | 3 | 42.1 ± 0.1 | +5.1 ± 0.9 | 1984.0 | 256.0 |"))
        #expect(lines.contains("| OREO | value | 1 | 0.550 | 640 | -0.050 | 0.010 | 0.560 |"))
        #expect(lines.contains("| OREO | value | 1 | 0.550 | -0.050 | 0.010 |"))  // the summary over seeds
        #expect(lines.contains("- a note"))
        // Every table row has as many cells as its header.
        var width = 0
        for l in lines where l.hasPrefix("|") {
            let cells = l.split(separator: "|", omittingEmptySubsequences: false).count
            if l.hasPrefix("| method") || l.hasPrefix("| setting") {
                width = cells
            } else {
                #expect(cells == width, "\(l)")
            }
        }
        #expect(ResultsReport(title: "empty").markdown.contains("No evaluations were run."))
    }

    @Test func jsonCarriesEveryMeasurementAndSummary() throws {
        let r = ReportTests.report
        let root = try #require(try JSONSerialization.jsonObject(with: Data(r.json.utf8)) as? [String: Any])
        let ms = try #require(root["evaluations"] as? [[String: Any]])
        #expect(ms.count == r.evaluations.count)
        let first = ms[0]
        #expect(
            first["method"] as? String == "SFT" && first["accuracy"] as? Double == 0.36 && first["seconds"] is NSNull)
        let sums = try #require(root["summary"] as? [[String: Any]])
        #expect(sums.count == 3 + 6)
        let oreo = try #require(
            sums.first {
                $0["method"] as? String == "OREO"
                    && ($0["decoding"] as? [String: Any])?["search"] as? String == "greedy"
            })
        let acc = try #require(oreo["accuracy"] as? [String: Any])
        #expect(acc["mean"] as? Double == 0.39 && acc["sd"] as? Double == 0.02 && acc["n"] as? Int == 3)
        #expect(oreo["accuracy_per_seed"] as? [Double] == [0.37, 0.39, 0.41])
        let vq = try #require((root["value_quality"] as? [[String: Any]])?.first)
        #expect(vq["within_problem_auc"] as? Double == 0.55 && vq["auc_problems"] as? Int == 640)
        #expect((root["settings"] as? [String: String])?["train problems"] == "5000")
        // Empty and NaN-free: a report without evaluations is still valid JSON.
        #expect(try JSONSerialization.jsonObject(with: Data(ResultsReport(title: "x").json.utf8)) is [String: Any])
    }

    @Test func writesFilesAtomically() throws {
        let dir = DemoTestSupport.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try ReportTests.report.write(directory: dir)
        #expect(
            paths.map { ($0 as NSString).lastPathComponent } == [
                "results.md", "results.json", "search-tokens.svg", "search-candidates.svg",
            ])
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
        #expect(left.isEmpty)
    }
}

/// An SVG read back: every element with its attributes and the classes of the groups around it.
final class SVGDocument: NSObject, XMLParserDelegate {
    struct Element {
        var name: String
        var attributes: [String: String]
        var groups: [String]
        var groupNames: [String]
        var text = ""
    }
    var elements: [Element] = []
    private var stack: [(cls: String, name: String)] = []
    private var open: [Int] = []

    init?(_ svg: String) {
        super.init()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = self
        guard parser.parse() else { return nil }
    }

    func parser(
        _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        elements.append(
            Element(name: name, attributes: attributes, groups: stack.map(\.cls), groupNames: stack.map(\.name)))
        open.append(elements.count - 1)
        stack.append((attributes["class"] ?? "", attributes["data-name"] ?? ""))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if let i = open.last { elements[i].text += string }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        stack.removeLast()
        open.removeLast()
    }

    func all(_ name: String, in group: String? = nil) -> [Element] {
        elements.filter { $0.name == name && (group == nil || $0.groups.contains(group!)) }
    }
}

@Suite struct PlotTests {
    static func number(_ e: SVGDocument.Element, _ key: String) -> Double { Double(e.attributes[key] ?? "") ?? .nan }

    /// Pixel position of value `v` read off the drawn ticks (linear, or linear in log10 for a log axis).
    static func fromTicks(_ ticks: [(value: Double, pixel: Double)], _ v: Double, log: Bool) -> Double {
        let t = log ? ticks.map { (Foundation.log10($0.value), $0.pixel) } : ticks
        let x = log ? Foundation.log10(v) : v
        let (a, b) = (t.first!, t.last!)
        return a.1 + (x - a.0) / (b.0 - a.0) * (b.1 - a.1)
    }

    static func ticks(_ doc: SVGDocument, _ cls: String) -> [(value: Double, pixel: Double)] {
        doc.elements.enumerated().compactMap { i, e -> (Double, Double)? in
            guard e.name == "g", e.attributes["class"] == cls else { return nil }
            let line = doc.elements[i + 1]  // the tick mark
            return (number(e, "data-value"), cls == "tick-x" ? number(line, "x1") : number(line, "y1"))
        }
    }

    @Test(arguments: SearchCompute.allCases)
    func searchPlotPointsSitWhereTheAxesSay(x: SearchCompute) throws {
        let report = ReportTests.report
        let plot = report.searchPlot(x: x)
        let doc = try #require(SVGDocument(plot.svg), "the SVG is not well-formed XML")
        #expect(
            doc.elements.first?.name == "svg" && doc.elements.first?.attributes["xmlns"] == "http://www.w3.org/2000/svg"
        )
        // One line per method and scorer (OREO has two scorers), SFT and RFT as single greedy points.
        #expect(plot.series.map(\.name) == ["SFT · greedy", "RFT · greedy", "OREO · value", "OREO · logprob"])
        #expect(plot.series.map(\.dashed) == [false, false, false, true])
        let xTicks = PlotTests.ticks(doc, "tick-x"), yTicks = PlotTests.ticks(doc, "tick-y")
        #expect(xTicks.count >= 2 && yTicks.count >= 2)
        // Tick values increase with the pixel (x right, y up) and carry readable labels.
        #expect(zip(xTicks, xTicks.dropFirst()).allSatisfy { $0.value < $1.value && $0.pixel < $1.pixel })
        #expect(zip(yTicks, yTicks.dropFirst()).allSatisfy { $0.value < $1.value && $0.pixel > $1.pixel })
        let axisX = try #require(doc.all("line").first { $0.attributes["class"] == "axis-x" })
        let axisY = try #require(doc.all("line").first { $0.attributes["class"] == "axis-y" })
        let (left, right) = (PlotTests.number(axisX, "x1"), PlotTests.number(axisX, "x2"))
        let (bottom, top) = (PlotTests.number(axisY, "y1"), PlotTests.number(axisY, "y2"))
        for s in plot.series {
            let circles = doc.all("circle", in: "series").filter { $0.groupNames.contains(s.name) }
            #expect(circles.count == s.points.count, "\(s.name)")
            for (p, c) in zip(s.points, circles) {
                #expect(PlotTests.number(c, "data-x") == p.x && PlotTests.number(c, "data-y") == p.y)
                let cx = PlotTests.number(c, "cx"), cy = PlotTests.number(c, "cy")
                #expect(abs(cx - PlotTests.fromTicks(xTicks, p.x, log: true)) < 0.02, "\(s.name) x \(p.x) at \(cx)")
                #expect(abs(cy - PlotTests.fromTicks(yTicks, p.y, log: false)) < 0.02, "\(s.name) y \(p.y) at \(cy)")
                #expect(cx >= left - 0.01 && cx <= right + 0.01 && cy <= bottom + 0.01 && cy >= top - 0.01)
            }
            // The line joins the markers in order, in the series' colour, which the legend repeats.
            let line = try #require(doc.all("polyline").first { $0.groupNames.contains(s.name) })
            #expect(
                line.attributes["points"]
                    == circles.map { "\($0.attributes["cx"]!),\($0.attributes["cy"]!)" }.joined(separator: " "))
            #expect(line.attributes["stroke"] == s.color)
            let legend = try #require(
                doc.elements.first { $0.attributes["class"] == "legend-item" && $0.attributes["data-name"] == s.name })
            _ = legend
            let legendLine = try #require(doc.all("line", in: "legend").first { $0.groupNames.contains(s.name) })
            #expect(legendLine.attributes["stroke"] == s.color)
            #expect(doc.all("text", in: "legend").contains { $0.groupNames.contains(s.name) && $0.text == s.name })
        }
        // The expected data: OREO's value line starts at its greedy point and goes through widths 2, 4, 8.
        let oreo = try #require(plot.series.first { $0.name == "OREO · value" })
        let cost: [Double] = x == .tokensGenerated ? [31, 124, 496, 1984] : [1, 16, 64, 256]
        #expect(oreo.points.map(\.x) == cost)
        #expect(zip(oreo.points.map(\.y), [0.39, 0.391, 0.401, 0.421]).allSatisfy { abs($0 - $1) < 1e-12 })
        // Axis labels and percent tick labels.
        #expect(doc.all("text").contains { $0.attributes["class"] == "label-y" && $0.text == "test accuracy (%)" })
        let yLabels = doc.all("text", in: "tick-y").map(\.text)
        #expect(yLabels.allSatisfy { Double($0) != nil } && yLabels.contains("40"))
    }

    @Test func ticksCoverTheData() {
        let cases: [(Double, Double, Bool)] = [
            (0.31, 0.47, false), (0, 1, false), (5, 5, false), (-3, 7, false),
            (31, 1984, true), (1, 256, true), (0.5, 3, true), (12, 13, true),
        ]
        for (lo, hi, log) in cases {
            let t = LinePlot.ticks(lo, hi, log: log)
            #expect(t.count >= 2 && t.count <= 12, "\(lo)...\(hi): \(t)")
            #expect(t.first! <= lo * (1 + 1e-9) && t.last! >= hi * (1 - 1e-9), "\(lo)...\(hi): \(t)")
            #expect(zip(t, t.dropFirst()).allSatisfy { $0 < $1 })
        }
    }

    @Test func namesAreEscaped() throws {
        let plot = LinePlot(
            title: "a < b & \"c\"", xLabel: "x", yLabel: "y", logX: false,
            series: [
                LinePlot.Series(
                    name: "<A&B>", points: [.init(x: 1, y: 2), .init(x: 2, y: 3, yError: 0.5)], color: "#000000")
            ])
        let doc = try #require(SVGDocument(plot.svg))
        #expect(doc.all("title").first?.text == "a < b & \"c\"")
        #expect(doc.all("line").filter { $0.attributes["class"] == "error-bar" }.count == 1)
    }
}
