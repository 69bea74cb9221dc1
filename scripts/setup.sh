#!/usr/bin/env bash
# Installs what oreo needs on a fresh Debian machine (root, apt and PyPI reachable). Idempotent and quick
# when everything is already there.
set -euo pipefail

# openmpi-bin: `mpirun` for multi-process runs and their tests (oreo loads libmpi only under mpirun).
debs=(libzstd-dev libopenblas-dev libdnnl-dev libxxhash-dev pkg-config openmpi-bin)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null; then
  echo "setup: no swift toolchain on PATH (Swift 6.1 or newer is required)" >&2
  exit 1
fi
