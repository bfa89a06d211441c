"""README.md's Python example runs as written (only the data paths and the model swapped in)."""

import os
import re
import subprocess
import sys

import pytest

from auditoryhum.example import make_example
from conftest import REPO

pytestmark = pytest.mark.slow


def _python_block(section: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    part = text[text.index(f"## {section}\n"):]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def test_readme_python_example_runs_on_the_bundled_example(tmp_path, minilm_path):
    made = make_example(str(tmp_path / "example"))
    code = (_python_block("From Python")
            .replace('"clips/*.wav"', repr(os.path.join(os.path.dirname(made.clips[0]), "*")))
            .replace('"labels.csv"', repr(made.label_file))
            .replace('"sentence-transformers/all-mpnet-base-v2"', repr(minilm_path)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "(48, 384)"
    assert "Total labels belonging to more than 1 cluster:" in proc.stdout
    for name in ("scores.csv", "st.npy", "sweep.csv", "sweep_decision.json", "clusters.csv", "clusters.png", "report.html"):
        assert (tmp_path / "run" / name).is_file(), name
