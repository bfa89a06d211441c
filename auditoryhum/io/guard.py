"""Guards every stage runs before it writes: no output may destroy an input, no two runs one output.

Two things go wrong when a user reuses a path by mistake or starts a second run by accident:

* an output that is also an input (``--csv3`` equal to ``--csv1``, ``--mfcc_npy`` naming one of
  the clips) replaces the input with the result, and the input is gone;
* two runs writing the same output interleave or overwrite each other's results, and the file
  holds a mix or whichever finished last.

:func:`check_paths` refuses the first before any work, in one line naming both parameters and
the path. :func:`locked_outputs` holds an exclusive lock per output for the whole run, so a
second run stops at once and names the first. :func:`guard_stage` does both, in that order.

The lock is a hidden file beside the output (``.<name>.lock``; hidden so globs such as ``*.csv``
skip it) locked with ``fcntl.flock``, which exists only while a run holds it: the holder deletes
it before it lets go, so results folders are not left full of empty lock files. The kernel
releases a ``flock`` when its process dies, so a killed run never leaves a lock that blocks the
next one (only its file, which the next run takes over and deletes in turn); the file's content
(pid, host, start time, holder) only serves to name the holder in messages and to notice that a
run was killed while holding it.

Deleting a lock file is race-free because of the order: the holder deletes the name while it
still holds the lock, and a run that has just locked a file checks that the name still leads to
the very file it locked (same device and inode); if not (it opened the file a moment before the
holder deleted it), it starts again on a new file. So two runs never hold locks on two different
files of one name.
"""

import contextlib
import datetime
import json
import os
import socket
from typing import IO, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from auditoryhum import console
from auditoryhum.errors import UserError
from auditoryhum.errors import MentionError, mention

PathLike = Union[str, os.PathLike]
PathArg = Union[None, str, os.PathLike, Sequence[Union[str, os.PathLike]]]

LOCK_SUFFIX = ".lock"


def _paths(value: PathArg, param: str = "output") -> List[str]:
    """The paths of one argument: none, one, or each of a list (``None`` and ``""`` are absent).

    Anything else (bytes, an int, a numpy array) is a ParameterError naming ``param``
    (:func:`auditoryhum.validation.path_arg`), not a TypeError from ``os.fspath``.
    """
    from auditoryhum.validation import path_arg

    if value is None:
        return []
    items: Sequence = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        text = path_arg(item, param, optional=True)
        if text:
            out.append(text)
    return out


def path_identity(path: str) -> Tuple[str, Optional[Tuple[int, int]]]:
    """The resolved path and, for an existing file, its (device, inode) to catch hard links.

    Every comparison of two paths goes through this and :func:`same_file`: absolute paths are not
    enough (``alias/clips`` with ``alias`` a link to ``run`` is ``run/clips``; a hard link is one
    file under two names).
    """
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return real, None
    return real, (st.st_dev, st.st_ino)


def same_file(a: Tuple[str, Optional[Tuple[int, int]]], b: Tuple[str, Optional[Tuple[int, int]]]) -> bool:
    """Whether two :func:`path_identity` values are one file (or, when missing, one path)."""
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _named(param: str) -> str:
    """``param`` marked for the front end to show (a flag on the command line), when it is a name."""
    return mention(param) if param.isidentifier() else param


def check_paths(inputs: Mapping[str, PathArg], outputs: Mapping[str, PathArg]) -> None:
    """Refuse outputs that would overwrite an input, each other, or cannot be files.

    Parameters
    ----------
    inputs, outputs : mapping of parameter name to path argument
        Keys are the parameter names (``"text_label_csv"``, ``"filedir"``); values are a path, a
        sequence of paths (e.g. the files a glob matched), or ``None`` / ``""`` for an absent
        argument. Every path is resolved with :func:`os.path.realpath` (a missing output through
        its existing parent) and compared by resolved path and, for existing files, by inode, so
        symbolic and hard links to an input are caught too.

    Raises
    ------
    ParameterError
        A :class:`~auditoryhum.errors.MentionError` with ``param`` the output's key: one
        line naming both parameters (each shown as its flag on the command line, e.g. ``--csv3 is
        the same file as input --csv1``) and the path, when an output is the same file as an
        input, two outputs are the same file, an output is an existing directory, or an output's
        parent exists as something other than a directory. Nothing is read or written.
    """
    input_ids: List[Tuple[str, str, Tuple[str, Optional[Tuple[int, int]]]]] = []
    for name, value in inputs.items():
        for path in _paths(value, name):
            input_ids.append((name, path, path_identity(path)))

    seen: List[Tuple[str, str, Tuple[str, Optional[Tuple[int, int]]]]] = []
    for name, value in outputs.items():
        for path in _paths(value, name):
            ident = path_identity(path)
            real = ident[0]
            if os.path.isdir(real):
                raise MentionError(
                    f"{_named(name)} is an existing directory ({path}); give a file path for {_named(name)}")
            parent = os.path.dirname(real)
            while parent and not os.path.lexists(parent):
                nxt = os.path.dirname(parent)
                if nxt == parent:
                    break
                parent = nxt
            if parent and os.path.lexists(parent) and not os.path.isdir(parent):
                raise MentionError(
                    f"{_named(name)} cannot be written: {parent} is a file, not a folder ({path}); "
                    f"choose another path for {_named(name)}")
            for in_name, in_path, in_ident in input_ids:
                if same_file(ident, in_ident):
                    raise MentionError(
                        f"{_named(name)} is the same file as input {_named(in_name)} ({in_path}); writing "
                        f"it would destroy the input; choose another path for {_named(name)}")
            for out_name, out_path, out_ident in seen:
                if same_file(ident, out_ident):
                    raise MentionError(
                        f"{_named(name)} is the same file as output {_named(out_name)} ({out_path}); one "
                        f"would overwrite the other; give {_named(name)} its own path")
            seen.append((name, path, ident))


def lock_path(output: PathLike) -> str:
    """The hidden lock file for ``output``: ``.<name>.lock`` beside its resolved path."""
    real = os.path.realpath(os.fspath(output))
    return os.path.join(os.path.dirname(real), "." + os.path.basename(real) + LOCK_SUFFIX)


def _read_owner(handle: IO) -> Dict:
    """The JSON a holder wrote into the lock file, or ``{}`` if none or unreadable."""
    try:
        os.lseek(handle.fileno(), 0, os.SEEK_SET)
        text = os.read(handle.fileno(), 65536).decode("utf-8", "replace").strip()
        owner = json.loads(text) if text else {}
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, OverflowError):
        return False
    return True


def _describe(owner: Dict) -> str:
    parts = [f"pid {owner.get('pid', '?')}"]
    host = owner.get("host")
    if host and host != socket.gethostname():
        parts.append(f"on {host}")
    if owner.get("holder"):
        parts.append(str(owner["holder"]))
    if owner.get("started"):
        parts.append(f"since {owner['started']}")
    return ", ".join(parts)


def _acquire(output: str, holder: str) -> IO:
    # A lock taken on a file whose name a releasing holder deleted meanwhile protects nothing:
    # start again on the file now under the name (see the module notes). Only a holder that
    # releases between our open() and our flock() causes a retry, so a few tries always suffice.
    for _ in range(1000):
        handle = _acquire_once(output, holder)
        if handle is not None:
            return handle
    raise UserError(f"cannot lock {output}: its lock file {lock_path(output)} keeps being replaced by other runs; "
                    f"try again")


def _is_locked_file(handle: IO, path: str) -> bool:
    """Whether ``path`` still names the file ``handle`` has open (and locked)."""
    try:
        at_path = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(handle.fileno())
    return (at_path.st_dev, at_path.st_ino) == (mine.st_dev, mine.st_ino)


def _acquire_once(output: str, holder: str) -> Optional[IO]:
    """One try of :func:`_acquire`: the held lock, or None when its file was deleted under us."""
    import fcntl

    path = lock_path(output)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            writable = True
        except PermissionError:
            # A lock file made by another user that we may not write: locking still works
            # read-only; only the owner record is not written.
            fd = os.open(path, os.O_RDONLY)
            writable = False
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc} (while creating its lock "
                        f"file {path})") from None
    handle = os.fdopen(fd, "r+b" if writable else "rb", buffering=0)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(handle)
        handle.close()
        who = _describe(owner) if owner else "another process"
        raise UserError(f"{output} is being written by another run ({who}); wait for it or stop "
                        f"it, or write to another path") from None
    except OSError as exc:
        handle.close()
        raise UserError(f"cannot lock {output}: {exc.strerror or exc} (lock file {path})") from None
    if not _is_locked_file(handle, path):
        handle.close()
        return None
    previous = _read_owner(handle)
    if previous:
        # A clean exit empties the file, so a record here was left by a run that died holding it.
        pid = previous.get("pid")
        state = "is no longer running" if not (isinstance(pid, int) and _pid_alive(pid)) \
            else "no longer holds it"
        console.note(f"taking over the lock on {output} left by {_describe(previous)}, which {state}")
    if writable:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "holder": holder,
        }
        with contextlib.suppress(OSError):
            os.ftruncate(handle.fileno(), 0)
            os.lseek(handle.fileno(), 0, os.SEEK_SET)
            os.write(handle.fileno(), (json.dumps(record) + "\n").encode("utf-8"))
    handle._auditoryhum_writable = writable  # type: ignore[attr-defined]
    handle._auditoryhum_path = path  # type: ignore[attr-defined]
    return handle


def _release(handle: IO) -> None:
    import fcntl

    with contextlib.suppress(OSError, ValueError):
        if getattr(handle, "_auditoryhum_writable", False):
            # Empty = released cleanly, also where the file cannot be deleted below (a folder we
            # may not write): the next run then takes it without a note.
            os.ftruncate(handle.fileno(), 0)
        # Deleted while still locked, never after: see the module notes for why this is race-free.
        path = getattr(handle, "_auditoryhum_path", None)
        if path and _is_locked_file(handle, path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        handle.close()


@contextlib.contextmanager
def locked_outputs(outputs: Iterable[PathLike], holder: str = "") -> Iterator[None]:
    """Hold an exclusive lock on each output for the whole block.

    Parameters
    ----------
    outputs : iterable of path
        The files the block writes. Duplicates (by resolved path) are locked once. ``None`` and
        ``""`` are skipped. Each lock is the hidden file ``.<name>.lock`` beside the output's
        resolved path (its folder is created if missing), holding JSON
        ``{"pid", "host", "started", "holder"}`` while held and deleted on release (emptied
        instead where the folder does not allow deleting it).
    holder : str, default ""
        Who holds the lock (e.g. the script and model), shown to a run that finds it taken.

    Raises
    ------
    UserError
        At once, when another process holds the lock of an output: one line naming the output,
        the other process's pid and holder, and the fix. Locks taken before are released.

    Notes
    -----
    A lock file whose record names a process that died holding it (killed) is taken over with a
    note. Once every lock is held, the temporary files a killed run left beside the outputs
    (``.<name>.<random>.partial``, see :mod:`auditoryhum.io.atomic`) are deleted. All locks are
    released when the block ends, also by an exception.
    """
    unique: List[str] = []
    seen = set()
    for output in outputs:
        for path in _paths(output):
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                unique.append(path)
    held: List[IO] = []
    try:
        for path in unique:
            held.append(_acquire(path, holder))
        from auditoryhum.io.atomic import remove_stale_partials

        # With the lock held no other process writes these outputs: a temporary file beside one
        # is what a killed run left mid-write, and the work below will write it anew.
        for path in unique:
            remove_stale_partials(path)
        yield
    finally:
        for handle in reversed(held):
            _release(handle)


@contextlib.contextmanager
def guard_stage(inputs: Mapping[str, PathArg], outputs: Mapping[str, PathArg], holder: str = "") -> Iterator[None]:
    """:func:`check_paths` then :func:`locked_outputs` on every output, before any work.

    Parameters
    ----------
    inputs, outputs : mapping of parameter name to path argument
        As for :func:`check_paths`.
    holder : str, default ""
        As for :func:`locked_outputs`.
    """
    check_paths(inputs, outputs)
    all_outputs: List[str] = []
    for name, value in outputs.items():
        all_outputs.extend(_paths(value, name))
    with locked_outputs(all_outputs, holder=holder):
        yield
