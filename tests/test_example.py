"""The bundled example: deterministic generation, and the README's main job end to end."""

import os
import subprocess

import numpy as np
import soundfile as sf

from auditoryhum.example import make_example
from auditoryhum.io.artefacts import read_annotations, read_label_file, read_scores
from conftest import REPO


def test_example_is_deterministic_and_complete(tmp_path):
    a = make_example(str(tmp_path / "a"))
    b = make_example(str(tmp_path / "b"))
    assert len(a.clips) >= 40 and len(set(a.scenes)) >= 5
    assert a.clips == sorted(a.clips)
    for pa, pb in zip(a.clips, b.clips):
        # samples, not bytes: libsndfile stamps float WAV files with the time of writing (PEAK chunk)
        np.testing.assert_array_equal(sf.read(pa)[0], sf.read(pb)[0])
    formats = {(sf.info(p).format, sf.info(p).subtype, sf.info(p).samplerate, sf.info(p).channels) for p in a.clips}
    assert len({f[0] for f in formats}) >= 2 and len({f[2] for f in formats}) >= 4 and len({f[3] for f in formats}) == 2
    labels = read_label_file(a.label_file)
    scores = read_scores(a.scores_file)
    annotations = read_annotations(a.annotations_file)
    assert len(labels) == len(scores) == len(a.clips)
    assert all(len(line.split(", ")) >= 3 for line in labels)  # several word pairs per clip
    assert all(np.isnan(r.score) for r in scores)  # never invented
    assert all(r.label == line.split(", ")[0] for r, line in zip(scores, labels))
    assert 0 < sum(1 for x in annotations if x.strip()) < len(a.clips) and len(annotations) <= len(a.clips)
    assert open(a.label_file).read() == open(b.label_file).read()


def test_readme_main_job(tmp_path):
    """`bash run_example.sh` (the README's first command) on a fresh output folder."""
    out = tmp_path / "example"
    proc = subprocess.run(["bash", str(REPO / "run_example.sh"), str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for feat in ("mfcc", "st"):
        for algo in ("kmeans", "ag", "spectral", "hdbscan"):
            ids = (out / "clusters" / f"{feat}_{algo}.csv").read_text().splitlines()
            assert len(ids) == 48
            assert (out / "plots" / f"{feat}_{algo}.png").stat().st_size > 10000
            log = (out / "logs" / f"{feat}_{algo}.txt").read_text()
            assert "Silhouette Score " in log
    assert np.load(out / "features" / "mfcc.npy").shape == (48, 20)
    # the paper's all-mpnet-base-v2 (installed by tools/ensure_venv.sh), not the MiniLM fallback
    assert "sentence model: " in proc.stdout and "all-mpnet-base-v2" in proc.stdout
    st = np.load(out / "features" / "st.npy")
    assert st.shape == (48, 768)
    np.testing.assert_allclose(np.linalg.norm(st, axis=1), 1.0, atol=1e-5)
    assert len(os.listdir(out / "clips_16k")) == 48
    assert all(sf.info(str(p)).samplerate == 16000 and sf.info(str(p)).channels == 1 for p in (out / "clips_16k").iterdir())
    assert "Total labels belonging to more than 1 cluster:" in (out / "composite_stats.txt").read_text()
    assert "ARI vs true scenes" in proc.stdout and "Done in" in proc.stdout
