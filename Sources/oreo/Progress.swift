import Foundation

/// A one-line progress display on stderr with rate and ETA, redrawn in place on a terminal; when stderr is a
/// file or pipe it prints a line every few seconds instead, for logs.
final class Progress {
    private let label: String
    private let total: Double?
    private let unit: String
    private let start = Date()
    private var lastPrint = Date.distantPast
    private var lastDone = -Double.infinity
    private let interactive = isatty(2) != 0
    private let base: Double
    private let silent: Bool

    /// `startingAt`: units already done before this process (a resumed job), left out of the rate. A `silent`
    /// one prints nothing (the ranks of an MPI job other than 0).
    init(_ label: String, total: Double? = nil, unit: String, startingAt: Double = 0, silent: Bool = false) {
        self.silent = silent
        self.label = label
        self.total = total
        self.unit = unit
        base = startingAt
    }

    /// Reports that `done` units are complete; `detail` is appended to the line.
    func update(_ done: Double, force: Bool = false, detail: String = "") {
        if silent { return }
        let now = Date()
        let gap = interactive ? 0.1 : 5.0
        guard force || (done > 0 && now.timeIntervalSince(lastPrint) >= gap) else { return }
        lastPrint = now
        lastDone = done
        let elapsed = max(now.timeIntervalSince(start), 1e-9)
        let rate = (done - base) / elapsed
        var line = "\(label): \(Progress.human(done)) \(unit), \(Progress.human(rate)) \(unit)/s"
        if let total, total > 0 {
            let pct = min(100, 100 * done / total)
            let eta = rate > 0 ? (total - done) / rate : 0
            line += String(format: ", %.0f%%, ETA %.0fs", pct, eta)
        }
        if !detail.isEmpty { line += ", " + detail }
        FileHandle.standardError.write(
            ((interactive ? "\r\u{1B}[K" : "") + line + (interactive ? "" : "\n")).data(using: .utf8)!)
    }

    /// Prints a message on its own line (the progress line is redrawn by the next update).
    func note(_ message: String) {
        if silent { return }
        FileHandle.standardError.write(((interactive ? "\r\u{1B}[K" : "") + message + "\n").data(using: .utf8)!)
    }

    /// Ends the progress line.
    func finish(_ done: Double) {
        if silent { return }
        // In a log, a final line that repeats the last one adds nothing.
        if interactive || done != lastDone { update(done, force: true) }
        if interactive { FileHandle.standardError.write("\n".data(using: .utf8)!) }
    }

    static func human(_ x: Double) -> String {
        switch x {
        case 1e9...: String(format: "%.2fG", x / 1e9)
        case 1e6...: String(format: "%.2fM", x / 1e6)
        case 1e4...: String(format: "%.1fk", x / 1e3)
        default: String(format: "%.0f", x)
        }
    }
}

/// Prints to stderr.
func printError(_ s: String) {
    FileHandle.standardError.write((s + "\n").data(using: .utf8)!)
}
