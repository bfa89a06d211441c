"""Text of labels: post-processing of model responses, and cleaning of candidates for scoring.

Both rules are the published recipe's (SPEC.md) and exist only here.
"""

import string
from typing import List

# ASCII punctuation except the comma, which separates word pairs.
_PUNCTUATION_BUT_COMMA = "".join(c for c in string.punctuation if c != ",")
_DELETE_PUNCTUATION = str.maketrans("", "", _PUNCTUATION_BUT_COMMA)


def postprocess_response(text: str) -> str:
    """Turn a model's response into one label line, in the published order of steps.

    1. ``\\r\\n`` and ``\\n`` become ``", "``; 2. every ASCII punctuation character except the
    comma is deleted; 3. lower-case.

    >>> postprocess_response("Birds chirping.\\nWind-noise!")
    'birds chirping, windnoise'
    """
    text = text.replace("\r\n", ", ").replace("\n", ", ")
    return text.translate(_DELETE_PUNCTUATION).lower()


def clean_candidate(candidate: str) -> str:
    """One scoring candidate: non-ASCII characters dropped, stripped, cut to its first two words."""
    ascii_only = candidate.encode("ascii", "ignore").decode("ascii").strip()
    return " ".join(ascii_only.split()[:2])


def split_candidates(line: str) -> List[str]:
    """The candidates of one label line: split on commas, cleaned, empty ones dropped (order kept)."""
    return [c for c in (clean_candidate(part) for part in line.split(",")) if c]
