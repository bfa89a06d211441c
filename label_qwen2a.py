#!/usr/bin/env python3
"""Scene labels of every clip from Qwen2-Audio (one line per clip). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("label_qwen2a.py")
