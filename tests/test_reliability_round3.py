"""Issue 23 (reliability round 3): the regressions of its adversarial round, one test per case.

Symbolic links, hard links, ``..`` and relative aliases that reach an input from an output; a clip
that changes between being read and being replaced; config values that must mean what they say;
malformed manifests; wrong Python types for path parameters; lock files beside outputs;
reproducible report bytes. Every test drives the real code (the command in-process where that
is enough, a subprocess only where the process boundary is the point) and checks files, values
and exact messages.
"""

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import auditoryhum as ah
import auditoryhum.resample as rs
from auditoryhum.errors import ParameterError, UserError

from conftest import write_tone


def hifi_clip(path: Path, seconds: float = 0.5) -> bytes:
    """A 44.1 kHz stereo 24-bit clip (what a user keeps as the original); returns its bytes."""
    write_tone(path, sr=44100, seconds=seconds, channels=2, subtype="PCM_24")
    return path.read_bytes()


def run_cli(command_name, argv, capsys):
    """Run ``auditoryhum <command_name> argv`` in this process; returns (exit code, stdout, stderr)."""
    from auditoryhum.cli import COMMANDS, build_parser, execute

    command = next(c for c in COMMANDS if c.name == command_name)
    args = build_parser(command).parse_args([str(a) for a in argv])
    code = execute(command, args, f"auditoryhum {command_name}")
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# --- item 1: an output folder that reaches the clips through a link -----------------------------

def test_output_dir_reaching_the_clips_through_a_symlinked_parent_is_refused(tmp_path, capsys):
    """util_resample.py --filedir 'alias/clips_16k/*.wav' --output_dir run/clips_16k, alias -> run."""
    original = hifi_clip(tmp_path / "run" / "clips_16k" / "a.wav")
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    code, out, err = run_cli("resample", ["--filedir", tmp_path / "alias" / "clips_16k" / "*.wav",
                                          "--output_dir", tmp_path / "run" / "clips_16k", "--jobs", "1"], capsys)
    assert code == 1
    target = tmp_path / "run" / "clips_16k" / "a.wav"
    assert error_line(err) == (
        f"auditoryhum resample: error: --output_dir {tmp_path / 'run' / 'clips_16k'} would overwrite the inputs "
        f"(e.g. {target}); choose a folder outside the clips' folders")
    assert target.read_bytes() == original


def test_output_dir_that_is_a_symlink_to_the_clips_folder_is_refused(tmp_path):
    original = hifi_clip(tmp_path / "clips" / "a.wav")
    (tmp_path / "out16").symlink_to(tmp_path / "clips")
    with pytest.raises(ParameterError) as info:
        ah.resample_clips(str(tmp_path / "clips" / "*.wav"), output_dir=str(tmp_path / "out16"), jobs=1)
    assert info.value.param == "output_dir"
    assert str(info.value) == (
        f"output_dir {tmp_path / 'out16'} would overwrite the inputs (e.g. {tmp_path / 'out16' / 'a.wav'}, which is "
        f"{tmp_path / 'clips' / 'a.wav'}); choose a folder outside the clips' folders")
    assert (tmp_path / "clips" / "a.wav").read_bytes() == original


def test_output_dir_given_with_dotdot_or_as_a_relative_alias_is_refused(tmp_path, monkeypatch):
    original = hifi_clip(tmp_path / "clips" / "a.wav")
    monkeypatch.chdir(tmp_path / "clips")
    for output_dir in ("../clips", ".", "./", str(tmp_path / "clips" / ".." / "clips")):
        with pytest.raises(ParameterError) as info:
            ah.resample_clips("*.wav", output_dir=output_dir, jobs=1)
        assert info.value.param == "output_dir" and "would overwrite the inputs" in str(info.value), output_dir
    assert (tmp_path / "clips" / "a.wav").read_bytes() == original


def test_a_destination_that_is_a_hard_link_or_symlink_of_a_clip_is_refused(tmp_path):
    original = hifi_clip(tmp_path / "clips" / "a.wav")
    (tmp_path / "hard").mkdir()
    os.link(tmp_path / "clips" / "a.wav", tmp_path / "hard" / "a.wav")
    with pytest.raises(ParameterError, match=r"would overwrite the inputs \(e\.g\. .*hard/a\.wav\)"):
        ah.resample_clips(str(tmp_path / "clips" / "*.wav"), output_dir=str(tmp_path / "hard"), jobs=1)
    # A clip that is itself a link into the output folder: its copy would be written over its target.
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "b.wav"
    original_b = hifi_clip(target)
    (tmp_path / "clips" / "b.wav").symlink_to(target)
    with pytest.raises(ParameterError, match=r"e\.g\. .*out/b\.wav\)"):
        ah.resample_clips(str(tmp_path / "clips" / "*.wav"), output_dir=str(tmp_path / "out"), jobs=1)
    assert (tmp_path / "clips" / "a.wav").read_bytes() == original and target.read_bytes() == original_b


def test_convert_file_never_writes_a_copy_over_its_own_source(tmp_path):
    """Defence below plan_destinations: a copy whose destination resolves to the source fails."""
    original = hifi_clip(tmp_path / "clips" / "a.wav")
    (tmp_path / "link.wav").symlink_to(tmp_path / "clips" / "a.wav")
    outcome = rs.convert_file(str(tmp_path / "clips" / "a.wav"), str(tmp_path / "link.wav"),
                              rs.Target(16000, 1, "s16"), in_place=False)
    assert outcome.status == "failed"
    assert outcome.message == (f"{tmp_path / 'clips' / 'a.wav'}: its copy {tmp_path / 'link.wav'} would be the clip "
                               f"itself (through a link); left untouched, choose an output folder outside the clips' folders")
    assert (tmp_path / "clips" / "a.wav").read_bytes() == original


def test_copies_beside_unrelated_links_still_convert(tmp_path):
    """The rule refuses only the same file: a link to another file in the output folder is replaced, not followed."""
    hifi_clip(tmp_path / "clips" / "a.wav")
    elsewhere = tmp_path / "elsewhere.wav"
    keep = hifi_clip(elsewhere)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.wav").symlink_to(elsewhere)
    result = ah.resample_clips(str(tmp_path / "clips" / "*.wav"), output_dir=str(tmp_path / "out"), jobs=1)
    assert result.counts == {"converted": 1, "unchanged": 0, "failed": 0}
    assert not (tmp_path / "out" / "a.wav").is_symlink()
    assert sf.info(str(tmp_path / "out" / "a.wav")).samplerate == 16000
    assert elsewhere.read_bytes() == keep


def _run_args(argv):
    from auditoryhum.cli import COMMANDS, build_parser

    return build_parser(next(c for c in COMMANDS if c.name == "run")).parse_args([str(a) for a in argv])


def test_run_resample_with_an_aliased_filedir_is_refused_in_runs_own_terms(tmp_path, capsys):
    """auditoryhum run --resample with --filedir 'alias/clips_16k/*.wav', alias -> the run folder."""
    original = hifi_clip(tmp_path / "run" / "clips_16k" / "a.wav")
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    labels = tmp_path / "labels.csv"
    labels.write_text("dog barking\n")
    code, out, err = run_cli("run", ["--filedir", tmp_path / "alias" / "clips_16k" / "*.wav", "--out_dir",
                                     tmp_path / "run", "--text_label_csv", labels, "--resample"], capsys)
    assert code == 1
    assert error_line(err) == (
        f"auditoryhum run: error: stage resample: the resampled copies in --out_dir {tmp_path / 'run'} would "
        f"overwrite the clips of --filedir (e.g. {tmp_path / 'run' / 'clips_16k' / 'a.wav'}); choose an --out_dir "
        f"outside the clips' folders or a --filedir that does not match the run's own clips_16k")
    assert (tmp_path / "run" / "clips_16k" / "a.wav").read_bytes() == original


def test_run_folder_inside_the_clips_folder_names_runs_flags_not_output_dir(tmp_path, capsys):
    """Item 15: a ** glob over a clips folder holding the run folder; the second run matches its own copies."""
    hifi_clip(tmp_path / "clips" / "a.wav")
    copy = tmp_path / "clips" / "run" / "clips_16k" / "a.wav"  # what the first run wrote
    write_tone(copy)
    labels = tmp_path / "labels.csv"
    labels.write_text("dog\ndog\n")
    code, out, err = run_cli("run", ["--filedir", str(tmp_path / "clips") + "/**/*.wav", "--out_dir",
                                     tmp_path / "clips" / "run", "--text_label_csv", labels, "--resample"], capsys)
    line = error_line(err)
    assert code == 1 and "--output_dir" not in line
    assert line.startswith("auditoryhum run: error: stage resample: the resampled copies in --out_dir ")
    assert f"(e.g. {copy})" in line


def test_a_stage_parameter_that_is_no_run_flag_is_named_as_itself():
    """Item 15: 'stage merge: csv3 ...', never '--csv3', which auditoryhum run does not have."""
    from auditoryhum.errors import MentionError, mention
    from auditoryhum.pipeline import _in_stage

    plain = _in_stage("resample", ParameterError("output_dir", "would overwrite the inputs"))
    assert type(plain) is UserError and str(plain) == "stage resample: output_dir would overwrite the inputs"
    mixed = _in_stage("label", MentionError(f"{mention('batch_size')} too large for {mention('csv3')}"))
    assert isinstance(mixed, MentionError) and mixed.params == ("batch_size",)
    assert mixed.with_flags(lambda p: "--" + p) == "stage label: --batch_size too large for csv3"


# --- item 2: a clip that changes between being read and being replaced --------------------------

def _append_after_read(monkeypatch, change):
    """Make ``change(path)`` happen right after the converter decoded the clip (a writer still at work)."""
    real_read = rs.read_audio

    def read_then_change(path, *args, **kwargs):
        result = real_read(path, *args, **kwargs)
        change(path)
        return result

    monkeypatch.setattr(rs, "read_audio", read_then_change)


def test_a_clip_that_grows_after_it_was_read_is_left_whole_and_reported(tmp_path, monkeypatch, capsys):
    clip = tmp_path / "clips" / "growing.wav"
    hifi_clip(clip)
    size = clip.stat().st_size
    tail = b"\x01\x02\x03" * 4000

    def append(path):
        with open(path, "ab") as f:
            f.write(tail)

    _append_after_read(monkeypatch, append)
    before = clip.read_bytes()  # noqa: F841 (the appended bytes come after the read)
    code, out, err = run_cli("resample", ["--filedir", tmp_path / "clips" / "*.wav", "--jobs", "1"], capsys)
    assert code == 1
    assert f"failed: {clip}: changed since it was read (its size went from {size} to {size + len(tail)} bytes); " \
           f"left untouched, so nothing written to it is lost; rerun once nothing else writes to it" in err
    assert "1 files in place: 0 converted, 0 already 16000 Hz / 1 ch / s16, 1 failed (left untouched)" in out
    assert clip.stat().st_size == size + len(tail) and clip.read_bytes().endswith(tail)
    assert sf.info(str(clip)).samplerate == 44100
    assert sorted(p.name for p in clip.parent.iterdir()) == ["growing.wav"]  # no temporary left


def test_a_clip_rewritten_in_place_with_its_size_and_mtime_kept_is_caught_by_its_digest(tmp_path, monkeypatch):
    clip = tmp_path / "clips" / "a.wav"
    hifi_clip(clip)
    st = clip.stat()

    def rewrite(path):
        data = bytearray(Path(path).read_bytes())
        data[-100:] = bytes(100)  # other samples, same length
        with open(path, "r+b") as f:
            f.write(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    _append_after_read(monkeypatch, rewrite)
    result = ah.resample_clips(str(clip.parent / "*.wav"), jobs=1)
    assert result.counts["failed"] == 1
    assert result.failures == [f"{clip}: changed since it was read (its bytes changed); left untouched, so nothing "
                               f"written to it is lost; rerun once nothing else writes to it"]
    assert clip.read_bytes()[-100:] == bytes(100) and clip.stat().st_size == st.st_size


def test_a_clip_swapped_for_another_file_after_it_was_read_is_not_replaced(tmp_path, monkeypatch):
    clip = tmp_path / "clips" / "a.wav"
    hifi_clip(clip)
    newer = tmp_path / "newer.wav"
    newer_bytes = hifi_clip(newer, seconds=0.8)

    _append_after_read(monkeypatch, lambda path: os.replace(newer, path))
    result = ah.resample_clips(str(clip.parent / "*.wav"), jobs=1)
    assert result.failures == [f"{clip}: changed since it was read (it was replaced by another file); left "
                               f"untouched, so nothing written to it is lost; rerun once nothing else writes to it"]
    assert clip.read_bytes() == newer_bytes


def test_a_growing_clip_fails_alone_and_a_rerun_converts_it(tmp_path, monkeypatch):
    """The other clips of the run convert; once the writer is done, a rerun converts the grown clip whole."""
    clips = tmp_path / "clips"
    hifi_clip(clips / "a.wav", seconds=0.5)
    hifi_clip(clips / "b.wav", seconds=0.5)
    grown = np.zeros((44100, 2))  # the writer's final clip: 1.0 s

    def finish_writing(path):
        if path.endswith("b.wav"):
            sf.write(path, grown, 44100, subtype="PCM_24")

    _append_after_read(monkeypatch, finish_writing)
    first = ah.resample_clips(str(clips / "*.wav"), jobs=1)
    assert [o.status for o in first.outcomes] == ["converted", "failed"]
    monkeypatch.undo()
    second = ah.resample_clips(str(clips / "*.wav"), jobs=1)
    assert [o.status for o in second.outcomes] == ["unchanged", "converted"]
    info = sf.info(str(clips / "b.wav"))
    assert (info.samplerate, info.frames) == (16000, 16000)  # the whole second, nothing lost
