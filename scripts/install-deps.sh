#!/usr/bin/env bash
# Installs the Debian packages arcflow needs. Idempotent and non-interactive:
# does nothing (and needs no network) when everything is already installed.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libgloo-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libpng-dev zlib1g-dev
  dataset-fashion-mnist
  libgtest-dev
  libmicrohttpd-dev libcpp-httplib-dev chromium nodejs curl
)

# --sanitizers: also what scripts/check-sanitizers.sh needs (clang with its ASan/UBSan/libFuzzer runtimes).
if [ "${1:-}" = "--sanitizers" ]; then
  PKGS+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The browser test of `arcflow serve` (tests/browser): playwright-core from npm (package-lock.json),
# driving Debian's chromium. Installed once; a failure only warns (that test then reports SKIP).
npm_step() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
  [ -f "$dir/package-lock.json" ] && [ ! -d "$dir/node_modules/playwright-core" ] || return 0
  if ! command -v npm >/dev/null 2>&1; then
    $SUDO apt-get install -y -q --no-install-recommends npm || true
  fi
  echo "install-deps: npm ci in tests/browser"
  (cd "$dir" && npm ci --no-audit --no-fund) ||
    echo "install-deps: warning: npm ci failed in $dir; the browser test will be skipped" >&2
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  npm_step
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
npm_step
