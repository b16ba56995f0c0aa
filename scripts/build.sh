#!/usr/bin/env bash
# Installs the dependencies (if missing) and builds arcflow in build/ (Release).
# Extra arguments go to CMake's configure step, e.g. -DCMAKE_PREFIX_PATH=/path/to/libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build --parallel "$(nproc)"
