"""Append-and-resume journals for long runs: the file format and its reader/writer.

A long stage (labelling thousands of clips) appends one JSON record per finished item to a
journal beside its output, flushed and synced after every batch. A killed run loses at most
the batch in flight; rerunning the same command reads the journal and skips what is done.
The final output is still written in one atomic step (:mod:`auditoryhum.io.atomic`) from
the records, so it is byte-identical to that of an uninterrupted run. The run skeleton that
uses this (reused/pending split, batches, keep or drop) is :mod:`auditoryhum.engine`.

The journal's first line is a header holding a *key*: a JSON object describing everything
that changes the results (model, prompt, decoding, precision, ...). A journal whose key
differs from the current run's belongs to another run and is never reused. Every record is
stamped with ``"run"``, a digest of the key of the run that wrote it, and only records
stamped with the current key's digest are read back: a second run with another key that
replaced the journal (or an old run still appending to it) can never leave a record the
current run would take for its own. The append handle is opened when the journal is opened,
on the file just written or checked, so a run never appends to a journal another run put in
its place. Records carry their own fingerprint (the clip's content digest, its prompt), so a
changed clip is redone even under the same key.

File layout (UTF-8 JSON lines)::

    {"journal": 2, "key": {...}}
    {"id": "clips/a.wav", "fp": [...], "run": "<key digest>", "value": "birds chirping", "error": null}
    ...
"""

import contextlib
import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Union

from auditoryhum.errors import UserError
from auditoryhum.io.atomic import atomic_write

# 2: records stamped with the digest of their run's key (format 1 journals are not reused).
JOURNAL_FORMAT = 2

def journal_path(target: Union[str, Path]) -> Path:
    """Where the journal of ``target`` lives: a hidden file beside it (globs like ``*.csv`` skip it)."""
    target = Path(target)
    return target.with_name(f".{target.name}.journal")


def canonical(value: Any) -> Any:
    """``value`` as read back from JSON (tuples become lists), for comparisons with records."""
    return json.loads(json.dumps(value, sort_keys=True))


def key_digest(key: Dict[str, Any]) -> str:
    """The stamp of the records written under ``key``: a digest of its canonical JSON."""
    text = json.dumps(canonical(key), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class Journal:
    """An open journal: the records already done, and an append handle for new ones.

    Use :meth:`open`; call :meth:`append` after each batch, :meth:`close` at the end and
    :meth:`remove` once the final output is safely written.
    """

    def __init__(self, path: Path, key: Dict[str, Any], resumed: bool):
        self.path = path
        self.key = key
        self.stamp = key_digest(key)
        self.appended = 0  # records appended since
        self.resumed = resumed  # an earlier journal with the same key was found
        self.discarded_reason = ""  # why an existing journal was not reused (empty if none/reused)
        self._handle = None
        self._records: Optional[Dict[str, Dict[str, Any]]] = None

    @classmethod
    def open(cls, target: Union[str, Path], key: Dict[str, Any]) -> "Journal":
        """Open (or start) the journal of ``target`` for a run described by ``key``.

        An existing journal with the same key is resumed: its complete records stamped with
        this key are read back by :meth:`iter_records` (one pass, block by block: a journal of
        2,000,000 records is never held in memory) and a trailing half-written line (a kill in
        mid-write) is cut off. Any other journal is replaced by a fresh one. The append handle
        is open on return.
        """
        path = journal_path(target)
        key = canonical(key)
        reason = ""
        resumed = False
        try:
            with open(path, "rb") as f:
                first = f.readline()
        except FileNotFoundError:
            first = None
        except OSError as exc:
            raise UserError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        if first is not None:
            header = _parse(first) if first.endswith(b"\n") else None
            if not isinstance(header, dict) or header.get("journal") != JOURNAL_FORMAT:
                reason = "it is unreadable or from another version"
            elif header.get("key") != key:
                reason = "it belongs to a run with different arguments or model"
            else:
                resumed = True
        journal = cls(path, key, resumed)
        journal.discarded_reason = reason
        if resumed:
            journal._cut_unfinished_line()
        else:
            journal._start()
        journal._open_handle()
        return journal

    #: Records parsed per ``json.loads`` call when reading back (one C-level parse per block).
    READ_BLOCK_LINES = 20_000

    def iter_records(self) -> Iterator[Dict[str, Any]]:
        """The records of this run's key in the order they were written (a resumed journal's;
        nothing for a fresh one). An id may occur more than once: the last record counts."""
        if not self.resumed:
            return
        try:
            f = open(self.path, "rb")
        except OSError as exc:
            raise UserError(f"cannot read the journal {self.path}: {exc.strerror or exc}") from None
        with f:
            f.readline()  # the header
            while True:
                lines = [line for line in itertools.islice(f, self.READ_BLOCK_LINES) if line.endswith(b"\n")]
                if not lines:
                    return
                try:
                    parsed = json.loads(b"[" + b",".join(lines) + b"]")
                except (UnicodeDecodeError, ValueError):
                    parsed = [_parse(line) for line in lines]  # a damaged line: the others still count
                for record in parsed:
                    if isinstance(record, dict) and isinstance(record.get("id"), str) and record.get("run") == self.stamp:
                        yield record

    @property
    def records(self) -> Dict[str, Dict[str, Any]]:
        """id -> last record of this run's key, as read when opened (all in memory: for small
        journals and tests; long runs use :meth:`iter_records`)."""
        if self._records is None:
            self._records = {record["id"]: record for record in self.iter_records()}
        return self._records

    def _start(self) -> None:
        header = json.dumps({"journal": JOURNAL_FORMAT, "key": self.key}, sort_keys=True, ensure_ascii=False)
        try:
            with atomic_write(self.path, "w") as f:
                f.write(header + "\n")
        except OSError as exc:
            raise UserError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def _cut_unfinished_line(self) -> None:
        # Drop a half-written last line so that new records start on a line of their own;
        # only the file's tail is read to find it.
        try:
            with open(self.path, "r+b") as f:
                end = f.seek(0, os.SEEK_END)
                if end == 0:
                    return
                f.seek(end - 1)
                if f.read(1) == b"\n":
                    return
                position = end
                while position > 0:
                    start = max(0, position - 65536)
                    f.seek(start)
                    cut = f.read(position - start).rfind(b"\n")
                    if cut >= 0:
                        f.truncate(start + cut + 1)
                        return
                    position = start
                f.truncate(0)
        except OSError as exc:
            raise UserError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def _open_handle(self) -> None:
        # Opened now, on the file this run has just written or checked: if another run later
        # replaces the journal, this handle still points at the old (unlinked) file, so the
        # two runs' records never land in one file.
        try:
            self._handle = open(self.path, "a", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise UserError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def append(self, records: Iterable[Dict[str, Any]]) -> None:
        """Append ``records`` (each with a string ``"id"``), stamped with this run's key digest,
        then flush and sync them to disk."""
        records = [dict(record, run=self.stamp) for record in records]
        if not records:
            return
        if self._handle is None:
            raise ValueError(f"the journal {self.path} is closed")
        for record in records:
            self._handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        # Not kept in memory: a run of millions of items must not hold its journal twice.
        self.appended += len(records)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    @property
    def empty(self) -> bool:
        """No record read or written: nothing worth resuming."""
        return not self.appended and next(self.iter_records(), None) is None

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
