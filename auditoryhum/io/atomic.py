"""Atomic writes: an artefact is either absent, the old version, or complete.

Every output of the toolkit goes through :func:`atomic_write`: the data is written to a
hidden temporary file beside the target, flushed to disk, and renamed over the target in one
``os.replace`` (atomic on POSIX and Windows within a file system). An interrupted run never
leaves a half-written file under the target's name.
"""

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from auditoryhum.errors import UserError

PARTIAL_SUFFIX = ".partial"


def partial_prefix(target: Union[str, Path]) -> str:
    """Prefix of the temporary files made for ``target`` (hidden, so globs like ``*.wav`` skip them)."""
    return f".{Path(target).name}."


@contextlib.contextmanager
def atomic_write(
    target: Union[str, Path],
    mode: str = "w",
    encoding: str = "utf-8",
    verify: Optional[Callable[[str], None]] = None,
) -> Iterator[IO]:
    """Open a temporary file beside ``target`` and move it into place when the block succeeds.

    ``mode`` is ``"w"`` (text, UTF-8, ``\\n`` line endings) or ``"wb"``. The parent folder is
    created if needed. ``verify(temp_path)``, when given, checks the complete temporary file
    and raises to veto the replacement. If the block or the check raises, the temporary file
    is removed and ``target`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write mode must be 'w' or 'wb'")
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(target), suffix=PARTIAL_SUFFIX, dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        if mode == "w":
            handle = os.fdopen(fd, "w", encoding=encoding, newline="\n")
        else:
            handle = os.fdopen(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if verify is not None:
            verify(tmp)
        # mkstemp creates 0600 files; give the artefact the permissions a normal write would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(target: Union[str, Path], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``target``."""
    with atomic_write(target, "w") as f:
        f.write(text)


def remove_stale_partials(target: Union[str, Path]) -> int:
    """Delete temporary files left beside ``target`` by a killed run; return how many."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    removed = 0
    # mkstemp's random part has no dots, so ".a.wav.<rnd>.partial" never matches a temporary
    # of "a.wav.wav" (".a.wav.wav.<rnd>.partial") that a parallel job may be writing.
    pattern = re.compile(re.escape(partial_prefix(target)) + r"[A-Za-z0-9_]+" + re.escape(PARTIAL_SUFFIX))
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            if pattern.fullmatch(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
