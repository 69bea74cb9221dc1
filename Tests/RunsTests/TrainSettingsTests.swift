import Foundation
import Testing
import Train
import Runs

/// `oreo train` settings: TOML file, flags over it, and the effective TOML written back.
@Suite struct TrainSettingsTests {
    @Test func flagsOverrideTheFileAndTheEffectiveConfigReadsBack() throws {
        let dir = temporaryDirectory("settings")
        let file = dir + "/run.toml"
        try """
        # a comment
        method = "dpo"
        learning_rate = 1e-4
        epochs = 3
        stop_gradient = false
        level = "step"
        data = "some/data"
        """.write(toFile: file, atomically: true, encoding: .utf8)
        var s = TrainSettings()
        var keys = try s.apply(tomlFile: file)
        keys.formUnion(
            try s.apply(flags: ["--learning-rate", "3e-4", "--td", "--seed=7", "--kl", "k3", "--model", "m.gguf"]))
        s.applyLevelDefaults(explicit: keys)
        #expect(s.config.method == .dpo && s.config.epochs == 3 && s.config.learningRate == 3e-4)
        #expect(!s.config.oreo.stopGradient && s.config.oreo.temporalDifference && s.config.oreo.k3)
        #expect(s.config.loader.seed == 7 && s.config.oreo.level == .step && s.config.oreo.alpha == 0.1)
        let source = try s.modelSource()
        #expect(s.data == "some/data" && source == .gguf("m.gguf"))

        try s.toml.write(toFile: dir + "/effective.toml", atomically: true, encoding: .utf8)
        var back = TrainSettings()
        let all = try back.apply(tomlFile: dir + "/effective.toml")
        #expect(back.config == s.config && back.data == s.data && back.model == s.model)
        // the unset paths (init_config, reference_model, adapter, value_adapter, value_model) and the 8 LoRA keys
        // of two full networks are left out
        #expect(all.count == trainSettings.count - 13)
        // with LoRA set, its keys read back too (alpha given before the rank is kept)
        var lora = TrainSettings()
        _ = try lora.apply(flags: ["--value-lora-alpha", "16", "--value-lora-rank", "8", "--lora-targets", "q,v"])
        #expect(lora.config.valueLora?.rank == 8 && lora.config.valueLora?.alpha == 16)
        try lora.toml.write(toFile: dir + "/lora.toml", atomically: true, encoding: .utf8)
        var loraBack = TrainSettings()
        _ = try loraBack.apply(tomlFile: dir + "/lora.toml")
        #expect(loraBack.config == lora.config && lora.config.lora?.targets == "q,v")
    }

    @Test func badSettingsNameTheirPlace() throws {
        let dir = temporaryDirectory("bad-settings")
        func message(_ text: String) -> String {
            try! text.write(toFile: dir + "/x.toml", atomically: true, encoding: .utf8)
            var s = TrainSettings()
            do {
                _ = try s.apply(tomlFile: dir + "/x.toml")
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(
            message("epochs = 2\nlearning_rat = 1e-4\n").hasPrefix(dir + "/x.toml:2: unknown setting 'learning_rat'"))
        #expect(message("epochs = 2\nmethod = \"ppo\"\n").contains("x.toml:2: method: 'ppo' is not one of oreo, sft"))
        #expect(message("epochs = = 2\n").contains("x.toml:1:"))
        #expect(message("epochs = 2.5\n").contains("epochs: '2.5' is not a valid Int"))
        var s = TrainSettings()
        #expect(throws: SettingError.self) { try s.apply(flags: ["--bogus", "1"]) }
        #expect(throws: SettingError.self) { try s.apply(flags: ["--epochs"]) }
        #expect(throws: SettingError.self) { try s.modelSource() }
    }
}
