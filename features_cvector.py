#!/usr/bin/env python3
"""Class vector of every clip: CLAP cosine with each label a scores file keeps, as .npy (the method's later revision; docs/revision-2.md)."""
from auditoryhum.cli import main_script

if __name__ == "__main__":
    main_script("features_cvector.py")
