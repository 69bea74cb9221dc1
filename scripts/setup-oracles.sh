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
