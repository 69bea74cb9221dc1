import Foundation
import Format
import Ingest
import Testing
import Demo

/// `oreo demo` and the other commands on its output, run as the built binary.
@Suite struct DemoCommandTests {
    static var oreoBinary: String {
        if let p = ProcessInfo.processInfo.environment["OREO_BIN"] { return p }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("oreo")
            .path
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
        for args in [
            ["--seeds", "1,x"], ["--seeds", "1,1"], ["--start-range", "9-2"], ["--style", "prose"],
            ["--time-budget", "soon"],
            ["--operations", "/"], ["--methods", "PPO"], ["--max-value", "5"],
        ] {
            let (status, _, err) = try DemoCommandTests.oreo(["demo", "--out", "/nonexistent/never"] + args)
            #expect(status != 0 && err.contains("Error"), "\(args): \(err)")
        }
        let (status, help, _) = try DemoCommandTests.oreo(["demo", "--help"])
        #expect(status == 0)
        for stage in DemoStage.allCases { #expect(help.contains("  \(stage.rawValue) ")) }
        #expect(help.contains("--time-budget") && help.contains("(default: 15m)"))
    }

    /// The help's step counts are the generator's defaults (it said 2 to 6 while the code drew 2 to 4).
    @Test func helpStatesTheDefaultCalculationSteps() throws {
        let (status, help, _) = try DemoCommandTests.oreo(["demo", "--help"])
        #expect(status == 0)
        let d = ProblemConfig()
        let flat = help.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(flat.contains("\(d.minSteps) to \(d.maxSteps) calculation steps"), "\(help)")
        #expect(
            flat.contains("--min-calc-steps <min-calc-steps> Fewest calculation steps")
                && flat.contains("(default: \(d.minSteps))"))
        #expect(
            flat.contains("--max-calc-steps <max-calc-steps> Most calculation steps")
                && flat.contains("(default: \(d.maxSteps))"))
        // eval's --max-steps counts beam-search steps; demo's old names stay as hidden aliases.
        #expect(!flat.contains("--max-steps") && !flat.contains("--min-steps"))
    }

    /// --max-calc-steps and its hidden alias --max-steps both reach the generator (checked through its
    /// validation: more than 12 steps is refused, naming the setting).
    @Test func calcStepOptionsAndTheirOldNames() throws {
        for flag in ["--max-calc-steps", "--max-steps"] {
            let (status, _, err) = try DemoCommandTests.oreo(["demo", "--out", "/nonexistent/never", flag, "13"])
            #expect(status != 0 && err.contains("max steps (13)"), "\(flag): \(err)")
        }
        for flag in ["--min-calc-steps", "--min-steps"] {
            let (status, _, err) = try DemoCommandTests.oreo(["demo", "--out", "/nonexistent/never", flag, "5"])
            #expect(status != 0 && err.contains("min steps (5)"), "\(flag): \(err)")
        }
    }

    /// An option value found wrong while running is reported with demo's usage, as parse errors are, not
    /// with the top-level list of subcommands.
    @Test func badTimeBudgetShowsDemosUsage() throws {
        let (status, _, err) = try DemoCommandTests.oreo([
            "demo", "--out", "/nonexistent/never", "--time-budget", "soon",
        ])
        #expect(status != 0)
        #expect(err.contains("Error: --time-budget takes seconds"), "\(err)")
        #expect(err.contains("Usage: oreo demo") && err.contains("See 'oreo demo --help'"), "\(err)")
        #expect(!err.contains("<subcommand>"), "\(err)")
    }
}
