"""The bundled example: deterministic generation, and the README's main job end to end."""

import os
import subprocess

import numpy as np
import pytest
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


@pytest.mark.slow
def test_readme_main_job(tmp_path):
    """`bash run_example.sh` (the README's first command) on a fresh output folder."""
    out = tmp_path / "example"
    proc = subprocess.run(["bash", str(REPO / "run_example.sh"), str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the pipeline's fixed layout (docs/pipeline.md)
    for name in ("text_labels.csv", "top_label_scores.csv", "text_labels_merged.csv", "top_label_scores_merged.csv",
                 "st.npy", "sweep.csv", "sweep_decision.json", "clusters.csv", "composite_stats.txt", "report.html",
                 "manifest.json"):
        assert (out / name).is_file(), name
    ids = [int(x) for x in (out / "clusters.csv").read_text().split()]
    assert len(ids) == 48 and len(set(ids)) == 6
    assert (out / "clusters.png").stat().st_size > 10000
    # the paper's all-mpnet-base-v2 (installed by tools/ensure_venv.sh), not the MiniLM fallback
    st = np.load(out / "st.npy")
    assert st.shape == (48, 768)
    np.testing.assert_allclose(np.linalg.norm(st, axis=1), 1.0, atol=1e-5)
    assert np.load(out / "mfcc.npy").shape == (48, 20)
    assert len(os.listdir(out / "clips_16k")) == 48
    assert all(sf.info(str(p)).samplerate == 16000 and sf.info(str(p)).channels == 1 for p in (out / "clips_16k").iterdir())
    assert "Total labels belonging to more than 1 cluster:" in (out / "composite_stats.txt").read_text()
    assert "ARI vs true scenes" in proc.stdout and "labels_ag" in proc.stdout and "mfcc_ag" in proc.stdout
    assert "Done in" in proc.stdout
    # the real composite labels (SmolLM2 GGUF from PyPI): one per cluster, shown in the report
    taxonomy = (out / "taxonomy.csv").read_text().splitlines()
    assert taxonomy[0] == "cluster,composite_label,n_clips,top_labels" and len(taxonomy) == 7
    assert "taxonomy: the composite label of each cluster" in proc.stdout
    report = (out / "report.html").read_text()
    name = taxonomy[1].split(",")[1].strip('"')
    assert name and name in report
    # an unchanged rerun of the pipeline does no work
    rerun = subprocess.run([str(REPO / ".venv" / "bin" / "auditoryhum"), "run", "--filedir", str(out / "input" / "clips" / "*"),
                            "--out_dir", str(out), "--resample", "--text_label_csv", str(out / "input" / "text_labels.csv"),
                            "--annotations", str(out / "input" / "annotations.csv"), "--n_clusters", "6",
                            "--chat_model", _chat_model()], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "0 of 11 stages ran, 11 were up to date" in rerun.stdout


def _chat_model():
    from auditoryhum.models.bundled import default_chat_model

    return default_chat_model()
