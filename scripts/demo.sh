#!/usr/bin/env bash
# Quick start, part 1: install, build, and run `arcflow demo` (writes demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
./build/arcflow demo "$@"
