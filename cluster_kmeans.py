#!/usr/bin/env python3
"""K-means clustering of embedding rows, with silhouette and t-SNE plot. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("cluster_kmeans.py")
