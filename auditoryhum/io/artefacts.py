"""The line-aligned artefacts of the pipeline, each read and written in exactly one place.

* label file (``text_labels.csv``): one line per clip, ``word pair, word pair, ...``; UTF-8.
* annotations file: like a label file, blank lines where a clip has no human annotation;
  may be shorter than the clip list.
* scores file (``top_label_scores.csv``): ``<i>, <path>, <label>, <score>`` per clip, i from 1.
* cluster-id file: one integer per line.
* NPY arrays: one row per clip.

Every pairing of two artefacts goes through :func:`check_aligned`, which stops with both file
names and both counts when they disagree.
"""

import csv
import io
import itertools
import math
import os
import sys
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.errors import UserError
from auditoryhum.errors import MentionError, mention
from auditoryhum.io.atomic import atomic_write, write_text


def _open_binary(path: str, what: str):
    """``open(path, "rb")``, with a missing file, a folder or an unreadable file as one line."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _read_bytes(path: str, what: str) -> bytes:
    with _open_binary(path, what) as f:
        try:
            return f.read()
        except OSError as exc:
            raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_text_lines(path: str, what: str = "file") -> List[str]:
    """Read a UTF-8 text file as a list of lines (no line endings; ``\\r\\n`` accepted).

    A final newline does not make an extra empty line; blank lines inside are kept, since
    they carry meaning (an un-annotated clip). A file that is not UTF-8 is an error that
    says where the first bad byte is.
    """
    raw = _read_bytes(path, what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{what} {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); re-save it as UTF-8"
        ) from None
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def write_lines(path: str, lines: Iterable[str]) -> None:
    """Atomically write one line per item (UTF-8, ``\\n``, final newline)."""
    # Joined 8192 lines at a time: two writes per line cost 60 ms per 14,400 lines, and one
    # string of all lines would hold a million clips' file in memory twice.
    lines = iter(lines)
    with atomic_write(path, "w") as f:
        while True:
            batch = list(itertools.islice(lines, 8192))
            if not batch:
                break
            f.write("\n".join(batch))
            f.write("\n")


def read_label_file(path: str) -> List[str]:
    """Lines of a label file (one per clip, in sorted-path order)."""
    return read_text_lines(path, "label file")


def read_annotations(path: str) -> List[str]:
    """Lines of a human-annotations file (blank = no annotation for that clip)."""
    return read_text_lines(path, "annotations file")


def check_aligned(name_a: str, count_a: int, name_b: str, count_b: int, b_may_be_shorter: bool = False) -> None:
    """Stop when two line-aligned artefacts disagree in length.

    ``b_may_be_shorter`` is for annotation files, which may end at the last annotated clip.
    """
    if count_a == count_b or (b_may_be_shorter and count_b < count_a):
        return
    relation = "at most" if b_may_be_shorter else "exactly"
    raise UserError(
        f"{name_b} has {count_b} lines but {name_a} has {count_a}; they must be line-aligned "
        f"({relation} one line per clip, in sorted-path order)"
    )


# ---------------------------------------------------------------------------------------
# cluster-id files: the two reserved ids

#: HDBSCAN noise: clips in no dense region.
NOISE_CLUSTER = -1
#: Clips without a label (an all-NaN embedding row: no usable candidate, or audio that failed):
#: left out of every clustering and of the composite statistics.
NO_LABEL_CLUSTER = -2


# ---------------------------------------------------------------------------------------
# scores files


@dataclass(frozen=True)
class ScoreRow:
    """One row of a scores file: the clip's 1-based index, audio path, kept label and score."""

    index: int
    path: str
    label: str
    score: float


def _parse_score(text: str, path: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"scores file {path} line {line}: score {text!r} is not a number") from None


# The published row separator: ``f"{i}, {path}, {label}, {score}"``.
SCORE_SEPARATOR = ", "


def _csv_reader(lines, **kwargs):
    """``csv.reader`` without its 131,072-character field limit: the toolkit writes longer fields
    itself (a label line of many candidates), so every reader must read them back."""
    csv.field_size_limit(sys.maxsize)
    return csv.reader(lines, **kwargs)


def _split_score_row(line: str) -> List[str]:
    """The four fields of one scores row, as written (see :func:`read_scores`)."""
    if '"' not in line and line.count(SCORE_SEPARATOR) >= 3:
        # The published, unquoted format: the index ends at the first separator, the label and
        # the score are the last two fields, and the path is everything in between, exactly
        # (a path may hold commas, even ", ").
        index, rest = line.split(SCORE_SEPARATOR, 1)
        path, label, score = rest.rsplit(SCORE_SEPARATOR, 2)
        return [index, path, label, score]
    fields = next(_csv_reader([line], skipinitialspace=True))
    if len(fields) > 4:
        fields = [fields[0], ",".join(fields[1:-2]), fields[-2], fields[-1]]
    return fields


def read_scores(path: str) -> List[ScoreRow]:
    """Read a scores file (rows ``<i>, <path>, <label>, <score>``).

    Rows without quotes are split at the published separator ``", "`` (comma and space): the
    index before the first, label and score after the last two, the path exactly as written in
    between, so a path holding commas reads back unchanged. Rows with RFC 4180 quotes (how
    :func:`write_scores` writes a path or label holding a comma, quote or edge space) are read
    as CSV. Fields of any length are accepted.
    """
    rows = []
    for number, line in enumerate(read_text_lines(path, "scores file"), start=1):
        if not line.strip():
            raise UserError(f"scores file {path} line {number} is blank; expected '<i>, <path>, <label>, <score>'")
        try:
            fields = _split_score_row(line)
        except csv.Error as exc:
            raise UserError(f"scores file {path} line {number} is not a valid row ({exc}); "
                            f"expected '<i>, <path>, <label>, <score>'") from None
        if len(fields) < 4:
            raise UserError(
                f"scores file {path} line {number} has {len(fields)} fields; expected '<i>, <path>, <label>, <score>'"
            )
        try:
            index = int(fields[0])
        except ValueError:
            raise UserError(f"scores file {path} line {number}: index {fields[0]!r} is not an integer") from None
        rows.append(ScoreRow(index, fields[1], fields[2].strip(), _parse_score(fields[3].strip(), path, number)))
    return rows


def check_same_clips(name_a: str, rows_a: Sequence[ScoreRow], name_b: str, rows_b: Sequence[ScoreRow]) -> None:
    """Stop when two scores files paired row by row are not about the same clips.

    The counts must agree (:func:`check_aligned`); where both rows carry a path, the paths
    must name the same file (equal after normalisation, or resolving to the same file).

    Raises
    ------
    UserError
        When the counts differ (:func:`check_aligned`).
    ParameterError
        Naming both files and the first row (1-based) whose paths differ, with both paths; the fix
        names the parameter ``filedir`` (the command line shows ``--filedir``).
    """
    import os

    check_aligned(name_a, len(rows_a), name_b, len(rows_b))
    for number, (a, b) in enumerate(zip(rows_a, rows_b), start=1):
        if not a.path or not b.path or a.path == b.path:
            continue
        if os.path.normpath(a.path) == os.path.normpath(b.path):
            continue
        if os.path.realpath(a.path) == os.path.realpath(b.path):
            continue
        raise MentionError(
            f"{name_a} and {name_b} are not about the same clips: row {number} is {a.path!r} in one and "
            f"{b.path!r} in the other; score both label files against the same {mention('filedir')}"
        )


def _quote_field(text: str) -> str:
    # RFC 4180 quoting only where needed, so ordinary rows keep the published byte format.
    if any(c in text for c in ',"\n\r') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def format_score(score: float) -> str:
    return "nan" if math.isnan(score) else repr(float(score))


def format_score_row(row: ScoreRow) -> str:
    return f"{row.index}, {_quote_field(row.path)}, {_quote_field(row.label)}, {format_score(row.score)}"


def write_scores(path: str, rows: Sequence[ScoreRow]) -> None:
    write_lines(path, (format_score_row(r) for r in rows))


# ---------------------------------------------------------------------------------------
# cluster-id files


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def read_cluster_ids(path: str) -> np.ndarray:
    """Read a cluster-id file: one integer per line (HDBSCAN noise is -1)."""
    ids = []
    for number, line in enumerate(read_text_lines(path, "cluster-id file"), start=1):
        try:
            value = int(line.strip())
        except ValueError:
            raise UserError(f"cluster-id file {path} line {number}: {line!r} is not an integer cluster id") from None
        if not _INT64_MIN <= value <= _INT64_MAX:
            shown = line.strip() if len(line.strip()) <= 40 else line.strip()[:40] + "..."
            raise UserError(f"cluster-id file {path} line {number}: cluster id {shown} is out of range "
                            f"(ids are 64-bit integers); is this a cluster-id file?")
        ids.append(value)
    return np.asarray(ids, dtype=np.int64)


def write_cluster_ids(path: str, labels: Sequence[int]) -> None:
    """Atomically write one integer cluster id per line."""
    ids = np.asarray(labels)
    values = ids.astype(np.int64).tolist() if ids.dtype.kind in "iub" else [int(x) for x in labels]
    write_lines(path, map(str, values))


# ---------------------------------------------------------------------------------------
# NPY arrays


def load_matrix(path: str, require_finite: bool = True, mmap: bool = False) -> np.ndarray:
    """Load a 2-D NPY array (one row per clip).

    With ``require_finite`` (clustering), rows holding NaN or inf are an error that lists
    them: they usually come from clips that failed to decode. With ``mmap``, the array is
    memory-mapped read-only (checked from its header; rows are read when used).
    """
    if mmap:
        matrix_header(path)
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if require_finite and array.dtype.kind == "f":
            for start, block in iter_matrix_rows(path):
                bad = np.flatnonzero(~np.all(np.isfinite(block), axis=1))
                if bad.size:
                    raise UserError(f"{path}: row {start + int(bad[0]) + 1} holds NaN or inf, usually a clip that failed "
                                    f"to decode; fix or remove that clip and recompute the features")
        return array
    # From the open file, not a bytes copy: numpy then reads the rows straight into the array.
    npz_names = None  # the array names of an .npz archive given by mistake
    with _open_binary(path, "NPY file") as f:
        try:
            array = np.load(f, allow_pickle=False)
            if isinstance(array, np.lib.npyio.NpzFile):
                npz_names = list(array.files)
                array.close()
        except Exception as exc:  # numpy raises ValueError/OSError/EOFError variously for bad files
            raise UserError(f"{path} is not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if npz_names is not None:
        names = ", ".join(npz_names[:5]) + (" ..." if len(npz_names) > 5 else "")
        raise UserError(f"{path} is an .npz archive (arrays {names or 'none'}), not an .npy array; "
                        f"give the .npy file the features step wrote, or save one array with numpy.save")
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", None)
        raise UserError(f"{path} must hold a 2-D array (one row per clip); it has shape {shape}")
    if array.dtype.kind not in "fiu":
        raise UserError(f"{path} holds {array.dtype} values; expected numbers")
    if require_finite and array.dtype.kind == "f":
        bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
        if bad.size:
            shown = ", ".join(str(i + 1) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
            raise UserError(
                f"{path}: {bad.size} of {array.shape[0]} rows hold NaN or inf (rows {shown}, 1-based), "
                f"usually clips that failed to decode; fix or remove those clips and recompute the features"
            )
    return array


def save_matrix(path: str, array: np.ndarray) -> None:
    """Atomically save a 2-D array as ``.npy``."""
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array), allow_pickle=False)



#: Rows per read of :func:`iter_matrix_rows` are chosen to keep each read near this many bytes.
MATRIX_CHUNK_BYTES = 64 * 2**20


def matrix_header(path: str):
    """``(shape, dtype, fortran_order, data_offset)`` of an ``.npy`` file, from its header alone
    (a 6 GB array is not read). Bad files give one line naming ``path``."""
    with _open_binary(path, "NPY file") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(f, max_header_size=2**20)
        except Exception as exc:
            raise UserError(f"{path} is not a readable .npy array ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        offset = f.tell()
    if len(shape) != 2:
        raise UserError(f"{path} must hold a 2-D array (one row per clip); it has shape {shape}")
    if dtype.kind not in "fiu" or dtype.hasobject:
        raise UserError(f"{path} holds {dtype} values; expected numbers")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    actual = os.path.getsize(path)
    if actual < expected:
        raise UserError(f"{path} is truncated: its header promises {shape[0]} x {shape[1]} {dtype} values "
                        f"({expected} bytes) but the file has {actual}; recompute it")
    return tuple(int(x) for x in shape), dtype, bool(fortran_order), offset


def iter_matrix_rows(path: str, chunk_bytes: int = MATRIX_CHUNK_BYTES):
    """Yield ``(start, rows)`` blocks of a 2-D ``.npy`` file in order, reading one block at a
    time (memory: one block, whatever the file's size). Blocks are native-endian C arrays."""
    (n, d), dtype, fortran_order, offset = matrix_header(path)
    step = max(1, chunk_bytes // max(1, d * dtype.itemsize))
    if fortran_order:
        # Columns are contiguous on disk: rows are gathered through a memory map.
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        for start in range(0, n, step):
            yield start, np.ascontiguousarray(mapped[start:start + step]).astype(dtype.newbyteorder("="), copy=False)
        return
    with _open_binary(path, "NPY file") as f:
        f.seek(offset)
        for start in range(0, n, step):
            m = min(step, n - start)
            block = np.fromfile(f, dtype=dtype, count=m * d)
            if block.size != m * d:
                raise UserError(f"{path} ended early at row {start + block.size // max(d, 1)} of {n}; recompute it")
            yield start, block.reshape(m, d).astype(dtype.newbyteorder("="), copy=False)


class MatrixWriter:
    """Write a 2-D ``.npy`` file block by block, atomically: the header first (shape known in
    advance), then rows in order; the file appears under its name only when every row is
    written. Memory: one block, whatever the file's size.

    Use as ``with MatrixWriter(path, (n, d), np.float32) as w: w.write(block); ...``.
    """

    def __init__(self, path: str, shape, dtype):
        self.path = path
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.written = 0
        self._context = None
        self._file = None

    def __enter__(self):
        self._context = atomic_write(self.path, "wb")
        self._file = self._context.__enter__()
        # Version 1.0, as numpy.save writes it for any 2-D shape: the bytes equal numpy.save's.
        np.lib.format.write_array_header_1_0(
            self._file, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape})
        return self

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.shape[1] or self.written + rows.shape[0] > self.shape[0]:
            raise ValueError(f"block of shape {rows.shape} does not fit {self.shape} after {self.written} rows")
        self._file.write(rows.tobytes())
        self.written += rows.shape[0]

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.written != self.shape[0]:
            # Never publish a file with fewer rows than its header says: abort the atomic write.
            short = ValueError(f"{self.path}: {self.written} of {self.shape[0]} rows written")
            self._context.__exit__(ValueError, short, None)
            raise short
        return self._context.__exit__(exc_type, exc, tb)


def rows_by_index(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` with a NaN row where ``index`` is -1 (a clip without a label)."""
    out = np.full((index.shape[0], table.shape[1]), np.nan, dtype=table.dtype)
    real = index >= 0
    out[real] = table[index[real]]
    return out


def save_rows_by_index(path: str, table: np.ndarray, index: np.ndarray, block_rows: Optional[int] = None) -> None:
    """Save ``rows_by_index(table, index)`` as ``.npy`` block by block, atomically: a file of
    2,000,000 rows x 768 is written without the 6 GB array ever being in memory. The bytes
    equal ``numpy.save`` of the whole array."""
    if block_rows is None:
        block_rows = max(1, MATRIX_CHUNK_BYTES // max(1, table.shape[1] * table.dtype.itemsize))
    with MatrixWriter(path, (index.shape[0], table.shape[1]), table.dtype) as writer:
        for start in range(0, index.shape[0], block_rows):
            writer.write(rows_by_index(table, index[start:start + block_rows]))


# ---------------------------------------------------------------------------------------
# review selection files (util_select_review.py)

SELECTION_HEADER = ["line", "path", "label", "score", "candidates"]


@dataclass(frozen=True)
class SelectionRow:
    """One clip chosen for human review.

    ``line`` is the clip's 1-based line in the scores file (and so in the label and
    annotations files); ``candidates`` is the clip's whole line of the label file.
    """

    line: int
    path: str
    label: str
    score: float
    candidates: str


def write_selection(path: str, rows: Sequence[SelectionRow]) -> None:
    """Atomically write a selection CSV: header ``line,path,label,score,candidates``, RFC 4180 quoting."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SELECTION_HEADER)
        for row in rows:
            writer.writerow([row.line, row.path, row.label, format_score(row.score), row.candidates])


def read_selection(path: str) -> List[SelectionRow]:
    """Read a selection CSV written by :func:`write_selection` (rows in file order, worst first)."""
    text = "\n".join(read_text_lines(path, "selection file"))
    records = list(_csv_reader(io.StringIO(text)))
    if not records or records[0] != SELECTION_HEADER:
        raise UserError(f"selection file {path} must start with the header {','.join(SELECTION_HEADER)}")
    rows = []
    for number, fields in enumerate(records[1:], start=2):
        if len(fields) != len(SELECTION_HEADER):
            raise UserError(f"selection file {path} record {number} has {len(fields)} fields; expected {len(SELECTION_HEADER)}")
        try:
            line = int(fields[0])
        except ValueError:
            raise UserError(f"selection file {path} record {number}: line {fields[0]!r} is not an integer") from None
        try:
            score = float(fields[3])
        except ValueError:
            raise UserError(f"selection file {path} record {number}: score {fields[3]!r} is not a number") from None
        rows.append(SelectionRow(line, fields[1], fields[2], score, fields[4]))
    return rows


# ---------------------------------------------------------------------------------------
# k-sweep tables (cluster_sweep.py)

SWEEP_COLUMNS = ("k", "silhouette", "adjusted", "calinski_harabasz", "davies_bouldin", "singletons")


def write_sweep_csv(path: str, columns: Sequence[Sequence[float]]) -> None:
    """Write the k-sweep table: header ``k,silhouette,adjusted,calinski_harabasz,davies_bouldin,singletons``
    then one row per k. ``columns`` holds the six columns in that order; scores are written in
    full precision (``repr``), ``nan`` where undefined."""
    if len(columns) != len(SWEEP_COLUMNS):
        raise ValueError(f"expected {len(SWEEP_COLUMNS)} columns, got {len(columns)}")
    ks, *scores, singletons = columns
    lines = [",".join(SWEEP_COLUMNS)]
    for i, k in enumerate(ks):
        fields = [str(int(k))] + [format_score(float(col[i])) for col in scores] + [str(int(singletons[i]))]
        lines.append(",".join(fields))
    write_lines(path, lines)


def read_sweep_csv(path: str) -> dict:
    """Read a k-sweep table into ``{column: ndarray}`` (``k`` and ``singletons`` as integers)."""
    lines = read_text_lines(path, "sweep table")
    if not lines or lines[0].strip() != ",".join(SWEEP_COLUMNS):
        raise UserError(f"sweep table {path} does not start with the header {','.join(SWEEP_COLUMNS)}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != len(SWEEP_COLUMNS):
            raise UserError(f"sweep table {path} line {number} has {len(fields)} fields; expected {len(SWEEP_COLUMNS)}")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise UserError(f"sweep table {path} line {number} holds a field that is not a number") from None
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(SWEEP_COLUMNS))
    out = {name: table[:, i] for i, name in enumerate(SWEEP_COLUMNS)}
    out["k"] = out["k"].astype(np.int64)
    out["singletons"] = out["singletons"].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------
# the sweep's decision file beside the k-sweep table (cluster_sweep.py; the document itself:
# auditoryhum.clustering.k_sweep.decision_document)

#: ``format`` field of the decision file.
DECISION_FORMAT = "auditoryhum-sweep-decision"
DECISION_VERSION = 1


def decision_path(sweep_csv: str) -> str:
    """The decision file of a sweep table: ``<sweep_csv minus .csv>_decision.json`` (``.csv``
    matched case-insensitively; any other name gets ``_decision.json`` appended)."""
    base = sweep_csv[:-4] if sweep_csv.lower().endswith(".csv") else sweep_csv
    return base + "_decision.json"


def write_decision(sweep_csv: str, document: dict) -> str:
    """Atomically write the decision document beside ``sweep_csv``; return its path.

    Format (JSON object, floats written exactly): ``format`` (``"auditoryhum-sweep-decision"``),
    ``version`` (1), ``sweep_csv`` (the table's file name) and ``sweep_csv_sha256`` (SHA-256 of
    the table's bytes: a decision file never speaks for another table), ``algorithm``,
    ``k_min``, ``k_max``, ``n_rows``, ``n_no_label``, ``n_distinct``, ``sample``, ``penalty``,
    ``rule``, ``chosen_k`` (null when no silhouette is defined), ``chosen_silhouette``,
    ``chosen_adjusted``, ``silhouette_max_k``, ``silhouette_max`` and ``lambda_path``: one object
    per k optimal for some lambda >= 0, ``{"k", "silhouette", "lambda_low", "lambda_high"}``
    (``lambda_high`` null = infinity), by k ascending.
    """
    import json

    target = decision_path(sweep_csv)
    write_text(target, json.dumps(document, indent=1, allow_nan=False) + "\n")
    return target


def read_decision(sweep_csv: str) -> Tuple[Optional[dict], Optional[str]]:
    """The decision recorded beside ``sweep_csv``: ``(document, None)``, or ``(None, why)`` when
    there is none (a table from an older ``cluster_sweep.py``), it is unreadable, or it was
    written for other table bytes (the table was replaced or edited after the sweep)."""
    import json

    from auditoryhum.io.hashing import file_sha256

    path = decision_path(sweep_csv)
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except FileNotFoundError:
        return None, (f"no decision file {path} beside the table (a table from an older cluster_sweep.py): "
                      f"the chosen k is not shown; rerun cluster_sweep.py to record it")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"decision file {path} is unreadable ({str(exc).splitlines()[0]}): the chosen k is not shown"
    if not isinstance(document, dict) or document.get("format") != DECISION_FORMAT:
        return None, f"decision file {path} is not a sweep decision: the chosen k is not shown"
    try:
        digest = file_sha256(sweep_csv)
    except OSError:
        digest = None
    if document.get("sweep_csv_sha256") != digest:
        return None, (f"decision file {path} was written for other contents of {sweep_csv} (the table changed "
                      f"after the sweep): the chosen k is not shown; rerun cluster_sweep.py")
    return document, None


# ---------------------------------------------------------------------------------------
# taxonomy files (composite_label.py): one composite label per cluster

TAXONOMY_HEADER = ["cluster", "composite_label", "n_clips", "top_labels"]


@dataclass(frozen=True)
class TaxonomyRow:
    """One cluster's composite label, its size and its most frequent labels (as written)."""

    cluster: int
    composite_label: str
    n_clips: int
    top_labels: str


def read_taxonomy_csv(path: str) -> List[TaxonomyRow]:
    """Read a taxonomy CSV: header ``cluster,composite_label,n_clips,top_labels``, RFC 4180 quoting."""
    text = "\n".join(read_text_lines(path, "taxonomy file"))
    records = list(_csv_reader(io.StringIO(text)))
    if not records or [f.strip() for f in records[0]] != TAXONOMY_HEADER:
        raise UserError(f"taxonomy file {path} must start with the header {','.join(TAXONOMY_HEADER)}")
    rows = []
    for number, fields in enumerate(records[1:], start=2):
        if not fields:
            continue
        if len(fields) != len(TAXONOMY_HEADER):
            raise UserError(f"taxonomy file {path} record {number} has {len(fields)} fields; expected {len(TAXONOMY_HEADER)}")
        try:
            cluster, n_clips = int(fields[0]), int(fields[2])
        except ValueError:
            raise UserError(f"taxonomy file {path} record {number}: cluster and n_clips must be integers") from None
        rows.append(TaxonomyRow(cluster, fields[1].strip(), n_clips, fields[3].strip()))
    return rows


# ---------------------------------------------------------------------------------------
# PNG figures (for embedding in a report)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngImage:
    """A PNG file's bytes and its size in pixels (from its IHDR chunk)."""

    data: bytes
    width: int
    height: int


def read_png(path: str) -> PngImage:
    """Read a PNG file whole, checking its signature and reading its size."""
    data = _read_bytes(path, "PNG file")
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise UserError(f"{path} is not a PNG image")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if width == 0 or height == 0:
        raise UserError(f"{path} is a PNG image of size {width} x {height}")
    return PngImage(data, width, height)


# ---------------------------------------------------------------------------------------
# taxonomy writer and composite-label JSON (composite_label.py)


def write_taxonomy_csv(path: str, rows: Sequence[TaxonomyRow]) -> None:
    """Atomically write a taxonomy CSV (read back by :func:`read_taxonomy_csv`): header
    ``cluster,composite_label,n_clips,top_labels``, one row per cluster, RFC 4180 quoting."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TAXONOMY_HEADER)
        for row in rows:
            writer.writerow([int(row.cluster), row.composite_label, int(row.n_clips), row.top_labels])


def write_composite_json(path: str, document: dict) -> None:
    """Atomically write the composite-label JSON document (UTF-8, indented, final newline).

    Strict JSON: a NaN or infinity in ``document`` is an error, not a non-standard token.
    """
    import json

    text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
