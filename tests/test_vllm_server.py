"""Labelling and naming through a real vLLM server (``--server``), started on loopback.

Each test module starts ``python -m vllm.entrypoints.openai.api_server`` from vLLM's own
environment (``.venv-vllm``, made by ``tools/ensure_vllm_env.sh``: vLLM's pins cannot live in the
toolkit's venv) with a tiny random model of a labelling family that vLLM accepts (text heads of
32, see ``tests/tiny_mllm_models.py``), and compares the label file written through the server
with the one the transformers route writes from the same weights and clips: byte for byte.

One server runs at a time (:class:`OneServer`): a server starts in 40-90 s on a 2-core machine,
so the tests of one model share it and the next model's first test stops it first. Every server
is started in a session of its own and its whole process group is ended at teardown.
"""

import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run_and_kill_when_journal_has, run_script
from tiny_mllm_models import tiny_model
from vllm_process import VLLMServer, free_port

pytestmark = pytest.mark.slow

API_KEY = "sk-test-d0n7-l34k-7h15-k3y"  # what the test servers require (--api-key); clients send it from the environment


def _start(model, log, max_model_len=2048, extra=()):
    try:
        return VLLMServer(model, log, max_model_len, api_key=API_KEY, extra=extra)
    except RuntimeError as exc:  # a missing environment or a server that did not come up: a failure, with why
        pytest.fail(str(exc))


class OneServer:
    """At most one vLLM server at a time: :meth:`serving` stops the running one when another
    model is asked for (the machine has two cores; each server holds one busy)."""

    def __init__(self, folder: Path):
        self.folder, self.current, self.extra = folder, None, ()

    def serving(self, model: Path, max_model_len: int = 2048, extra=()) -> VLLMServer:
        if self.current is not None and (self.current.model, self.extra) == (str(model), tuple(extra)):
            return self.current
        self.stop()
        name = f"vllm-{Path(model).parent.name}-{Path(model).name}.log"
        self.current, self.extra = _start(model, self.folder / name, max_model_len, extra), tuple(extra)
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pool = OneServer(tmp_path_factory.mktemp("vllm-logs"))
    yield pool
    pool.stop()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "tiny_mllm"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Eight clips that differ in length and content (tones, noise, chirps; 16 kHz float WAV),
    an undecodable one is added by the test that needs it."""
    from test_labellers import _mixed_clips

    return _mixed_clips(tmp_path_factory.mktemp("clips") / "clips", n=8)


SCRIPTS = {
    "qwen2a": ("label_qwen2a.py", "--qwen2a_model"),
    "qwen2_5o": ("label_qwen2_5o.py", "--qwen2_5o_model"),
    "qwen3o": ("label_qwen3o.py", "--qwen3o_model"),
    "gemma3n": ("label_gemma3n.py", "--gemma3n_model"),
}


def _label(family, model, clips, out, *extra, env=None):
    script, flag = SCRIPTS[family]
    return run_script(script, "--filedir", Path(clips) / "*.wav", flag, model, "--text_label_csv", out, *extra,
                      env=env)


def _via_server(family, server, clips, out, *extra, key=API_KEY):
    env = {"AUDITORYHUM_SERVER_API_KEY": key} if key is not None else {"AUDITORYHUM_SERVER_API_KEY": ""}
    env["OPENAI_API_KEY"] = ""
    return _label(family, server.model, clips, out, "--server", server.url, *extra, env=env)


def _assert_no_key(*paths_or_texts):
    for item in paths_or_texts:
        text = item.read_bytes().decode("utf-8", "replace") if isinstance(item, Path) else item
        assert API_KEY not in text


# ---------------------------------------------------------------------------------------
# Qwen2-Audio: the whole contract


@pytest.fixture(scope="module")
def qwen2a(tiny_base):
    return tiny_model(tiny_base, "qwen2a", "random", vllm=True)


@pytest.fixture(scope="module")
def qwen2a_reference(tmp_path_factory, qwen2a, clips):
    """The transformers route's label file on the same weights and clips (with hints for some clips)."""
    folder = tmp_path_factory.mktemp("reference")
    hints = folder / "hints.csv"
    hints.write_text("rain on a roof\n\n  dog barking  \n\nbirds\n")
    plain = _label("qwen2a", qwen2a, clips, folder / "plain.csv")
    hinted = _label("qwen2a", qwen2a, clips, folder / "hinted.csv", "--annotations", hints)
    assert plain.returncode == 0 and hinted.returncode == 0, plain.stderr + hinted.stderr
    return {"plain": folder / "plain.csv", "hinted": folder / "hinted.csv", "hints": hints}


def test_server_labels_equal_the_transformers_route_byte_for_byte(tmp_path, servers, qwen2a, qwen2a_reference, clips):
    server = servers.serving(qwen2a)
    out = tmp_path / "labels.csv"
    proc = _via_server("qwen2a", server, clips, out, "--concurrency", "4")
    assert proc.returncode == 0, proc.stderr
    expected = qwen2a_reference["plain"].read_bytes()
    assert expected.count(b"\n") == 8 and len(set(expected.split(b"\n"))) == 9  # 8 different answers
    assert out.read_bytes() == expected
    assert "Qwen2-Audio labels of 8 clips" in proc.stdout
    assert "key from AUDITORYHUM_SERVER_API_KEY" in proc.stderr
    assert not (tmp_path / ".labels.csv.journal").exists()
    _assert_no_key(out, proc.stdout, proc.stderr)


def test_hints_reach_the_server_as_they_reach_the_local_model(tmp_path, servers, qwen2a, qwen2a_reference, clips):
    server = servers.serving(qwen2a)
    out = tmp_path / "hinted.csv"
    proc = _via_server("qwen2a", server, clips, out, "--annotations", qwen2a_reference["hints"], "--concurrency", "8")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == qwen2a_reference["hinted"].read_bytes()
    assert out.read_bytes() != qwen2a_reference["plain"].read_bytes()  # the hints changed some answers


def test_two_server_urls_share_the_work_and_write_the_same_bytes(tmp_path, servers, qwen2a, qwen2a_reference, clips):
    """Two URLs of the same server (``--server A --server B,A``, duplicates dropped) spread the
    requests; the file does not depend on which server answered which clip."""
    server = servers.serving(qwen2a)
    alias = server.url.replace("127.0.0.1", "localhost")
    out = tmp_path / "two.csv"
    env = {"AUDITORYHUM_SERVER_API_KEY": API_KEY}
    proc = run_script("label_qwen2a.py", "--filedir", clips / "*.wav", "--qwen2a_model", server.model,
                      "--text_label_csv", out, "--server", server.url, "--server", f"{alias}/v1/,{server.url}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"on {server.url}, {alias} (8 in flight" in proc.stderr
    assert out.read_bytes() == qwen2a_reference["plain"].read_bytes()


def test_kill_9_then_rerun_resumes_to_identical_bytes(tmp_path, servers, qwen2a, qwen2a_reference, clips):
    server = servers.serving(qwen2a)
    # 24 clips (three copies of the eight), one request in flight, so the run is still going
    # when the journal holds its first clip.
    many = tmp_path / "many"
    many.mkdir()
    for k in range(3):
        for clip in sorted(clips.glob("*.wav")):
            (many / f"{k}_{clip.name}").write_bytes(clip.read_bytes())
    out = tmp_path / "killed.csv"
    journal = tmp_path / ".killed.csv.journal"
    args = ["--filedir", many / "*.wav", "--qwen2a_model", server.model, "--text_label_csv", out,
            "--server", server.url, "--concurrency", "1"]
    os.environ["AUDITORYHUM_SERVER_API_KEY"] = API_KEY
    try:
        done = run_and_kill_when_journal_has("label_qwen2a.py", args, journal, 3)
    finally:
        del os.environ["AUDITORYHUM_SERVER_API_KEY"]
    assert 2 <= done < 24 and not out.exists()
    _assert_no_key(journal)
    rerun = _via_server("qwen2a", server, many, out)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming: {done} of 24 clips already labelled" in rerun.stderr
    assert out.read_bytes() == qwen2a_reference["plain"].read_bytes() * 3
    assert not journal.exists()


def test_an_undecodable_clip_gets_an_empty_line_and_the_run_ends_non_zero(tmp_path, servers, qwen2a, qwen2a_reference,
                                                                        clips):
    server = servers.serving(qwen2a)
    folder = tmp_path / "clips"
    folder.mkdir()
    for clip in sorted(clips.glob("*.wav"))[:3]:
        (folder / clip.name).write_bytes(clip.read_bytes())
    (folder / "clip01b.wav").write_bytes(b"RIFF....WAVEfmt this is not audio")
    out = tmp_path / "labels.csv"
    proc = _via_server("qwen2a", server, folder, out)
    assert proc.returncode == 1
    expected = qwen2a_reference["plain"].read_bytes().split(b"\n")[:3]
    assert out.read_bytes().split(b"\n") == [expected[0], expected[1], b"", expected[2], b""]
    assert "1 of 4 clips failed; their label lines are empty" in proc.stderr
    assert "clip01b.wav" in proc.stderr and (tmp_path / ".labels.csv.journal").exists()


def test_format_regex_word_pairs_constrains_every_answer(tmp_path, servers, qwen2a, clips):
    """The paper's word-pair format as vLLM structured output: every line of the random model's
    gibberish becomes lower-case word pairs; without it (the recipe) almost none is."""
    from auditoryhum.defaults import FORMAT_REGEX_PRESETS

    server = servers.serving(qwen2a)
    out = tmp_path / "pairs.csv"
    proc = _via_server("qwen2a", server, clips, out, "--format_regex", "word_pairs")
    assert proc.returncode == 0, proc.stderr
    pattern = re.compile(FORMAT_REGEX_PRESETS["word_pairs"])
    lines = out.read_text().splitlines()
    assert len(lines) == 8 and all(pattern.fullmatch(line) for line in lines), lines
    assert "answers constrained to" in proc.stderr


def test_captions_through_a_qwen_server_say_that_its_template_adds_a_system_turn(tmp_path, servers, qwen2a, clips):
    """``--task caption`` sends no system turn; Qwen's ChatML template then writes its default
    one on the server, which the local route removes: the run says so (the labels can differ)."""
    server = servers.serving(qwen2a)
    out = tmp_path / "captions.csv"
    proc = _via_server("qwen2a", server, clips, out, "--task", "caption")
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 8
    assert ("warning: with no system prompt, the Qwen2-Audio chat template on the server writes its default system "
            "turn ('You are a helpful assistant.'), which the local route leaves out") in proc.stderr


def test_unreachable_server_is_one_line_within_seconds(tmp_path, qwen2a, clips):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    proc = _label("qwen2a", qwen2a, clips, tmp_path / "x.csv", "--server", f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 30  # the interpreter's start included
    assert_one_line_error(proc, f"--server http://127.0.0.1:{port}: cannot connect (Connection refused); start the server")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / ".x.csv.journal").exists()


def test_wrong_model_name_is_one_line_naming_the_served_one(tmp_path, servers, qwen2a, clips):
    server = servers.serving(qwen2a)
    started = time.monotonic()
    proc = run_script(
        "label_qwen2a.py", "--filedir", clips / "*.wav", "--qwen2a_model", "Qwen/Qwen2-Audio-7B-Instruct",
        "--text_label_csv", tmp_path / "x.csv", "--server", server.url, env={"AUDITORYHUM_SERVER_API_KEY": API_KEY})
    assert time.monotonic() - started < 30
    assert_one_line_error(proc, f"--qwen2a_model 'Qwen/Qwen2-Audio-7B-Instruct' is not served by {server.url} "
                                f"(it serves '{server.model}')")
    _assert_no_key(proc.stderr, proc.stdout)


def test_a_refused_key_stops_in_one_line_that_never_shows_it(tmp_path, servers, qwen2a, clips):
    server = servers.serving(qwen2a)
    for key in (None, "sk-wrong-key-0123456789"):
        proc = _via_server("qwen2a", server, clips, tmp_path / "x.csv", key=key)
        assert_one_line_error(proc, f"{server.url} refused the API key (HTTP 401",
                              "set AUDITORYHUM_SERVER_API_KEY or OPENAI_API_KEY")
        _assert_no_key(proc.stderr, proc.stdout)
        if key:
            assert key not in proc.stderr + proc.stdout


def test_a_text_only_request_names_clusters_as_the_transformers_route(tmp_path, servers, qwen2a):
    """composite_label.py --server: the same cluster prompts, system message and greedy answer,
    so the taxonomy CSV and JSON equal the local route's apart from the backend's description."""
    server = servers.serving(qwen2a)
    labels = tmp_path / "clusters.csv"
    scores = tmp_path / "scores.csv"
    names = ["dog barking", "rain falling", "traffic noise", "birds chirping"]
    labels.write_text("".join(f"{k % 2}\n" for k in range(8)))
    scores.write_text("".join(f"{k}, /x/c{k}.wav, {names[k % 4]}, 0.5\n" for k in range(8)))
    local = run_script("composite_label.py", "--label_csv", labels, "--top_label_scores_csv", scores,
                       "--taxonomy_csv", tmp_path / "local.csv", "--model", server.model, "--device", "cpu")
    remote = run_script("composite_label.py", "--label_csv", labels, "--top_label_scores_csv", scores,
                        "--taxonomy_csv", tmp_path / "remote.csv", "--model", server.model, "--server", server.url,
                        env={"AUDITORYHUM_SERVER_API_KEY": API_KEY})
    assert local.returncode in (0, 1) and remote.returncode == local.returncode, local.stderr + remote.stderr
    assert (tmp_path / "remote.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "remote"))
    assert [c["answer"] for c in a["clusters"]] == [c["answer"] for c in b["clusters"]]
    assert b["run"]["backend"] == "server"
    _assert_no_key(tmp_path / "remote.json", tmp_path / "remote.csv", remote.stderr)


def test_auditoryhum_run_labels_and_names_through_servers(tmp_path, servers, qwen2a, qwen2a_reference, clips,
                                                          minilm_path):
    """``auditoryhum run --server ... --chat_server ...``: the run's label file is the local route's,
    the taxonomy is named through the server, and an unchanged rerun does no model work."""
    import subprocess
    import sys

    from conftest import REPO

    server = servers.serving(qwen2a)
    out = tmp_path / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO),
               AUDITORYHUM_SERVER_API_KEY=API_KEY)
    args = [sys.executable, "-m", "auditoryhum", "run", "--filedir", str(clips / "*.wav"), "--out_dir", str(out),
            "--labeller", "qwen2a", "--labeller_model", server.model, "--server", server.url,
            "--chat_model", server.model, "--chat_server", server.url, "--st_model", minilm_path, "--n_clusters", "2"]
    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "text_labels.csv").read_bytes() == qwen2a_reference["plain"].read_bytes()
    taxonomy = (out / "taxonomy.csv").read_text().splitlines()
    assert taxonomy[0] == "cluster,composite_label,n_clips,top_labels" and len(taxonomy) == 3
    again = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "labelling 8 clips" not in again.stderr  # up to date: no request sent
    for path in out.rglob("*"):
        if path.is_file():
            _assert_no_key(path)


# ---------------------------------------------------------------------------------------
# the other families: identity with the transformers route on the same weights


def _identical_lines(a: Path, b: Path) -> int:
    return sum(x == y for x, y in zip(a.read_bytes().split(b"\n")[:-1], b.read_bytes().split(b"\n")[:-1]))


@pytest.mark.parametrize("family,trusted", [
    # Qwen2.5-Omni on a default server: per-request processor options are refused, so every clip
    # is padded to the checkpoint's 300 s window on the server (said once), with the same labels.
    ("qwen2_5o", False),
    # Qwen3-Omni on a server that takes them: the client sends the clip's frames only.
    ("qwen3o", True),
    # Gemma-3n: its own template (the system turn opens the user turn), a <bos> written once.
    ("gemma3n", False),
])
def test_every_family_labels_equal_the_transformers_route(tmp_path, servers, tiny_base, clips, family, trusted):
    model = tiny_model(tiny_base, family, "random", vllm=True)
    reference = tmp_path / "reference.csv"
    local = _label(family, model, clips, reference)
    assert local.returncode == 0, local.stderr
    server = servers.serving(model, 2048 if family == "gemma3n" else 4096,
                             ["--trust-request-mm-kwargs"] if trusted else [])
    out = tmp_path / "labels.csv"
    proc = _via_server(family, server, clips, out)
    assert proc.returncode == 0, proc.stderr
    if family == "gemma3n":
        # The same prompt ids (compared once by hand) and 7 of the 8 answers: the tiny tied Gemma-3n answers
        # near-degenerately (", 2222..."), and on one clip its top two logits are close enough for
        # vLLM's CPU kernels and torch's to pick different tokens.
        assert _identical_lines(reference, out) >= 7
    else:
        assert out.read_bytes() == reference.read_bytes()
    refused = "the server refuses per-request processor options" in proc.stderr
    assert refused == (family == "qwen2_5o")


# ---------------------------------------------------------------------------------------
# a text-only chat model: no audio input; a plain namer


@pytest.fixture(scope="module")
def text_chat(tiny_base):
    from tiny_mllm_models import build_text_chat

    return build_text_chat(tiny_base / "text_chat")


def test_a_server_without_audio_input_is_one_line_before_any_work(tmp_path, servers, text_chat, clips):
    server = servers.serving(text_chat)
    started = time.monotonic()
    proc = _via_server("qwen2a", server, clips, tmp_path / "x.csv")
    assert time.monotonic() - started < 30
    assert_one_line_error(proc, f"--qwen2a_model '{server.model}' on {server.url} does not take audio input (HTTP 400",
                          "serve an audio model with audio input allowed")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / ".x.csv.journal").exists()


def test_a_plain_chat_model_names_clusters_as_the_transformers_route(tmp_path, servers, text_chat):
    server = servers.serving(text_chat)
    labels, scores = tmp_path / "clusters.csv", tmp_path / "scores.csv"
    names = ["dog barking", "rain falling", "traffic noise", "birds chirping", "people talking"]
    labels.write_text("".join(f"{k % 3}\n" for k in range(10)))
    scores.write_text("".join(f"{k}, /x/c{k}.wav, {names[k % 5]}, 0.5\n" for k in range(10)))
    common = ["--label_csv", labels, "--top_label_scores_csv", scores, "--model", server.model]
    local = run_script("composite_label.py", *common, "--taxonomy_csv", tmp_path / "local.csv", "--device", "cpu")
    remote = run_script("composite_label.py", *common, "--taxonomy_csv", tmp_path / "remote.csv", "--server", server.url,
                        "--concurrency", "3", env={"AUDITORYHUM_SERVER_API_KEY": API_KEY})
    assert remote.returncode == local.returncode, local.stderr + remote.stderr
    assert (tmp_path / "remote.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local", "remote"))
    assert [c["answer"] for c in a["clusters"]] == [c["answer"] for c in b["clusters"]]
    assert [c["prompt"] for c in a["clusters"]] == [c["prompt"] for c in b["clusters"]]
