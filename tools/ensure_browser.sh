#!/usr/bin/env bash
# Headless Chromium for the HTML-page tests (review page, run report): Debian's chromium package
# and the npm package playwright-core (tests/browser). Best effort: when it cannot be installed
# (not root, no apt-get, no npm), the browser tests skip and say why. Idempotent.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
        || echo "[setup] could not install chromium; the browser tests will be skipped" >&2
fi
if [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ] && command -v npm >/dev/null 2>&1; then
    echo "[setup] installing playwright-core (npm) for the browser tests" >&2
    npm ci --prefix "$ROOT/tests/browser" --no-audit --no-fund --silent >/dev/null 2>&1 \
        || echo "[setup] npm ci failed; the browser tests will be skipped" >&2
fi
true
