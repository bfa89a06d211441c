"""Text of labels: post-processing of model responses, and cleaning of candidates for scoring.

The published recipe's rules (docs/spec.md) and the later revision's options (docs/revision-2.md)
exist only here:

* :func:`postprocess_response` - a labeller's word-pair answer -> one label line;
* :func:`postprocess_caption` - a labeller's free caption (``--task caption``) -> one line;
* :func:`split_candidates` / :func:`clean_candidate` - a label line -> its scoring candidates,
  with the word limit (``--label_limit``) and the candidate mode (``--candidates``).
"""

import string
from typing import List

from auditoryhum.recipe import LABEL_WORD_LIMIT
from auditoryhum.validation import non_negative_int, one_of

# ASCII punctuation except the comma, which separates word pairs.
_PUNCTUATION_BUT_COMMA = "".join(c for c in string.punctuation if c != ",")
_DELETE_PUNCTUATION = str.maketrans("", "", _PUNCTUATION_BUT_COMMA)

#: ``--candidates`` values: ``split`` (the published rule: each comma-separated part is a
#: candidate) and ``line`` (the whole line is one candidate: a caption or a class name).
CANDIDATE_MODES = ("split", "line")


def postprocess_response(text: str) -> str:
    """Turn a model's response into one label line, in the published order of steps.

    1. ``\\r\\n`` and ``\\n`` become ``", "``; 2. every ASCII punctuation character except the
    comma is deleted; 3. lower-case.

    >>> postprocess_response("Birds chirping.\\nWind-noise!")
    'birds chirping, windnoise'
    """
    text = text.replace("\r\n", ", ").replace("\n", ", ")
    return text.translate(_DELETE_PUNCTUATION).lower()


def postprocess_caption(text: str) -> str:
    """Turn a model's free-form caption into one line of a label file, as the revision leaves it.

    The revision's pipeline (``auditoryhum_test_2_provided_labels_captions.sh``) appends the raw
    caption to the file, drops blank lines (``grep .``) and turns every comma into a semicolon
    (``sed 's/,/;/g'``); case and all other punctuation are kept. Here the caption's non-blank
    lines are stripped and joined with one space, so a caption of several lines stays on one
    line and the file stays line-aligned with the clips (the revision's pipeline would shift
    every later clip); commas become semicolons, so the caption scores as one candidate even
    with ``--candidates split``.

    >>> postprocess_caption("A busy street, with cars.\\n\\n  Birds sing.  ")
    'A busy street; with cars. Birds sing.'
    """
    lines = [part.strip() for part in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return " ".join(part for part in lines if part).replace(",", ";")


def check_label_limit(label_limit: int) -> int:
    """``label_limit`` if it is a whole number >= 0, else :class:`ParameterError` (parameter ``label_limit``)."""
    return non_negative_int(label_limit, "label_limit")


def check_candidate_mode(candidates: str) -> str:
    """``candidates`` if it is one of :data:`CANDIDATE_MODES`, else :class:`ParameterError` (parameter ``candidates``)."""
    return one_of(candidates, CANDIDATE_MODES, "candidates")


def clean_candidate(candidate: str, label_limit: int = LABEL_WORD_LIMIT) -> str:
    """One scoring candidate: non-ASCII characters dropped, stripped, cut to its first ``label_limit`` words.

    The steps and their order are the reference script's (``features_clap_text.py``, both
    revisions): ``encode("ascii", "ignore")``, ``strip()``, then ``" ".join(split()[:N])``.
    With ``label_limit=0`` (the revision's ``--label_limit`` absent or 0) the last step is
    skipped, so the candidate's inner whitespace is kept as written; with ``N > 0`` runs of
    whitespace inside the kept words become one space.

    Parameters
    ----------
    candidate : str
        One comma-separated part of a label line (or the whole line, ``--candidates line``).
    label_limit : int, default :data:`auditoryhum.recipe.LABEL_WORD_LIMIT` (2)
        Words kept; 0 keeps them all. Negative values raise :class:`ParameterError`.

    >>> clean_candidate("  car traffic noise ")
    'car traffic'
    >>> clean_candidate("  car  traffic noise ", label_limit=0)
    'car  traffic noise'
    """
    check_label_limit(label_limit)
    ascii_only = candidate.encode("ascii", "ignore").decode("ascii").strip()
    if label_limit == 0:
        return ascii_only
    return " ".join(ascii_only.split()[:label_limit])


def split_candidates(line: str, label_limit: int = LABEL_WORD_LIMIT, candidates: str = "split") -> List[str]:
    """The scoring candidates of one label line, cleaned, empty ones dropped, in line order.

    Parameters
    ----------
    line : str
        One line of a label file, without its line end.
    label_limit : int, default 2
        Words kept per candidate (``--label_limit``); 0 keeps the whole candidate.
    candidates : {"split", "line"}, default "split"
        ``split`` (``--candidates split``, the published rule): every comma-separated part is a
        candidate. ``line``: the whole line is the one candidate, commas included (a caption,
        a dataset's class name).

    Returns
    -------
    list of str
        The cleaned, non-empty candidates. The reference script keeps empty candidates (and
        CLAP scores the empty text); here they are dropped, and a line with none gives the
        clip the empty label and a NaN score (see :mod:`auditoryhum.scoring`).

    >>> split_candidates("birds chirping loudly, , wind noise")
    ['birds chirping', 'wind noise']
    >>> split_candidates("A street; cars pass, then rain.", label_limit=0, candidates="line")
    ['A street; cars pass, then rain.']
    """
    check_label_limit(label_limit)
    check_candidate_mode(candidates)
    parts = [line] if candidates == "line" else line.split(",")
    return [c for c in (clean_candidate(part, label_limit) for part in parts) if c]
