"""The resumable-run engine (auditoryhum.engine) and its journal (auditoryhum.io.checkpoint).

The step used here is a real one without a model: it reads each clip with soundfile and
returns its peak amplitude as text (or its samples as a row), so the engine's behaviour
(resume, fingerprints, failures, stops, executors) is checked on real files in milliseconds.
"""

import json
import os
import threading
import time

import numpy as np
import pytest

from conftest import write_tone


class PeakStep:
    """Peak amplitude of each clip as a label line; a clip soundfile cannot read fails."""

    calls = []  # (thread name, batch) of every run, for the executor tests

    def __init__(self, delay=0.0, stop_on=None):
        self.delay, self.stop_on = delay, stop_on

    def prepare(self, paths):
        import soundfile as sf

        out = []
        for path in paths:
            try:
                data, _ = sf.read(path, dtype="float32")
                out.append((path, data, None))
            except Exception as exc:
                out.append((path, None, f"{path}: cannot read ({type(exc).__name__})"))
        return out

    def run(self, prepared):
        from auditoryhum.errors import UserError

        PeakStep.calls.append((threading.current_thread().name, [p for p, _, _ in prepared]))
        if self.delay:
            time.sleep(self.delay)
        results = []
        for path, data, error in prepared:
            if self.stop_on and path.endswith(self.stop_on):
                raise UserError(f"stopped: {os.path.basename(path)} ends the run")
            results.append((None, error) if error else (f"{float(np.max(np.abs(data))):.4f}", None))
        return results

    def cancel(self):
        pass

    def close(self):
        pass


def peak_spec(**kwargs):
    from auditoryhum.engine import StepSpec

    class Spec(StepSpec):
        def build(self):
            return PeakStep(**kwargs)

    return Spec()


def _clips(folder, n=5, corrupt=()):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        write_tone(folder / f"c{k}.wav", seconds=0.2, freq=200.0 + 100 * k, amplitude=0.1 + 0.1 * k)
    for name in corrupt:
        (folder / name).write_bytes(b"not audio at all" * 4)
    return sorted(str(p) for p in folder.glob("*.wav"))


def _run(paths, out, key=None, spec=None, executor=None, batch_size=2, **kwargs):
    from auditoryhum.engine import TEXT, Item, run_resumable
    from auditoryhum.io.artefacts import write_lines

    items = [Item(os.path.abspath(p), p, path=p, extra_fp="peak") for p in paths]
    return run_resumable(str(out), key or {"tool": "peak"}, items, spec or peak_spec(), batch_size=batch_size,
                         desc="peaks", executor=executor, codec=TEXT,
                         write=lambda values, failures: write_lines(str(out), ["" if v is None else v for v in values]),
                         **kwargs)


def test_run_writes_resumes_and_keeps_the_journal_only_for_failures(tmp_path, capsys):
    from auditoryhum.io.checkpoint import journal_path

    paths = _clips(tmp_path / "clips", corrupt=["c2_bad.wav"])
    out = tmp_path / "peaks.csv"
    first = _run(paths, out)
    lines = out.read_text().splitlines()
    assert lines == ["0.1000", "0.2000", "0.3000", "", "0.4000", "0.5000"]  # c2.wav sorts before c2_bad.wav
    assert first.reused == 0 and first.asked == 6 and list(first.failures) == [3]
    assert journal_path(out).exists()
    assert "a rerun retries only the 1 failed clip(s)" in capsys.readouterr().err

    os.unlink(paths[3])
    again = _run([p for p in paths if "bad" not in p], out)
    assert again.reused == 5 and again.asked == 0 and not again.failures
    assert "resuming: 5 of 5 clips already labelled" in capsys.readouterr().err
    assert not journal_path(out).exists()


def test_records_of_another_key_are_never_read(tmp_path):
    """Issue 13 item 2: a run whose journal another run (another model) replaced appends to
    the file it opened, not the replacement; a record stamped with another key's digest in
    the current journal is ignored."""
    from auditoryhum.io.checkpoint import Journal, journal_path, key_digest

    out = tmp_path / "labels.csv"
    a = Journal.open(out, {"model": "A"})
    b = Journal.open(out, {"model": "B"})  # replaces A's journal (atomic rename)
    a.append([{"id": "x", "fp": None, "value": "from A", "error": None}])  # after the replacement
    b.append([{"id": "y", "fp": None, "value": "from B", "error": None}])
    a.close()
    b.close()
    text = journal_path(out).read_text()
    assert "from A" not in text and "from B" in text

    # A record of A's run that found its way into B's journal anyway (a handle opened by path).
    with open(journal_path(out), "a") as f:
        f.write(json.dumps({"id": "x", "fp": None, "value": "from A", "error": None, "run": key_digest({"model": "A"})}) + "\n")
        f.write(json.dumps({"id": "z", "fp": None, "value": "unstamped", "error": None}) + "\n")
    b2 = Journal.open(out, {"model": "B"})
    assert sorted(b2.records) == ["y"] and b2.records["y"]["value"] == "from B"
    b2.close()


def test_a_clip_with_the_same_size_and_mtime_but_other_bytes_is_redone(tmp_path):
    """Issue 13 item 4: fingerprints are content digests."""
    paths = _clips(tmp_path / "clips", corrupt=["c9_bad.wav"])
    out = tmp_path / "peaks.csv"
    _run(paths, out)  # the corrupt clip keeps the journal
    target = paths[0]
    st = os.stat(target)
    write_tone(target, seconds=0.2, freq=200.0, amplitude=0.9)  # same length: same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(target).st_size, os.stat(target).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    again = _run(paths, out)
    assert again.reused == 4 and again.asked == 2
    assert out.read_text().splitlines()[0] == "0.9000"


def test_a_run_ending_error_keeps_finished_items_and_says_so(tmp_path):
    from auditoryhum.errors import UserError
    from auditoryhum.io.checkpoint import journal_path

    paths = _clips(tmp_path / "clips")
    out = tmp_path / "peaks.csv"
    with pytest.raises(UserError) as info:
        _run(paths, out, spec=peak_spec(stop_on="c3.wav"), batch_size=1)
    message = str(info.value)
    assert message.startswith("stopped: c3.wav ends the run")
    assert f"3 of 5 clips are labelled and kept in the journal {journal_path(out)}" in message
    assert not out.exists()
    again = _run(paths, out)
    assert again.reused == 3 and out.read_text().splitlines()[3] == "0.4000"

    # Nothing finished: no stray journal.
    out2 = tmp_path / "other.csv"
    with pytest.raises(UserError) as info:
        _run(paths, out2, spec=peak_spec(stop_on="c0.wav"), batch_size=1)
    assert "kept in the journal" not in str(info.value)
    assert not journal_path(out2).exists()


def test_failures_in_a_row_stop_the_run(tmp_path, capsys):
    from auditoryhum.errors import UserError

    paths = _clips(tmp_path / "clips", n=1, corrupt=["c5_bad.wav", "c6_bad.wav", "c7_bad.wav"])
    with pytest.raises(UserError, match="stopped after 2 clips in a row failed"):
        _run(paths, tmp_path / "p.csv", batch_size=1, max_consecutive_failures=2, warn_failures=True)
    err = capsys.readouterr().err
    assert err.count("warning: failed:") == 2  # said as they happened; the third clip was never tried


def test_threaded_executor_limits_work_in_flight_and_files_by_index(tmp_path):
    from auditoryhum.engine import LocalExecutor

    paths = _clips(tmp_path / "clips", n=6)
    PeakStep.calls.clear()
    threaded = _run(paths, tmp_path / "t.csv", executor=LocalExecutor(3), batch_size=1, spec=peak_spec(delay=0.05))
    serial = _run(paths, tmp_path / "s.csv", batch_size=4)
    assert (tmp_path / "t.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()
    assert threaded.asked == 6 and serial.asked == 6
    assert len({name for name, _ in PeakStep.calls[:6]}) >= 2  # really ran on several threads


def test_unknown_engine_is_one_line():
    from auditoryhum.engine import make_executor
    from auditoryhum.errors import UserError

    with pytest.raises(UserError, match="engine must be one of local, ray, got 'spark'"):
        make_executor("spark")


def test_file_digest_reads_content_in_chunks(tmp_path):
    import hashlib

    from auditoryhum.io.hashing import file_digest

    big = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    big.write_bytes(data)
    assert file_digest(str(big)) == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert file_digest(str(tmp_path / "missing.wav")) is None


@pytest.mark.slow
def test_engine_import_is_light():
    import subprocess
    import sys

    code = "import sys, auditoryhum.engine; print(sorted(m for m in ('numpy', 'torch', 'ray', 'transformers') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
