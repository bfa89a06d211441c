#!/usr/bin/env python3
"""Scene labels of every clip from Gemma-3n (one line per clip). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("label_gemma3n.py")
