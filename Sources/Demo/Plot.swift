import Foundation
import Format

/// A line chart written as SVG by hand: axes with ticks and labels, one polyline with markers and error bars
/// per series, a legend. Every marker carries its data values (`data-x`, `data-y`) and every tick its value
/// (`data-value`), so the file can be checked (and read back) by machine.
public struct LinePlot: Sendable {
    /// One point: x, y and the half-height of its error bar (0: none).
    public struct Point: Sendable, Equatable {
        /// Horizontal value.
        public var x: Double
        /// Vertical value.
        public var y: Double
        /// Error bar half-height in y units.
        public var yError: Double
        /// Hover text.
        public var label: String

        /// A point.
        public init(x: Double, y: Double, yError: Double = 0, label: String = "") {
            self.x = x
            self.y = y
            self.yError = yError
            self.label = label
        }
    }

    /// One line.
    public struct Series: Sendable, Equatable {
        /// Legend text.
        public var name: String
        /// Points, drawn in the order given.
        public var points: [Point]
        /// Stroke colour (`#rrggbb`).
        public var color: String
        /// Dashed line.
        public var dashed: Bool

        /// A series.
        public init(name: String, points: [Point], color: String, dashed: Bool = false) {
            self.name = name
            self.points = points
            self.color = color
            self.dashed = dashed
        }
    }

    /// Heading above the chart.
    public var title: String
    /// Horizontal axis label.
    public var xLabel: String
    /// Vertical axis label.
    public var yLabel: String
    /// Logarithmic horizontal axis (values must be positive).
    public var logX: Bool
    /// Multiply y values by this for tick labels (100 for percentages).
    public var yLabelScale: Double
    /// The lines.
    public var series: [Series]
    /// Canvas size in pixels.
    public var width = 760.0, height = 460.0

    /// A plot.
    public init(title: String, xLabel: String, yLabel: String, logX: Bool, yLabelScale: Double = 1, series: [Series]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.logX = logX
        self.yLabelScale = yLabelScale
        self.series = series
    }

    /// Plot area: left, top, right, bottom (the legend sits right of it).
    var frame: (left: Double, top: Double, right: Double, bottom: Double) { (70, 40, width - 200, height - 60) }

    /// An axis: data domain, pixel range, linear or log10.
    struct Scale {
        var low: Double, high: Double, from: Double, to: Double, log: Bool

        func callAsFunction(_ v: Double) -> Double {
            let t = log ? (log10(v) - log10(low)) / (log10(high) - log10(low)) : (v - low) / (high - low)
            return from + t * (to - from)
        }
    }

    /// Tick values covering `low...high`: 1-2-5 steps on a linear axis, decades (and 2, 5 within them when
    /// the range is short) on a log axis; the domain widens to the outer ticks.
    public static func ticks(_ low: Double, _ high: Double, log: Bool) -> [Double] {
        if log {
            let a = (log10(low) + 1e-9).rounded(.down), b = (log10(high) - 1e-9).rounded(.up)
            let decades = stride(from: a, through: max(b, a + 1), by: 1).map { pow10($0) }
            guard decades.count <= 3 else { return decades }
            var all: [Double] = []
            for d in decades.dropLast() { all += [d, 2 * d, 5 * d] }
            all.append(decades.last!)
            // Trim to the ticks just around the data.
            let first = all.lastIndex { $0 <= low * (1 + 1e-9) } ?? 0
            let last = all.firstIndex { $0 >= high * (1 - 1e-9) } ?? all.count - 1
            return Array(all[first...max(first + 1, last)])
        }
        var lo = low, hi = high
        if hi - lo < 1e-12 {
            lo -= 0.5 * max(abs(lo), 1e-3)
            hi += 0.5 * max(abs(hi), 1e-3)
        }
        let rough = (hi - lo) / 5
        let magnitude = pow10(log10(rough).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        let first = (lo / step - 1e-9).rounded(.down), last = (hi / step + 1e-9).rounded(.up)
        return stride(from: first, through: last, by: 1).map { ($0 * step * 1e9).rounded() / 1e9 }
    }

    static func pow10(_ e: Double) -> Double { pow(10, e) }

    /// Tick label: as few decimals as the step needs.
    static func tickLabel(_ v: Double, step: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 {
            let i = Int(v)
            return abs(i) >= 10_000 && i % 1000 == 0 ? "\(i / 1000)k" : "\(i)"
        }
        let digits = max(0, Int((-log10(step)).rounded(.up)))
        return ResultsReport.fixed(v, min(digits, 6))
    }

    /// Attribute-safe text.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static func coordinate(_ v: Double) -> String { ResultsReport.fixed(v, 2) }

    /// The x and y scales for the data (ticks included).
    func scales() -> (x: Scale, y: Scale, xTicks: [Double], yTicks: [Double]) {
        let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) }
        let xs = points.map(\.x), ys = points.flatMap { [$0.y - $0.yError, $0.y + $0.yError] }
        let xLow = xs.min() ?? (logX ? 1 : 0), xHigh = xs.max() ?? (logX ? 10 : 1)
        let xTicks = LinePlot.ticks(xLow, xHigh, log: logX)
        let yTicks = LinePlot.ticks(ys.min() ?? 0, ys.max() ?? 1, log: false)
        let f = frame
        let x = Scale(
            low: min(xTicks.first!, xLow), high: max(xTicks.last!, xHigh), from: f.left, to: f.right, log: logX)
        let y = Scale(
            low: min(yTicks.first!, ys.min() ?? 0), high: max(yTicks.last!, ys.max() ?? 1), from: f.bottom, to: f.top,
            log: false)
        return (x, y, xTicks, yTicks)
    }

    /// The SVG document.
    public var svg: String {
        let (sx, sy, xTicks, yTicks) = scales()
        let f = frame
        let c = LinePlot.coordinate, e = LinePlot.escape
        var out = [
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(c(width))\" height=\"\(c(height))\" viewBox=\"0 0 \(c(width)) \(c(height))\" font-family=\"sans-serif\" font-size=\"12\">",
            "<title>\(e(title))</title>",
            "<rect x=\"0\" y=\"0\" width=\"\(c(width))\" height=\"\(c(height))\" fill=\"#ffffff\"/>",
            "<text class=\"title\" x=\"\(c((f.left + f.right) / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(e(title))</text>",
            "<g class=\"axes\" stroke=\"#333333\">",
            "<line class=\"axis-x\" x1=\"\(c(f.left))\" y1=\"\(c(f.bottom))\" x2=\"\(c(f.right))\" y2=\"\(c(f.bottom))\"/>",
            "<line class=\"axis-y\" x1=\"\(c(f.left))\" y1=\"\(c(f.bottom))\" x2=\"\(c(f.left))\" y2=\"\(c(f.top))\"/>",
        ]
        let xStep = xTicks.count > 1 ? xTicks[1] - xTicks[0] : 1, yStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
        for v in xTicks {
            let x = c(sx(v))
            out.append(
                "<g class=\"tick-x\" data-value=\"\(v)\"><line x1=\"\(x)\" y1=\"\(c(f.bottom))\" x2=\"\(x)\" y2=\"\(c(f.bottom + 5))\"/>"
                    + "<line class=\"grid\" x1=\"\(x)\" y1=\"\(c(f.bottom))\" x2=\"\(x)\" y2=\"\(c(f.top))\" stroke=\"#e5e5e5\"/>"
                    + "<text x=\"\(x)\" y=\"\(c(f.bottom + 19))\" text-anchor=\"middle\" stroke=\"none\">\(LinePlot.tickLabel(v, step: logX ? v : xStep))</text></g>"
            )
        }
        for v in yTicks {
            let y = c(sy(v))
            out.append(
                "<g class=\"tick-y\" data-value=\"\(v)\"><line x1=\"\(c(f.left - 5))\" y1=\"\(y)\" x2=\"\(c(f.left))\" y2=\"\(y)\"/>"
                    + "<line class=\"grid\" x1=\"\(c(f.left))\" y1=\"\(y)\" x2=\"\(c(f.right))\" y2=\"\(y)\" stroke=\"#e5e5e5\"/>"
                    + "<text x=\"\(c(f.left - 8))\" y=\"\(c(sy(v) + 4))\" text-anchor=\"end\" stroke=\"none\">\(LinePlot.tickLabel(v * yLabelScale, step: yStep * yLabelScale))</text></g>"
            )
        }
        out.append(
            "<text class=\"label-x\" x=\"\(c((f.left + f.right) / 2))\" y=\"\(c(height - 18))\" text-anchor=\"middle\" stroke=\"none\">\(e(xLabel))</text>"
        )
        out.append(
            "<text class=\"label-y\" x=\"18\" y=\"\(c((f.top + f.bottom) / 2))\" text-anchor=\"middle\" stroke=\"none\" transform=\"rotate(-90 18 \(c((f.top + f.bottom) / 2)))\">\(e(yLabel))</text>"
        )
        out.append("</g>")
        for s in series {
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) }
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out.append("<g class=\"series\" data-name=\"\(e(s.name))\">")
            out.append(
                "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash) points=\"\(pts.map { "\(c(sx($0.x))),\(c(sy($0.y)))" }.joined(separator: " "))\"/>"
            )
            for p in pts {
                if p.yError > 0 {
                    out.append(
                        "<line class=\"error-bar\" stroke=\"\(s.color)\" x1=\"\(c(sx(p.x)))\" y1=\"\(c(sy(p.y - p.yError)))\" x2=\"\(c(sx(p.x)))\" y2=\"\(c(sy(p.y + p.yError)))\"/>"
                    )
                }
                out.append(
                    "<circle cx=\"\(c(sx(p.x)))\" cy=\"\(c(sy(p.y)))\" r=\"3.5\" fill=\"\(s.color)\" data-x=\"\(p.x)\" data-y=\"\(p.y)\"><title>\(e(p.label.isEmpty ? s.name : p.label))</title></circle>"
                )
            }
            out.append("</g>")
        }
        out.append("<g class=\"legend\">")
        for (k, s) in series.enumerated() {
            let y = f.top + 10 + Double(k) * 20
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out.append(
                "<g class=\"legend-item\" data-name=\"\(e(s.name))\"><line x1=\"\(c(f.right + 20))\" y1=\"\(c(y))\" x2=\"\(c(f.right + 48))\" y2=\"\(c(y))\" stroke=\"\(s.color)\" stroke-width=\"2\"\(dash)/>"
                    + "<circle cx=\"\(c(f.right + 34))\" cy=\"\(c(y))\" r=\"3.5\" fill=\"\(s.color)\"/><text x=\"\(c(f.right + 56))\" y=\"\(c(y + 4))\">\(e(s.name))</text></g>"
            )
        }
        out.append("</g>")
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}

/// What the horizontal axis of the search plot counts.
public enum SearchCompute: String, Sendable, CaseIterable {
    /// Tokens the policy generated per problem.
    case tokensGenerated
    /// Candidates the scorer ranked per problem (greedy decoding counts as one).
    case candidatesScored
}

extension ResultsReport {
    /// Colour of a method's lines (a fixed palette, so methods keep their colour across runs).
    static func color(_ method: String) -> String {
        let palette = [
            "SFT": "#7f7f7f", "RFT": "#1f77b4", "DPO": "#ff7f0e", "KTO": "#9467bd", "OREO": "#d62728", "DQO": "#2ca02c",
        ]
        if let c = palette[method] { return c }
        let extra = ["#8c564b", "#e377c2", "#17becf", "#bcbd22"]
        return extra[Int(stableHash(method, seed: 0) % UInt64(extra.count))]
    }

    /// Accuracy against search compute: per method and scorer a line from its greedy accuracy through its
    /// beam widths (mean over seeds, error bars one standard deviation); methods with greedy results only
    /// are single points.
    public func searchPlot(x: SearchCompute) -> LinePlot {
        var series: [LinePlot.Series] = []
        func point(_ s: Summary) -> LinePlot.Point {
            let cost =
                x == .tokensGenerated ? s.tokensPerProblem : max(s.candidatesPerProblem, s.decoding.isGreedy ? 1 : 0)
            return LinePlot.Point(
                x: cost, y: s.accuracy.mean, yError: s.accuracy.count > 1 ? s.accuracy.standardDeviation : 0,
                label:
                    "\(s.method) \(s.decoding.label): \(ResultsReport.percent(s.accuracy.mean))% at \(ResultsReport.fixed(cost, 1))"
            )
        }
        // The value scorer draws solid, others dashed.
        let scorers = Array(Set(decodings.compactMap(\.scorer))).sorted { (a: String, b: String) -> Bool in
            a == "value" ? b != "value" : b == "value" ? false : a < b
        }
        for method in methods {
            let greedy = summary(method, .greedy)
            var drawn = false
            for (k, scorer) in scorers.enumerated() {
                let beams = decodings.filter { $0.scorer == scorer }.compactMap { summary(method, $0) }
                guard !beams.isEmpty else { continue }
                let pts = (greedy.map { [point($0)] } ?? []) + beams.map(point)
                series.append(
                    LinePlot.Series(
                        name: "\(method) · \(scorer)", points: pts, color: ResultsReport.color(method),
                        dashed: k % 2 == 1))
                drawn = true
            }
            if !drawn, let greedy {
                series.append(
                    LinePlot.Series(
                        name: "\(method) · greedy", points: [point(greedy)], color: ResultsReport.color(method)))
            }
        }
        let xLabel =
            x == .tokensGenerated
            ? "tokens generated per problem (log scale)" : "candidates scored per problem (log scale; greedy = 1)"
        return LinePlot(
            title: "\(split == "test" ? "Test" : "Validation") accuracy against search compute", xLabel: xLabel,
            yLabel: "\(split) accuracy (%)",
            logX: true, yLabelScale: 100, series: series)
    }
}
