"""Audio discovery and loading: the sorted glob, and decode + mono + resample on load.

Row *i* of every per-clip artefact belongs to path *i* of :func:`expand_glob`, so the sort
order defined here is the line alignment of the whole pipeline.
"""

import glob
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from auditoryhum.errors import UserError
from auditoryhum.errors import MentionError, mention


class AudioDecodeError(UserError):
    """One clip cannot be decoded or holds no samples. Long runs record it and carry on."""


def expand_glob(pattern: str, param: str = "filedir") -> List[str]:
    """Return the files matching ``pattern`` sorted lexicographically (``**`` recurses).

    Parameters
    ----------
    pattern : str
        A glob of files (quoted on the command line, so the shell does not expand it).
    param : str, default "filedir"
        The parameter that gave it, named in errors (the command line shows its flag).

    Returns
    -------
    list of str
        The matching files, each file once: a file reached again through a symbolic link (a
        linked folder, or a folder loop under ``**``) keeps only its first path in sort order.
        Folders, dangling symbolic links and other non-files are skipped; one note says what
        was skipped.

    Raises
    ------
    ParameterError
        Naming ``param``: an empty match (an empty output would silently misalign every later artefact), a
        folder given as the pattern, or a file name holding a line break (every line-aligned
        artefact would break on it), naming that file.
    """
    from auditoryhum.console import note

    if os.path.isdir(pattern):
        raise MentionError(
            f"{mention(param)} {pattern!r} is a folder; give a pattern of files, "
            f"e.g. {mention(param)} '{os.path.join(pattern, '*.wav')}'"
        )
    paths: List[str] = []
    seen: Dict[str, str] = {}
    folders, dangling, special, duplicates = [], [], [], []
    for path in sorted(glob.glob(pattern, recursive=True)):
        if os.path.isdir(path):
            folders.append(path)
            continue
        if not os.path.exists(path):
            dangling.append(path)
            continue
        if not os.path.isfile(path):
            special.append(path)
            continue
        real = os.path.realpath(path)
        if real in seen:
            duplicates.append((path, seen[real]))
            continue
        if "\n" in path or "\r" in path:
            raise MentionError(
                f"{mention(param)}: the file name {path!r} holds a line break, which the line-aligned outputs "
                f"cannot hold; rename the file"
            )
        seen[real] = path
        paths.append(path)
    skipped = []
    if folders:
        skipped.append(f"{len(folders)} folder{'s' * (len(folders) > 1)} (e.g. {folders[0]})")
    if dangling:
        skipped.append(f"{len(dangling)} broken symbolic link{'s' * (len(dangling) > 1)} (e.g. {dangling[0]})")
    if special:
        skipped.append(f"{len(special)} non-regular file{'s' * (len(special) > 1)} (e.g. {special[0]})")
    if duplicates:
        skipped.append(f"{len(duplicates)} repeated path{'s' * (len(duplicates) > 1)} of files already listed "
                       f"through symbolic links (e.g. {duplicates[0][0]} = {duplicates[0][1]})")
    if skipped:
        note(f"{pattern}: skipped " + "; ".join(skipped))
    if not paths:
        raise MentionError(
            f"no files match {mention(param)} {pattern!r}; check the path, and quote the pattern so the shell passes it unexpanded"
        )
    return paths


def check_readable(path: str) -> None:
    """Raise :class:`AudioDecodeError` with the real cause when ``path`` cannot be opened.

    libsndfile reports a file it may not open as "System error."; opening it here first gives
    the operating system's reason ("Permission denied", "Is a directory").
    """
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise AudioDecodeError(f"{path}: file not found") from None
    except OSError as exc:
        raise AudioDecodeError(f"{path}: cannot read ({exc.strerror or exc})") from None


def wav_data_shortfall(path: str) -> Optional[Tuple[int, int]]:
    """``(bytes present, bytes declared)`` of a RIFF/WAVE file's data chunk when it is cut short, else ``None``.

    libsndfile reads what there is of a truncated WAV without a word; this looks at the chunk
    headers (a few reads) so the user hears of it. Not a WAV, a streamed WAV whose size field was
    never filled in (``0`` or ``0xFFFFFFFF``), or a complete one: ``None``.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            pos = 12
            for _ in range(64):  # a WAV has a handful of chunks before its data
                f.seek(pos)
                header = f.read(8)
                if len(header) < 8:
                    return None
                ident, length = header[:4], struct.unpack("<I", header[4:])[0]
                if ident == b"data":
                    present = size - (pos + 8)
                    if length in (0, 0xFFFFFFFF) or present >= length:
                        return None
                    return max(present, 0), length
                pos += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def read_audio(path: str, dtype: str = "float32") -> Tuple[np.ndarray, int]:
    """Decode ``path`` with libsndfile: returns ``(samples, rate)``, samples shaped (frames, channels).

    Raises :class:`AudioDecodeError` (naming the file) for unreadable, empty or non-finite audio.
    """
    import soundfile as sf

    check_readable(path)
    try:
        data, rate = sf.read(path, dtype=dtype, always_2d=True)
    except FileNotFoundError:
        raise AudioDecodeError(f"{path}: file not found") from None
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
        reason = str(exc).split("\n")[0]
        raise AudioDecodeError(f"{path}: cannot decode audio ({reason})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: holds no audio samples (zero-length file)")
    short = wav_data_shortfall(path)
    if short is not None:
        from auditoryhum.console import warn

        warn(f"{path}: truncated WAV, its data chunk holds {short[0]} of the {short[1]} bytes its header "
             f"declares; only the {data.shape[0]} frames present are used")
    if not np.all(np.isfinite(data)):
        raise AudioDecodeError(f"{path}: holds NaN or infinite samples")
    return data, int(rate)


def load_audio(path: str, sr: Optional[int] = None) -> Tuple[np.ndarray, int]:
    """Load ``path`` as mono float32, resampled to ``sr`` (native rate when ``None``).

    Numerically identical to ``librosa.load(path, sr=sr, mono=True)`` for the formats
    libsndfile reads (WAV, FLAC, Ogg/Vorbis, MP3): channels are averaged and the signal is
    resampled with soxr at librosa's default quality (``soxr_hq``).
    """
    data, native_sr = read_audio(path)
    y = np.mean(data.T, axis=0)  # librosa.to_mono: mean over the channel axis
    if sr is not None and sr != native_sr:
        import librosa

        y = librosa.resample(y, orig_sr=native_sr, target_sr=sr, res_type="soxr_hq")
        native_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), native_sr
