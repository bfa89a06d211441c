"""AuditoryHuM: auditory scene label generation and clustering with MLLMs and a human in the loop.

The package is arranged by pipeline stage (see README.md). Importing it is cheap: heavy
libraries (torch, transformers, librosa, scikit-learn, matplotlib) are imported inside the
functions that need them, so every command answers ``--help`` at once.
"""

__version__ = "0.1.0"

from auditoryhum.errors import UserError  # noqa: E402,F401  (re-exported: auditoryhum.UserError)
