#!/usr/bin/env bash
# Every test, from a fresh machine: install (Debian packages, Python oracles), generate the oracle fixtures,
# build in release (numeric code is only meaningful optimised), run the Python-side schema checks, then the
# Swift tests with fixtures required (a missing fixture fails instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-oracles.sh
bash scripts/gen-fixtures.sh
export OREO_REQUIRE_FIXTURES=1

# The style the build enforces (.swift-format: 4 spaces, 120 columns, no statements joined by semicolons).
# `swift format format -i -r Sources Tests Package.swift` fixes what this reports.
swift format lint --strict --parallel -r Sources Tests Package.swift

# One build serves both the checks below and the tests (`swift test` alone would rebuild with testing enabled).
swift build -c release --build-tests -Xswiftc -enable-testing
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.build/release/oreo synth --out "$tmp/u16" --trajectories 500 --vocab 50257 >/dev/null 2>&1
.build/release/oreo synth --out "$tmp/u32" --trajectories 500 --vocab 151936 --compression raw >/dev/null 2>&1
python3 scripts/check_manifest_schema.py "$tmp/u16" "$tmp/u32"

# Last, so its closing line is the run's closing line.
swift test -c release --skip-build
