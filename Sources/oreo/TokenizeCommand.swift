import ArgumentParser
import Checkpoint
import Foundation
import Infer
import Ingest
import Support
import Tokenizers

/// `oreo tokenize`: text to token ids, or ids back to text, with a Hugging Face tokenizer.json or a GGUF's tokenizer.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text to token ids (or decode ids) with a tokenizer.json, exactly as HF tokenizers does.",
        discussion: """
            --jsonl encodes many texts in one run: each line of standard input is a JSON object with a "text" \
            string, and each output line is the JSON array of its ids, in input order (blank lines are skipped). \
            A malformed line stops the run with its line number.
            """
    )

    @Option(
        name: .long,
        help: "Path to a tokenizer.json (byte-level BPE), or a .gguf file (the tokenizer its metadata describes).")
    var tokenizer: String

    @Flag(name: .long, help: "Read token ids (separated by spaces or commas) and print the text they stand for.")
    var decode = false

    @Flag(
        name: .long,
        help: #"Batch mode: read {"text": ...} JSON lines on standard input, write one JSON array of ids per line."#)
    var jsonl = false

    @OptionGroup var specialTokens: SpecialTokenOptions

    @Flag(name: .long, help: "Add the post-processor's tokens (e.g. BOS) around the text, like HF add_special_tokens.")
    var addSpecialTokens = false

    @Argument(help: "Text (or ids with --decode); read from standard input when absent.")
    var text: [String] = []

    func validate() throws {
        if jsonl && decode { throw ValidationError("--jsonl encodes; it cannot be combined with --decode") }
        if jsonl && !text.isEmpty {
            throw ValidationError("--jsonl reads its texts from standard input, not from arguments")
        }
    }

    func run() throws {
        let tok = try GGUFTokenizer.load(path: tokenizer)
        let options = EncodeOptions(recognizeSpecialTokens: !specialTokens.asText, addSpecialTokens: addSpecialTokens)
        if jsonl {
            try encodeLines(tok, options: options)
            return
        }
        let input: [UInt8] =
            text.isEmpty
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
        var encoder = tok.makeEncoder(options: options)
        var ids: [UInt32] = []
        try encoder.encode(bytes: input, into: &ids)
        print(ids.map(String.init).joined(separator: " "))
    }

    /// `--jsonl`: standard input's {"text": ...} lines to lines of id arrays, written in input order.
    private func encodeLines(_ tok: Tokenizer, options: EncodeOptions) throws {
        var encoder = tok.makeEncoder(options: options)
        var ids: [UInt32] = []
        var out: [UInt8] = []
        var lineNumber = 0
        let input = FileHandle.standardInput
        var pending: [UInt8] = []
        /// Encodes one line (without its newline) into `out`.
        func line(_ raw: ArraySlice<UInt8>) throws {
            lineNumber += 1
            let bytes = raw.last == UInt8(ascii: "\r") ? raw.dropLast() : raw
            if bytes.allSatisfy({ $0 == 32 || $0 == 9 }) { return }
            func fail(_ why: String) -> CommandError { CommandError("standard input line \(lineNumber): \(why)") }
            let value: JSONValue
            do { value = try StrictJSON.parse(Array(bytes), file: "standard input") } catch {
                throw fail("not valid JSON: \(error.reason)")
            }
            guard let members = value.members else { throw fail(#"not a JSON object (expected {"text": ...})"#) }
            guard let field = members.first(where: { $0.key == "text" })?.value else { throw fail(#"no "text" field"#) }
            guard let text = field.string else { throw fail(#""text" is not a string"#) }
            ids.removeAll(keepingCapacity: true)
            encoder.encode(text, into: &ids)
            out.append(UInt8(ascii: "["))
            for (k, id) in ids.enumerated() {
                if k > 0 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: String(id).utf8)
            }
            out.append(contentsOf: "]\n".utf8)
        }
        /// Writes what is buffered once it is large (and at the end).
        func flush(force: Bool) {
            guard force || out.count >= 1 << 16 else { return }
            FileHandle.standardOutput.write(Data(out))
            out.removeAll(keepingCapacity: true)
        }
        // The lines before a malformed one are written before the error, so the output stays a prefix of the answer.
        defer { flush(force: true) }
        while true {
            let chunk = input.readData(ofLength: 1 << 16)
            if chunk.isEmpty { break }
            pending.append(contentsOf: chunk)
            var start = pending.startIndex
            while let nl = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
                try line(pending[start..<nl])
                start = nl + 1
            }
            pending.removeSubrange(..<start)
            flush(force: false)
        }
        if !pending.isEmpty { try line(pending[...]) }
    }
}
