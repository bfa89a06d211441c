#!/usr/bin/env python3
"""Per-cluster label distributions and composite-label prompts. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("composite_label_stats.py")
