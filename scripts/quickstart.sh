#!/usr/bin/env bash
# The main job on a built-in default, from a fresh machine: install, build, then run the most complete
# pipeline oreo has today: write a synthetic trajectory dataset, inspect it, verify every checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product oreo 2>&1 | grep -E "error|warning: unre|Compiling|Build complete" | tail -3
oreo=.build/release/oreo
out=${OREO_QUICKSTART_DIR:-/tmp/oreo-quickstart}
$oreo doctor
$oreo synth --out "$out" --trajectories 20000 --vocab 151936
$oreo inspect "$out" --rows 2
$oreo verify "$out"
