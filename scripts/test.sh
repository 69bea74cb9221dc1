#!/usr/bin/env bash
# Every test, from a fresh machine: install, build in release (numeric code is only meaningful optimised),
# run the Swift tests, then the Python-side schema checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-oracles.sh
export OREO_REQUIRE_FIXTURES=1

swift build -c release
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.build/release/oreo synth --out "$tmp/u16" --trajectories 500 --vocab 50257 >/dev/null 2>&1
.build/release/oreo synth --out "$tmp/u32" --trajectories 500 --vocab 151936 --compression raw >/dev/null 2>&1
python3 scripts/check_manifest_schema.py "$tmp/u16" "$tmp/u32"

# Last, so its closing line is the run's closing line.
swift test -c release
