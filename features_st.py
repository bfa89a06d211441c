#!/usr/bin/env python3
"""Sentence embedding of every clip's kept label (.npy). Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_st.py")
