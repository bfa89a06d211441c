#!/usr/bin/env bash
# Download the TAU Urban Audio-Visual Scenes 2021 development audio (Zenodo record 4477542, 8 zip parts)
# into the current folder (or --dest DIR): resumable, every archive verified (size, MD5, zip CRC)
# before anything is unpacked, reruns skip finished work. BASE_URL overrides the download folder URL.
# The work is done by auditoryhum/datasets.py (standard library only: any python3 will do).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -c 'import sys; from auditoryhum.datasets import main; sys.exit(main(sys.argv[1:], prog="tau2021.sh", dataset="tau2021"))' "$@"
