import Checkpoint
import Foundation
import Support

/// The tokenizer a GGUF file's metadata describes, rebuilt as tokenizer.json (`BPEVocabulary`, the same code
/// `oreo convert` uses), so a GGUF model needs no separate tokenizer file.
public enum GGUFTokenizer {
    /// tokenizer.json and tokenizer_config.json (BOS, EOS, chat template) for `file`'s tokenizer.
    public static func files(_ file: GGUFFile) throws -> (tokenizer: Data, config: Data) {
        let v = try BPEVocabulary(gguf: file)
        var context = 8192
        if let arch = file.string("general.architecture"), let n = file.metadata[arch + ".context_length"]?.int, n > 0 { context = n }
        return (try v.tokenizerJSON(), try v.tokenizerConfigJSON(maxLength: context))
    }

    /// Loads the tokenizer of `file` (written to a private temporary directory, read back, removed).
    public static func load(_ file: GGUFFile) throws -> Tokenizer {
        let (json, config) = try files(file)
        let dir = NSTemporaryDirectory() + "oreo-gguf-tokenizer-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try json.write(to: URL(fileURLWithPath: dir + "/tokenizer.json"))
        try config.write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        return try Tokenizer.load(path: dir + "/tokenizer.json")
    }
}
