import Checkpoint
import Foundation
import Models
import TestSupport
import Testing
import Train

/// LoRA against PEFT + transformers (scripts/oracles/lora_reference.py): a PEFT-saved adapter loads here and gives
/// PEFT's log-probs and LoRA gradients; an adapter oreo writes loads in PEFT with the same log-probs.
@Suite struct PEFTOracleTests {
    static func fixture(_ family: String) throws -> (OracleTests.Fixture, LoRAAdapters, SafeTensorsFile, String)? {
        guard let f = try OracleTests.load(family),
            let dir = fixtureDirectory(relative: "lora/\(family)", script: "scripts/oracles/lora_reference.py")
        else { return nil }
        let adapters = try PEFTAdapter.load(directory: dir + "/adapter", for: f.model)
        try f.model.attach(adapters)
        f.model.trainsBase = false
        return (f, adapters, try SafeTensorsFile(path: dir + "/expected.safetensors"), dir)
    }

    @Test(arguments: OracleTests.families) func peftAdapterGivesPEFTsLogProbsAndGradients(family: String) throws {
        guard let (f, adapters, expected, _) = try Self.fixture(family) else { return }
        var lp: [Float] = []
        try f.model.forward(f.batch, logProbs: &lp)
        let lpErr = relativeError(lp, try expected.floats("logprobs"))
        #expect(lpErr <= 1e-4, "\(family) logprobs rel err \(lpErr)")
        let (dl, _) = OracleTests.meanNLLGradient(f.batch)
        adapters.zeroGradients()
        try f.model.backward(dLogProbs: dl)
        var worst = 0.0
        for s in adapters.layout {
            let name = "grad." + PEFTAdapter.prefix + s.name
            guard expected.info(name) != nil else {
                Issue.record("\(family): PEFT has no gradient \(name)")
                continue
            }
            let err = relativeError(adapters.gradient(s.name)!, try expected.floats(name))
            worst = max(worst, err)
            #expect(err <= 1e-4, "\(family) \(s.name) rel err \(err)")
        }
        #expect(expected.tensors.count == adapters.layout.count + 2)
        print("PEFT oracle \(family): logprobs rel err \(lpErr), worst LoRA gradient rel err \(worst)")
    }

    /// What oreo writes is PEFT's format: the same tensors back, and PEFT itself computes our log-probs from it.
    @Test(arguments: OracleTests.families) func oreoWrittenAdapterLoadsInPEFT(family: String) throws {
        guard let (f, adapters, _, _) = try Self.fixture(family) else { return }
        // change the adapter so PEFT cannot pass by reading the fixture's own values
        for i in 0..<adapters.parameters.count { adapters.parameters.pointer[i] *= 1.25 }
        adapters.parameters.markChanged()
        let dir = makeTemporaryDirectory("peft-\(family)")
        try PEFTAdapter.write(adapters, family: f.model.config.family, to: dir)
        let back = try PEFTAdapter.load(directory: dir, for: f.model)
        #expect(back.parameters.toArray() == adapters.parameters.toArray() && back.config == adapters.config)
        var lp: [Float] = []
        try f.model.forward(f.batch, logProbs: &lp)

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "scripts/oracles/lora_reference.py", "--check", dir, family]
        p.currentDirectoryURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let theirs = try? JSONSerialization.jsonObject(with: data) as? [Double] else {
            Issue.record("\(family): PEFT could not load the adapter oreo wrote (status \(p.terminationStatus))")
            return
        }
        let err = relativeError(lp, theirs.map { Float($0) })
        #expect(err <= 1e-4, "\(family): PEFT log-probs of oreo's adapter differ, rel err \(err)")
    }
}
