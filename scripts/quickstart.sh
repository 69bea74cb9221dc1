#!/usr/bin/env bash
# The main job on its built-in default, from a fresh machine: install, build, then `oreo demo` (the paper's
# comparison in miniature, about 15 minutes on 2 cores). Extra arguments go to `oreo demo`; run it again
# with the same arguments to continue an interrupted run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --product oreo 2>&1 | { grep -E "error:|Compiling|omplete" || true; } | tail -3
oreo=.build/release/oreo
$oreo doctor
$oreo demo --out "${OREO_QUICKSTART_DIR:-oreo-demo}" "$@"
