#!/usr/bin/env python3
"""Independent oracle for oreo's LoRA adapters: PEFT + transformers on the tiny models of torch_reference.py.

For each family, into Tests/Fixtures/generated/lora/<family>/:
  adapter/                  a PEFT adapter (save_pretrained: adapter_config.json, adapter_model.safetensors),
                            rank 4, alpha 8, on every linear layer of the family; lora_B set to N(0, 0.3) so that
                            the adapter changes the model and every gradient is non-zero
  expected.safetensors      logprobs per position of the fixture's packed batch (0 where no target), loss (mean
                            target NLL), grad.<tensor> of every lora_A / lora_B (PEFT's saved names)

With --check DIR FAMILY, loads the base model of FAMILY plus the adapter in DIR (one oreo wrote) and prints the
fixture batch's log-probs as JSON: the test that oreo's files load in PEFT.
Needs: torch, transformers, peft, safetensors (scripts/setup-oracles.sh); run after torch_reference.py.
"""
import json, os, sys
import torch
import transformers
import peft
from safetensors.torch import save_file, load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "generated", "models")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generated", "lora")
TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"],
           "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
TARGETS["qwen2"] = TARGETS["llama"]


def base(family):
    m = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, family), torch_dtype=torch.float32,
                                                          attn_implementation="eager")
    return m.float().eval()


def batch(family):
    e = load_file(os.path.join(MODELS, family, "expected.safetensors"))
    tokens, lengths = e["tokens"].tolist(), e["seq_lengths"].tolist()
    seqs, i = [], 0
    for n in lengths:
        seqs.append(tokens[i:i + n])
        i += n
    return seqs


def logprobs(model, seqs):
    out = []
    for s in seqs:
        logits = model(input_ids=torch.tensor(s)[None]).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(s[1:] + [0])[:, None])[:, 0]
        out.append(torch.cat([lp[:-1], torch.zeros(1)]))
    return torch.cat(out)


def check(adapter_dir, family):
    model = peft.PeftModel.from_pretrained(base(family), adapter_dir).eval()
    with torch.no_grad():
        print(json.dumps(logprobs(model, batch(family)).tolist()))


def main():
    for fi, family in enumerate(["gpt2", "llama", "qwen2"]):
        torch.manual_seed(4321 + fi)
        config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS[family],
                                 fan_in_fan_out=family == "gpt2", bias="none", task_type="CAUSAL_LM")
        model = peft.get_peft_model(base(family), config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3)
        d = os.path.join(OUT, family)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(os.path.join(d, "adapter"))
        seqs = batch(family)
        k = sum(len(s) - 1 for s in seqs)
        lp = logprobs(model, seqs)
        loss = -lp.sum() / k
        model.zero_grad()
        loss.backward()
        t = {"logprobs": lp.detach().contiguous(), "loss": loss.detach().reshape(1)}
        for name, p in model.named_parameters():
            if p.grad is not None and "lora_" in name:
                # the saved name: without the adapter name PEFT inserts in the module path
                t["grad." + name.replace(".default", "")] = p.grad.detach().clone().contiguous()
        save_file(t, os.path.join(d, "expected.safetensors"))
        print(f"{family}: loss {loss.item():.6f}, {len(t) - 2} LoRA gradients, wrote {d}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    sys.exit(main())
