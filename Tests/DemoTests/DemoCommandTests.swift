import Foundation
import Format
import Ingest
import Testing
import Demo

/// `oreo demo` and the other commands on its output, run as the built binary.
@Suite struct DemoCommandTests {
    static var oreoBinary: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo").path
    }

    /// Runs oreo; returns exit status, stdout and stderr.
    static func oreo(_ args: [String], stdin: String? = nil) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oreoBinary)
        p.arguments = args
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test func badOptionsFailWithAMessage() throws {
        for args in [["--seeds", "1,x"], ["--seeds", "1,1"], ["--start-range", "9-2"], ["--style", "prose"], ["--time-budget", "soon"],
                     ["--operations", "/"], ["--methods", "PPO"], ["--max-value", "5"]] {
            let (status, _, err) = try DemoCommandTests.oreo(["demo", "--out", "/nonexistent/never"] + args)
            #expect(status != 0 && err.contains("Error"), "\(args): \(err)")
        }
        let (status, help, _) = try DemoCommandTests.oreo(["demo", "--help"])
        #expect(status == 0)
        for stage in DemoStage.allCases { #expect(help.contains("  \(stage.rawValue) ")) }
        #expect(help.contains("--time-budget") && help.contains("(default: 15m)"))
    }
}
