#!/usr/bin/env bash
# Quick start, part 1: install, build the `arcflow` command only, and run `arcflow demo` (writes
# demo/). The unit tests are not compiled here (a quarter of a first build); scripts/test.sh builds
# them later in the same build/ folder, with the same settings, reusing what this built.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)" --target arcflow
./build/arcflow demo "$@"
