#!/usr/bin/env python3
"""Oracle for `oreo convert`: log-probs of a packed batch from Hugging Face transformers, loading either an HF
model directory or a GGUF file (transformers' own GGUF loader, which dequantizes and un-permutes q/k).

Usage: model_logprobs.py (--hf DIR | --gguf FILE) --batch BATCH.safetensors --out OUT.safetensors
BATCH holds tokens, seq_lengths, targets (I64 or F32, -1 = no target), as the Swift tests write them. OUT gets
logprobs (F32, 0 where no target). With --gguf, OUT.json also lists what the `gguf` package reads from the file:
each tensor's ggml type and shape, the metadata keys, the architecture and the tokenizer's size.
Run by Tests/TrainTests/ConversionTests.swift when OREO_HEAVY_TESTS=1 (needs torch, transformers, gguf, safetensors).
"""
import argparse, json, os, sys
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf")
    src.add_argument("--gguf")
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.hf:
        model = AutoModelForCausalLM.from_pretrained(a.hf, dtype=torch.float32)
    else:
        from gguf import GGUFReader
        r = GGUFReader(a.gguf)
        info = {"tensors": {t.name: {"type": t.tensor_type.name, "shape": [int(x) for x in t.shape]} for t in r.tensors},
                "keys": list(r.fields.keys()),
                "architecture": bytes(r.fields["general.architecture"].parts[-1]).decode()}
        if "tokenizer.ggml.tokens" in r.fields:
            info["tokens"] = len(r.fields["tokenizer.ggml.tokens"].data)
        with open(a.out + ".json", "w") as f:
            json.dump(info, f)
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(a.gguf)),
                                                     gguf_file=os.path.basename(a.gguf), dtype=torch.float32)
    model.eval()
    b = load_file(a.batch)
    # integer or float tensors (the Swift writer stores F32; ids < 2^24 are exact)
    tokens, lengths, targets = b["tokens"].long().tolist(), b["seq_lengths"].long().tolist(), b["targets"].long()
    out, start = [], 0
    with torch.no_grad():
        for n in lengths:
            ids = torch.tensor(tokens[start:start + n])[None]
            lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            t = targets[start:start + n]
            g = lp[torch.arange(n), t.clamp(min=0)]
            out.append(torch.where(t >= 0, g, torch.zeros(n)))
            start += n
    save_file({"logprobs": torch.cat(out).contiguous()}, a.out)


if __name__ == "__main__":
    sys.exit(main())
