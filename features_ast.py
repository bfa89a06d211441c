#!/usr/bin/env python3
"""AST embedding of every clip (the classifier layer-norm output) as .npy. Run with --help for the flags (see README.md and docs/spec.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_ast.py")
