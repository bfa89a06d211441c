#!/usr/bin/env python3
"""One self-contained HTML report of a run from its artefacts. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("report.py")
