"""The one shape every stage returns.

A stage is a plain function ``stage(inputs..., *, options...) -> <Stage>Result``: inputs are
paths (or in-memory arrays/lists where natural), options are keyword arguments with the paper's
defaults (:mod:`auditoryhum.recipe`), and the result says what was written where, the numbers
the script prints, and which items failed. Stage results subclass :class:`StageResult`.
"""

from dataclasses import dataclass, field
from typing import Dict, List


@dataclass
class StageResult:
    """What every stage returns.

    Attributes
    ----------
    outputs : dict of str to str
        Artefact role (the parameter that named it, e.g. ``"text_label_csv"``) -> path written.
    failures : list of str
        One message per item (clip, cluster) that could not be processed; its output row is
        empty/NaN as the stage documents. Empty when everything succeeded.
    """

    outputs: Dict[str, str] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failures
