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

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
