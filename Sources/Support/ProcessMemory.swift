import Foundation

/// This process's resident set now and at its peak (Linux VmRSS and VmHWM), in bytes; 0 where /proc is not
/// readable.
public func processMemory() -> (resident: Int, peak: Int) {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        guard let line = s.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
            let kb = Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
        else { return 0 }
        return kb * 1024
    }
    return (field("VmRSS:"), field("VmHWM:"))
}
