#!/usr/bin/env python3
"""PyTorch peer of `Bench train`: the same training step (forward, mean next-token NLL, backward, grad-norm clip
to 1, AdamW) on a Hugging Face model of the same configuration on the CPU: fp32, or with "precision": "bf16"
under torch.autocast("cpu", dtype=torch.bfloat16) (f32 weights and optimizer, bf16 matmuls through oneDNN).

Usage: bench_peer_train.py CONFIG_JSON
CONFIG_JSON: {"family": "gpt2"|"llama", "vocab", "d", "layers", "heads", "kv_heads", "ffn", "positions",
              "tied", "batch", "seq", "steps", "threads", "seed", "precision" (optional: "fp32" or "bf16")}
Prints per-step lines, then one JSON line {"peer": "torch", "version", "ms", "cpu_ms", "losses"}: medians over
the timed steps (after one warm-up step) of wall milliseconds and of process CPU milliseconds per step.
Setup: pip install "torch==2.13.0+cpu" transformers
"""
import json, os, statistics, sys, time


def main():
    c = json.loads(sys.argv[1])
    threads = str(c["threads"])
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    import torch
    import transformers
    torch.set_num_threads(c["threads"])
    torch.manual_seed(c["seed"])
    if c["family"] == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=c["vocab"], n_embd=c["d"], n_layer=c["layers"], n_head=c["heads"],
                                      n_positions=c["positions"], n_inner=c["ffn"], activation_function="gelu_new",
                                      resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=c["vocab"], hidden_size=c["d"], num_hidden_layers=c["layers"],
                                       num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
                                       intermediate_size=c["ffn"], max_position_embeddings=c["positions"],
                                       tie_word_embeddings=c["tied"])
        model = transformers.LlamaForCausalLM(cfg)
    model.float().train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(c["seed"])
    x = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=g)
    wall, cpu, losses = [], [], []
    for s in range(c["steps"] + 1):
        t0, p0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.get("precision") == "bf16"):
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt, dc = (time.perf_counter() - t0) * 1000, (time.process_time() - p0) * 1000
        losses.append(loss.item())
        print(f"  torch step {s}: {dt:.0f} ms, loss {loss.item():.4f}", flush=True)
        if s > 0:
            wall.append(dt)
            cpu.append(dc)
    print(json.dumps({"peer": "torch", "version": torch.__version__, "precision": c.get("precision", "fp32"), "ms": statistics.median(wall),
                      "cpu_ms": statistics.median(cpu), "losses": losses}), flush=True)


if __name__ == "__main__":
    main()
