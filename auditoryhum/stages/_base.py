"""The one shape every stage returns.

A stage is a plain function ``stage(inputs..., *, options...) -> <Stage>Result``: inputs are
paths (or in-memory arrays/lists where natural), options are keyword arguments with the paper's
defaults (:mod:`auditoryhum.recipe`), and the result says what was written where, the numbers
the script prints, and which items failed. Stage results subclass :class:`StageResult`.
"""

import contextlib
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from auditoryhum.errors import ParameterError


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


@dataclass
class NotedResult(StageResult):
    """A :class:`StageResult` that keeps what its stage said on stderr.

    Attributes
    ----------
    notes, warnings : list of str
        The ``note:`` and ``warning:`` lines, in order.
    """

    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def say_note(self, message: str) -> None:
        """Print ``note: message`` (unless quiet) and keep it."""
        from auditoryhum.console import note

        self.notes.append(message)
        note(message)

    def say_warning(self, message: str) -> None:
        """Print ``warning: message`` and keep it."""
        from auditoryhum.console import warn

        self.warnings.append(message)
        warn(message)


def expand_clips(filedir, param: str = "filedir"):
    """The clips of a stage: a glob (expanded, sorted) or an explicit sequence of paths (kept in order).

    Returns ``(paths, description)``; the description names the clips in messages.
    """
    from auditoryhum.io.audio import expand_glob
    from auditoryhum.validation import clips_arg

    # bytes would be iterated (five "clips" named 42, 46, 119, ...), an int or array fail in pathlib.
    filedir = clips_arg(filedir, param)
    if isinstance(filedir, str):
        return expand_glob(filedir, param), f"{mention(param)} {filedir!r}"
    paths = filedir
    if not paths:
        raise ParameterError(param, "is an empty list of clips")
    return paths, f"{mention(param)} ({len(paths)} clips)"


def check_precision(device: str, dtype: str, quantization: str) -> None:
    """Check a model stage's ``device``, ``dtype`` and ``quantization`` against the choices of
    :mod:`auditoryhum.models.device` (every stage that loads a local model takes these three)."""
    from auditoryhum.models.device import DEVICE_CHOICES, DTYPE_CHOICES, QUANTIZATION_CHOICES
    from auditoryhum.validation import one_of

    one_of(device, DEVICE_CHOICES, "device")
    one_of(dtype, DTYPE_CHOICES, "dtype")
    one_of(quantization, QUANTIZATION_CHOICES, "quantization")


def local_model(source: str) -> Optional[str]:
    """A model given as a folder or a hub id, as an input of :func:`guarded`: the folder, or
    ``None`` for a hub id (it is no path, so no output may collide with it)."""
    return source if os.path.exists(source) else None


# One definition, in the light errors module (io/ uses them too); re-exported here.
from auditoryhum.errors import _MENTION, MentionError, as_parameter, mention  # noqa: E402,F401


def _as_mention_error(exc: Exception) -> Optional["MentionError"]:
    from auditoryhum.errors import UserError

    if isinstance(exc, UserError) and not isinstance(exc, ParameterError) and _MENTION.search(str(exc)):
        return MentionError(str(exc))
    return None


@contextlib.contextmanager
def guarded(holder: str, inputs: Dict[str, object], outputs: Dict[str, Optional[str]]):
    """Hold :func:`auditoryhum.io.guard.guard_stage` for the whole stage: no output overlaps an input or
    another output, none is a directory, and each is locked against a concurrent run.

    ``inputs`` maps a parameter to a path or a list of paths (a glob's files); ``outputs`` maps a
    parameter to a path (``None``: not written by this call, left out).
    """
    from auditoryhum.validation import path_arg

    # Every path parameter is checked here, once for all stages, before it is used: a wrong type
    # (bytes, an int, an array) is a ParameterError naming it, not a TypeError from pathlib.
    outputs = {k: path_arg(v, k) for k, v in outputs.items() if v is not None}
    inputs = {k: ([path_arg(p, k) for p in v] if isinstance(v, (list, tuple)) else path_arg(v, k))
              for k, v in inputs.items() if v is not None}
    from auditoryhum.io.guard import guard_stage

    with guard_stage(inputs=inputs, outputs=outputs, holder=holder):
        try:
            yield
        except Exception as exc:
            # A lower layer's message that names a parameter (see mention()) is a parameter's error.
            converted = _as_mention_error(exc)
            if converted is None:
                raise
            raise converted from None



