"""Atomic writes: an artefact is either absent, the old version, or complete.

Every output of the toolkit goes through :func:`atomic_write`: the data is written to a
hidden temporary file beside the target, flushed to disk, and renamed over the target in one
``os.replace`` (atomic on POSIX and Windows within a file system). An interrupted run never
leaves a half-written file under the target's name.
"""

import contextlib
import errno
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

from auditoryhum.errors import UserError

PARTIAL_SUFFIX = ".partial"


def partial_prefix(target: Union[str, Path]) -> str:
    """Prefix of the temporary files made for ``target`` (hidden, so globs like ``*.wav`` skip them)."""
    return f".{Path(target).name}."


# Errors of writing (never of reading): inside the block they are reported as a failure to
# write the target, not under the temporary file's name or a file object's repr.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def describe_os_error(exc: OSError) -> str:
    """The cause of an OS error in words (``Permission denied``), without Python's internals.

    ``str(OSError)`` shows ``[Errno 13] ...: '<file>'`` and, for errors raised through a file
    object, nothing about the file at all; callers name the file themselves.
    """
    return exc.strerror or str(exc) or type(exc).__name__


@dataclass(frozen=True)
class FileState:
    """What a file was when it was read: which file (device, inode) and which content (size,
    modification time, digest of its bytes). See :func:`file_state`."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    digest: Optional[str]

    def change_from(self, other: "FileState") -> Optional[str]:
        """How ``other`` (the file now) differs from this state, in words, or None if it does not."""
        if (other.device, other.inode) != (self.device, self.inode):
            return "it was replaced by another file"
        if other.size != self.size:
            return f"its size went from {self.size} to {other.size} bytes"
        if other.mtime_ns != self.mtime_ns:
            return "it was modified"
        if other.digest != self.digest:
            return "its bytes changed"
        return None


def file_state(path: Union[str, Path]) -> FileState:
    """The :class:`FileState` of ``path`` now (symbolic links followed). Raises ``OSError``.

    Taken before a file is read and compared again right before the file is replaced (see
    ``expect`` of :func:`atomic_write`): a clip that another program is still writing or has
    swapped meanwhile must not be replaced by a conversion of what was read earlier, which would
    throw away everything written since.
    """
    from auditoryhum.io.hashing import file_digest

    st = os.stat(path)
    # The digest catches a rewrite that kept the size and the modification time (a tool that
    # restores mtimes, a coarse file-system clock); hashing is cheap next to decoding the clip.
    return FileState(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, file_digest(os.fspath(path)))


@contextlib.contextmanager
def atomic_write(
    target: Union[str, Path],
    mode: str = "w",
    encoding: str = "utf-8",
    verify: Optional[Callable[[str], None]] = None,
    permissions: Optional[int] = None,
    expect: Optional[FileState] = None,
) -> Iterator[IO]:
    """Open a temporary file beside ``target`` and move it into place when the block succeeds.

    ``mode`` is ``"w"`` (text, UTF-8, ``\\n`` line endings) or ``"wb"``. The parent folder is
    created if needed. ``verify(temp_path)``, when given, checks the complete temporary file
    and raises to veto the replacement. If the block or the check raises, the temporary file
    is removed and ``target`` is left as it was.

    ``permissions`` (e.g. ``0o444``) are given to the new file; by default those of a normal
    write (``0o666`` less the umask).

    ``expect``, when given, is the :func:`file_state` of ``target`` when its content was read:
    it is taken again as the last step before the rename, and the replacement is vetoed when the
    target is no longer that file with those bytes (a file another program is still writing).

    Raises
    ------
    UserError
        ``cannot write <target>: <cause>`` when the folder cannot be written, the disk is full
        or read-only, or the rename fails; ``<target>: changed since it was read (<how>); left
        untouched; ...`` when ``expect`` no longer holds. ``target`` is then unchanged.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write mode must be 'w' or 'wb'")
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=partial_prefix(target), suffix=PARTIAL_SUFFIX, dir=parent)
    except OSError as exc:
        raise UserError(f"cannot write {target}: {describe_os_error(exc)}") from None
    try:
        if mode == "w":
            handle = os.fdopen(fd, "w", encoding=encoding, newline="\n")
        else:
            handle = os.fdopen(fd, "wb")
        # A library that names the file object in a message then names the target, not "name=3"
        # (the descriptor) or the temporary file.
        with contextlib.suppress(AttributeError, TypeError):
            (handle.buffer.raw if mode == "w" else handle.raw).name = str(target)
        try:
            try:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            except BaseException:
                # Closing may fail again flushing what is buffered: the first error is the one to
                # report, and a file object closed here leaves no "Exception ignored" block later.
                with contextlib.suppress(OSError):
                    handle.close()
                raise
            handle.close()
        except OSError as exc:
            if exc.errno in _WRITE_ERRNOS:
                raise UserError(f"cannot write {target}: {describe_os_error(exc)}; it was left as it was") from None
            raise
        if verify is not None:
            verify(tmp)
        if permissions is None:
            # mkstemp creates 0600 files; give the artefact the permissions a normal write would.
            umask = os.umask(0)
            os.umask(umask)
            permissions = 0o666 & ~umask
        try:
            os.chmod(tmp, permissions)
            if expect is not None:
                _check_unchanged(target, expect)
            os.replace(tmp, target)
        except OSError as exc:
            raise UserError(f"cannot write {target}: {describe_os_error(exc)}; it was left as it was") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_unchanged(target: Path, expect: FileState) -> None:
    """Veto the replacement of ``target`` unless it still is the file, with the bytes, that was read.

    Run as the very last step before ``os.replace``; a writer that changes the file in the
    microseconds between this check and the rename is not caught (no lock binds other programs).
    """
    try:
        change = expect.change_from(file_state(target))
    except OSError as exc:
        change = f"it can no longer be read: {describe_os_error(exc)}"
    if change is not None:
        raise UserError(f"{target}: changed since it was read ({change}); left untouched, so nothing written "
                        f"to it is lost; rerun once nothing else writes to it")


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
