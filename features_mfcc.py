#!/usr/bin/env python3
"""Mean MFCC vector of every clip (N x 20 .npy). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_mfcc.py")
