#!/usr/bin/env python3
"""Silhouette of every k in one process (one Ward tree), adjusted score, lambda path and chosen k. Run with --help for the flags (see README.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("cluster_sweep.py")
