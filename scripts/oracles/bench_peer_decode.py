#!/usr/bin/env python3
"""Decoding throughput of Hugging Face transformers `generate` (greedy, KV cache, fp32, CPU) on a GGUF model,
for `Bench decode` to compare against in the same run.

Usage: bench_peer_decode.py [--repeats R] PATH.gguf PROMPT_IDS_JSON NEW_TOKENS BATCH [BATCH ...]
Prints one JSON object per batch size and peer: {"peer", "batch", "new_tokens", "seconds", "cpu_seconds"}:
wall and process CPU seconds of one `generate` call producing exactly NEW_TOKENS tokens per sequence
(min_new_tokens keeps EOS from ending it early), after a warm-up call; the run of median wall time of R
(default 1), as `Bench decode` takes its own; and the same for a plain greedy loop
over the model's forward with its KV cache (no generate machinery: a stronger peer, since generate's
per-step overhead dominates on this machine). torch uses the threads it is given (OMP_NUM_THREADS).
Needs: pip install "torch==2.13.0+cpu" transformers accelerate gguf
"""
import json, os, sys, time
import torch
from transformers import AutoModelForCausalLM


def main():
    args = sys.argv[1:]
    repeats = 1
    if args[:1] == ["--repeats"]:
        repeats, args = max(1, int(args[1])), args[2:]
    path, ids, new, batches = args[0], json.loads(args[1]), int(args[2]), [int(b) for b in args[3:]]
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 torch_dtype=torch.float32).eval()
    for b in batches:
        x = torch.tensor([ids] * b)
        mask = torch.ones_like(x)
        kw = dict(attention_mask=mask, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            model.generate(x, max_new_tokens=4, min_new_tokens=4, **kw)
            runs = []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                out = model.generate(x, max_new_tokens=new, min_new_tokens=new, **kw)
                runs.append((time.perf_counter() - t0, time.process_time() - c0))
            dt, dc = median(runs)
        assert out.shape[1] == len(ids) + new
        print(json.dumps({"peer": "generate", "batch": b, "new_tokens": new, "seconds": dt, "cpu_seconds": dc,
                          "version": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads",
                          "first_ids": out[0, len(ids):len(ids) + 8].tolist()}), flush=True)
        loop(model, x, 4)
        runs = []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            got = loop(model, x, new)
            runs.append((time.perf_counter() - t0, time.process_time() - c0))
        dt, dc = median(runs)
        print(json.dumps({"peer": "forward loop", "batch": b, "new_tokens": new, "seconds": dt, "cpu_seconds": dc,
                          "first_ids": got[0][:8]}), flush=True)


def median(runs):
    """The (wall, cpu) run of median wall time."""
    return sorted(runs)[len(runs) // 2]


def loop(model, x, new):
    """Greedy decoding with the model's own KV cache: one forward per token, argmax."""
    out = [[] for _ in range(x.shape[0])]
    with torch.no_grad():
        r = model(input_ids=x, use_cache=True)
        for step in range(new):
            nxt = r.logits[:, -1, :].argmax(-1, keepdim=True)
            for i in range(x.shape[0]):
                out[i].append(int(nxt[i, 0]))
            if step + 1 < new:
                r = model(input_ids=nxt, past_key_values=r.past_key_values, use_cache=True)
    return out


if __name__ == "__main__":
    main()
