"""Append-and-resume journals for long runs.

A long stage (labelling thousands of clips) appends one JSON record per finished item to a
journal beside its output, flushed and synced after every batch. A killed run loses at most
the batch in flight; rerunning the same command reads the journal and skips what is done.
The final output is still written in one atomic step (:mod:`auditoryhum.io.atomic`) from
the records, so it is byte-identical to that of an uninterrupted run.

The journal's first line is a header holding a *key*: a JSON object describing everything
that changes the results (model, prompt, decoding, precision, ...). A journal whose key
differs from the current run's belongs to another run and is never reused. Records carry
their own fingerprint (e.g. the clip's size and modification time and its prompt), so a
changed clip is redone even under the same key.

:class:`RowJournal` is the one way the embedding tools (one ``.npy`` row per clip) use it.

File layout (UTF-8 JSON lines)::

    {"journal": 1, "key": {...}}
    {"id": "clips/a.wav", "fp": [...], "value": "birds chirping", "error": null}
    ...
"""

import base64
import contextlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from auditoryhum.console import note
from auditoryhum.errors import UserError
from auditoryhum.io.artefacts import save_matrix
from auditoryhum.io.atomic import atomic_write

JOURNAL_FORMAT = 1


def journal_path(target: Union[str, Path]) -> Path:
    """Where the journal of ``target`` lives: a hidden file beside it (globs like ``*.csv`` skip it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.journal")


def file_fingerprint(path: str) -> Optional[Tuple[int, int]]:
    """``(size, mtime_ns)`` of ``path``, or ``None`` when it cannot be read: a changed file is redone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _canonical(value: Any) -> Any:
    # Round-trip through JSON so tuples and lists compare equal to what was read back.
    return json.loads(json.dumps(value, sort_keys=True))


class Journal:
    """An open journal: the records already done, and an append handle for new ones.

    Use :meth:`open`; call :meth:`append` after each batch, :meth:`close` at the end and
    :meth:`remove` once the final output is safely written.
    """

    def __init__(self, path: Path, key: Dict[str, Any], records: Dict[str, Dict[str, Any]], resumed: bool):
        self.path = path
        self.key = key
        self.records = records  # id -> last record written for it
        self.resumed = resumed  # an earlier journal with the same key was found
        self.discarded_reason = ""  # why an existing journal was not reused (empty if none/reused)
        self._handle = None

    @classmethod
    def open(cls, target: Union[str, Path], key: Dict[str, Any]) -> "Journal":
        """Open (or start) the journal of ``target`` for a run described by ``key``.

        An existing journal with the same key is resumed: its complete records are loaded and
        a trailing half-written line (a kill in mid-write) is ignored. Any other journal is
        replaced by a fresh one.
        """
        path = journal_path(target)
        key = _canonical(key)
        records: Dict[str, Dict[str, Any]] = {}
        reason = ""
        resumed = False
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw = None
        except OSError as exc:
            raise UserError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        if raw is not None:
            lines = raw.split(b"\n")
            # The last element is b"" after a complete final line, or an unfinished record: dropped.
            complete = lines[:-1]
            header = _parse(complete[0]) if complete else None
            if not isinstance(header, dict) or header.get("journal") != JOURNAL_FORMAT:
                reason = "it is unreadable or from another version"
            elif header.get("key") != key:
                reason = "it belongs to a run with different arguments or model"
            else:
                resumed = True
                for line in complete[1:]:
                    record = _parse(line)
                    if isinstance(record, dict) and isinstance(record.get("id"), str):
                        records[record["id"]] = record
        journal = cls(path, key, records, resumed)
        journal.discarded_reason = reason
        if resumed:
            journal._rewrite_if_unfinished(raw)
        else:
            journal._start()
        return journal

    def _start(self) -> None:
        header = json.dumps({"journal": JOURNAL_FORMAT, "key": self.key}, sort_keys=True, ensure_ascii=False)
        with atomic_write(self.path, "w") as f:
            f.write(header + "\n")

    def _rewrite_if_unfinished(self, raw: bytes) -> None:
        # Drop a half-written last line so that new records start on a line of their own.
        if raw.endswith(b"\n"):
            return
        keep = raw[: raw.rfind(b"\n") + 1]
        with atomic_write(self.path, "wb") as f:
            f.write(keep)

    def append(self, records: Iterable[Dict[str, Any]]) -> None:
        """Append ``records`` (each with a string ``"id"``), then flush and sync them to disk."""
        records = list(records)
        if not records:
            return
        if self._handle is None:
            try:
                self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
            except OSError as exc:
                raise UserError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None
        for record in records:
            self._handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            self.records[record["id"]] = _canonical(record)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        """Delete the journal (the run's output is complete)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# matrix outputs: one row per clip (the embedding tools)


def _encode_row(row: np.ndarray) -> str:
    # Little-endian float32 bytes in base64: the row read back is bit-identical.
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode("ascii")


def _decode_row(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


class RowJournal:
    """The rows of a per-clip ``.npy`` output, checkpointed in the :class:`Journal` of that output.

    How every embedding tool resumes: a record per clip (its absolute path as id, its
    :func:`file_fingerprint`, the float32 row or the failure message), appended after each
    batch with :meth:`add`. On opening, a clip whose record has the same fingerprint and no
    error is taken from the journal (see :attr:`reused`); the others are :attr:`pending`,
    so failed clips are retried. :meth:`save` writes the matrix atomically, then removes
    the journal, or keeps it with a note when clips failed.

    Use as a context manager: leaving it by an exception closes the journal and removes
    it when no record was written.

    Parameters
    ----------
    output : str or Path
        The ``.npy`` the rows go to; the journal lives beside it.
    key : dict
        What changes the numbers (tool, model identity, device, precision, library version):
        a journal with another key is not reused.
    paths : sequence of str
        The clips, in output row order.
    """

    def __init__(self, output: Union[str, Path], key: Dict[str, Any], paths: Sequence[str]):
        self.output = str(output)
        self.journal = Journal.open(output, key)
        if self.journal.discarded_reason:
            note(f"not resuming from the journal {self.journal.path}: {self.journal.discarded_reason}; starting over")
        self.ids = [os.path.abspath(p) for p in paths]
        self.fps = [list(file_fingerprint(p) or ()) for p in paths]
        self.rows: List[Optional[np.ndarray]] = [None] * len(paths)
        for i, (cid, fp) in enumerate(zip(self.ids, self.fps)):
            record = self.journal.records.get(cid)
            if record and record.get("fp") == fp and record.get("error") is None:
                self.rows[i] = _decode_row(record["value"])
        self.reused = sum(r is not None for r in self.rows)
        if self.reused:
            note(f"resuming: {self.reused} of {len(paths)} clips already embedded (journal {self.journal.path})")
        self.pending = [i for i, r in enumerate(self.rows) if r is None]
        self.failures: Dict[int, str] = {}  # row index -> message, for this run's failed clips

    def add(self, done: Iterable[Tuple[int, Optional[np.ndarray], Optional[str]]]) -> None:
        """Keep and journal one batch: ``(row index, row or None, failure message or None)`` per clip."""
        records = []
        for i, row, error in done:
            if error is None:
                self.rows[i] = row
            else:
                self.failures[i] = error
            records.append({"id": self.ids[i], "fp": self.fps[i], "value": "" if error is not None else _encode_row(row),
                            "error": error})
        self.journal.append(records)

    def save(self, width: Optional[int] = None) -> Tuple[np.ndarray, List[str]]:
        """Write the ``(N, width)`` float32 matrix (NaN rows for failed clips) atomically to the output.

        ``width`` defaults to that of the rows computed. Returns the matrix and the failure
        messages in row order.
        """
        self.journal.close()
        if width is None:
            done = [r for r in self.rows if r is not None]
            width = done[0].shape[0] if done else 0
        table = np.full((len(self.rows), width), np.nan, dtype=np.float32)
        for i, row in enumerate(self.rows):
            if row is not None:
                table[i] = row
        save_matrix(self.output, table)
        if self.failures:
            note(f"journal kept at {self.journal.path}: a rerun retries only the {len(self.failures)} failed clip(s)")
        else:
            self.journal.remove()
        return table, [self.failures[i] for i in sorted(self.failures)]

    def __enter__(self) -> "RowJournal":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self.journal.records:
            self.journal.remove()
        self.journal.close()
