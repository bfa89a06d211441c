"""Audio discovery and loading: the sorted glob, and decode + mono + resample on load.

Row *i* of every per-clip artefact belongs to path *i* of :func:`expand_glob`, so the sort
order defined here is the line alignment of the whole pipeline.
"""

import glob
import os
from typing import List, Optional, Tuple

import numpy as np

from auditoryhum.errors import UserError


class AudioDecodeError(UserError):
    """One clip cannot be decoded or holds no samples. Long runs record it and carry on."""


def expand_glob(pattern: str, flag: str = "--filedir") -> List[str]:
    """Return the files matching ``pattern`` sorted lexicographically (``**`` recurses).

    Folders are skipped. An empty match is an error: an empty output would silently
    misalign every later artefact.
    """
    if os.path.isdir(pattern):
        raise UserError(
            f"{flag} {pattern!r} is a folder; give a pattern of files, e.g. {flag} '{os.path.join(pattern, '*.wav')}'"
        )
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
        raise UserError(
            f"no files match {flag} {pattern!r}; check the path, and quote the pattern so the shell passes it unexpanded"
        )
    return paths


def read_audio(path: str, dtype: str = "float32") -> Tuple[np.ndarray, int]:
    """Decode ``path`` with libsndfile: returns ``(samples, rate)``, samples shaped (frames, channels).

    Raises :class:`AudioDecodeError` (naming the file) for unreadable, empty or non-finite audio.
    """
    import soundfile as sf

    try:
        data, rate = sf.read(path, dtype=dtype, always_2d=True)
    except FileNotFoundError:
        raise AudioDecodeError(f"{path}: file not found") from None
    except (sf.SoundFileError, RuntimeError, OSError, ValueError) as exc:
        reason = str(exc).split("\n")[0]
        raise AudioDecodeError(f"{path}: cannot decode audio ({reason})") from None
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: holds no audio samples (zero-length file)")
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
