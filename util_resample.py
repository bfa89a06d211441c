#!/usr/bin/env python3
"""Convert clips to one rate, channel count and sample format. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("util_resample.py")
