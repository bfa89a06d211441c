"""The resumable run: one skeleton for every long stage.

:func:`run_resumable` is the only place that opens a journal, matches its key and each
record's fingerprint, splits the items into reused and pending, hands the pending ones in
batches to an executor (:mod:`auditoryhum.engine.executors`), journals every finished batch,
stops on a run-ending error or too many failures in a row, writes the final output
atomically through the caller's writer, and keeps the journal (failures to retry) or drops
it. The labellers (:mod:`auditoryhum.models.labeller`, :mod:`auditoryhum.models.gemini`),
the embeddings (:mod:`auditoryhum.models.audio_embed`, :mod:`auditoryhum.models.tower_embed`)
and composite naming (:mod:`auditoryhum.models.chat`) all run through it, with the local or
the Ray executor: resume, byte-identical outputs and failure rows are written once.

What an item is: an id (a clip's absolute path, ``"cluster 3"``), an optional file whose
*content* is fingerprinted (a clip swapped for another of the same size and modification time
is redone), an optional extra fingerprint (the prompt's digest) and the payload the step gets.
Values travel through a :class:`Codec` into the journal's JSON records: text lines
(:data:`TEXT`) and float32 matrix rows (:data:`ROWS`) are the two built in.
"""

import base64
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from auditoryhum.console import note, progress_bar, warn
from auditoryhum.engine.executors import Executor, LocalExecutor
from auditoryhum.engine.step import Outcome, StepSpec, Task
from auditoryhum.errors import UserError
from auditoryhum.io.checkpoint import Journal, canonical
from auditoryhum.io.hashing import file_digest


@dataclass(slots=True)
class Item:
    """One unit of work of a run (see the module docstring). Slotted: a run of millions of
    clips holds one per clip."""

    id: str
    payload: Any
    path: Optional[str] = None
    extra_fp: Any = None


class Codec:
    """How a value is stored in a journal record (its fields besides id, fp, run, error)."""

    def encode(self, value: Any, error: Optional[str]) -> Dict[str, Any]:
        raise NotImplementedError

    def decode(self, record: Dict[str, Any]) -> Any:
        raise NotImplementedError


class TextCodec(Codec):
    """A string value (a label line, a composite label); failed items store ``""``."""

    def encode(self, value, error):
        return {"value": value if error is None and value is not None else ""}

    def decode(self, record):
        return record["value"]


class RowCodec(Codec):
    """A float32 row (an embedding) as base64 of its little-endian bytes: read back bit-identical."""

    def encode(self, value, error):
        import numpy as np

        if error is not None or value is None:
            return {"value": ""}
        return {"value": base64.b64encode(np.asarray(value, dtype="<f4").tobytes()).decode("ascii")}

    def decode(self, record):
        import numpy as np

        return np.frombuffer(base64.b64decode(record["value"]), dtype="<f4").astype(np.float32)


TEXT = TextCodec()
ROWS = RowCodec()


@dataclass(frozen=True)
class Wording:
    """The words of a run's messages: ``unit`` (plural), what a finished item ``done`` is."""

    unit: str = "clips"
    done: str = "labelled"
    retry: str = "a rerun retries only the {n} failed {each}"  # {each}: "clip(s)"


@dataclass
class RunResult:
    """What a run did: a value per item (see ``write`` of :func:`run_resumable`), the failures by index."""

    values: List[Any]
    failures: Dict[int, str] = field(default_factory=dict)
    reused: int = 0  # items taken from an interrupted run's journal
    asked: int = 0  # items sent to the executor in this run

    def failure_list(self) -> List[str]:
        """The failure messages in item order."""
        return [self.failures[i] for i in sorted(self.failures)]


def _plain(value: Any) -> Any:
    """``canonical(value)`` without the JSON round trip for what fingerprints are made of
    (str, int, bool, None and lists/tuples of them): 9 of 15 s of a resume of 500,000 items."""
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) in (list, tuple):
        return [_plain(v) for v in value]
    return canonical(value)


def _fingerprint(item: Item, digest: Optional[str]) -> Any:
    return _plain([digest, item.extra_fp] if item.path is not None else item.extra_fp)


def batched(indices: Sequence[int], items: Sequence[Item], batch_size: int) -> Iterator[List[Task]]:
    """The tasks of ``indices`` in batches of ``batch_size``."""
    for start in range(0, len(indices), batch_size):
        yield [Task(i, items[i].path, items[i].payload) for i in indices[start:start + batch_size]]


def run_resumable(output: str, key: Dict[str, Any], items: Sequence[Item], spec: StepSpec, *,
                  write: Callable[[List[Any], Dict[int, str]], None], batch_size: int, desc: str,
                  executor: Optional[Executor] = None, codec: Codec = TEXT, wording: Wording = Wording(),
                  finish: Optional[Callable[[int, Any, Optional[str]], Tuple[Any, Optional[str]]]] = None,
                  warn_failures: bool = False, max_consecutive_failures: int = 0) -> RunResult:
    """Run ``spec``'s step over the items not done yet, resumably, and write the output.

    Parameters
    ----------
    output : str
        The output file; its journal is ``.<name>.journal`` beside it.
    key : dict
        Everything that changes the results (tool, model identity, decoding, device, ...): a
        journal with another key is not reused, and records of another key are never read.
    items : sequence of Item
        The work, in output order.
    spec : StepSpec
        Builds the per-batch step (loads the model) on each worker; built only if work is pending.
    write : callable
        ``write(values, failures)``: writes the output atomically from one value per item
        and the failure messages by index (a failed item's value is ``None`` or what its
        step returned beside the error).
    batch_size : int
        Items per batch handed to the executor.
    desc : str
        Label of the progress bar.
    executor : Executor, optional
        Default :class:`~auditoryhum.engine.executors.LocalExecutor`.
    codec : Codec
        How values are journalled (:data:`TEXT` or :data:`ROWS`, or the caller's own).
    wording : Wording
        Units and words of the notes.
    finish : callable, optional
        ``finish(index, value, error) -> (value, error)`` on the driver for every outcome
        before it is journalled (post-processing that may turn a value into a failure).
    warn_failures : bool
        Print ``warning: failed: ...`` for each failure as it happens (unattended runs).
    max_consecutive_failures : int
        Stop the run (``UserError``) after this many failures in a row (0: never).

    Returns
    -------
    RunResult

    Raises
    ------
    UserError
        From the step (a run-ending error, out of memory) or after too many failures in a
        row. Finished items stay in the journal and the message says so; the output is not
        written. A journal with no record is removed.
    """
    from auditoryhum.validation import positive_int

    batch_size = positive_int(batch_size, "batch_size")
    n = len(items)
    journal = Journal.open(output, key)
    if journal.discarded_reason:
        note(f"not resuming from the journal {journal.path}: {journal.discarded_reason}; starting over")

    values: List[Any] = [None] * n
    # Per-item flags and indices as bytes and machine integers, not Python objects: at 2 M
    # items a list, a set and a list of ints cost about 200 MB more.
    done = bytearray(n)
    if journal.resumed:
        # One pass over the journal, in the order it was written (the last record of an id
        # counts): at 2 M items a dict of every record held at once took 1.9 GB.
        index: Dict[str, int] = {}
        repeated: Dict[str, List[int]] = {}  # ids given for more than one item
        for i, item in enumerate(items):
            if index.setdefault(item.id, i) != i:
                repeated.setdefault(item.id, []).append(i)
        for record in journal.iter_records():
            first = index.get(record["id"])
            if first is None:
                continue
            for i in (first, *repeated.get(record["id"], ())):
                item = items[i]
                # The file is read only for items the journal holds: a fresh run hashes on the workers.
                if record.get("error") is None and record.get("fp") == _fingerprint(
                        item, file_digest(item.path) if item.path is not None else None):
                    values[i] = codec.decode(record)
                    done[i] = 1
                else:
                    values[i] = None
                    done[i] = 0
        del index, repeated
    reused = n - done.count(0)
    pending = array("q", (i for i in range(n) if not done[i]))
    if reused:
        note(f"resuming: {reused} of {n} {wording.unit} already {wording.done} (journal {journal.path})")

    failures: Dict[int, str] = {}
    executor = executor or LocalExecutor()
    seen = bytearray(n)  # indices journalled in this run
    consecutive = 0

    def record(outcomes: Sequence[Outcome], successes_only: bool = False) -> None:
        nonlocal consecutive
        records = []
        stop_message = None
        for o in outcomes:
            if seen[o.index]:  # a batch a cluster executor ran twice (a retried task)
                continue
            value, error = o.value, o.error
            if finish is not None:
                value, error = finish(o.index, value, error)
            if successes_only and error is not None:
                continue
            seen[o.index] = 1
            item = items[o.index]
            values[o.index] = value  # on failure: None or the step's partial value (a raw answer)
            if error is None:
                done[o.index] = 1
                failures.pop(o.index, None)
                consecutive = 0
            else:
                failures[o.index] = error
                consecutive += 1
                if warn_failures:
                    warn(f"failed: {error}")  # at once: an unattended run's log shows trouble as it happens
                if max_consecutive_failures and consecutive >= max_consecutive_failures and stop_message is None:
                    stop_message = (f"stopped after {consecutive} {wording.unit} in a row failed (last: {error}); the "
                                    f"service, the network or the quota is probably down (see --max_consecutive_failures)")
            records.append(dict(codec.encode(value, error), id=item.id, fp=_fingerprint(item, o.digest), error=error))
        journal.append(records)
        if stop_message is not None:
            raise _Stop(stop_message)

    stream = None
    bar = None
    try:
        if pending:
            bar = progress_bar(len(pending), desc, unit=_singular(wording.unit))
            stream = executor.stream(spec, batched(pending, items, batch_size))
            for outcomes in stream:
                record(outcomes)
                bar.update(len(outcomes))
    except (UserError, _Stop) as exc:
        if stream is not None:
            try:
                record([o for batch in stream.cancel() for o in batch], successes_only=True)
            except _Stop:
                pass
        finished = n - done.count(0)
        message = str(exc)
        if finished:
            message += (f" ({finished} of {n} {wording.unit} are {wording.done} and kept in the journal {journal.path}; "
                        f"rerun the same command to resume)")
        if journal.empty:
            journal.remove()  # nothing worth resuming: leave no stray journal behind
        raise UserError(message) from None
    except BaseException:
        if stream is not None:
            stream.close()
        if journal.empty:
            journal.remove()
        raise
    finally:
        if bar is not None:
            bar.close()
        if stream is not None:
            stream.close()
        journal.close()

    write(values, failures)
    if failures:
        each = f"{_singular(wording.unit)}(s)"
        note(f"journal kept at {journal.path}: " + wording.retry.format(n=len(failures), each=each))
    else:
        journal.remove()
    return RunResult(values, failures, reused, len(pending))


class MatrixOutput:
    """The writer of a row run (``write`` of :func:`run_resumable`): saves the float32 matrix,
    NaN rows for failed items, atomically to ``output`` (.npy) and keeps it in :attr:`rows`.

    ``width`` gives the row width when no item has a row (every clip failed): read from the
    model's configuration, so that a cluster run's driver needs no model either.
    """

    def __init__(self, output: str, width: Callable[[], int]):
        self.output, self.width, self.rows = output, width, None

    def __call__(self, values: Sequence[Any], failures: Dict[int, str]) -> None:
        import numpy as np

        from auditoryhum.io.artefacts import save_matrix

        done = [v for i, v in enumerate(values) if v is not None and i not in failures]
        table = np.full((len(values), done[0].shape[0] if done else self.width()), np.nan, dtype=np.float32)
        for i, row in enumerate(values):
            if row is not None and i not in failures:
                table[i] = row
        save_matrix(self.output, table)
        self.rows = table


def _singular(unit: str) -> str:
    return unit[:-1] if unit.endswith("s") else unit


class _Stop(Exception):
    """Too many failures in a row: end the run."""
