import Foundation

/// A prompt wrapper: ChatML (`<|im_start|>role\n...<|im_end|>\n`) or the raw text.
public enum ChatTemplate: Equatable, Sendable {
    /// The prompt as is.
    case none
    /// ChatML with the template's default system message (used when the caller gives none), if it has one.
    case chatML(defaultSystem: String?)

    /// ChatML when a model's Jinja template (GGUF `tokenizer.chat_template`, tokenizer_config.json
    /// `chat_template`) uses `<|im_start|>` / `<|im_end|>`, with the default system message it inserts; else
    /// none. The template is recognized, not executed.
    public static func detect(fromJinja source: String?) -> ChatTemplate {
        guard let s = source, s.contains("<|im_start|>"), s.contains("<|im_end|>") else { return .none }
        // The default system message is a literal '<|im_start|>system\n...<|im_end|>' in the template, with
        // a real newline (SmolLM2) or a Jinja "\n" escape (Qwen2).
        // Templates with tools also splice messages[0] after a system opener: take the first literal one.
        for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            var from = s.startIndex
            while let r = s.range(of: opener, range: from..<s.endIndex),
                let end = s[r.upperBound...].range(of: "<|im_end|>")
            {
                let text = String(s[r.upperBound..<end.lowerBound])
                if !text.contains("{{") && !text.contains("{%") && !text.contains("'") && !text.contains("\"") {
                    return .chatML(defaultSystem: text.replacingOccurrences(of: "\\n", with: "\n"))
                }
                from = r.upperBound
            }
        }
        return .chatML(defaultSystem: nil)
    }

    /// The text a model sees for a single user turn, ending where the assistant's answer starts.
    public func render(_ prompt: String, system: String? = nil) -> String {
        switch self {
        case .none: return prompt
        case .chatML(let def):
            var s = ""
            if let sys = system ?? def { s += "<|im_start|>system\n\(sys)<|im_end|>\n" }
            return s + "<|im_start|>user\n\(prompt)<|im_end|>\n<|im_start|>assistant\n"
        }
    }
}
