#!/usr/bin/env bash
# Quick start, part 2: install, build, and run the test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 -j "$(nproc)"
