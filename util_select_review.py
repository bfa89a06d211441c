#!/usr/bin/env python3
"""Pick the worst-scored clips for human review; write the review page. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("util_select_review.py")
