#!/usr/bin/env python3
"""Spectral embedding + Ward clustering (the method's later revision), with silhouette in the embedding and t-SNE plot. Run with --help for the flags (see README.md and docs/)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("cluster_spec_ag.py")
