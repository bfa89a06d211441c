#!/usr/bin/env bash
# Create the project's virtual environment in .venv and install what the toolkit needs.
# Idempotent: a stamp holding the hash of requirements.txt and pyproject.toml skips the
# install when nothing changed. Sourced by run_example.sh and run_tests.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.auditoryhum-install-stamp"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version 2>&1)" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    echo "[setup] installing requirements into $VENV (first run: about 2 minutes)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt"
    # the package itself, editable, for the `auditoryhum` command
    # (setuptools' editable-install banner is noise: show the log only if it fails)
    "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT" > "$VENV/.editable-install.log" 2>&1 \
        || { cat "$VENV/.editable-install.log" >&2; exit 1; }
    echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
