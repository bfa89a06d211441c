"""The helpers every long run shares: digests, the first line of an error, seeding, and the
out-of-memory error (one definition each)."""

import hashlib
import random
from typing import Optional

from auditoryhum.errors import UserError
from auditoryhum.recipe import SEED


def digest(text: str) -> str:
    """A short digest of ``text`` (16 hex digits of SHA-256): how a journal record remembers a prompt."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def seed_everything(seed: int = SEED) -> None:
    """Seed Python, NumPy and torch (all devices), as the published recipe does."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class OutOfMemory(UserError):
    """The accelerator ran out of memory: one line saying what to change."""

    def __init__(self):
        # The run engine adds how many finished items the journal keeps for the rerun.
        super().__init__("the accelerator ran out of memory; rerun with a smaller --batch_size")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's accelerator out-of-memory error (torch need not be imported)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return False
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def raise_if_out_of_memory(exc: BaseException) -> None:
    """Turn torch's out-of-memory error into :class:`OutOfMemory`; do nothing for any other error."""
    if is_out_of_memory(exc):
        raise OutOfMemory() from None


def optional_seed(seed: Optional[int]) -> None:
    """Seed everything when ``seed`` is given (steps without a model need no torch)."""
    if seed is not None:
        seed_everything(seed)
