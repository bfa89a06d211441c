#!/usr/bin/env bash
# Run the test suite (sets up .venv on first use). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source tools/ensure_venv.sh
bash tools/ensure_browser.sh
# vLLM's own environment (.venv-vllm): the server tests start a real vLLM on loopback from it
bash tools/ensure_vllm_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
