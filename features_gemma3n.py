#!/usr/bin/env python3
"""Gemma-3n audio-tower embedding of every clip, summed over time (.npy). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_gemma3n.py")
