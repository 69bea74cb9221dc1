#!/usr/bin/env python3
"""Independent oracle for the Swift train core.

Builds tiny random GPT-2 / Llama / Qwen2 models with Hugging Face transformers (fixed seed), and writes for
each into Tests/Fixtures/generated/models/<family>/:
  config.json, model.safetensors       the model (HF names and layouts)
  expected.safetensors                 tokens, seq_lengths, targets (I64) of a packed batch of 3 sequences,
                                       logprobs per position (0 where no target), loss (mean target NLL),
                                       grad.<name> for every parameter (HF layout), adam_losses (10 AdamW steps),
                                       logprobs_bf16 and grad_bf16.<name> of the same pass under CPU autocast bf16
Needs: pip install "torch==2.13.0+cpu" transformers safetensors numpy
"""
import json, os, sys
import torch
from safetensors.torch import save_file
import transformers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "generated", "models")
ADAM = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)


def build(family):
    common = dict(vocab_size=97)
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, n_inner=80,
                                      activation_function="gelu_new", resid_pdrop=0, embd_pdrop=0,
                                      attn_pdrop=0, **common)
        model = transformers.GPT2LMHeadModel(cfg)
    elif family == "llama":
        cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                                       rope_scaling=dict(rope_type="llama3", factor=4.0, low_freq_factor=1.0,
                                                         high_freq_factor=4.0, original_max_position_embeddings=16),
                                       **common)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                                       rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=True, **common)
        model = transformers.Qwen2ForCausalLM(cfg)
    cfg._attn_implementation = "eager"
    # Larger-than-default random weights so logits, attention and gradients are far from uniform/trivial.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0, 0.15)
            elif "norm" in name or "ln_" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.1)
    return model.float().eval()


def batch_logprobs(model, seqs):
    out = []
    for s in seqs:
        ids = torch.tensor(s)[None]
        logits = model(input_ids=ids).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        tgt = torch.tensor(s[1:] + [0])
        g = lp.gather(1, tgt[:, None])[:, 0]
        g = torch.cat([g[:-1], torch.zeros(1)])
        out.append(g)
    return torch.cat(out)


def main():
    for fi, family in enumerate(["gpt2", "llama", "qwen2"]):
        torch.manual_seed(1234 + fi)
        model = build(family)
        gen = torch.Generator().manual_seed(99 + fi)
        lengths = [7, 12, 5]
        seqs = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in lengths]
        d = os.path.join(OUT, family)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        k = sum(n - 1 for n in lengths)
        lp = batch_logprobs(model, seqs)
        loss = -lp.sum() / k
        model.zero_grad()
        loss.backward()
        t = {"tokens": torch.tensor(sum(seqs, []), dtype=torch.int64),
             "seq_lengths": torch.tensor(lengths, dtype=torch.int64),
             "targets": torch.tensor(sum([s[1:] + [-1] for s in seqs], []), dtype=torch.int64),
             "logprobs": lp.detach().contiguous(), "loss": loss.detach().reshape(1)}
        for name, p in model.named_parameters():
            t["grad." + name] = p.grad.detach().clone().contiguous()
        # The same pass under CPU autocast bf16 (bf16 matmuls, f32 weights and log-softmax): what oreo's
        # --precision bf16 is compared with.
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lpb = batch_logprobs(model, seqs)
        (-lpb.sum() / k).backward()
        t["logprobs_bf16"] = lpb.detach().float().contiguous()
        for name, p in model.named_parameters():
            t["grad_bf16." + name] = p.grad.detach().float().clone().contiguous()
        decay = [p for p in model.parameters() if p.ndim >= 2]
        other = [p for p in model.parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["weight_decay"]},
                                 {"params": other, "weight_decay": 0.0}],
                                lr=ADAM["lr"], betas=ADAM["betas"], eps=ADAM["eps"])
        losses = []
        for _ in range(ADAM["steps"]):
            opt.zero_grad()
            l = -batch_logprobs(model, seqs).sum() / k
            losses.append(l.item())
            l.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), ADAM["clip"])
            opt.step()
        t["adam_losses"] = torch.tensor(losses)
        t["adam_hparams"] = torch.tensor([ADAM["lr"], ADAM["betas"][0], ADAM["betas"][1], ADAM["eps"],
                                          ADAM["weight_decay"], ADAM["clip"]], dtype=torch.float32)
        save_file(t, os.path.join(d, "expected.safetensors"))
        print(f"{family}: loss {loss.item():.6f}, adam losses {losses[0]:.4f} -> {losses[-1]:.4f}, wrote {d}")


if __name__ == "__main__":
    sys.exit(main())
