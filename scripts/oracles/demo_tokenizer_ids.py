#!/usr/bin/env python3
"""Encodes texts with HF `tokenizers` for the demo tokenizer parity test (Tests/DemoTests).

Usage: demo_tokenizer_ids.py TOKENIZER.json CASES.json OUT.json
CASES.json is a JSON array of strings. OUT.json gets, per case, [plain ids, ids with the post-processor,
ids with special tokens encoded as text], and the tokenizer's view of its special tokens.
Setup: pip install tokenizers
"""
import json, sys

from tokenizers import Tokenizer


def main():
    tok_path, cases_path, out_path = sys.argv[1:4]
    tok = Tokenizer.from_file(tok_path)
    cases = json.load(open(cases_path, encoding="utf-8"))
    plain = [e.ids for e in tok.encode_batch(cases, add_special_tokens=False)]
    templ = [e.ids for e in tok.encode_batch(cases, add_special_tokens=True)]
    tok.encode_special_tokens = True
    literal = [e.ids for e in tok.encode_batch(cases, add_special_tokens=False)]
    decoded = [tok.decode(ids, skip_special_tokens=False) for ids in plain]
    info = {
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "specials": {t: tok.token_to_id(t) for t in ["<pad>", "<s>", "</s>"]},
    }
    json.dump({"ids": [list(x) for x in zip(plain, templ, literal)], "decoded": decoded, "info": info},
              open(out_path, "w", encoding="utf-8"))


if __name__ == "__main__":
    main()
