#!/usr/bin/env python3
"""Mean score of annotated clips without and with human input. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("util_score_boost.py")
