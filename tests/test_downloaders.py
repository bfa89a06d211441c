"""tau2019.sh / tau2021.sh against a local HTTP server: resume, integrity checks, failures, reruns.

The server (127.0.0.1, a thread) serves small zip parts laid out as the real archives are
(``<dataset>/audio/*.wav`` plus a non-audio member), honours Range requests, can drop a
connection part-way, can lack a part, and serves a Zenodo-style record JSON with sizes and MD5s.
"""

import hashlib
import io
import json
import os
import subprocess
import threading
import wave
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from auditoryhum.datasets import DATASETS, Expected, check_archive, member_file_name, parse_record, PartError

REPO = Path(__file__).resolve().parent.parent


def tiny_wav(seed: int, frames: int = 200) -> bytes:
    """A short valid 16-bit mono WAV whose samples depend on ``seed``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes((seed * 7 + i) % 256 for i in range(2 * frames)))
    return buffer.getvalue()


def make_parts(key: str, wavs_per_part: int = 2):
    """Zip parts for dataset ``key``: ``({part name: zip bytes}, {wav name: wav bytes})``."""
    dataset = DATASETS[key]
    folder = dataset.audio_folder
    parts, wavs = {}, {}
    for p, part in enumerate(dataset.parts, start=1):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(folder, "")  # the folder entry real archives have
            for j in range(wavs_per_part):
                name = f"street-{p:02d}-{j}-a.wav"
                wavs[name] = tiny_wav(100 * p + j)
                z.writestr(folder + name, wavs[name])
            z.writestr(folder.rsplit("/audio/", 1)[0] + "/meta.csv", "filename\tscene_label\n")
        parts[part] = buffer.getvalue()
    return parts, wavs


class FakeZenodo:
    """What the test server serves, and what it was asked for."""

    def __init__(self, parts):
        self.files = dict(parts)  # name -> bytes; a missing name answers 404
        self.drop_once = {}  # name -> byte count after which the first GET closes the connection
        self.record = None  # JSON-able record served at /api, or None for 404
        self.requests = []  # (path, Range header or None)
        self.lock = threading.Lock()


def _handler(state: FakeZenodo):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code, body=b"", headers=()):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            with state.lock:
                state.requests.append((self.path, self.headers.get("Range")))
            if self.path == "/api":
                if state.record is None:
                    return self._send(404)
                return self._send(200, json.dumps(state.record).encode(), [("Content-Type", "application/json")])
            name = self.path.rsplit("/", 1)[-1]
            data = state.files.get(name)
            if data is None or not self.path.startswith("/files/"):
                return self._send(404, b"not found")
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=", 1)[1].split("-", 1)[0])
                if start >= len(data):
                    return self._send(416, headers=[("Content-Range", f"bytes */{len(data)}")])
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with state.lock:
                cut = state.drop_once.pop(name, None)
            if cut is not None:
                # Promise the whole body, deliver part of it, hang up: a dropped connection.
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def zenodo():
    """A running fake Zenodo: yields ``(state, base_url, api_url)``; parts are set by the test."""
    state = FakeZenodo({})
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address
    yield state, f"http://{host}:{port}/files", f"http://{host}:{port}/api"
    server.shutdown()
    server.server_close()


def record_of(parts):
    """A record JSON in the current Zenodo layout for ``parts``."""
    return {
        "id": 1,
        "files": [{"key": k, "size": len(v), "checksum": "md5:" + hashlib.md5(v).hexdigest()} for k, v in parts.items()],
    }


def run_downloader(script, cwd, base_url, api_url=None, *args):
    env = dict(os.environ, BASE_URL=base_url, ZENODO_API=api_url or "")
    env.pop("PYTHONPATH", None)  # the script must find the package by itself
    return subprocess.run(["bash", str(REPO / script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def snapshot(folder: Path):
    """Every file under ``folder`` (hidden ones too) with its bytes and mtime."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def wav_files(folder: Path):
    return sorted(p.name for p in folder.glob("*.wav"))


@pytest.mark.slow
@pytest.mark.parametrize("script,key", [("tau2019.sh", "tau2019"), ("tau2021.sh", "tau2021")])
def test_download_verify_unpack_and_idempotent_rerun(zenodo, tmp_path, script, key):
    state, base, api = zenodo
    parts, wavs = make_parts(key)
    state.files.update(parts)
    state.record = record_of(parts)
    (tmp_path / "mine.wav").write_bytes(b"the user's own file")
    stale = tmp_path / f".{next(iter(wavs))}.x1y2.partial"  # left by an earlier killed unpacking
    stale.write_bytes(b"half")

    proc = run_downloader(script, tmp_path, base, api)
    assert proc.returncode == 0, proc.stderr
    assert wav_files(tmp_path) == sorted(list(wavs) + ["mine.wav"])
    for name, data in wavs.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "mine.wav").read_bytes() == b"the user's own file"
    for part, data in parts.items():  # archives kept, verified, complete
        assert (tmp_path / part).read_bytes() == data
        assert (tmp_path / f".{part}.verified").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".partial")) or p.is_dir()]
    assert leftovers == []  # no temp files, no <dataset>/audio folder, the stale temp file removed
    assert f"{len(parts)} archive(s) verified; {len(wavs)} WAV files" in proc.stdout

    before = snapshot(tmp_path)
    state.requests.clear()
    again = run_downloader(script, tmp_path, base, api)
    assert again.returncode == 0, again.stderr
    assert snapshot(tmp_path) == before  # nothing rewritten, not even touched
    assert [p for p, _ in state.requests] == ["/api"]  # no archive fetched again
    assert f"0 unpacked now, {len(wavs)} already there" in again.stdout


@pytest.mark.slow
def test_truncated_part_is_caught_before_unpacking_and_resumed_later(zenodo, tmp_path):
    state, base, api = zenodo
    parts, wavs = make_parts("tau2021")
    bad = DATASETS["tau2021"].parts[2]
    good = dict(parts)
    state.files.update(parts)
    state.files[bad] = parts[bad][: len(parts[bad]) // 2]  # the server's copy is cut short
    (tmp_path / "mine.wav").write_bytes(b"keep me")

    proc = run_downloader("tau2021.sh", tmp_path, base)  # no record: size and zip CRC only
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("tau2021.sh: error: part 3/8 " + bad)
    assert "not a readable zip archive" in errors[0] and "Nothing was unpacked or moved" in errors[0]
    assert wav_files(tmp_path) == ["mine.wav"]  # nothing unpacked, the user's file untouched
    assert (tmp_path / "mine.wav").read_bytes() == b"keep me"
    assert not (tmp_path / bad).exists() and (tmp_path / f"{bad}.part").exists()  # kept for resuming
    for part in parts:  # every other part downloaded and verified
        if part != bad:
            assert (tmp_path / part).read_bytes() == good[part]

    state.files[bad] = good[bad]  # the server is fixed: the rerun resumes the truncated part
    state.requests.clear()
    again = run_downloader("tau2021.sh", tmp_path, base)
    assert again.returncode == 0, again.stderr
    fetched = [(p.rsplit("/", 1)[-1], r) for p, r in state.requests]
    assert fetched == [(bad, f"bytes={len(good[bad]) // 2}-")]  # only the missing tail of that part
    assert (tmp_path / bad).read_bytes() == good[bad]
    assert wav_files(tmp_path) == sorted(list(wavs) + ["mine.wav"])


@pytest.mark.slow
def test_record_size_and_md5_catch_bad_parts(zenodo, tmp_path):
    state, base, api = zenodo
    parts, _ = make_parts("tau2021")
    names = DATASETS["tau2021"].parts
    state.files.update(parts)
    state.record = record_of(parts)
    state.files[names[0]] = parts[names[0]][:-10]  # shorter than the record says
    entry = next(e for e in state.record["files"] if e["key"] == names[6])
    entry["checksum"] = "md5:" + "0" * 32  # a part whose bytes do not match the record's MD5

    proc = run_downloader("tau2021.sh", tmp_path, base, api)
    assert proc.returncode == 1
    assert f"part 1/8 {names[0]} failed: the server's file has {len(parts[names[0]]) - 10} bytes but the record lists {len(parts[names[0]])}" in proc.stderr
    assert f"part 7/8 {names[6]} failed: MD5 {hashlib.md5(parts[names[6]]).hexdigest()} differs from the record's {'0' * 32}" in proc.stderr
    error = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1 and error[0].startswith(f"tau2021.sh: error: part 1/8 {names[0]}") and "1 more failed part(s)" in error[0]
    assert wav_files(tmp_path) == []
    assert not (tmp_path / names[6]).exists() and (tmp_path / f"{names[6]}.part").read_bytes() == parts[names[6]]


@pytest.mark.slow
def test_missing_part_names_it_and_rerun_fetches_only_that_part(zenodo, tmp_path):
    state, base, api = zenodo
    parts, wavs = make_parts("tau2019")
    missing = DATASETS["tau2019"].parts[4]
    state.files.update({k: v for k, v in parts.items() if k != missing})
    state.record = record_of(parts)

    proc = run_downloader("tau2019.sh", tmp_path, base, api)
    assert proc.returncode == 1
    error = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(error) == 1 and "Traceback" not in proc.stderr
    assert error[0].startswith(f"tau2019.sh: error: part 5/21 {missing}: HTTP 404")
    assert wav_files(tmp_path) == []
    assert len(list(tmp_path.glob("*.zip"))) == 20 and not list(tmp_path.glob("*.part"))

    state.files[missing] = parts[missing]
    state.requests.clear()
    again = run_downloader("tau2019.sh", tmp_path, base, api)
    assert again.returncode == 0, again.stderr
    assert sorted({p for p, _ in state.requests}) == ["/api", f"/files/{missing}"]
    assert wav_files(tmp_path) == sorted(wavs)


@pytest.mark.slow
def test_dropped_connection_and_earlier_partial_download_are_resumed(zenodo, tmp_path):
    state, base, api = zenodo
    parts, wavs = make_parts("tau2021")
    names = DATASETS["tau2021"].parts
    state.files.update(parts)
    state.record = record_of(parts)
    state.drop_once[names[1]] = 300  # first GET of part 2 hangs up after 300 bytes
    (tmp_path / f"{names[3]}.part").write_bytes(parts[names[3]][:123])  # an earlier run stopped here

    proc = run_downloader("tau2021.sh", tmp_path, base, api)
    assert proc.returncode == 0, proc.stderr
    assert [r for p, r in state.requests if p.endswith(names[1])] == [None, "bytes=300-"]
    assert [r for p, r in state.requests if p.endswith(names[3])] == ["bytes=123-"]
    for part in (names[1], names[3]):
        assert (tmp_path / part).read_bytes() == parts[part]
    assert wav_files(tmp_path) == sorted(wavs)


@pytest.mark.slow
def test_existing_files_are_never_replaced(zenodo, tmp_path):
    """A WAV already converted in place (other size) stays; an unchecked archive is verified first."""
    state, base, api = zenodo
    parts, wavs = make_parts("tau2021")
    state.files.update(parts)
    converted = next(iter(wavs))
    (tmp_path / converted).write_bytes(b"converted by util_resample.py")
    names = DATASETS["tau2021"].parts
    (tmp_path / names[0]).write_bytes(parts[names[0]])  # left by the published script's wget: no stamp
    (tmp_path / names[1]).write_bytes(parts[names[1]][:-40])  # a truncated one from the same

    proc = run_downloader("tau2021.sh", tmp_path, base)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / converted).read_bytes() == b"converted by util_resample.py"
    assert "1 WAV file(s) already in . differ from the archive" in proc.stderr
    fetched = [(p.rsplit("/", 1)[-1], r) for p, r in state.requests]
    assert (names[0], None) not in fetched  # the good one was checked, not fetched again
    assert (names[1], f"bytes={len(parts[names[1]]) - 40}-") in fetched  # the truncated one resumed
    assert (tmp_path / names[1]).read_bytes() == parts[names[1]]
    assert wav_files(tmp_path) == sorted(wavs)


@pytest.mark.slow
def test_bash_syntax():
    for script in ("tau2019.sh", "tau2021.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / script)]).returncode == 0
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize(
    "member,folder,expected",
    [
        ("TAU-x/audio/a-b.wav", "TAU-x/audio/", "a-b.wav"),
        ("TAU-x/audio/A.WAV", "TAU-x/audio/", "A.WAV"),
        ("TAU-x/audio/", "TAU-x/audio/", None),
        ("TAU-x/audio/sub/a.wav", "TAU-x/audio/", None),
        ("TAU-x/audio/../../evil.wav", "TAU-x/audio/", None),
        ("TAU-x/meta.csv", "TAU-x/audio/", None),
        ("other/audio/a.wav", "TAU-x/audio/", None),
        ("ADVANCE/airport/0001.wav", None, "0001.wav"),
        ("__MACOSX/ADVANCE/._0001.wav", None, None),
        ("ADVANCE/readme.txt", None, None),
    ],
)
def test_member_file_name(member, folder, expected):
    assert member_file_name(member, folder) == expected


def test_parse_record_current_and_legacy_layouts():
    current = {"files": [{"key": "a.zip", "size": 10, "checksum": "md5:ABC"}]}
    legacy = {"files": {"entries": {"a.zip": {"key": "a.zip", "size": 10, "checksum": "md5:abc"}}}}
    other = {"files": [{"filename": "a.zip", "filesize": 10, "checksum": "sha256:ff"}]}
    assert parse_record(current) == {"a.zip": Expected(10, "abc")}
    assert parse_record(legacy) == {"a.zip": Expected(10, "abc")}
    assert parse_record(other) == {"a.zip": Expected(10, None)}  # not an MD5: size only


def test_check_archive_rejects_crc_errors_and_archives_without_audio(tmp_path):
    folder = DATASETS["tau2019"].audio_folder
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(folder + "a.wav", b"RIFF" + b"x" * 100)
    assert check_archive(path, Expected(), folder) == 1
    data = bytearray(path.read_bytes())
    data[data.index(b"xxxx")] ^= 0xFF  # flip a byte of the stored member: its CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(PartError, match="CRC check failed for member " + folder + "a.wav"):
        check_archive(path, Expected(), folder)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("elsewhere/a.wav", b"x")
    with pytest.raises(PartError, match="holds no WAV files under " + folder):
        check_archive(path, Expected(), folder)
