import ArgumentParser
import Foundation
import Ingest
import Tokenizers

/// `oreo tokenize`: text to token ids, or ids back to text, with a Hugging Face tokenizer.json.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text to token ids (or decode ids) with a tokenizer.json, exactly as HF tokenizers does."
    )

    @Option(name: .long, help: "Path to a tokenizer.json (byte-level BPE).")
    var tokenizer: String

    @Flag(name: .long, help: "Read token ids (separated by spaces or commas) and print the text they stand for.")
    var decode = false

    @Flag(name: .long, help: "Encode special tokens written in the text as plain text instead of control tokens.")
    var literalSpecialTokens = false

    @Flag(name: .long, help: "Add the post-processor's tokens (e.g. BOS) around the text, like HF add_special_tokens.")
    var addSpecialTokens = false

    @Argument(help: "Text (or ids with --decode); read from standard input when absent.")
    var text: [String] = []

    func run() throws {
        let tok = try Tokenizer.load(path: tokenizer)
        let input: [UInt8] = text.isEmpty
            ? [UInt8](FileHandle.standardInput.readDataToEndOfFile())
            : Array(text.joined(separator: " ").utf8)
        if decode {
            let fields = String(decoding: input, as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" || $0 == "[" || $0 == "]" })
            var ids: [UInt32] = []
            for field in fields {
                guard let id = UInt32(field) else { throw ValidationError("not a token id: \(field)") }
                ids.append(id)
            }
            FileHandle.standardOutput.write(Data(try tok.decode(ids)))
            return
        }
        var encoder = tok.makeEncoder(options: EncodeOptions(recognizeSpecialTokens: !literalSpecialTokens,
                                                             addSpecialTokens: addSpecialTokens))
        var ids: [UInt32] = []
        try encoder.encode(bytes: input, into: &ids)
        print(ids.map(String.init).joined(separator: " "))
    }
}
