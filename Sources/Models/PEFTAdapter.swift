import Checkpoint
import Foundation
import Support
import Train

/// LoRA adapters in PEFT's directory format: `adapter_config.json` and `adapter_model.safetensors`, tensors named
/// `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r], so `peft` and `transformers`
/// load what oreo writes and the other way round.
public enum PEFTAdapter {
    /// Prefix PEFT gives every tensor name of an adapted model.
    public static let prefix = "base_model.model."

    /// Writes `adapters` into `directory` (created if needed), each file under a temporary name renamed into place
    /// when complete. `baseModel` is recorded as `base_model_name_or_path`.
    public static func write(
        _ adapters: LoRAAdapters, family: ModelFamily, to directory: String, baseModel: String = ""
    ) throws {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw ModelError("\(directory): cannot create the directory: \(error.localizedDescription)")
        }
        let c = adapters.config
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": c.rank, "lora_alpha": c.alpha,
            "lora_dropout": c.dropout, "target_modules": c.targets.map(\.moduleSuffix).sorted(), "bias": "none",
            "fan_in_fan_out": family == .gpt2, "base_model_name_or_path": baseModel, "inference_mode": true,
            "use_rslora": false, "use_dora": false, "init_lora_weights": true,
            "modules_to_save": adapters.valueHead == nil ? NSNull() : ["value_head"] as Any,
        ]
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try writeFileAtomically(Array(json), to: directory + "/adapter_config.json")
        let p = adapters.parameters.pointer
        let records = adapters.layout.map {
            SafeTensorsRecord(
                name: prefix + $0.name, shape: $0.shape,
                values: Array(UnsafeBufferPointer(start: p + $0.offset, count: $0.count)))
        }
        try writeSafeTensors(records, to: directory + "/adapter_model.safetensors", metadata: ["format": "pt"])
        syncDirectory(of: directory)
    }

    /// Reads the adapter in `directory` for `model` (whose layout its tensors must fit), without attaching it;
    /// `dropout` (a training run's) replaces the file's `lora_dropout`.
    public static func load(directory: String, for model: TransformerModel, dropout: Double? = nil) throws
        -> LoRAAdapters
    {
        let configPath = directory + "/adapter_config.json"
        var config = try self.config(directory: directory, family: model.config.family)
        if let dropout { config.dropout = dropout }
        let path = directory + "/adapter_model.safetensors"
        let file = try SafeTensorsFile(path: path)
        // a value network's adapter carries its head (PEFT's modules_to_save)
        let withHead = model.layout.valueHead >= 0 || file.info(prefix + "value_head.weight") != nil
        let adapters: LoRAAdapters
        do { adapters = try LoRAAdapters(model: model, config: config, valueHead: withHead) } catch {
            throw ModelError("\(configPath): \(error)")
        }
        var seen = Set<String>()
        for s in adapters.layout {
            let name = prefix + s.name
            guard let info = file.info(name) else { throw ModelError("\(path): no tensor \(name)") }
            guard info.shape == s.shape else {
                throw ModelError("\(path): \(name) has shape \(info.shape), the model needs \(s.shape)")
            }
            try adapters.parameters.copyIn(try file.floats(name), at: s.offset)
            seen.insert(name)
        }
        if let extra = file.tensors.first(where: { !seen.contains($0.name) }) {
            throw ModelError("\(path): tensor \(extra.name) belongs to no adapted layer of this model")
        }
        return adapters
    }

    /// The LoRA configuration `directory/adapter_config.json` describes, for a model of `family`.
    public static func config(directory: String, family: ModelFamily) throws -> LoRAConfig {
        let configPath = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ModelError("\(configPath): cannot read the file")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError("\(configPath): not a JSON object")
        }
        func field<T>(_ key: String, _ type: T.Type) throws -> T {
            guard let v = json[key] as? T else { throw ModelError("\(configPath): \"\(key)\" is missing or mistyped") }
            return v
        }
        guard (json["peft_type"] as? String) == "LORA" else {
            throw ModelError("\(configPath): peft_type \(json["peft_type"] ?? "missing") is not LORA")
        }
        let rank = try field("r", Int.self)
        let alpha = try field("lora_alpha", Double.self)
        for (key, why) in [("use_rslora", "rank-stabilized scaling"), ("use_dora", "DoRA")]
        where json[key] as? Bool == true {
            throw ModelError("\(configPath): \(key) (\(why)) is not supported")
        }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let d = json[key] as? [String: Any], !d.isEmpty {
                throw ModelError("\(configPath): per-layer \(key) is not supported")
            }
        }
        if json["layers_to_transform"] != nil, !(json["layers_to_transform"] is NSNull) {
            throw ModelError("\(configPath): layers_to_transform is not supported")
        }
        let modules: [String]
        if let list = json["target_modules"] as? [String] {
            modules = list
        } else if let one = json["target_modules"] as? String {
            modules = [one]
        } else {
            throw ModelError("\(configPath): \"target_modules\" is missing or mistyped")
        }
        let targets: [LoRATarget]
        do { targets = try LoRATarget.parse(modules.joined(separator: ","), family: family) } catch {
            throw ModelError("\(configPath): target_modules \(modules): \(error)")
        }
        // lora_dropout only acts in training (absent or null in some files: none)
        let dropout = json["lora_dropout"] as? Double ?? 0
        guard dropout >= 0, dropout < 1 else {
            throw ModelError("\(configPath): lora_dropout \(dropout) is not in [0, 1)")
        }
        return LoRAConfig(rank: rank, alpha: alpha, dropout: dropout, targets: targets)
    }
}
