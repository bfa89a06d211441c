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
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Union

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

    def __init__(self, path: Path, key: Dict[str, Any], records: Dict[str, Dict[str, Any]], resumed: bool):
        self.path = path
        self.key = key
        self.stamp = key_digest(key)
        self.records = records  # id -> last record of this run's key, as read when opened
        self.appended = 0  # records appended since
        self.resumed = resumed  # an earlier journal with the same key was found
        self.discarded_reason = ""  # why an existing journal was not reused (empty if none/reused)
        self._handle = None

    @classmethod
    def open(cls, target: Union[str, Path], key: Dict[str, Any]) -> "Journal":
        """Open (or start) the journal of ``target`` for a run described by ``key``.

        An existing journal with the same key is resumed: its complete records stamped with
        this key are loaded and a trailing half-written line (a kill in mid-write) is ignored.
        Any other journal is replaced by a fresh one. The append handle is open on return.
        """
        path = journal_path(target)
        key = canonical(key)
        stamp = key_digest(key)
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
                    if isinstance(record, dict) and isinstance(record.get("id"), str) and record.get("run") == stamp:
                        records[record["id"]] = record
        journal = cls(path, key, records, resumed)
        journal.discarded_reason = reason
        if resumed:
            journal._rewrite_if_unfinished(raw)
        else:
            journal._start()
        journal._open_handle()
        return journal

    def _start(self) -> None:
        header = json.dumps({"journal": JOURNAL_FORMAT, "key": self.key}, sort_keys=True, ensure_ascii=False)
        try:
            with atomic_write(self.path, "w") as f:
                f.write(header + "\n")
        except OSError as exc:
            raise UserError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None

    def _rewrite_if_unfinished(self, raw: bytes) -> None:
        # Drop a half-written last line so that new records start on a line of their own.
        if raw.endswith(b"\n"):
            return
        keep = raw[: raw.rfind(b"\n") + 1]
        with atomic_write(self.path, "wb") as f:
            f.write(keep)

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
        return not self.records and not self.appended

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
