"""util_resample.py under stress: a killed run, many input formats, bad files, non-destructive copies.

Every test drives the script as a user does (``run_script``, a subprocess) and checks the files
it leaves: sample rate, channels, subtype, frame count, the signal itself, bytes and mtimes of
files that must not change.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run_script

TONE_HZ = 440.0


def tone_file(path: Path, sr: int, channels: int, subtype: str, fmt: str = None, seconds: float = 1.0, amplitude: float = 0.5):
    """A sine tone in every channel (identical, so the mono mix keeps the amplitude)."""
    t = np.arange(int(round(sr * seconds))) / sr
    y = amplitude * np.sin(2 * np.pi * TONE_HZ * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.repeat(y[:, None], channels, axis=1), sr, subtype=subtype, format=fmt)
    return path


def tone_properties(path: Path):
    """(peak frequency in Hz, RMS) of a file's first channel."""
    y, sr = sf.read(str(path), dtype="float64", always_2d=True)
    y = y[:, 0]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.fft.rfftfreq(y.size, 1 / sr)[np.argmax(spectrum)]), float(np.sqrt(np.mean(y ** 2)))


def state(folder: Path):
    """Bytes and mtime of every file under ``folder``, hidden ones included."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def partials(folder: Path):
    return sorted(p.name for p in folder.rglob("*.partial"))


# Each input: file name -> (container, subtype, channels, rate). Covers WAV u8/16/24/32-bit int,
# 32/64-bit float, FLAC, Ogg/Vorbis; 1, 2 and 6 channels; 8, 22.05, 44.1 and 48 kHz.
FORMATS = {
    "wav_u8_1ch_8k.wav": ("WAV", "PCM_U8", 1, 8000),
    "wav_s16_2ch_22k.wav": ("WAV", "PCM_16", 2, 22050),
    "wav_s24_6ch_44k.wav": ("WAV", "PCM_24", 6, 44100),
    "wav_s32_2ch_48k.wav": ("WAV", "PCM_32", 2, 48000),
    "wav_f32_1ch_44k.wav": ("WAV", "FLOAT", 1, 44100),
    "wav_f64_6ch_8k.wav": ("WAV", "DOUBLE", 6, 8000),
    "flac_s16_2ch_44k.flac": ("FLAC", "PCM_16", 2, 44100),
    "flac_s24_6ch_48k.flac": ("FLAC", "PCM_24", 6, 48000),
    "flac_s16_1ch_22k.flac": ("FLAC", "PCM_16", 1, 22050),
    "ogg_vorbis_2ch_48k.ogg": ("OGG", "VORBIS", 2, 48000),
    "ogg_vorbis_1ch_22k.ogg": ("OGG", "VORBIS", 1, 22050),
}


@pytest.mark.slow
def test_every_input_format_converts_to_16k_mono_s16(tmp_path):
    src = tmp_path / "in"
    for name, (fmt, subtype, channels, sr) in FORMATS.items():
        tone_file(src / name, sr, channels, subtype, fmt)
    proc = run_script("util_resample.py", "--filedir", src / "*", "--output_dir", tmp_path / "out", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(FORMATS)} files into {tmp_path / 'out'}: {len(FORMATS)} converted, 0 already" in proc.stdout
    for name, (fmt, subtype, channels, sr) in FORMATS.items():
        out = tmp_path / "out" / name
        info = sf.info(str(out))
        lossy = subtype == "VORBIS"
        assert (info.format, info.samplerate, info.channels, info.frames) == (fmt, 16000, 1, 16000), name
        assert info.subtype == ("VORBIS" if lossy else "PCM_16"), name
        freq, rms = tone_properties(out)
        assert abs(freq - TONE_HZ) <= 2.0, (name, freq)
        # A 0.5 sine has RMS 0.354; u8 input and Vorbis add noise, nothing should change the level.
        assert abs(20 * np.log10(rms / (0.5 / np.sqrt(2)))) < (0.5 if lossy or subtype == "PCM_U8" else 0.05), (name, rms)


@pytest.mark.slow
def test_lossless_output_matches_direct_soxr_of_the_channel_mean(tmp_path):
    """For a stereo 44.1 kHz clip with different channels: mean of the channels, soxr HQ, s16 rounding."""
    import soxr

    rng = np.random.default_rng(3)
    stereo = np.clip(0.2 * rng.standard_normal((44100, 2)), -1, 1)
    (tmp_path / "in").mkdir()
    sf.write(str(tmp_path / "in" / "x.wav"), stereo, 44100, subtype="FLOAT")
    proc = run_script("util_resample.py", "--filedir", tmp_path / "in" / "*.wav", "--output_dir", tmp_path / "out",
                      "--jobs", "1", "--resampler", "soxr")
    assert proc.returncode == 0, proc.stderr
    ours, sr = sf.read(str(tmp_path / "out" / "x.wav"), dtype="int16")
    data, _ = sf.read(str(tmp_path / "in" / "x.wav"), dtype="float64")
    expected = np.clip(np.rint(soxr.resample(data.mean(axis=1), 44100, 16000, quality="HQ") * 32768), -32768, 32767)
    assert sr == 16000 and ours.shape == (16000,)
    np.testing.assert_array_equal(ours, expected.astype(np.int16))


@pytest.mark.slow
@pytest.mark.parametrize("bits,subtype", [("u8", "PCM_U8"), ("s16", "PCM_16"), ("s32", "PCM_32"), ("flt", "FLOAT"), ("dbl", "DOUBLE")])
def test_each_bits_value_and_upmix_to_two_channels(tmp_path, bits, subtype):
    tone_file(tmp_path / "in" / "a.wav", 48000, 1, "PCM_24")
    proc = run_script("util_resample.py", "--filedir", tmp_path / "in" / "*.wav", "--output_dir", tmp_path / "out",
                      "--bits", bits, "--channels", "2", "--sampling_rate", "22050")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(tmp_path / "out" / "a.wav"))
    assert (info.subtype, info.channels, info.samplerate, info.frames) == (subtype, 2, 22050, 22050)
    y, _ = sf.read(str(tmp_path / "out" / "a.wav"), dtype="float64")
    np.testing.assert_array_equal(y[:, 0], y[:, 1])  # mono up to two channels copies the channel
    freq, rms = tone_properties(tmp_path / "out" / "a.wav")
    assert abs(freq - TONE_HZ) <= 2.0 and abs(rms - 0.5 / np.sqrt(2)) < 0.01


@pytest.mark.slow
def test_output_dir_leaves_originals_byte_identical_and_mirrors_folders(tmp_path):
    src = tmp_path / "in"
    tone_file(src / "a.wav", 44100, 2, "PCM_16")
    tone_file(src / "sub" / "b.flac", 48000, 1, "PCM_24", "FLAC")
    tone_file(src / "sub" / "c.wav", 16000, 1, "PCM_16")  # already in the target format: copied as is
    before = state(src)
    proc = run_script("util_resample.py", "--filedir", src / "**" / "*.*", "--output_dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert state(src) == before  # not one byte, not one mtime changed
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["a.wav", "sub/b.flac", "sub/c.wav"]
    assert (out / "sub" / "c.wav").read_bytes() == (src / "sub" / "c.wav").read_bytes()
    for name in ("a.wav", "sub/b.flac"):
        info = sf.info(str(out / name))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    assert "3 files into" in proc.stdout and "2 converted, 1 already 16000 Hz / 1 ch / s16, 0 failed" in proc.stdout


@pytest.mark.slow
def test_bad_files_are_named_left_untouched_and_the_rest_converted(tmp_path):
    src = tmp_path / "in"
    tone_file(src / "a_good.wav", 44100, 2, "PCM_16")
    (src / "b_corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    (src / "c_zero_bytes.wav").write_bytes(b"")
    sf.write(str(src / "d_no_frames.wav"), np.zeros(0), 16000, subtype="PCM_16")  # header only, already 16k mono s16
    six = tone_file(tmp_path / "six" / "e_six_to_two.wav", 48000, 6, "PCM_16")  # 6 -> 2 channels is ambiguous
    tone_file(src / "f_good.flac", 22050, 1, "PCM_16", "FLAC")
    bad = ["b_corrupt.wav", "c_zero_bytes.wav", "d_no_frames.wav"]
    before = state(src)

    proc = run_script("util_resample.py", "--filedir", src / "*", "--jobs", "2")  # in place
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    # Failure lines are errors: on stderr, never on stdout (which holds the summary).
    assert not [line for line in proc.stdout.splitlines() if line.startswith("failed: ")]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 3
    assert f"failed: {src / 'b_corrupt.wav'}: cannot decode audio" in failed[0]
    assert failed[1] == f"failed: {src / 'c_zero_bytes.wav'}: empty file (0 bytes)"
    assert failed[2] == f"failed: {src / 'd_no_frames.wav'}: holds no audio samples (zero-length file)"
    assert "5 files in place: 2 converted, 0 already 16000 Hz / 1 ch / s16, 3 failed (left untouched)" in proc.stdout
    after = state(src)
    for name in bad:
        assert after[name] == before[name], name
    for name in ("a_good.wav", "f_good.flac"):
        info = sf.info(str(src / name))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    assert partials(src) == []

    six_before = state(six.parent)
    proc = run_script("util_resample.py", "--filedir", six, "--channels", "2", "--quiet")
    assert proc.returncode == 1
    # --quiet silences notes, not failures: stderr holds exactly the failure line.
    assert proc.stderr.splitlines() == [f"failed: {six}: cannot map 6 channels to 2; convert to 1 channel or keep 6"]
    assert proc.stdout.splitlines() == ["1 files in place: 0 converted, 0 already 16000 Hz / 2 ch / s16, 1 failed (left untouched)"]
    assert state(six.parent) == six_before


@pytest.mark.slow
def test_a_failure_naming_a_parameter_shows_its_flag_on_the_cli_and_its_name_in_the_api(tmp_path):
    from auditoryhum.resample import Target, convert_file

    flac = tone_file(tmp_path / "in" / "x.flac", 22050, 1, "PCM_16", "FLAC")  # FLAC holds no float samples
    before = flac.read_bytes()
    outcome = convert_file(str(flac), str(flac), Target(16000, 1, "flt"))
    assert outcome.status == "failed"
    assert outcome.message == (f"{flac}: a FLAC file cannot hold flt samples; choose another bits (e.g. s16) "
                               f"or convert the file to WAV first")
    assert outcome.shown(lambda param: "--" + param) == outcome.message.replace("another bits", "another --bits")
    proc = run_script("util_resample.py", "--filedir", flac, "--bits", "flt", "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"failed: {flac}: a FLAC file cannot hold flt samples; choose another "
                                        f"--bits (e.g. s16) or convert the file to WAV first"]
    assert flac.read_bytes() == before


@pytest.mark.slow
def test_files_already_in_the_target_format_are_not_rewritten(tmp_path):
    src = tmp_path / "in"
    tone_file(src / "a.wav", 16000, 1, "PCM_16")
    tone_file(src / "b.ogg", 16000, 1, "VORBIS", "OGG")  # lossy: the rate and channels decide
    tone_file(src / "c.wav", 16000, 2, "PCM_16")  # right rate, wrong channel count: converted
    old = time.time() - 3600
    for p in src.iterdir():
        os.utime(p, (old, old))
    before = state(src)
    proc = run_script("util_resample.py", "--filedir", src / "*")
    assert proc.returncode == 0, proc.stderr
    after = state(src)
    assert after["a.wav"] == before["a.wav"] and after["b.ogg"] == before["b.ogg"]  # bytes and mtime
    assert after["c.wav"] != before["c.wav"] and sf.info(str(src / "c.wav")).channels == 1
    assert "3 files in place: 1 converted, 2 already 16000 Hz / 1 ch / s16" in proc.stdout

    again = run_script("util_resample.py", "--filedir", src / "*")  # a rerun changes nothing
    assert again.returncode == 0 and state(src) == after
    assert "0 converted, 3 already" in again.stdout


@pytest.mark.slow
def test_killed_in_place_run_leaves_each_clip_whole_and_a_rerun_finishes(tmp_path):
    """SIGKILL while a temporary file is being written; every clip is the original or complete."""
    from auditoryhum.resample import Target, convert_file

    count, seconds = 48, 3.0
    src = tmp_path / "clips"
    pristine = tmp_path / "pristine"
    reference = tmp_path / "reference"
    rng = np.random.default_rng(7)
    src.mkdir()
    for i in range(count):
        data = np.clip(0.3 * rng.standard_normal((int(48000 * seconds), 2)), -1, 1)
        sf.write(str(src / f"clip_{i:02d}.wav"), data, 48000, subtype="PCM_24")
    originals = {p.name: p.read_bytes() for p in sorted(src.glob("*.wav"))}
    pristine.mkdir()
    for name, data in originals.items():
        (pristine / name).write_bytes(data)
        outcome = convert_file(str(pristine / name), str(reference / name), Target(16000, 1, "s16"))
        assert outcome.status == "converted"
    converted = {name: (reference / name).read_bytes() for name in originals}
    converted_size = len(next(iter(converted.values())))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(REPO / "util_resample.py"), "--filedir", str(src / "*.wav"), "--jobs", "1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_at_kill, saw_partial = 0, False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            entries = list(os.scandir(src))
            done_at_kill = sum(1 for e in entries if e.name.endswith(".wav") and e.stat().st_size == converted_size)
            saw_partial = any(e.name.endswith(".partial") for e in entries)
            # Well under way and a temporary file half-written; or, should writes be too quick to
            # catch, half-way through (still mid-run, between two files).
            if (done_at_kill >= 2 and saw_partial) or done_at_kill >= count // 2:
                break
            time.sleep(0.0005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed: use more or longer clips"
    assert 2 <= done_at_kill < count

    whole = untouched = 0
    for name, original in originals.items():
        now = (src / name).read_bytes()
        if now == original:
            untouched += 1
        else:
            assert now == converted[name], f"{name} is neither the original nor the complete conversion"
            whole += 1
    assert whole >= 2 and untouched >= 1
    (src / f".clip_{count - 1:02d}.wav.zz9.partial").write_bytes(b"stale")  # one more, deterministic, leftover

    rerun = run_script("util_resample.py", "--filedir", src / "*.wav", "--jobs", "1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{count} files in place: {untouched} converted, {whole} already 16000 Hz / 1 ch / s16, 0 failed" in rerun.stdout
    for name in originals:
        assert (src / name).read_bytes() == converted[name]
        info = sf.info(str(src / name))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", int(16000 * seconds))
    assert partials(src) == []  # temporary files of the killed run removed


@pytest.mark.slow
def test_in_place_keeps_a_read_only_mode_and_converts_a_links_target(tmp_path):
    """Issue 13: a 0444 clip stays 0444; a symbolic link stays a link and its target is converted."""
    src = tmp_path / "clips"
    ro = tone_file(src / "ro.wav", 44100, 2, "PCM_16")
    os.chmod(ro, 0o444)
    real = tone_file(tmp_path / "elsewhere" / "real.wav", 22050, 1, "PCM_16")
    (src / "link.wav").symlink_to(real)
    proc = run_script("util_resample.py", "--filedir", src / "*.wav", "--jobs", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 files in place: 2 converted" in proc.stdout
    assert ro.stat().st_mode & 0o777 == 0o444
    assert (src / "link.wav").is_symlink() and os.readlink(src / "link.wav") == str(real)
    for path in (ro, real):
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert partials(src) == [] and partials(real.parent) == []


@pytest.mark.slow
def test_failure_lines_name_the_file_and_cause_not_internals(tmp_path):
    """Issue 13: an unreadable clip fails as 'Permission denied', not 'System error.'."""
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    src = tmp_path / "clips"
    bad = tone_file(src / "locked.wav", 44100, 1, "PCM_16")
    os.chmod(bad, 0)
    proc = run_script("util_resample.py", "--filedir", src / "*.wav", "--jobs", "1")
    assert proc.returncode == 1
    assert f"failed: {bad}: cannot read (Permission denied)" in proc.stdout + proc.stderr
