#!/usr/bin/env python3
"""Keep each clip's best label by CLAP audio-text cosine score (scores .csv). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_clap_text.py")
