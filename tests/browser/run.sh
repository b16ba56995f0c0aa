#!/bin/sh
# CTest browser.serve: the page of `arcflow serve` in headless Chromium (serve_page.mjs).
# Usage: run.sh ARCFLOW_BINARY [SCREENSHOT.png]   (from the repository root: the server reads models/)
# Exits 77 (CTest: skipped) only when Chromium, Node.js or tests/browser/node_modules are absent;
# scripts/install-deps.sh installs all three.
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
shot=${2:-build/serve-page.png}
chromium=${CHROMIUM:-/usr/bin/chromium}
# CI sets ARCFLOW_REQUIRE_BROWSER=1: there a missing piece is a failure, not a skip.
skip() {
  echo "SKIP: $1"
  if [ -n "${ARCFLOW_REQUIRE_BROWSER:-}" ]; then exit 1; fi
  exit 77
}
if [ ! -x "$chromium" ]; then skip "no Chromium at $chromium (Debian package chromium)"; fi
if ! command -v node >/dev/null 2>&1; then skip "no node (Debian package nodejs)"; fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  skip "$here/node_modules/playwright-core is missing (scripts/install-deps.sh runs npm ci there)"
fi
exec node "$here/serve_page.mjs" "$bin" "$shot"
