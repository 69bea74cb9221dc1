import Foundation

/// Wall-clock seconds of `body`.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// CPU seconds `clock` (a thread or process CPU clock) advances during `body`. Single-threaded measurements use
/// the thread clock so that other processes on a shared 2-core machine distort them less than wall time would.
func cpuSeconds(_ clock: clockid_t, _ body: () throws -> Void) rethrows -> Double {
    func now() -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
    let start = now()
    try body()
    return now() - start
}

/// CPU seconds the calling thread spent in `body`.
func threadSeconds(_ body: () throws -> Void) rethrows -> Double { try cpuSeconds(CLOCK_THREAD_CPUTIME_ID, body) }

/// CPU seconds of the whole process (all threads) spent in `body`.
func processSeconds(_ body: () throws -> Void) rethrows -> Double { try cpuSeconds(CLOCK_PROCESS_CPUTIME_ID, body) }

/// Median thread-CPU seconds over `repeats` runs after one warm-up run (single-threaded work only).
func medianSeconds(repeats: Int = 5, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var times: [Double] = []
    for _ in 0..<repeats { times.append(try threadSeconds(body)) }
    times.sort()
    return times[times.count / 2]
}

/// A fixed-width results table printed to stdout.
struct Table {
    let headers: [String]
    var rows: [[String]] = []

    init(_ headers: String...) { self.headers = headers }

    mutating func add(_ cells: String...) { rows.append(cells) }

    func print() {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == 0
                    ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - c.count) + c
            }.joined(separator: "  ")
        }
        Swift.print(line(headers))
        for r in rows { Swift.print(line(r)) }
    }
}

/// "1.23" style formatting.
func fmt(_ x: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", x) }

/// Marks a measured ratio against its target: "ok" or "BELOW TARGET".
func verdict(_ ratio: Double, atLeast target: Double) -> String { ratio >= target ? "ok" : "BELOW TARGET" }
