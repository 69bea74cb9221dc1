#!/usr/bin/env bash
# Generates the oracle fixtures the tests compare against (Tests/Fixtures/generated, gitignored): tokenizer
# parity cases from HF tokenizers/tiktoken, tiny-model logits and gradients from PyTorch + transformers, and
# SmolLM2-135M logits from transformers' GGUF loader. Nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/oracles/gen_tokenizer_fixtures.py
python3 scripts/oracles/torch_reference.py
python3 scripts/oracles/gguf_reference.py
