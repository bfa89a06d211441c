#!/usr/bin/env python3
"""Merge human annotations into MLLM labels (line-aligned). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("util_merge_csv.py")
