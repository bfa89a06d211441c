"""`auditoryhum run`: the pipeline in one resumable command, on the bundled example."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import auditoryhum as ah
from auditoryhum.example import make_example
from auditoryhum.pipeline import LAYOUT, RunOptions, build_steps, plan_lines, run_pipeline
from conftest import REPO, assert_one_line_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return make_example(str(tmp_path_factory.mktemp("example")))


def _opts(example, out, minilm_path, **extra):
    return RunOptions(filedir=os.path.join(os.path.dirname(example.clips[0]), "*"), out_dir=str(out),
                      text_label_csv=example.label_file, st_model=minilm_path, **extra)


def _run(opts):
    said = []
    code = run_pipeline(opts, announce=said.append)
    return code, said


def _snapshot(folder):
    """Every file under ``folder``: relative path -> bytes (the manifest aside: it records times)."""
    files = {}
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel != "manifest.json" and not name.endswith(".lock"):
                with open(path, "rb") as f:
                    files[rel] = f.read()
    return files


def test_run_writes_the_layout_and_an_unchanged_rerun_does_nothing(example, tmp_path, minilm_path):
    out = tmp_path / "run"
    code, said = _run(_opts(example, out, minilm_path))
    assert code == 0, said
    for key in ("labels", "scores", "st", "sweep", "sweep_png", "clusters", "clusters_png", "composite_stats", "report"):
        assert (out / LAYOUT[key]).is_file(), key
    assert not (out / LAYOUT["clap"]).exists()  # no CLAP model: no audio embeddings, scores nan
    assert (out / LAYOUT["labels"]).read_bytes() == open(example.label_file, "rb").read()
    assert np.load(out / LAYOUT["st"]).shape == (48, 384)
    ids = [int(x) for x in (out / LAYOUT["clusters"]).read_text().split()]
    assert len(ids) == 48 and len(set(ids)) >= 2
    assert "Total labels belonging to more than 1 cluster:" in (out / LAYOUT["composite_stats"]).read_text()
    before = _snapshot(out)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in before}

    code, said = _run(_opts(example, out, minilm_path))
    assert code == 0
    assert all("] up to date:" in line for line in said if line.startswith("[")), said
    assert _snapshot(out) == before
    assert {p: os.stat(out / p).st_mtime_ns for p in before} == mtimes  # nothing rewritten


def test_artefacts_equal_the_standalone_stages(example, tmp_path, minilm_path):
    out = tmp_path / "run"
    assert _run(_opts(example, out, minilm_path))[0] == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    clips = sorted(example.clips)
    ah.keep_first_labels(clips, example.label_file, str(alone / "scores.csv"))
    assert (alone / "scores.csv").read_bytes() == (out / LAYOUT["scores"]).read_bytes()
    ah.embed_sentences(str(alone / "scores.csv"), minilm_path, str(alone / "st.npy"))
    assert (alone / "st.npy").read_bytes() == (out / LAYOUT["st"]).read_bytes()
    swept = ah.sweep_clusters(str(alone / "st.npy"), str(alone / "sweep.csv"))
    assert (alone / "sweep.csv").read_bytes() == (out / LAYOUT["sweep"]).read_bytes()
    ah.cluster(str(alone / "st.npy"), str(alone / "ids.csv"), algorithm="ag", n_clusters=swept.chosen_k)
    assert (alone / "ids.csv").read_bytes() == (out / LAYOUT["clusters"]).read_bytes()
    # and the script itself, as a user would call it
    proc = subprocess.run([sys.executable, str(REPO / "composite_label_stats.py"), "--label_csv", str(alone / "ids.csv"),
                           "--top_label_scores_csv", str(alone / "scores.csv")], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (out / LAYOUT["composite_stats"]).read_bytes()


def test_adding_annotations_reruns_only_what_they_change_and_dry_run_says_so(example, tmp_path, minilm_path):
    out = tmp_path / "run"
    plan = plan_lines(build_steps(_opts(example, out, minilm_path)), str(out))
    assert all(line.state == "runs: not run yet" for line in plan)
    assert _run(_opts(example, out, minilm_path))[0] == 0
    plan = plan_lines(build_steps(_opts(example, out, minilm_path)), str(out))
    assert all(line.state == "up to date" for line in plan), plan

    annotated = _opts(example, out, minilm_path, annotations=example.annotations_file)
    plan = {line.name: line.state for line in plan_lines(build_steps(annotated), str(out))}
    assert plan["labels"] == "up to date" and plan["scores"] == "up to date"
    assert plan["merge"] == "runs: not run yet" and plan["scores_merged"] == "runs: not run yet"
    assert plan["st"].startswith("runs: input label_csv changed")
    assert plan["cluster"].startswith("may run: after")
    code, said = _run(annotated)
    assert code == 0
    ran = {line[1:].split("]")[0] for line in said if line.startswith("[") and "] up to date:" not in line}
    assert {"merge", "scores_merged", "st"} <= ran
    assert "labels" not in ran and "scores" not in ran
    merged = (out / LAYOUT["merged"]).read_text().splitlines()
    hints = open(example.annotations_file).read().splitlines()
    labels = open(example.label_file).read().splitlines()
    assert merged == [h if h.strip() else l for h, l in zip(hints + [""] * (len(labels) - len(hints)), labels)]


def test_kill_at_any_moment_then_rerun_gives_the_same_bytes(example, tmp_path, minilm_path):
    reference = tmp_path / "reference"
    assert _run(_opts(example, reference, minilm_path))[0] == 0
    want = _snapshot(reference)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    args = ["-m", "auditoryhum", "run", "--filedir", os.path.join(os.path.dirname(example.clips[0]), "*"),
            "--text_label_csv", example.label_file, "--st_model", minilm_path, "--quiet"]
    import json

    # killed once the manifest records n finished stages: mid-way through stage n + 1
    for n in (1, 4):
        out = tmp_path / f"killed_after_{n}"
        child = subprocess.Popen([sys.executable, *args, "--out_dir", str(out)], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and child.poll() is None:
            try:
                if len(json.loads((out / "manifest.json").read_text())["steps"]) >= n:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        assert child.poll() is None, "the run finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        proc = subprocess.run([sys.executable, *args, "--out_dir", str(out)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = _snapshot(out)
        # the report states when it was made; every other artefact is byte-identical
        assert {k: v for k, v in got.items() if k != "report.html"} == {k: v for k, v in want.items() if k != "report.html"}


def test_bad_input_names_the_stage_and_a_second_run_on_the_folder_is_refused(example, tmp_path, minilm_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    short = tmp_path / "short.csv"
    short.write_text("a b, c d\n")
    proc = subprocess.run([sys.executable, "-m", "auditoryhum", "run", "--filedir",
                           os.path.join(os.path.dirname(example.clips[0]), "*"), "--out_dir", str(tmp_path / "o"),
                           "--text_label_csv", str(short), "--st_model", minilm_path],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "stage labels:", str(short), "1 lines", "48")

    from auditoryhum.io.guard import locked_outputs

    out = tmp_path / "busy"
    out.mkdir()
    with locked_outputs([str(out / "manifest.json")], holder="another run"):
        with pytest.raises(ah.UserError, match="another run"):
            _run(_opts(example, out, minilm_path))


def test_config_file_gives_the_same_options_and_flags_override_it(example, tmp_path, minilm_path):
    from auditoryhum.cli import COMMANDS, build_parser
    from auditoryhum.pipeline import options_from_args

    config = tmp_path / "run.toml"
    config.write_text(f"filedir = {os.path.join(os.path.dirname(example.clips[0]), '*')!r}\n"
                      f"out_dir = {str(tmp_path / 'from_config')!r}\ntext_label_csv = {example.label_file!r}\n"
                      f"n_clusters = 4\n")
    parser = build_parser(next(c for c in COMMANDS if c.name == "run"))
    glob = os.path.join(os.path.dirname(example.clips[0]), "*")
    # Every option, not a few: what the file says, the flag over the file's n_clusters, defaults elsewhere.
    assert options_from_args(parser.parse_args(["--config", str(config), "--n_clusters", "6"])) == RunOptions(
        filedir=glob, out_dir=str(tmp_path / "from_config"), text_label_csv=example.label_file, n_clusters=6)
    assert options_from_args(parser.parse_args(["--config", str(config)])) == RunOptions(
        filedir=glob, out_dir=str(tmp_path / "from_config"), text_label_csv=example.label_file, n_clusters=4)
    config.write_text("filedir = 'x'\nk = 3\n")
    with pytest.raises(ah.UserError) as info:
        options_from_args(parser.parse_args(["--config", str(config)]))
    assert str(info.value) == (f"config file {config}: unknown option(s) k; the keys are the flags of auditoryhum run "
                               f"without dashes")
