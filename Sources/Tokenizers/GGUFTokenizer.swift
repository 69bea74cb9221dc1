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
        if let arch = file.string("general.architecture"), let n = file.metadata[arch + ".context_length"]?.int, n > 0 {
            context = n
        }
        return (try v.tokenizerJSON(), try v.tokenizerConfigJSON(maxLength: context))
    }

    /// Loads the tokenizer of `file`, rebuilt in memory. Its `path` is the .gguf file (what a dataset's manifest
    /// records as the tokenizer's source) and its fingerprint that of the rebuilt tokenizer.json: the file a
    /// checkpoint trained from this GGUF carries (`ModelSource.tokenizerFiles`), so a dataset ingested with the
    /// GGUF passes the fingerprint check against such a checkpoint.
    public static func load(_ file: GGUFFile) throws -> Tokenizer {
        let (json, config) = try files(file)
        return try Tokenizer.load(json: json, config: config, source: file.path)
    }

    /// Loads a tokenizer.json, or the tokenizer a GGUF file's metadata describes (`Tokenizer.load(path:)`).
    public static func load(path: String) throws -> Tokenizer { try Tokenizer.load(path: path) }
}
