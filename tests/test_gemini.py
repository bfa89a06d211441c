"""label_google_gen_ai_cloud.py against a real HTTP fake of the Gemini API on loopback.

Every end-to-end test starts its own :class:`FakeGemini` (tests/fake_gemini_server.py) on
127.0.0.1, points the script at it with ``--base_url``, and checks what the server received
and what the script wrote. Back-off delays are made tiny with ``--retry_base_delay`` (a
documented flag), never by patching. Every run also checks that the API key appears nowhere
in stdout, stderr or the files written.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, assert_one_line_error, run_script, write_tone
from fake_gemini_server import FILE_DELETE, FILE_GET, GENERATE, UPLOAD_DATA, UPLOAD_START, FakeGemini

from auditoryhum.models import gemini
from auditoryhum.models.families import PROMPT

SCRIPT = "label_google_gen_ai_cloud.py"
KEY = "AIzaSy-TEST-secret-0123456789abcdef"
MODEL = "gemini-2.5-flash"
NO_KEY_ENV = {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "", "GOOGLE_GEMINI_BASE_URL": ""}


def reply_for(audio: bytes) -> str:
    """The fake model's answer: names the clip by its bytes, with punctuation and a line break."""
    return f"Scene {hashlib.sha1(audio or b'').hexdigest()[:8]}.\nWind-Noise!"


def expected_line(path) -> str:
    return f"scene {hashlib.sha1(Path(path).read_bytes()).hexdigest()[:8]}, windnoise"


@pytest.fixture
def fake():
    with FakeGemini(api_key=KEY, reply=lambda r: reply_for(r.audio)) as server:
        yield server
        assert server.bugs == []


@pytest.fixture
def clips(tmp_path):
    """Four 1 s tones (32 KB WAV files each), sorted names a..d."""
    folder = tmp_path / "clips"
    for i, name in enumerate("abcd"):
        write_tone(folder / f"{name}.wav", freq=220.0 * (i + 1))
    return sorted(folder.glob("*.wav"))


def audio_is(path):
    data = Path(path).read_bytes()
    return lambda recorded: recorded.audio == data


def assert_no_key(proc, folder, key=KEY):
    if not key:
        return
    assert key not in proc.stdout and key not in proc.stderr
    for path in Path(folder).rglob("*"):
        if path.is_file() and path.suffix != ".wav":
            assert key.encode() not in path.read_bytes(), path


def label(fake, clips, out, *extra, env=None, key=KEY):
    """Run the script on ``clips`` against ``fake``; the key comes from GEMINI_API_KEY."""
    full_env = dict(NO_KEY_ENV, GEMINI_API_KEY=key)
    full_env.update(env or {})
    args = ["--filedir", str(Path(clips[0]).parent / "*.wav"), "--genai_id", MODEL, "--text_label_csv", out,
            "--base_url", fake.base_url, "--retry_base_delay", "0.001", *extra]
    proc = run_script(SCRIPT, *args, env=full_env, timeout=120)
    assert_no_key(proc, Path(out).parent, key)
    return proc


def journal_of(out):
    return Path(out).with_name(f".{Path(out).name}.journal")


# ---------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_normal_run_sends_prompt_config_and_audio_inline(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    proc = label(fake, clips, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [expected_line(p) for p in clips]
    assert out.read_bytes().endswith(b"windnoise\n")
    assert not journal_of(out).exists()
    assert "labels of 4 clips" in proc.stdout

    requests = fake.of(GENERATE)
    assert len(requests) == 4
    for path, request in zip(clips, requests):  # concurrency 1: sorted-path order
        assert request.path == f"/v1/models/{MODEL}:generateContent"
        assert request.headers["x-goog-api-key"] == KEY
        assert request.prompt == PROMPT
        assert request.config == {"temperature": 0.0, "topP": 1.0, "maxOutputTokens": 1024, "seed": 100}
        parts = request.json["contents"][0]["parts"]
        assert request.json["contents"][0]["role"] == "user"
        assert list(parts[0]) == ["text"] and len(parts) == 2  # [prompt, audio], as published
        assert request.audio_via == "inline" and request.mime_type == "audio/wav"
        assert request.audio == path.read_bytes()
    assert fake.of(UPLOAD_START) == [] and fake.of(FILE_DELETE) == []


@pytest.mark.slow
def test_hints_are_appended_after_one_space(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    hints = tmp_path / "hints.txt"
    hints.write_text("\nrain on a tin roof\n   \n")  # shorter than the clip list: allowed
    proc = label(fake, clips, out, "--annotations", hints)
    assert proc.returncode == 0, proc.stderr
    prompts = {r.audio: r.prompt for r in fake.of(GENERATE)}
    assert [prompts[p.read_bytes()] for p in clips] == [PROMPT, f"{PROMPT} rain on a tin roof", PROMPT, PROMPT]

    too_long = tmp_path / "long.txt"
    too_long.write_text("a\nb\nc\nd\ne\n")
    proc = label(fake, clips, tmp_path / "other.csv", "--annotations", too_long)
    assert_one_line_error(proc, "5 lines", "4")
    assert len(fake.of(GENERATE)) == 4  # stopped before any request


@pytest.mark.slow
def test_rate_limit_three_times_then_success_honours_server_delay(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, 429, times=2, retry_delay="0.3s")
    fake.fail(GENERATE, 503, times=1, retry_after="0.3")
    proc = label(fake, clips, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [expected_line(p) for p in clips]
    requests = fake.of(GENERATE)
    assert [r.status for r in requests] == [429, 429, 503, 200, 200, 200, 200]
    assert all(r.audio == clips[0].read_bytes() for r in requests[:4])  # the same clip, retried
    # --retry_base_delay is 1 ms: only the server's delays explain these gaps.
    gaps = [b.time - a.time for a, b in zip(requests[:3], requests[1:4])]
    assert all(gap >= 0.3 for gap in gaps), gaps


@pytest.mark.slow
def test_server_errors_exhaust_retries_then_the_clip_is_recorded_and_a_rerun_retries_it(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, 500, times=None, when=audio_is(clips[1]))
    proc = label(fake, clips, out, "--max_retries", "2")
    assert proc.returncode == 1
    lines = out.read_text().splitlines()
    assert lines == [expected_line(clips[0]), "", expected_line(clips[2]), expected_line(clips[3])]
    assert len([r for r in fake.of(GENERATE) if r.audio == clips[1].read_bytes()]) == 3
    assert "1 of 4 clips failed" in proc.stderr
    assert "failed after 3 tries: HTTP 500 INTERNAL" in proc.stderr and "b.wav" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert journal_of(out).exists()  # kept so that the rerun retries only the failure

    fake.clear_faults()
    before = len(fake.of(GENERATE))
    proc = label(fake, clips, out)
    assert proc.returncode == 0, proc.stderr
    assert [r.audio for r in fake.of(GENERATE)[before:]] == [clips[1].read_bytes()]
    assert out.read_text().splitlines() == [expected_line(p) for p in clips]
    assert not journal_of(out).exists()


@pytest.mark.slow
@pytest.mark.parametrize("status, fragment", [(401, "check the API key"), (403, "not allowed")])
def test_auth_errors_stop_the_whole_run_at_once(fake, clips, tmp_path, status, fragment):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, status, times=None, message="request had invalid credentials")
    start = time.monotonic()
    proc = label(fake, clips, out, "--max_retries", "6", "--retry_base_delay", "5")
    assert time.monotonic() - start < 20
    assert_one_line_error(proc, "stopped", f"HTTP {status}", fragment)
    assert len(fake.of(GENERATE)) == 1  # not retried, and no later clip tried
    assert not out.exists() and not journal_of(out).exists()


@pytest.mark.slow
def test_wrong_key_ends_in_seconds_with_one_line(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    wrong = "AIzaSy-WRONG-key-999"
    start = time.monotonic()
    proc = label(fake, clips, out, "--concurrency", "3", key=wrong)
    assert time.monotonic() - start < 20
    assert_one_line_error(proc, "API key not valid", "--api_key, GOOGLE_API_KEY or GEMINI_API_KEY")
    assert len(fake.of(GENERATE)) <= 3 and not out.exists()


@pytest.mark.slow
def test_missing_key_is_one_clear_line(fake, clips, tmp_path):
    proc = label(fake, clips, tmp_path / "labels.csv", key="")
    assert_one_line_error(proc, "GEMINI_API_KEY", "GOOGLE_API_KEY", "--api_key")
    assert fake.requests == []


@pytest.mark.slow
def test_timeouts_are_retried_and_bounded(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, times=1, delay=2.0, when=audio_is(clips[0]))  # once: retried, then fine
    fake.fail(GENERATE, times=None, delay=2.0, when=audio_is(clips[1]))  # always: gives up
    proc = label(fake, clips, out, "--timeout", "0.4", "--max_retries", "1")
    assert proc.returncode == 1
    lines = out.read_text().splitlines()
    assert lines == [expected_line(clips[0]), "", expected_line(clips[2]), expected_line(clips[3])]
    assert "no answer within the timeout" in proc.stderr and "failed after 2 tries" in proc.stderr
    per_clip = [sum(r.audio == p.read_bytes() for r in fake.of(GENERATE)) for p in clips]
    assert per_clip == [2, 2, 1, 1]


@pytest.mark.slow
def test_resume_after_kill_gives_byte_identical_output(fake, clips, tmp_path):
    reference = tmp_path / "reference.csv"
    assert label(fake, clips, reference).returncode == 0

    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, times=None, hang=True, when=audio_is(clips[2]))  # the run stalls on clip c
    env = dict(os.environ, **dict(NO_KEY_ENV, GEMINI_API_KEY=KEY), PYTHONPATH=str(REPO))
    args = [sys.executable, str(REPO / SCRIPT), "--filedir", str(clips[0].parent / "*.wav"), "--genai_id", MODEL,
            "--text_label_csv", str(out), "--base_url", fake.base_url, "--retry_base_delay", "0.001"]
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            journal = journal_of(out)
            if journal.exists() and journal.read_text().count("\n") >= 3:  # header + a + b
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never journalled two clips")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert not out.exists()

    fake.clear_faults()
    before = len(fake.of(GENERATE))
    proc = label(fake, clips, out)
    assert proc.returncode == 0, proc.stderr
    assert "resuming: 2 of 4" in proc.stderr
    assert [r.audio for r in fake.of(GENERATE)[before:]] == [clips[2].read_bytes(), clips[3].read_bytes()]
    assert out.read_bytes() == reference.read_bytes()
    assert not journal_of(out).exists()


@pytest.mark.slow
def test_large_clips_are_uploaded_once_used_by_uri_and_deleted(clips, tmp_path):
    small = clips[0].parent / "e_short.wav"
    write_tone(small, seconds=0.1)  # 3.2 KB: stays inline
    paths = sorted(clips[0].parent.glob("*.wav"))
    with FakeGemini(api_key=KEY, reply=lambda r: reply_for(r.audio), processing_gets=1) as fake:
        fake.fail(GENERATE, 503, times=1, when=audio_is(clips[0]))  # a retry must reuse the upload
        out = tmp_path / "labels.csv"
        proc = label(fake, paths, out, "--inline_max_bytes", "20000")
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().splitlines() == [expected_line(p) for p in paths]
        assert fake.bugs == []

        starts, datas = fake.of(UPLOAD_START), fake.of(UPLOAD_DATA)
        assert len(starts) == 4 and len(datas) == 4  # one upload per large clip, none per retry
        assert [d.body for d in datas] == [p.read_bytes() for p in clips]
        assert all(s.headers["x-goog-upload-header-content-type"] == "audio/wav" for s in starts)
        assert all(fake.files[name].deleted for name in fake.files) and len(fake.files) == 4
        generates = fake.of(GENERATE)
        via = {r.audio: r.audio_via for r in generates}
        assert [via[p.read_bytes()] for p in paths] == ["file"] * 4 + ["inline"]
        for name in fake.files:  # upload -> processed -> used -> deleted, in that order
            uses = [r for r in generates if r.file_name == name]
            gets = [r for r in fake.of(FILE_GET) if r.file_name == name]
            deletes = [r for r in fake.of(FILE_DELETE) if r.file_name == name]
            assert gets and uses and len(deletes) == 1
            assert gets[-1].time <= uses[0].time and uses[-1].time <= deletes[0].time
        assert len([r for r in generates if r.audio == clips[0].read_bytes()]) == 2


@pytest.mark.slow
def test_key_echoed_by_a_server_is_scrubbed(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, 400, times=None, when=audio_is(clips[3]), message="proxy rejected request with key={key}")
    # Every clip uploaded: a clip that fails still has its upload deleted.
    proc = label(fake, clips, out, "--max_retries", "0", "--inline_max_bytes", "0")  # label() checks the key is nowhere
    assert proc.returncode == 1
    assert "proxy rejected request with key=***" in proc.stderr
    assert len([r for r in fake.of(GENERATE) if r.audio == clips[3].read_bytes()]) == 1  # 400: not retried
    assert len(fake.files) == 4 and all(f.deleted for f in fake.files.values())


@pytest.mark.slow
def test_concurrency_keeps_output_order(fake, tmp_path):
    folder = tmp_path / "clips"
    for i in range(6):
        write_tone(folder / f"{i}.wav", freq=200.0 + 50 * i)
    paths = sorted(folder.glob("*.wav"))
    fake.fail(GENERATE, times=1, delay=0.8, when=audio_is(paths[0]))  # the first clip finishes last
    out = tmp_path / "labels.csv"
    proc = label(fake, paths, out, "--concurrency", "3")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [expected_line(p) for p in paths]
    assert fake.max_in_flight >= 2
    first = [r for r in fake.of(GENERATE) if r.audio == paths[0].read_bytes()]
    assert len(first) == 1 and len(fake.of(GENERATE)) == 6


@pytest.mark.slow
def test_malformed_answers_are_retried_and_unknown_model_stops(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, times=2, malformed=True)
    proc = label(fake, clips, out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [expected_line(p) for p in clips]
    assert len(fake.of(GENERATE)) == 6

    fake.fail(GENERATE, 404, times=None, message=f"models/{MODEL} is not found for API version v1")
    proc = label(fake, clips, tmp_path / "other.csv")
    assert_one_line_error(proc, "stopped", "not found", "--genai_id")
    assert len(fake.of(GENERATE)) == 7


@pytest.mark.slow
def test_many_failures_in_a_row_stop_the_run(fake, clips, tmp_path):
    out = tmp_path / "labels.csv"
    fake.fail(GENERATE, 503, times=None)
    proc = label(fake, clips, out, "--max_retries", "0", "--max_consecutive_failures", "2")
    assert_one_line_error(proc, "2 clips in a row failed", "HTTP 503")
    assert len(fake.of(GENERATE)) == 2  # no request for a clip after the decision to stop
    assert not out.exists() and journal_of(out).exists()


# ---------------------------------------------------------------------------------------
# the pieces


@pytest.mark.slow
def test_help_does_not_import_the_sdk():
    code = ("import sys; from auditoryhum.cli import build_parser, _BY_SCRIPT; "
            f"build_parser(_BY_SCRIPT[{SCRIPT!r}]).format_help(); print('google.genai' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_sdk_retries_are_off_and_timeout_is_in_milliseconds():
    labeller = gemini.GeminiLabeller(gemini.GeminiSettings(model=MODEL, api_key=KEY, base_url="http://127.0.0.1:9", timeout_s=2.5))
    options = labeller.client._api_client._http_options
    assert options.retry_options is None
    assert options.timeout == 2500
    assert options.base_url == "http://127.0.0.1:9"


def test_resolve_api_key_precedence_and_blank_values():
    env = {"GEMINI_API_KEY": " gem ", "GOOGLE_API_KEY": "goo"}
    assert gemini.resolve_api_key("flag", env) == ("flag", "--api_key")
    assert gemini.resolve_api_key(None, env) == ("goo", "GOOGLE_API_KEY")
    assert gemini.resolve_api_key(None, {"GEMINI_API_KEY": " gem ", "GOOGLE_API_KEY": " "}) == ("gem", "GEMINI_API_KEY")
    with pytest.raises(gemini.UserError, match="GEMINI_API_KEY"):
        gemini.resolve_api_key("", {})
    assert gemini.resolve_base_url(None, {"GOOGLE_GEMINI_BASE_URL": "http://gw"}) == "http://gw"
    assert gemini.resolve_base_url("http://flag", {"GOOGLE_GEMINI_BASE_URL": "http://gw"}) == "http://flag"


def test_scrub_replaces_plain_and_url_encoded_key():
    key = "ab/c+d"
    assert gemini.scrub(f"GET /x?key={key} and key=ab%2Fc%2Bd", key) == "GET /x?key=*** and key=***"
    assert gemini.scrub("nothing", "") == "nothing"


def test_backoff_grows_is_capped_and_honours_server_delay():
    rng = random.Random(0)
    for retry in range(10):
        full = min(gemini.RETRY_MAX_DELAY_S, 2.0 * 2 ** retry)
        delay = gemini.backoff_delay(retry, 2.0, rng)
        assert full / 2 <= delay <= full
    assert gemini.backoff_delay(0, 2.0, rng, server_delay_s=7.0) == pytest.approx(7.0, rel=0.1)
    assert gemini.backoff_delay(0, 2.0, rng, server_delay_s=1e6) <= gemini.SERVER_RETRY_DELAY_CAP_S * 1.1


def test_classify_sorts_failures():
    from google.genai import errors

    def api_error(code, message="m", reason=None):
        body = {"error": {"code": code, "message": message, "status": "X"}}
        if reason:
            body["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
        return errors.APIError.raise_error(code, body, None)

    def kind(code, **kwargs):
        try:
            api_error(code, **kwargs)
        except errors.APIError as exc:
            return gemini.classify(exc, MODEL, KEY).kind

    assert [kind(c) for c in (408, 429, 500, 502, 503, 504)] == [gemini.RETRY] * 6
    assert [kind(c) for c in (400, 404, 413, 501)] == [gemini.CLIP] * 4
    assert [kind(c) for c in (401, 403)] == [gemini.RUN] * 2
    assert kind(400, reason="API_KEY_INVALID") == gemini.RUN
    assert kind(404, message=f"models/{MODEL} is not found") == gemini.RUN
    import httpx2

    assert gemini.classify(httpx2.ReadTimeout("slow"), MODEL).kind == gemini.RETRY
    assert gemini.classify(httpx2.ConnectError("refused"), MODEL).kind == gemini.RETRY
    assert gemini.classify(ValueError("bug"), MODEL).kind == gemini.CLIP
    failure = gemini.classify(RuntimeError(f"boom {KEY}\nsecond line"), MODEL, KEY)
    assert KEY not in failure.message and "\n" not in failure.message


def test_settings_are_checked():
    with pytest.raises(gemini.UserError, match="--concurrency"):
        gemini.GeminiSettings(model=MODEL, api_key=KEY, concurrency=0).check()
    with pytest.raises(gemini.UserError, match="--base_url"):
        gemini.GeminiSettings(model=MODEL, api_key=KEY, base_url="localhost:8080").check()
    with pytest.raises(gemini.UserError, match="--timeout"):
        gemini.GeminiSettings(model=MODEL, api_key=KEY, timeout_s=0).check()
