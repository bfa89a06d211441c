#!/usr/bin/env python3
"""HDBSCAN density clustering, with silhouette, noise count and t-SNE plot. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("cluster_hdbscan.py")
