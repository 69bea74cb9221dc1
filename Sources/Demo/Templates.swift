import Format
import Support

/// The words and sentence patterns problems are written with. Placeholders: `{name}` the main character,
/// `{pro}` / `{obj}` / `{pos}` their pronouns (she / her / her), `{friend}` another character, `{items}` the
/// objects counted, `{n}` the number of the sentence.
enum Templates {
    /// Characters with their subject, object and possessive pronouns.
    static let characters: [(name: String, pro: String, obj: String, pos: String)] = {
        let she = [
            "Mia", "Ava", "Emma", "Zoe", "Sara", "Nina", "Lucy", "Ana", "Maya", "Eva", "Lily", "Rosa", "Ella", "Ines",
        ]
        let he = [
            "Noah", "Liam", "Omar", "Leo", "Ivan", "Raj", "Tom", "Ben", "Kai", "Jack", "Hugo", "Sam", "Max", "Luca",
        ]
        return she.map { ($0, "she", "her", "her") } + he.map { ($0, "he", "him", "his") }
    }()

    /// Plural nouns that are counted.
    static let items = [
        "apples", "marbles", "stickers", "coins", "books", "pencils", "cookies", "shells", "stamps",
        "cards", "beads", "balloons", "eggs", "flowers", "candies", "toy cars", "buttons", "crayons",
    ]

    /// The first sentence: the starting amount.
    static let intro = [
        "{name} has {n} {items}.", "{name} starts with {n} {items}.", "{name} owns {n} {items}.",
        "There are {n} {items} in {name}'s box.", "{name} keeps {n} {items} in a jar.",
        "At first {name} has {n} {items}.",
    ]

    /// Sentences that add `{n}`.
    static let add = [
        "{pro} buys {n} more.", "{pro} finds {n} more.", "{friend} gives {obj} {n} more.",
        "{pro} wins {n} more in a game.", "{pro} gets {n} more from {friend}.", "{pro} picks up {n} more.",
    ]

    /// Sentences that subtract `{n}`.
    static let subtract = [
        "{pro} gives {n} to {friend}.", "{pro} loses {n}.", "{pro} sells {n} of them.", "{friend} takes {n} of them.",
        "{pro} gives away {n}.", "{pro} drops {n} on the way home.",
    ]

    /// Sentences that multiply by `{n}`, for any factor.
    static let multiply = [
        "{pro} ends up with {n} times as many.", "the number of {items} grows to {n} times as many.",
    ]
    /// Extra sentences for doubling.
    static let double = [
        "{pro} doubles {pos} {items}.", "the number of {items} doubles.", "{friend} gives {obj} as many again.",
    ]
    /// Extra sentences for tripling.
    static let triple = ["the number of {items} triples.", "{pro} triples {pos} {items}."]

    /// Words that may open a later sentence (empty: none).
    static let connectors = ["", "", "Then ", "After that ", "Next ", "Later "]

    /// The closing question.
    static let question = [
        "How many {items} does {name} have now?", "How many {items} does {name} have at the end?",
        "How many {items} does {name} have in the end?", "How many {items} are there now?",
    ]

    /// Phrases that open a calculation line in the sentence style.
    static func stepPhrase(_ step: ProblemStep) -> [String] {
        switch step.operation {
        case .add: ["Adding {n}", "With {n} more", "After getting {n} more"]
        case .subtract: ["Taking away {n}", "After losing {n}", "Removing {n}"]
        case .multiply: ["Multiplying by {n}", "With {n} times as many"]
        }
    }

    /// The sentences that can describe `step`.
    static func sentences(_ step: ProblemStep) -> [String] {
        switch step.operation {
        case .add: add
        case .subtract: subtract
        case .multiply: multiply + (step.operand == 2 ? double : step.operand == 3 ? triple : [])
        }
    }

    /// Every text the templates can produce, for learning tokenizer merges over the task's words.
    static var vocabularyText: [String] {
        var all = intro + add + subtract + multiply + double + triple + connectors + question
        all += [ProblemStep(.add, 1), ProblemStep(.subtract, 1), ProblemStep(.multiply, 2)].flatMap(stepPhrase)
        all += characters.flatMap { [$0.name, $0.pro, $0.obj, $0.pos] } + items
        return all
    }
}

/// Fills one template.
struct Filler {
    var name: String, pro: String, obj: String, pos: String, friend: String, items: String

    func fill(_ template: String, _ n: Int) -> String {
        var out = ""
        var rest = template[...]
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}") {
            out += rest[..<open]
            switch rest[rest.index(after: open)..<close] {
            case "name": out += name
            case "pro": out += pro
            case "obj": out += obj
            case "pos": out += pos
            case "friend": out += friend
            case "items": out += items
            case "n": out += String(n)
            case let other: out += "{\(other)}"
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}

/// `text` with its first letter upper-cased (ASCII).
func capitalized(_ text: String) -> String {
    guard let first = text.unicodeScalars.first, ("a"..."z").contains(first) else { return text }
    return String(first).uppercased() + text.unicodeScalars.dropFirst().map(String.init).joined()
}

extension ProblemGenerator {
    /// Writes the word problem and worked solution for given arithmetic, drawing the wording from `rng`.
    func render(start: Int, _ operations: [ProblemStep], values: [Int], id: String, rng: inout SplitMix64) -> Problem {
        let who = rng.pick(Templates.characters)
        var friend = rng.pick(Templates.characters).name
        while friend == who.name { friend = rng.pick(Templates.characters).name }
        let f = Filler(
            name: who.name, pro: who.pro, obj: who.obj, pos: who.pos, friend: friend, items: rng.pick(Templates.items))
        var sentences = [capitalized(f.fill(rng.pick(Templates.intro), start))]
        for op in operations {
            let connector = rng.pick(Templates.connectors)
            let body = f.fill(rng.pick(Templates.sentences(op)), op.operand)
            sentences.append(connector.isEmpty ? capitalized(body) : connector + body)
        }
        sentences.append(f.fill(rng.pick(Templates.question), 0))
        var lines: [String] = []
        var value = start
        for (op, next) in zip(operations, values) {
            let calc = "\(value)\(op.operation.rawValue)\(op.operand)=\(next)"
            switch config.style {
            case .equation: lines.append(calc)
            case .sentence: lines.append(f.fill(rng.pick(Templates.stepPhrase(op)), op.operand) + ": " + calc)
            }
            value = next
        }
        return Problem(
            id: id, prompt: sentences.joined(separator: " ") + "\n", steps: lines, answer: value,
            values: values, start: start, operations: operations)
    }
}
