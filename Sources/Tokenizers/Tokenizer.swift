import Checkpoint
import Support
import Foundation

/// A Hugging Face tokenizer.json byte-level BPE tokenizer that reproduces HF `tokenizers` ids exactly.
///
/// Immutable and `Sendable`: load once, share across threads, and give each thread its own `Encoder`.
public struct Tokenizer: Sendable {
    let model: TokenizerModel

    /// Loads a tokenizer.json, refusing (with the component named) anything it cannot reproduce exactly, or
    /// the tokenizer a GGUF file's metadata describes (`GGUFTokenizer`).
    public static func load(path: String) throws(TokenizerError) -> Tokenizer {
        if GGUFFile.isGGUF(path: path) {
            do { return try GGUFTokenizer.load(try GGUFFile(path: path)) } catch let e as TokenizerError {
                throw e
            } catch {
                throw TokenizerError(path: path, .unreadable("\(error)"))
            }
        }
        return Tokenizer(model: try TokenizerLoader(path: path).load())
    }

    /// Parses tokenizer.json bytes already in memory (with tokenizer_config.json's, for BOS and EOS), as
    /// `load(path:)` parses a file; `source` names where they came from (a .gguf file) in `path` and errors.
    public static func load(json: Data, config: Data?, source: String) throws(TokenizerError) -> Tokenizer {
        Tokenizer(model: try TokenizerLoader(path: source, contents: json, configContents: config).load())
    }

    /// A new encoder with its own scratch space and cache.
    public func makeEncoder(options: EncodeOptions = EncodeOptions()) -> Encoder {
        Encoder(model: model, options: options)
    }

    /// The ids of `text` (convenience for one-off use; hot loops keep an `Encoder`).
    public func encode(_ text: String, options: EncodeOptions = EncodeOptions()) -> [UInt32] {
        var encoder = makeEncoder(options: options)
        var ids: [UInt32] = []
        encoder.encode(text, into: &ids)
        return ids
    }

    /// The bytes `ids` stand for (ByteLevel decoder); a token may end inside a UTF-8 sequence.
    public func decode(_ ids: [UInt32], skipSpecialTokens: Bool = false) throws(TokenizerError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids {
            guard Int(id) < model.vocabSize else { throw TokenizerError(path: model.path, .unknownId(id)) }
            if skipSpecialTokens && model.isSpecial[Int(id)] { continue }
            let bytes = model.decodeBytes[Int(id)]
            guard !bytes.isEmpty else { throw TokenizerError(path: model.path, .unknownId(id)) }
            out.append(contentsOf: bytes)
        }
        return out
    }

    /// One more than the largest id of the vocabulary and the added tokens.
    public var vocabSize: Int { model.vocabSize }
    /// Beginning-of-sequence id (tokenizer_config.json beside the file, the template, or a common name).
    public var bosId: UInt32? { model.bosId }
    /// End-of-sequence id (tokenizer_config.json beside the file, or a common name).
    public var eosId: UInt32? { model.eosId }
    /// FNV-1a 64 of the tokenizer.json bytes: shards record it to catch a changed tokenizer.
    public var fingerprint: UInt64 { model.fingerprint }
    /// The file this tokenizer was loaded from (for one rebuilt from GGUF metadata, the .gguf file).
    public var path: String { model.path }
    /// Ids the post-processor puts before and after each text when `addSpecialTokens` is set.
    public var templateIds: (prefix: [UInt32], suffix: [UInt32]) { (model.prefix, model.suffix) }
    /// Whether `id` is a special added token.
    public func isSpecial(_ id: UInt32) -> Bool { Int(id) < model.vocabSize && model.isSpecial[Int(id)] }
}

extension Tokenizer {
    /// The pieces the pre-tokenizer alone cuts `text` into (like HF `pre_tokenizer.pre_tokenize_str`,
    /// without added tokens or normalization), as raw bytes.
    public func preTokenize(_ text: String) -> [[UInt8]] {
        var pieces: [[UInt8]] = []
        var text = text
        text.withUTF8 { b in
            func walk(_ k: Int, _ start: Int, _ end: Int) {
                if k == model.steps.count {
                    pieces.append(Array(b[start..<end]))
                    return
                }
                var i = start
                while i < end {
                    let j = Splitter.pieceEnd(model.steps[k].code, b, i, end, ScalarClass.table.pointer)
                    walk(k + 1, i, j)
                    i = j
                }
            }
            if b.count > 0 { walk(0, 0, b.count) }
        }
        return pieces
    }
}
