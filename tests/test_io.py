"""Unit tests of the shared I/O helpers: globbing, audio loading, artefact files, atomic writes."""

import math
import os

import numpy as np
import pytest
import soundfile as sf

from auditoryhum.errors import UserError
from auditoryhum.io import artefacts
from auditoryhum.io.atomic import atomic_write, remove_stale_partials, write_text
from auditoryhum.io.audio import AudioDecodeError, expand_glob, load_audio, read_audio
from conftest import write_tone


# --- glob -------------------------------------------------------------------------------


def test_expand_glob_sorts_lexicographically_and_skips_folders(tmp_path):
    for name in ["b.wav", "a10.wav", "a2.wav", "C.wav"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.wav").mkdir()
    paths = expand_glob(str(tmp_path / "*.wav"))
    assert [os.path.basename(p) for p in paths] == ["C.wav", "a10.wav", "a2.wav", "b.wav"]


def test_expand_glob_recursive(tmp_path):
    write_tone(tmp_path / "x" / "1.wav")
    write_tone(tmp_path / "y" / "z" / "2.wav")
    paths = expand_glob(str(tmp_path / "**" / "*.wav"))
    assert [os.path.relpath(p, tmp_path) for p in paths] == [os.path.join("x", "1.wav"), os.path.join("y", "z", "2.wav")]


def test_expand_glob_empty_is_an_error(tmp_path):
    from auditoryhum.errors import ParameterError

    with pytest.raises(ParameterError, match="^no files match filedir .*quote the pattern") as info:
        expand_glob(str(tmp_path / "*.wav"))
    assert info.value.param == "filedir"
    # The command line shows the flag in its place (cli.parameter_message).
    assert info.value.with_flags(lambda p: "--" + p).startswith(f"no files match --filedir '{tmp_path}")


def test_expand_glob_folder_suggests_pattern(tmp_path):
    from auditoryhum.errors import ParameterError

    with pytest.raises(ParameterError, match=r"is a folder; give a pattern") as info:
        expand_glob(str(tmp_path), "clips")
    assert info.value.params == ("clips", "clips")
    assert str(info.value) == (f"clips {str(tmp_path)!r} is a folder; give a pattern of files, "
                               f"e.g. clips '{os.path.join(str(tmp_path), '*.wav')}'")


# --- audio ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,subtype,channels,sr",
    [
        ("WAV", "PCM_U8", 1, 8000),
        ("WAV", "PCM_16", 2, 44100),
        ("WAV", "PCM_24", 1, 48000),
        ("WAV", "PCM_32", 6, 22050),
        ("WAV", "FLOAT", 2, 16000),
        ("FLAC", "PCM_16", 2, 32000),
        ("OGG", "VORBIS", 1, 44100),
    ],
)
def test_load_audio_matches_librosa(tmp_path, fmt, subtype, channels, sr):
    import librosa

    ext = {"WAV": "wav", "FLAC": "flac", "OGG": "ogg"}[fmt]
    path = str(tmp_path / f"clip.{ext}")
    write_tone(path, sr=sr, seconds=0.5, channels=channels, subtype=subtype, fmt=fmt)
    ours, rate = load_audio(path, 16000)
    reference, ref_rate = librosa.load(path, sr=16000, mono=True)
    assert rate == ref_rate == 16000
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, reference)


def test_load_audio_native_rate(tmp_path):
    write_tone(tmp_path / "a.wav", sr=22050, seconds=0.25)
    y, sr = load_audio(str(tmp_path / "a.wav"))
    assert sr == 22050 and y.shape == (int(22050 * 0.25),)


def test_corrupt_and_empty_audio_are_named(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioDecodeError, match=r"corrupt\.wav: cannot decode audio"):
        read_audio(str(corrupt))
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    with pytest.raises(AudioDecodeError, match=r"empty\.wav: holds no audio samples"):
        load_audio(str(empty), 16000)


# --- text and artefact files -------------------------------------------------------------


def test_read_text_lines_keeps_inner_blanks_and_handles_crlf(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes(b"one, two\r\n\r\nthree\n")
    assert artefacts.read_text_lines(str(p)) == ["one, two", "", "three"]
    p.write_bytes(b"no final newline")
    assert artefacts.read_text_lines(str(p)) == ["no final newline"]
    p.write_bytes(b"")
    assert artefacts.read_text_lines(str(p)) == []


def test_read_text_lines_rejects_non_utf8_with_line_number(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("ok\ncaf\xe9 noise\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.csv is not UTF-8 text \(byte 0xe9 on line 2\)"):
        artefacts.read_label_file(str(p))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"label file not found: .*nope\.csv"):
        artefacts.read_label_file(str(tmp_path / "nope.csv"))


def test_check_aligned():
    artefacts.check_aligned("a", 3, "b", 3)
    artefacts.check_aligned("a", 3, "b", 2, b_may_be_shorter=True)
    with pytest.raises(UserError, match=r"b has 4 lines but a has 3; they must be line-aligned \(at most"):
        artefacts.check_aligned("a", 3, "b", 4, b_may_be_shorter=True)
    with pytest.raises(UserError, match=r"b has 2 lines but a has 3; .*\(exactly"):
        artefacts.check_aligned("a", 3, "b", 2)


def test_scores_round_trip_and_published_byte_format(tmp_path):
    rows = [
        artefacts.ScoreRow(1, "clips/a.wav", "birds chirping", 0.3125),
        artefacts.ScoreRow(2, "clips/b, take 2.wav", 'say "hi"', float("nan")),
        artefacts.ScoreRow(3, "clips/c.wav", "", float("nan")),
    ]
    path = tmp_path / "scores.csv"
    artefacts.write_scores(str(path), rows)
    text = path.read_text()
    assert text.splitlines()[0] == "1, clips/a.wav, birds chirping, 0.3125"
    assert text.splitlines()[1] == '2, "clips/b, take 2.wav", "say ""hi""", nan'
    back = artefacts.read_scores(str(path))
    assert [(r.index, r.path, r.label) for r in back] == [(r.index, r.path, r.label) for r in rows]
    assert back[0].score == 0.3125 and math.isnan(back[1].score) and math.isnan(back[2].score)


def test_read_scores_reference_rows_with_comma_in_path(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("1, data/x, y.wav, car traffic, 0.25\n2, data/z.wav, wind noise, -0.1\n")
    rows = artefacts.read_scores(str(path))
    assert rows[0] == artefacts.ScoreRow(1, "data/x, y.wav", "car traffic", 0.25)
    assert rows[1] == artefacts.ScoreRow(2, "data/z.wav", "wind noise", -0.1)


@pytest.mark.parametrize(
    "content,message",
    [
        ("1, a.wav, dog\n", "line 1 has 3 fields"),
        ("x, a.wav, dog, 0.5\n", "index 'x' is not an integer"),
        ("1, a.wav, dog, high\n", "score 'high' is not a number"),
        ("1, a.wav, dog, 0.5\n\n", "line 2 is blank"),
    ],
)
def test_read_scores_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        artefacts.read_scores(str(path))


def test_cluster_ids_round_trip_and_errors(tmp_path):
    path = tmp_path / "ids.csv"
    artefacts.write_cluster_ids(str(path), np.array([0, 2, -1, 1]))
    assert path.read_text() == "0\n2\n-1\n1\n"
    np.testing.assert_array_equal(artefacts.read_cluster_ids(str(path)), [0, 2, -1, 1])
    path.write_text("0\n1.5\n")
    with pytest.raises(UserError, match=r"line 2: '1.5' is not an integer cluster id"):
        artefacts.read_cluster_ids(str(path))


def test_load_matrix_checks(tmp_path):
    good = np.arange(6, dtype=np.float32).reshape(3, 2)
    artefacts.save_matrix(str(tmp_path / "g.npy"), good)
    np.testing.assert_array_equal(artefacts.load_matrix(str(tmp_path / "g.npy")), good)
    bad = good.copy()
    bad[1, 0] = np.nan
    artefacts.save_matrix(str(tmp_path / "n.npy"), bad)
    with pytest.raises(UserError, match=r"1 of 3 rows hold NaN or inf \(rows 2, 1-based\)"):
        artefacts.load_matrix(str(tmp_path / "n.npy"))
    assert np.isnan(artefacts.load_matrix(str(tmp_path / "n.npy"), require_finite=False)[1, 0])
    np.save(tmp_path / "v.npy", np.zeros(4))
    with pytest.raises(UserError, match=r"must hold a 2-D array .* shape \(4,\)"):
        artefacts.load_matrix(str(tmp_path / "v.npy"))
    (tmp_path / "t.npy").write_text("not numpy")
    with pytest.raises(UserError, match=r"t\.npy is not a readable \.npy array"):
        artefacts.load_matrix(str(tmp_path / "t.npy"))


# --- atomic writes -------------------------------------------------------------------------


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    write_text(str(target), "old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(str(target)) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]  # no temporary left behind
    write_text(str(target), "new\n")
    assert target.read_text() == "new\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # like a plain open(), not mkstemp's 0600


def test_atomic_write_verify_vetoes(tmp_path):
    target = tmp_path / "x.bin"

    def refuse(tmp):
        assert os.path.exists(tmp)
        raise ValueError("bad file")

    with pytest.raises(ValueError):
        with atomic_write(str(target), "wb", verify=refuse) as f:
            f.write(b"data")
    assert not target.exists() and os.listdir(tmp_path) == []


def test_atomic_write_creates_parent_folder(tmp_path):
    write_text(str(tmp_path / "a" / "b" / "c.txt"), "hi")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "hi"


def test_remove_stale_partials(tmp_path):
    (tmp_path / ".clip.wav.abc123.partial").write_bytes(b"x")
    (tmp_path / ".other.wav.abc.partial").write_bytes(b"x")
    (tmp_path / ".clip.wav.wav.xyz.partial").write_bytes(b"x")  # another file's temporary
    assert remove_stale_partials(str(tmp_path / "clip.wav")) == 1
    assert sorted(os.listdir(tmp_path)) == [".clip.wav.wav.xyz.partial", ".other.wav.abc.partial"]


# --- issue 13: hostile listings and truncated files -------------------------------------------


def test_expand_glob_refuses_a_line_break_in_a_file_name(tmp_path):
    (tmp_path / "ok.wav").write_bytes(b"x")
    (tmp_path / "bad\nname.wav").write_bytes(b"x")
    with pytest.raises(UserError) as info:
        expand_glob(str(tmp_path / "*.wav"))
    msg = str(info.value)
    assert "\n" not in msg and "'bad\\nname.wav'" in msg.replace(str(tmp_path) + os.sep, "") and "rename" in msg


def test_expand_glob_notes_skipped_folders_and_dangling_links(tmp_path, capsys):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "gone.wav").symlink_to(tmp_path / "missing.wav")
    assert expand_glob(str(tmp_path / "*.wav")) == [str(tmp_path / "a.wav")]
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("note:")]
    assert len(lines) == 1
    assert "1 folder (e.g. " in lines[0] and "dir.wav" in lines[0]
    assert "1 broken symbolic link (e.g. " in lines[0] and "gone.wav" in lines[0]


def test_expand_glob_lists_each_clip_once_through_a_symlink_loop(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "1.wav").write_bytes(b"x")
    (tmp_path / "x" / "loop").symlink_to(tmp_path / "x")
    (tmp_path / "alias.wav").symlink_to(tmp_path / "x" / "1.wav")
    paths = expand_glob(str(tmp_path / "**" / "*.wav"))
    assert paths == [str(tmp_path / "alias.wav")]  # first in sort order; the others are the same file
    assert "repeated paths of files already listed through symbolic links" in capsys.readouterr().err


def test_a_wav_cut_short_of_its_header_is_read_with_a_warning(tmp_path, capsys):
    path = tmp_path / "cut.wav"
    write_tone(path, seconds=0.5)
    whole = path.read_bytes()
    path.write_bytes(whole[:-4000])
    data, sr = read_audio(str(path))
    assert data.shape == ((len(whole) - 44 - 4000) // 2, 1)
    err = capsys.readouterr().err
    assert f"warning: {path}: truncated WAV, its data chunk holds {len(whole) - 44 - 4000} of the " \
           f"{len(whole) - 44} bytes" in err
    path.write_bytes(whole)
    read_audio(str(path))
    assert capsys.readouterr().err == ""


def test_atomic_write_keeps_requested_permissions_and_names_the_target_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    with atomic_write(target, "wb", permissions=0o444) as f:
        f.write(b"abc")
    assert target.stat().st_mode & 0o777 == 0o444 and target.read_bytes() == b"abc"

    import errno as errno_mod

    def full(*args, **kwargs):
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError) as info:
        with atomic_write(target, "wb") as f:
            f.write(b"new")
    assert str(info.value) == f"cannot write {target}: No space left on device; it was left as it was"
    assert target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_atomic_write_handle_is_named_after_the_target_not_its_descriptor(tmp_path):
    for mode in ("w", "wb"):
        with atomic_write(tmp_path / "out.bin", mode) as f:
            assert repr(f).startswith("<_io.") and f"name='{tmp_path / 'out.bin'}'" in repr(f)
            assert "name=3" not in repr(f) and ".partial" not in repr(f)


# --- feature matrices ---------------------------------------------------------------------


def test_load_matrix_reads_rows_and_names_each_bad_file(tmp_path):
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "ok.npy", rows)
    got = artefacts.load_matrix(str(tmp_path / "ok.npy"))
    assert got.dtype == np.float32 and np.array_equal(got, rows)

    def error(path):
        with pytest.raises(UserError) as info:
            artefacts.load_matrix(str(path))
        return str(info.value)

    assert error(tmp_path / "missing.npy") == f"NPY file not found: {tmp_path / 'missing.npy'}"
    (tmp_path / "folder.npy").mkdir()
    assert error(tmp_path / "folder.npy") == f"NPY file {tmp_path / 'folder.npy'} is a folder, not a file"
    whole = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(whole[:-5])  # a write that stopped short
    assert error(tmp_path / "cut.npy").startswith(f"{tmp_path / 'cut.npy'} is not a readable .npy array (")
    (tmp_path / "text.npy").write_text("1,2,3\n")
    assert error(tmp_path / "text.npy").startswith(f"{tmp_path / 'text.npy'} is not a readable .npy array (")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    assert error(tmp_path / "flat.npy") == f"{tmp_path / 'flat.npy'} must hold a 2-D array (one row per clip); it has shape (5,)"
    with open(tmp_path / "pair.npy", "wb") as f:
        np.savez(f, a=rows, b=rows)
    assert "is an .npz archive (arrays a, b), not an .npy array" in error(tmp_path / "pair.npy")
