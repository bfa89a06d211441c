"""Issue 13: no output may destroy an input, no two runs one output, no orphaned workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from auditoryhum.errors import ParameterError, UserError
from auditoryhum.io import guard
from auditoryhum.io.atomic import remove_stale_partials, write_text


def cli_message(exc, command_name):
    """What the command line prints for a library ``ParameterError`` (its one mapping to flags)."""
    from auditoryhum.cli import COMMANDS, build_parser, parameter_message

    return parameter_message(exc, build_parser(next(c for c in COMMANDS if c.name == command_name)))


REPO = Path(__file__).resolve().parent.parent


# --- item 1: overlapping paths -------------------------------------------------------------

def test_output_equal_to_input_is_refused(tmp_path):
    ann = tmp_path / "ann.csv"
    ann.write_text("keep me\n")
    with pytest.raises(ParameterError) as info:
        guard.check_paths({"annotations": str(ann)}, {"text_label_csv": str(ann)})
    err = info.value
    assert err.param == "text_label_csv"
    msg = str(err)
    assert "\n" not in msg
    assert "annotations" in msg and "text_label_csv" in msg and str(ann) in msg
    assert ann.read_text() == "keep me\n"


def test_output_naming_one_of_the_globbed_clips_is_refused(tmp_path):
    clips = [tmp_path / f"{n}.wav" for n in "abc"]
    for c in clips:
        c.write_bytes(b"RIFF")
    with pytest.raises(ParameterError) as info:
        guard.check_paths({"filedir": [str(c) for c in clips]}, {"mfcc_npy": str(clips[1])})
    assert info.value.param == "mfcc_npy"
    assert "filedir" in str(info.value) and "b.wav" in str(info.value)


def test_output_reaching_an_input_through_a_symlink_or_hard_link_or_dotdot(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("x\n")
    (tmp_path / "link.csv").symlink_to(src)
    os.link(src, tmp_path / "hard.csv")
    (tmp_path / "sub").mkdir()
    for out in ("link.csv", "hard.csv", "sub/../in.csv"):
        with pytest.raises(ParameterError, match="same file as input csv1"):
            guard.check_paths({"csv1": str(src)}, {"csv3": str(tmp_path / out)})


def test_overlap_messages_name_both_parameters_and_the_cli_shows_both_as_flags(tmp_path):
    src = tmp_path / "m.csv"
    src.write_text("x\n")
    with pytest.raises(ParameterError) as info:
        guard.check_paths({"csv1": str(src), "csv2": str(tmp_path / "h.csv")}, {"csv3": str(src)})
    assert info.value.param == "csv3"
    assert str(info.value) == (f"csv3 is the same file as input csv1 ({src}); writing it would destroy the "
                               f"input; choose another path for csv3")
    assert cli_message(info.value, "merge") == (f"--csv3 is the same file as input --csv1 ({src}); writing it "
                                                f"would destroy the input; choose another path for --csv3")
    with pytest.raises(ParameterError) as info:
        guard.check_paths({}, {"label_csv": str(tmp_path / "a.csv"), "png_plot": str(tmp_path / "a.csv")})
    assert cli_message(info.value, "cluster-ag").startswith("--png_plot is the same file as output --label_csv (")
    assert cli_message(info.value, "cluster-ag").endswith("give --png_plot its own path")


def test_device_messages_name_the_parameter_and_the_cli_shows_the_flag():
    from auditoryhum.models import device

    with pytest.raises(ParameterError) as info:
        device.resolve_device("tpu")
    assert (info.value.param, str(info.value)) == ("device", "device must be one of auto, cuda, mps, cpu, got 'tpu'")
    assert cli_message(info.value, "features-st") == "--device must be one of auto, cuda, mps, cpu, got 'tpu'"
    with pytest.raises(ParameterError) as info:
        device.resolve_dtype("int4", "cpu")
    assert cli_message(info.value, "label-qwen2a") == "--dtype must be one of auto, bfloat16, float16, float32, got 'int4'"
    with pytest.raises(ParameterError) as info:
        device.resolve_quantization("2bit", "cpu")
    assert cli_message(info.value, "label-qwen2a") == "--quantization must be one of auto, none, 4bit, 8bit, got '2bit'"
    if device.bitsandbytes_available():
        with pytest.raises(ParameterError) as info:
            device.resolve_quantization("4bit", "mps")
        assert str(info.value) == "quantization 4bit is not supported on Apple MPS; use quantization none"
        shown = cli_message(info.value, "label-qwen2a")
        assert shown == "--quantization 4bit is not supported on Apple MPS; use --quantization none"
    else:
        with pytest.raises(ParameterError) as info:
            device.resolve_quantization("8bit", "cuda")
        assert cli_message(info.value, "label-qwen2a") == (
            "--quantization 8bit needs the bitsandbytes package: pip install bitsandbytes, or use --quantization none")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ParameterError) as info:
            device.resolve_device("cuda")
        assert str(info.value) == "device cuda was requested but torch sees no CUDA GPU; use device auto or cpu"
        assert cli_message(info.value, "features-st") == (
            "--device cuda was requested but torch sees no CUDA GPU; use --device auto or cpu")


def test_two_outputs_that_are_the_same_file_are_refused(tmp_path):
    out = tmp_path / "labels.csv"  # missing: resolves through its parent
    with pytest.raises(ParameterError) as info:
        guard.check_paths({}, {"cluster_npy": str(out), "png_plot": str(tmp_path / "." / "labels.csv")})
    assert info.value.param == "png_plot"
    assert "cluster_npy" in str(info.value)
    assert not out.exists()


def test_output_that_is_a_directory_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(ParameterError, match="existing directory") as info:
        guard.check_paths({}, {"label_csv": str(tmp_path / "d")})
    assert info.value.param == "label_csv"
    (tmp_path / "f").write_text("")
    with pytest.raises(ParameterError, match="is a file, not a folder") as info:
        guard.check_paths({}, {"label_csv": str(tmp_path / "f" / "deeper" / "x.csv")})
    assert info.value.param == "label_csv"


def test_distinct_paths_and_absent_arguments_pass(tmp_path):
    (tmp_path / "a.csv").write_text("")
    guard.check_paths({"csv1": str(tmp_path / "a.csv"), "csv2": None, "clips": []},
                      {"csv3": str(tmp_path / "new" / "b.csv"), "png_plot": None, "x": ""})


def test_guard_stage_checks_before_locking(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("x\n")
    with pytest.raises(ParameterError):
        with guard.guard_stage({"csv1": str(src)}, {"csv3": str(src)}):
            pytest.fail("the block must not run")
    assert not Path(guard.lock_path(src)).exists()


# --- item 2: exclusive locks ----------------------------------------------------------------

def test_lock_file_is_hidden_held_then_deleted_and_survives_partial_cleanup(tmp_path):
    out = tmp_path / "emb.npy"
    lock = Path(guard.lock_path(out))
    assert lock.name == ".emb.npy.lock" and lock.parent == tmp_path
    with guard.locked_outputs([out, str(out), tmp_path / "." / "emb.npy"], holder="features_st.py m"):
        record = json.loads(lock.read_text())
        assert record["pid"] == os.getpid() and record["holder"] == "features_st.py m"
        assert set(record) == {"pid", "host", "started", "holder"}
        assert remove_stale_partials(out) == 0
        write_text(out, "x")
        assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["emb.npy"]
    # Released: the lock file is gone (issue 23 item 16: no .<name>.lock clutter beside results).
    assert not lock.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


def test_taking_the_locks_removes_what_a_killed_run_left_mid_write(tmp_path):
    """A run killed inside an atomic write leaves ``.<name>.<random>.partial``; the next run of
    the stage deletes it once it holds the output's lock (the pipeline's kill-and-rerun test
    once found an empty one left beside top_label_scores.csv)."""
    out = tmp_path / "top_label_scores.csv"
    stale = tmp_path / ".top_label_scores.csv.devh9qki.partial"
    stale.write_bytes(b"")
    other = tmp_path / ".top_label_scores.csv.csv.k2j3.partial"  # another output's temporary
    other.write_bytes(b"x")
    with guard.guard_stage(inputs={}, outputs={"top_label_scores_csv": str(out)}, holder="t"):
        assert not stale.exists()
        assert other.exists()
    assert other.exists()


_HOLDER = """
import sys, time
from auditoryhum.io.guard import locked_outputs
with locked_outputs([sys.argv[1]], holder="other-run"):
    open(sys.argv[2], "w").close()
    time.sleep(60)
"""


def _start_holder(tmp_path, out):
    ready = tmp_path / "ready"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out), str(ready)], env=env,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "holder did not take the lock in time"
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_second_process_is_refused_at_once_then_dead_holder_is_taken_over(tmp_path, capsys):
    out = tmp_path / "labels.csv"
    proc = _start_holder(tmp_path, out)
    try:
        started = time.monotonic()
        with pytest.raises(UserError) as info:
            with guard.locked_outputs([out]):
                pytest.fail("must not get the lock")
        assert time.monotonic() - started < 2
        msg = str(info.value)
        assert "\n" not in msg
        assert str(out) in msg and f"pid {proc.pid}" in msg and "other-run" in msg
        assert "wait for it or stop it" in msg
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    capsys.readouterr()
    with guard.locked_outputs([out], holder="me"):
        note = capsys.readouterr().err
        assert "taking over the lock" in note and f"pid {proc.pid}" in note
        assert "no longer running" in note
        assert json.loads(Path(guard.lock_path(out)).read_text())["holder"] == "me"
    # Released cleanly: the next run takes it without a note.
    with guard.locked_outputs([out]):
        assert capsys.readouterr().err == ""


def test_locks_are_released_after_an_exception(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.png"
    with pytest.raises(RuntimeError):
        with guard.locked_outputs([a, b]):
            raise RuntimeError("boom")
    with guard.locked_outputs([a, b]):
        pass


@pytest.mark.slow
def test_partly_taken_locks_are_released_when_a_later_one_is_busy(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    proc = _start_holder(tmp_path, b)
    try:
        with pytest.raises(UserError):
            with guard.locked_outputs([a, b]):
                pass
        # a's lock must be free again: another process could take it now.
        code = ("import sys; from auditoryhum.io.guard import locked_outputs\n"
                "with locked_outputs([sys.argv[1]]): print('ok')")
        res = subprocess.run([sys.executable, "-c", code, str(a)], capture_output=True, text=True,
                             timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert res.stdout.strip() == "ok", res.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


# --- item 3: resample workers die with their run --------------------------------------------

def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_parallel_resample_kills_its_workers_and_nothing_changes_after(tmp_path):
    import numpy as np
    import soundfile as sf

    src = tmp_path / "clips"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(40):
        sf.write(str(src / f"c{i:02d}.wav"), np.clip(0.3 * rng.standard_normal((96000, 2)), -1, 1), 48000,
                 subtype="PCM_24")
    original_size = (src / "c00.wav").stat().st_size
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(REPO / "util_resample.py"), "--filedir", str(src / "*.wav"),
                             "--jobs", "2"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    workers = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _children(proc.pid) or workers
            done = sum(1 for p in src.glob("*.wav") if p.stat().st_size != original_size)
            if done >= 2 and len(workers) >= 2:
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "finished before the kill: use more clips"
    assert len(workers) >= 2
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "a worker outlived its run"
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in src.iterdir()}
    time.sleep(1.0)
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in src.iterdir()}
    assert before == after
    # Every clip is whole: either the untouched original or a complete 16 kHz mono s16 conversion
    # of its 2 s (no half-written file took its place; a killed write leaves only its .partial
    # temporary, which the next run removes), and the kill came before the last one.
    clips = sorted(p for p in src.iterdir() if not p.name.endswith(".partial"))
    assert [p.name for p in clips] == [f"c{i:02d}.wav" for i in range(40)]
    untouched = [p.name for p in clips if p.stat().st_size == original_size]
    for p in clips:
        if p.name not in untouched:
            info = sf.info(str(p))
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 32000), p.name
    assert untouched, "every clip already converted: use more clips"


# --- item 10: a full disk during resample ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_resample_onto_a_full_disk_fails_each_file_cleanly_and_prints_the_summary(tmp_path, jobs):
    """RLIMIT_FSIZE makes every write past 8 KB fail (EFBIG) as a full disk (ENOSPC) would."""
    import resource

    import numpy as np
    import soundfile as sf

    src = tmp_path / "clips"
    src.mkdir()
    for name in ("a", "b", "c"):
        sf.write(str(src / f"{name}.wav"), 0.2 * np.ones((48000, 2)), 48000, subtype="PCM_24")
    before = {p.name: p.read_bytes() for p in src.iterdir()}

    def limit():
        import signal as sig

        sig.signal(sig.SIGXFSZ, sig.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    res = subprocess.run([sys.executable, str(REPO / "util_resample.py"), "--filedir", str(src / "*.wav"),
                          "--jobs", jobs], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=limit)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "Traceback" not in out and "Exception ignored" not in out and "AssertionError" not in out, out
    assert "3 files in place: 0 converted, 0 already 16000 Hz / 1 ch / s16, 3 failed" in res.stdout
    for name in ("a", "b", "c"):
        line = [ln for ln in out.splitlines() if ln.startswith("failed:") and f"{name}.wav" in ln]
        assert len(line) == 1 and "File too large" in line[0], out
        assert ".partial" not in line[0]
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # no leftovers, originals intact


# --- item 5 / 10 / 12: text embeddings of missing labels, wrong models, non-finite output ----

@pytest.mark.slow
def test_empty_kept_labels_get_nan_rows_not_the_embedding_of_the_empty_string(minilm_path, capsys):
    import numpy as np

    from auditoryhum.models.text_embed import embed_texts, load_sentence_model

    model = load_sentence_model(minilm_path, "cpu")
    capsys.readouterr()
    rows = embed_texts(model, ["dog barking", "", "  ", "dog barking", "rain falling"])
    assert rows.shape == (5, 384) and rows.dtype == np.float32
    assert np.isnan(rows[1]).all() and np.isnan(rows[2]).all()
    assert np.isfinite(rows[[0, 3, 4]]).all() and np.array_equal(rows[0], rows[3])
    direct = model.encode(["rain falling"], convert_to_numpy=True)[0]
    np.testing.assert_allclose(rows[4], direct, rtol=1e-5, atol=1e-6)
    notes = [ln for ln in capsys.readouterr().err.splitlines() if "no label" in ln]
    assert notes == ["note: 2 of 5 rows have no label (empty kept label); their rows are NaN"]
    only_empty = embed_texts(model, ["", ""])
    assert only_empty.shape == (2, 384) and np.isnan(only_empty).all()


@pytest.mark.slow
def test_a_clap_folder_is_refused_as_sentence_model(tmp_path):
    from tiny_embed_models import build_tiny_clap

    from auditoryhum.models.text_embed import load_sentence_model

    folder = build_tiny_clap(tmp_path / "clap", fused=False)
    with pytest.raises(UserError) as info:
        load_sentence_model(str(folder), "cpu")
    msg = str(info.value)
    assert "\n" not in msg
    # The library names its parameter; the command line shows the flag in its place.
    assert isinstance(info.value, ParameterError) and info.value.param == "st_model"
    assert msg.startswith(f"st_model {str(folder)!r} is a 'clap' model folder (no modules.json), "
                          f"not a sentence-transformers model")
    assert cli_message(info.value, "features-st").startswith(
        f"--st_model {str(folder)!r} is a 'clap' model folder (no modules.json), not a sentence-transformers model")


@pytest.mark.slow
def test_non_finite_clap_text_embeddings_are_one_line_naming_the_model(tmp_path):
    import torch
    from tiny_embed_models import build_tiny_clap

    from auditoryhum.models.text_embed import ClapTextEncoder

    folder = build_tiny_clap(tmp_path / "clap", fused=False)
    encoder = ClapTextEncoder.load(str(folder), "cpu")
    assert encoder.encode(["dog barking"]).shape == (1, encoder.dim)
    with torch.no_grad():
        for p in encoder.model.text_projection.parameters():
            p.fill_(float("inf"))
    with pytest.raises(UserError) as info:
        encoder.encode(["dog barking", "rain falling"])
    assert str(info.value) == (f"CLAP model {folder} gives non-finite text embeddings for 2 of 2 texts "
                               f"(e.g. 'dog barking'); its weights are broken or overflow")
