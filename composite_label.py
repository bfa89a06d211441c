#!/usr/bin/env python3
"""Name every cluster with a short composite label from an LLM (taxonomy CSV + JSON). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("composite_label.py")
