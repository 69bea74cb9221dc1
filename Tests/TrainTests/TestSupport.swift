import Format
import Foundation
import Support
import TestSupport
import Testing
import Train

/// Relative L2 error ||a - b|| / max(||b||, tiny), in double.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

func relativeError(_ a: [Double], _ b: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for i in a.indices {
        let d = a[i] - b[i]
        num += d * d
        den += b[i] * b[i]
    }
    return (num / max(den, 1e-30)).squareRoot()
}

/// Directory of the generated oracle fixtures, or nil (skip) unless OREO_REQUIRE_FIXTURES=1 (then fail).
func fixtureDirectory(_ family: String) -> String? {
    fixtureDirectory(relative: "models/\(family)", script: "scripts/oracles/torch_reference.py")
}

/// Tests/Fixtures/generated/<relative> when it holds expected.safetensors; else skip (or fail when required).
func fixtureDirectory(relative: String, script: String) -> String? {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    let dir = root.appendingPathComponent("Fixtures/generated/\(relative)").path
    if FileManager.default.fileExists(atPath: dir + "/expected.safetensors") { return dir }
    let msg = "fixtures missing at \(dir): run \(script)"
    if ProcessInfo.processInfo.environment["OREO_REQUIRE_FIXTURES"] == "1" {
        Issue.record(Comment(rawValue: msg + " (OREO_REQUIRE_FIXTURES=1)"))
    } else {
        print("SKIP: \(msg)")
    }
    return nil
}

/// Deterministic test data.
struct TestRNG {
    var g: SplitMix64
    init(_ seed: UInt64) { g = SplitMix64(seed: seed) }
    mutating func normal(_ n: Int, std: Double = 1) -> [Float] { (0..<n).map { _ in Float(g.nextGaussian() * std) } }
    mutating func normalD(_ n: Int, std: Double = 1) -> [Double] { (0..<n).map { _ in g.nextGaussian() * std } }
    mutating func int(_ upper: Int) -> Int { Int(g.next() % UInt64(upper)) }
}

/// A FlatBuffer holding `a` (float copy of double data when given doubles).
func buf(_ a: [Float]) -> FlatBuffer {
    let b = FlatBuffer(count: a.count)
    try! b.copyIn(a)
    return b
}
func buf(_ a: [Double]) -> FlatBuffer { buf(a.map { Float($0) }) }
func zeros(_ n: Int) -> FlatBuffer { FlatBuffer(count: n) }

/// Owned Int32 storage with a stable pointer, for kernel index arguments.
final class IntBuf {
    let p: UnsafeMutablePointer<Int32>
    let count: Int
    init(_ a: [Int32]) {
        count = a.count
        p = .allocate(capacity: max(1, a.count))
        for (i, v) in a.enumerated() { p[i] = v }
    }
    deinit { p.deallocate() }
}

func relativeError(_ a: [Float], _ b: [Double]) -> Double { relativeError(a.map { Double($0) }, b) }

func dotD(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }

/// Central-difference gradient of a double-precision function (h = 1e-6 relative to 1).
func numericGradient(_ f: ([Double]) -> Double, at x: [Double], h: Double = 1e-6) -> [Double] {
    var x = x
    var g = [Double](repeating: 0, count: x.count)
    for i in x.indices {
        let v = x[i]
        x[i] = v + h
        let fp = f(x)
        x[i] = v - h
        let fm = f(x)
        x[i] = v
        g[i] = (fp - fm) / (2 * h)
    }
    return g
}
