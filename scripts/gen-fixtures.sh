#!/usr/bin/env bash
# Generates the oracle fixtures the tests compare against (Tests/Fixtures/generated, gitignored): tokenizer
# parity cases from HF tokenizers/tiktoken, tiny-model logits and gradients from PyTorch + transformers (and PEFT for LoRA), and
# SmolLM2-135M logits from transformers' GGUF loader. Nothing is downloaded. Each set is rebuilt when it is
# missing or older than its generator.
set -euo pipefail
cd "$(dirname "$0")/.."
gen() {  # gen SCRIPT MARKER-FILE
  if [ ! -f "$2" ] || [ "$1" -nt "$2" ]; then
    echo "fixtures: running $1"
    log=$(mktemp)
    python3 "$1" >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
    rm -f "$log"
  fi
}
mkdir -p Tests/Fixtures/generated
gen scripts/oracles/gen_tokenizer_fixtures.py Tests/Fixtures/generated/tokenizers/corpus.bin
gen scripts/oracles/torch_reference.py Tests/Fixtures/generated/models/qwen2/expected.safetensors
gen scripts/oracles/lora_reference.py Tests/Fixtures/generated/lora/qwen2/expected.safetensors
gen scripts/oracles/gguf_reference.py Tests/Fixtures/generated/smollm2/expected.safetensors
gen scripts/oracles/generate_reference.py Tests/Fixtures/generated/smollm2-generate/expected.safetensors
