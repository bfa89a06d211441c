"""Issue 23 (reliability round 3): the regressions of its adversarial round, one test per case.

Symbolic links, hard links, ``..`` and relative aliases that reach an input from an output; a clip
that changes between being read and being replaced; config values that must mean what they say;
malformed manifests; wrong Python types for path parameters; lock files beside outputs;
reproducible report bytes. Every test drives the real code (the command in-process where that
is enough, a subprocess only where the process boundary is the point) and checks files, values
and exact messages.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import auditoryhum as ah
import auditoryhum.resample as rs
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.stages.cvector import class_vectors

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

@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- items 5, 6, 12: the config file means what it says -----------------------------------------

def _options(argv, main_style=False):
    """RunOptions from ``auditoryhum run argv``, parsed by run's own parser or, with ``main_style``,
    as the ``auditoryhum`` console command parses it (a subparser)."""
    from auditoryhum.cli import COMMANDS, _configure, build_parser
    from auditoryhum.pipeline import options_from_args

    command = next(c for c in COMMANDS if c.name == "run")
    argv = [str(a) for a in argv]
    if main_style:
        parser = argparse.ArgumentParser(prog="auditoryhum")
        _configure(parser.add_subparsers(dest="command").add_parser("run"), command)
        args = parser.parse_args(["run", *argv])
    else:
        args = build_parser(command).parse_args(argv)
    return options_from_args(args)


@pytest.mark.parametrize("main_style", [False, True])
def test_a_flag_given_at_its_default_value_overrides_the_config(tmp_path, main_style):
    config = tmp_path / "run.toml"
    config.write_text('filedir = "clips/*.wav"\nout_dir = "run"\ntext_label_csv = "l.csv"\n'
                      'tsne = "opentsne"\nengine = "ray"\nactors = 4\ndevice = "cpu"\n')
    opts = _options(["--config", config, "--tsne", "sklearn", "--engine", "local", "--actors", "1"], main_style)
    assert (opts.tsne, opts.engine, opts.actors, opts.device) == ("sklearn", "local", 1, "cpu")
    # Not given: the file's values; given neither: RunOptions' defaults.
    opts = _options(["--config", config], main_style)
    assert (opts.tsne, opts.engine, opts.actors, opts.resample, opts.verbose) == ("opentsne", "ray", 4, False, False)
    assert (opts.filedir, opts.out_dir, opts.text_label_csv) == ("clips/*.wav", "run", "l.csv")
    opts = _options(["--filedir", "x/*.wav", "--out_dir", "o", "--text_label_csv", "t.csv"], main_style)
    assert (opts.tsne, opts.engine, opts.actors, opts.device, opts.resample) == ("sklearn", "local", 1, "auto", False)


@pytest.mark.slow
@pytest.mark.parametrize("line, message", [
    ('resample = "no"', 'resample must be true or false (a TOML boolean, without quotes), got the string "no"'),
    ('verbose = "false"', 'verbose must be true or false (a TOML boolean, without quotes), got the string "false"'),
    ("resample = 0", "resample must be true or false (a TOML boolean, without quotes), got the integer 0"),
    ("filedir = 5", "filedir must be a string (in quotes), got the integer 5"),
    ('out_dir = ["a", "b"]', 'out_dir must be a string (in quotes), got the array ["a", "b"]'),
    ("text_label_csv = 7", "text_label_csv must be a string (in quotes), got the integer 7"),
    ("n_clusters = 2.5", "n_clusters must be a whole number, got the float 2.5"),
    ("actors = true", "actors must be a whole number, got the boolean true"),
    ('penalty = "high"', 'penalty must be a number, got the string "high"'),
    ("[clap_model]\npath = 'm'", 'clap_model must be a string (in quotes), got the table {"path": "m"}'),
])
def test_a_config_value_of_the_wrong_type_is_one_line_naming_the_key(tmp_path, capsys, line, message):
    config = tmp_path / "run.toml"
    base = {"filedir": '"clips/*.wav"', "out_dir": '"run"', "text_label_csv": '"l.csv"'}
    key = line.split("=")[0].strip(" [").split("]")[0]
    base.pop(key, None)
    config.write_text("".join(f"{k} = {v}\n" for k, v in base.items()) + line + "\n")
    code, out, err = run_cli("run", ["--config", config], capsys)
    assert code == 1
    assert error_line(err) == f"auditoryhum run: error: config file {config}: {message}"


def test_config_accepts_toml_booleans_and_a_whole_number_for_a_float(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('filedir = "c/*.wav"\nout_dir = "r"\ntext_label_csv = "l.csv"\n'
                      "resample = true\nverbose = false\npenalty = 1\ngpus_per_actor = 0.5\n")
    opts = _options(["--config", config])
    assert (opts.resample, opts.verbose, opts.penalty, opts.gpus_per_actor) == (True, False, 1, 0.5)


# --- item 13: a malformed manifest record is recovered from like a truncated manifest -----------

def _steps(tmp_path, runs):
    """Two real pipeline steps writing small files (the manifest's machinery is what is tested)."""
    from auditoryhum.io.atomic import write_text
    from auditoryhum.pipeline import Step

    src = tmp_path / "in.txt"
    if not src.exists():
        src.write_text("input\n")
    a, b = tmp_path / "run" / "a.txt", tmp_path / "run" / "b.txt"

    def make(name, source, target):
        def run():
            runs.append(name)
            write_text(target, Path(source).read_text() + name + "\n")
        return Step(name, f"write {target.name}", inputs={"src": str(source)}, outputs={"out": str(target)},
                    options={"v": 1}, run=run)

    return [make("first", src, a), make("second", a, b)]


@pytest.mark.parametrize("damage", [
    lambda steps: steps.__setitem__("first", "a string, not a record"),
    lambda steps: steps["first"].__setitem__("inputs", ["not", "a", "mapping"]),
    lambda steps: steps["first"].__setitem__("outputs", 42),
    lambda steps: steps["first"].__setitem__("options", None),
    lambda steps: steps["first"]["inputs"].__setitem__("src", {"nested": 1}),
    lambda steps: steps.__setitem__("first", None),
])
def test_a_malformed_manifest_record_reruns_its_step_and_dry_run_says_so(tmp_path, capsys, damage):
    import json

    from auditoryhum.pipeline import execute, plan_lines

    runs = []
    out_dir = str(tmp_path / "run")
    execute(_steps(tmp_path, runs), out_dir, lambda line: None)
    assert runs == ["first", "second"]
    manifest = tmp_path / "run" / "manifest.json"
    document = json.loads(manifest.read_text())
    damage(document["steps"])
    manifest.write_text(json.dumps(document))
    capsys.readouterr()
    plan = plan_lines(_steps(tmp_path, runs), out_dir)
    assert [(line.name, line.state) for line in plan] == [("first", "runs: not run yet"), ("second", "may run: after first")]
    assert capsys.readouterr().err == (f"note: the manifest {manifest} holds a malformed record of step first; "
                                       f"that step runs again\n")
    runs.clear()
    execute(_steps(tmp_path, runs), out_dir, lambda line: None)
    # The step reran, wrote the same bytes, so the next one stays up to date; the record is whole again.
    assert runs == ["first"]
    assert isinstance(json.loads(manifest.read_text())["steps"]["first"]["inputs"], dict)
    runs.clear()
    execute(_steps(tmp_path, runs), out_dir, lambda line: None)
    assert runs == []


# --- items 7, 14: a wrong Python type for a path parameter is a ParameterError naming it ---------

def test_resample_clips_refuses_a_bytes_glob_instead_of_iterating_it(tmp_path, monkeypatch):
    hifi_clip(tmp_path / "a.wav")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParameterError) as info:
        ah.resample_clips(b"*.wav", jobs=1)
    assert info.value.param == "filedir"
    assert str(info.value) == ("filedir must be a glob of the clips (a str) or a list of clip paths, got bytes "
                               "b'*.wav'; decode it first (value.decode())")
    assert sf.info(str(tmp_path / "a.wav")).samplerate == 44100


@pytest.mark.parametrize("value, shown", [
    (5, "got int 5"), (None, "got None"), (np.array(["a.wav"]), "got ndarray array(['a.wav'], dtype='<U5'); "
                                                                 "pass a list of str (e.g. array.tolist())"),
    ({"a.wav"}, "got set {'a.wav'}"),
])
def test_clip_parameters_refuse_other_types(value, shown):
    for stage in (lambda v: ah.resample_clips(v), lambda v: ah.embed_mfcc(v, "out.npy"),
                  lambda v: ah.keep_first_labels(v, "l.csv", "s.csv")):
        with pytest.raises(ParameterError) as info:
            stage(value)
        assert str(info.value) == f"filedir must be a glob of the clips (a str) or a list of clip paths, {shown}"


def test_a_list_of_clips_with_a_wrong_item_names_the_item(tmp_path):
    hifi_clip(tmp_path / "a.wav")
    with pytest.raises(ParameterError) as info:
        ah.resample_clips([str(tmp_path / "a.wav"), 7], jobs=1)
    assert str(info.value) == "filedir must hold clip paths (str or os.PathLike), but item 2 is int 7"


BAD_PATHS = [
    (b"x.csv", "got bytes b'x.csv'; decode it first (value.decode())"),
    (5, "got int 5"),
    (None, "got None"),
    (["x.csv"], "got list ['x.csv']"),
    (np.array(["x.csv"]), "got ndarray array(['x.csv'], dtype='<U5')"),
]


@pytest.mark.parametrize("value, shown", BAD_PATHS)
@pytest.mark.parametrize("param, call", [
    ("csv1", lambda v: ah.merge_labels(v, "b.csv", "c.csv")),
    ("csv3", lambda v: ah.merge_labels("a.csv", "b.csv", v)),
    ("csv2", lambda v: ah.score_boost("a.csv", v, "c.csv")),
    ("html", lambda v: ah.write_report(v)),
    ("top_label_scores_csv", lambda v: ah.select_review(v, "l.csv", html="r.html")),
    ("text_label_csv", lambda v: ah.keep_first_labels("*.wav", v, "s.csv")),
    ("top_label_scores_csv", lambda v: ah.keep_first_labels("*.wav", "l.csv", v)),
    ("clap_npy", lambda v: ah.score_labels("*.wav", "clap", v, "l.csv", "s.csv")),
])
def test_path_parameters_refuse_other_types_naming_the_parameter(tmp_path, monkeypatch, param, call, value, shown):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParameterError) as info:
        call(value)
    assert info.value.param == param
    assert str(info.value) == f"{param} must be a path (a str or os.PathLike), {shown}"
    assert sorted(os.listdir(tmp_path)) == []  # refused before anything was written (no lock, no output)


@pytest.mark.parametrize("value, shown", [v for v in BAD_PATHS if v[0] is not None])
def test_optional_path_parameters_refuse_other_types_and_accept_none(tmp_path, value, shown):
    with pytest.raises(ParameterError) as info:
        ah.write_report(str(tmp_path / "r.html"), sweep_csv=value)
    assert str(info.value) == f"sweep_csv must be a path (a str or os.PathLike), {shown}"
    with pytest.raises(ParameterError) as info:
        ah.resample_clips(str(tmp_path / "*.wav"), output_dir=value)
    assert str(info.value) == f"output_dir must be a path (a str or os.PathLike), {shown}"
    ah.write_report(str(tmp_path / "r.html"), sweep_csv=None)
    assert (tmp_path / "r.html").exists()


@pytest.mark.parametrize("value, shown", BAD_PATHS)
def test_the_stage_guard_refuses_wrong_types_for_every_stage(tmp_path, value, shown):
    """Cluster, sweep, embedding, composite and class-vector stages check their path parameters
    at their top (validation.path_args), before anything derives a name from a path."""
    np.save(tmp_path / "x.npy", np.eye(4))
    write_tone(tmp_path / "a.wav")
    cases = [
        ("cluster_npy", lambda v: ah.cluster(v, str(tmp_path / "c.csv"), n_clusters=2)),
        ("label_csv", lambda v: ah.cluster(str(tmp_path / "x.npy"), v, n_clusters=2)),
        ("cluster_npy", lambda v: ah.sweep_clusters(v, str(tmp_path / "s.csv"))),
        ("mfcc_npy", lambda v: ah.embed_mfcc(str(tmp_path / "*.wav"), v)),
        ("label_csv", lambda v: ah.embed_sentences(v, "m", str(tmp_path / "st.npy"))),
        ("label_csv", lambda v: ah.composite_stats(v, str(tmp_path / "s.csv"))),
        ("sweep_csv", lambda v: ah.sweep_clusters(str(tmp_path / "x.npy"), v)),
        ("output_npy", lambda v: ah.embed_audio(str(tmp_path / "*.wav"), "m", v, kind="ast")),
        ("taxonomy_csv", lambda v: ah.composite_labels("l.csv", "s.csv", v, model="m")),
        ("cvector_npy", lambda v: class_vectors(str(tmp_path / "*.wav"), clap_model="m", scores_csv="s.csv",
                                                cvector_npy=v)),
    ]
    for param, call in cases:
        with pytest.raises(ParameterError) as info:
            call(value)
        assert str(info.value) == f"{param} must be a path (a str or os.PathLike), {shown}"


def test_class_vectors_refuse_a_bytes_glob():
    with pytest.raises(ParameterError) as info:
        class_vectors(b"*.wav", clap_model="m", scores_csv="s.csv", cvector_npy="c.npy")
    assert str(info.value) == ("filedir_or_paths must be a glob of the clips (a str) or a list of clip paths, got "
                               "bytes b'*.wav'; decode it first (value.decode())")


# --- item 16: no lock files left beside outputs ------------------------------------------------

def test_a_stage_leaves_no_lock_file_beside_its_output(tmp_path):
    (tmp_path / "labels.csv").write_text("dog, bark\ncar, horn\n")
    (tmp_path / "human.csv").write_text("\nsiren\n")
    ah.merge_labels(str(tmp_path / "labels.csv"), str(tmp_path / "human.csv"), str(tmp_path / "merged.csv"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["human.csv", "labels.csv", "merged.csv"]
    assert (tmp_path / "merged.csv").read_text() == "dog, bark\nsiren\n"


def test_a_lock_file_deleted_by_its_releasing_holder_is_not_trusted_by_the_next_run(tmp_path, monkeypatch):
    """The race of deleting lock files, made deterministic: run B opens the lock file, then run A
    releases (deleting the name), then B locks the deleted file. B must notice and lock the file
    now under the name; a lock on the deleted file would exclude nobody."""
    import contextlib

    from auditoryhum.io import guard

    out = tmp_path / "clusters.csv"
    lock = guard.lock_path(out)
    run_a = contextlib.ExitStack()
    run_a.enter_context(guard.locked_outputs([out], holder="run A"))
    real_open = os.open
    opened = []

    def open_then_let_a_release(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if path == lock and not opened:
            opened.append(os.fstat(fd).st_ino)
            run_a.close()  # A deletes the name and lets go, after B opened the file
        return fd

    monkeypatch.setattr(guard.os, "open", open_then_let_a_release)
    with guard.locked_outputs([out], holder="run B"):
        monkeypatch.undo()
        assert opened and os.path.exists(lock)
        assert json.loads(Path(lock).read_text())["holder"] == "run B"
        # A third run is refused: B's lock is on the file under the name.
        with pytest.raises(UserError, match="is being written by another run"):
            with guard.locked_outputs([out], holder="run C"):
                pass
    assert not os.path.exists(lock)


_CONTENDER = """
import os, sys
from auditoryhum.io.guard import locked_outputs
from auditoryhum.errors import UserError
out, marker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = 0
while held < rounds:
    try:
        with locked_outputs([out], holder="contender"):
            # Inside: nobody else may be. O_EXCL fails if another holder's marker exists.
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            os.unlink(marker)
            held += 1
    except UserError:
        pass  # held by another contender: try again
print(held)
"""


@pytest.mark.slow
def test_contending_processes_never_hold_one_lock_together_and_leave_no_lock_file(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    out, marker = tmp_path / "out.csv", tmp_path / "inside"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(out), str(marker), "150"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [r[1][-2000:] for r in results]
    assert [r[0].strip() for r in results] == ["150"] * 4
    assert sorted(os.listdir(tmp_path)) == []  # no marker, no lock file


# --- item 8: report.html is the same bytes for the same inputs ----------------------------------

def _report_inputs(tmp_path):
    (tmp_path / "scores.csv").write_text("1, a.wav, dog bark, 0.5\n2, b.wav, car horn, 0.25\n")
    (tmp_path / "ids.csv").write_text("0\n1\n")
    return dict(top_label_scores_csv=str(tmp_path / "scores.csv"), cluster_csv=str(tmp_path / "ids.csv"))


def test_the_report_holds_no_time_and_a_second_write_gives_the_same_bytes(tmp_path):
    import time

    inputs = _report_inputs(tmp_path)
    ah.write_report(str(tmp_path / "a.html"), **inputs)
    time.sleep(0.01)  # the old page's "Made <time>" had milliseconds
    ah.write_report(str(tmp_path / "b.html"), **inputs)
    first, second = (tmp_path / "a.html").read_bytes(), (tmp_path / "b.html").read_bytes()
    assert first == second
    from auditoryhum import __version__

    text = first.decode("utf-8")
    assert f"Made by AuditoryHuM {__version__}" in text
    assert "The time and the versions of Python and the libraries are not on this page" in text


# Given through the environment: the page names the command line that made it ("Made with:"),
# which must be the same in both processes.
_REPORT_IN_A_PROCESS = """
import os
if os.environ["T_TORCH"] == "1":
    import torch  # what a model stage earlier in the same process imports
import auditoryhum as ah
ah.write_report(os.environ["T_OUT"], top_label_scores_csv="scores.csv", cluster_csv="ids.csv")
"""


@pytest.mark.slow
def test_the_report_is_the_same_bytes_whether_or_not_a_model_library_was_imported_first(tmp_path):
    """A resumed run writes the report in a process that ran no model stage: same page."""
    import subprocess
    import sys

    from conftest import REPO

    _report_inputs(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    for name, torch_first in (("fresh.html", "0"), ("after_model.html", "1")):
        proc = subprocess.run([sys.executable, "-c", _REPORT_IN_A_PROCESS], env=dict(env, T_OUT=name, T_TORCH=torch_first),
                              cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "fresh.html").read_bytes() == (tmp_path / "after_model.html").read_bytes()
    assert b"torch" not in (tmp_path / "after_model.html").read_bytes()


def test_the_run_manifest_records_when_each_stage_finished_and_the_library_versions(tmp_path):
    import platform

    from auditoryhum.pipeline import execute

    runs = []
    execute(_steps(tmp_path, runs), str(tmp_path / "run"), lambda line: None)
    record = json.loads((tmp_path / "run" / "manifest.json").read_text())["steps"]["first"]
    assert record["versions"]["python"] == platform.python_version()
    assert record["versions"]["auditoryhum"] == ah.__version__
    assert len(record["finished"]) == len("2026-03-01T12:00:00.123Z") and record["finished"].endswith("Z")


# --- items 9, 10: the Ray engine fails in seconds, in one line -----------------------------------

def _ray_or_skip():
    pytest.importorskip("ray", reason="the Ray engine is optional (auditoryhum[ray])")


@pytest.mark.slow
def test_a_ray_address_where_an_http_server_listens_fails_in_seconds(tmp_path):
    import http.server
    import threading
    import time

    _ray_or_skip()
    from auditoryhum.engine.ray_executor import RayExecutor

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            started = time.monotonic()
            with pytest.raises(UserError) as info:
                RayExecutor(ray_address=address).connect()
            assert time.monotonic() - started < 10
            assert str(info.value) == (
                f"cannot reach the Ray cluster at {address!r}: something listens there but does not answer as Ray "
                f"does (no gRPC); check --ray_address (the head node's GCS port, 6379 by default, 'auto' on a cluster "
                f"node, or ray://host:10001)")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_ray_address_where_a_listener_never_answers_fails_after_the_probe_timeout():
    import socket
    import time

    _ray_or_skip()
    from auditoryhum.engine import ray_executor
    from auditoryhum.engine.ray_executor import RayExecutor

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections (the kernel does) and never says a word
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(UserError, match="something listens there but does not answer as Ray does"):
            RayExecutor(ray_address=address).connect()
        assert time.monotonic() - started < ray_executor.PROBE_TIMEOUT_S + 5
    finally:
        silent.close()


@pytest.mark.slow
def test_more_local_actors_than_cores_is_refused_before_ray_starts(capsys):
    _ray_or_skip()
    import ray

    from auditoryhum.engine.ray_executor import RayExecutor
    from auditoryhum.errors import MentionError

    cores = len(os.sched_getaffinity(0))
    with pytest.raises(MentionError) as info:
        RayExecutor(actors=100000).connect()
    assert str(info.value) == (f"actors 100000 x 1 CPU need 100000 CPUs but this machine has {cores}; give at most "
                               f"{cores} actors, a smaller cpus_per_actor (e.g. {cores / 100000:.2g}) or a cluster "
                               f"(ray_address)")
    assert info.value.with_flags(lambda p: "--" + p).startswith("--actors 100000 x 1 CPU need")
    assert not ray.is_initialized()
    with pytest.raises(MentionError, match=rf"actors {cores + 1} x 1 CPU need {cores + 1} CPUs"):
        RayExecutor(actors=cores + 1).connect()
    with pytest.raises(MentionError, match=rf"actors {4 * cores} x 0.5 CPU need {2 * cores} CPUs"):
        RayExecutor(actors=4 * cores, cpus_per_actor=0.5).connect()
    assert not ray.is_initialized()
    # What fits: the cores, one more for Ray Data's reading and collecting.
    assert RayExecutor(actors=cores)._local_cpus() == cores + 1
    assert RayExecutor(actors=4 * cores, cpus_per_actor=0.25)._local_cpus() == cores + 1


def test_too_many_actors_names_the_flags_of_the_command_and_of_auditoryhum_run():
    _ray_or_skip()
    from auditoryhum.cli import COMMANDS, build_parser, parameter_message
    from auditoryhum.engine.ray_executor import RayExecutor
    from auditoryhum.errors import MentionError
    from auditoryhum.pipeline import _in_stage

    with pytest.raises(MentionError) as info:
        RayExecutor(actors=100000).connect()
    for name in ("features-clap", "run"):
        parser = build_parser(next(c for c in COMMANDS if c.name == name))
        shown = parameter_message(_in_stage("clap", info.value) if name == "run" else info.value, parser)
        assert shown.startswith(("stage clap: " if name == "run" else "") + "--actors 100000 x 1 CPU need 100000 CPUs")
        assert "a smaller --cpus_per_actor" in shown and "a cluster (--ray_address)" in shown


# --- item 11: a Gemini host that does not resolve or refuses is a configuration error -------------

GEMINI_KEY = "AIzaSy-TEST-secret-0123456789abcdef"


def _gemini_labeller(base_url, max_retries=3):
    pytest.importorskip("google.genai")
    from auditoryhum.models import gemini

    return gemini.GeminiLabeller(gemini.GeminiSettings(model="gemini-2.5-flash", api_key=GEMINI_KEY, base_url=base_url,
                                                       max_retries=max_retries, retry_base_delay_s=0.001))


def _refused():
    """What the SDK raises when nothing listens: httpx's ConnectError raised from ConnectionRefusedError."""
    import httpx2

    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as cause:
        raise httpx2.ConnectError("[Errno 111] Connection refused") from cause


def test_a_refused_first_request_stops_at_once_but_a_refusal_after_contact_is_retried():
    from auditoryhum.models import gemini

    labeller = _gemini_labeller("http://127.0.0.1:1")
    tries = []

    def refused():
        tries.append(1)
        _refused()

    with pytest.raises(gemini.CallFailed) as info:
        labeller.call("a.wav", refused)
    assert info.value.kind == gemini.RUN and len(tries) == 1
    assert info.value.message == (
        "a.wav: cannot reach http://127.0.0.1:1: the connection was refused (connection error (ConnectError: "
        "[Errno 111] Connection refused)); check --base_url (or GOOGLE_GEMINI_BASE_URL) and the network")
    # Once the service answered, a refused connection is a blip: backed off and retried as before.
    assert labeller.call("b.wav", lambda: "dog bark") == "dog bark"
    tries.clear()
    with pytest.raises(gemini.CallFailed) as info:
        labeller.call("c.wav", refused)
    assert info.value.kind == gemini.CLIP and len(tries) == 4  # max_retries 3: four tries
    assert info.value.message.startswith("c.wav failed after 4 tries: connection error")


@pytest.mark.slow
@pytest.mark.parametrize("base_url, why", [
    ("http://127.0.0.1:1", "the connection was refused"),
    ("http://no-such-host.invalid:8080", "the host name does not resolve"),
])
def test_label_gemini_at_an_unreachable_host_stops_in_seconds_with_one_line(tmp_path, base_url, why):
    import time

    pytest.importorskip("google.genai")
    from conftest import run_script

    for k in range(3):
        write_tone(tmp_path / "clips" / f"c{k}.wav")
    out = tmp_path / "labels.csv"
    started = time.monotonic()
    proc = run_script("label_google_gen_ai_cloud.py", "--filedir", tmp_path / "clips" / "*.wav", "--genai_id",
                      "gemini-2.5-flash", "--text_label_csv", out, "--base_url", base_url, "--max_retries", "6",
                      env={"GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_API_KEY": "", "GOOGLE_GEMINI_BASE_URL": ""})
    assert time.monotonic() - started < 30  # before: 7 tries per clip with back-off, minutes
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"label_google_gen_ai_cloud.py: error: stopped: generate_content: cannot reach "
                                f"{base_url}: {why} (connection error (ConnectError: ")
    assert errors[0].endswith("); check --base_url (or GOOGLE_GEMINI_BASE_URL) and the network")
    assert not out.exists() and GEMINI_KEY not in proc.stderr


@pytest.mark.slow
def test_a_run_folder_that_is_a_link_to_the_label_files_folder_is_refused_naming_out_dir(tmp_path, capsys):
    """The run's copy of the labels would be the user's label file itself (out_dir -> its folder)."""
    write_tone(tmp_path / "clips" / "a.wav")
    write_tone(tmp_path / "clips" / "b.wav", freq=300.0)
    labels = tmp_path / "data" / "text_labels.csv"
    labels.parent.mkdir()
    labels.write_text("dog\ncat\n")
    (tmp_path / "runalias").symlink_to(tmp_path / "data")
    code, out, err = run_cli("run", ["--filedir", tmp_path / "clips" / "*.wav", "--out_dir", tmp_path / "runalias",
                                     "--text_label_csv", labels], capsys)
    assert code == 1
    assert error_line(err) == (f"auditoryhum run: error: stage labels: --out_dir is the same file as input "
                               f"--text_label_csv ({labels}); writing it would destroy the input; choose another "
                               f"path for --out_dir")
    assert labels.read_text() == "dog\ncat\n"
    assert sorted(p.name for p in labels.parent.iterdir()) == ["text_labels.csv"]  # no lock, no manifest left
