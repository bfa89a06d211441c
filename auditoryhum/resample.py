"""Audio preparation: convert clips to one rate, channel count and sample format, in process.

The reference pipeline starts one ffmpeg process per file and deletes the original before
moving the converted file in. Here each file is decoded with libsndfile, mixed, resampled
with soxr, quantised exactly as ffmpeg does (round to nearest, clip), written to a hidden
temporary file beside its destination, verified by reading its header back, and only then
renamed over the destination. A killed run leaves every clip either untouched or complete.
"""

import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from auditoryhum.errors import UserError
from auditoryhum.io.atomic import atomic_write, remove_stale_partials
from auditoryhum.io.audio import AudioDecodeError, read_audio
from auditoryhum.console import progress

# ffmpeg sample-format names (the published --bits values) -> libsndfile PCM subtype.
SAMPLE_FORMATS = {
    "u8": "PCM_U8",
    "s16": "PCM_16",
    "s32": "PCM_32",
    "flt": "FLOAT",
    "dbl": "DOUBLE",
}
# Lossy codecs have no sample format of their own: --bits does not apply to them.
LOSSY_SUBTYPES = {"VORBIS", "OPUS", "MPEG_LAYER_III", "MPEG_LAYER_II", "MPEG_LAYER_I"}


@dataclass(frozen=True)
class Target:
    """The format every clip is converted to."""

    sampling_rate: int
    channels: int
    bits: str

    def __post_init__(self):
        if self.sampling_rate <= 0:
            raise UserError(f"--sampling_rate must be positive, got {self.sampling_rate}")
        if self.channels <= 0:
            raise UserError(f"--channels must be positive, got {self.channels}")
        if self.bits not in SAMPLE_FORMATS:
            raise UserError(f"--bits {self.bits!r} is not one of {', '.join(SAMPLE_FORMATS)}")


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: ``converted``, ``unchanged`` (already in format) or ``failed``."""

    source: str
    destination: str
    status: str
    message: str = ""


def mix_channels(data: np.ndarray, channels: int, path: str = "") -> np.ndarray:
    """Map (frames, C) samples to (frames, ``channels``).

    Down to mono averages the channels (ffmpeg's default for stereo); mono up to N copies
    the channel; other remappings are ambiguous and refused.
    """
    have = data.shape[1]
    if have == channels:
        return data
    if channels == 1:
        return data.mean(axis=1, keepdims=True)
    if have == 1:
        return np.repeat(data, channels, axis=1)
    raise UserError(f"{path}: cannot map {have} channels to {channels}; convert to 1 channel or keep {have}")


def resample(data: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (frames, channels) float samples with soxr (high quality, linear phase)."""
    if orig_sr == target_sr:
        return data
    import soxr

    return soxr.resample(data, orig_sr, target_sr, quality="HQ")


def quantise(data: np.ndarray, bits: str) -> np.ndarray:
    """Float samples in [-1, 1) to the array libsndfile writes unchanged for ``bits``.

    Integer formats are scaled by 2^(b-1), rounded to nearest and clipped, as ffmpeg's
    swresample does, rather than libsndfile's own float-to-int scaling by 2^(b-1) - 1.
    """
    if bits == "s16":
        return np.clip(np.rint(data * 32768.0), -32768, 32767).astype(np.int16)
    if bits == "s32":
        return np.clip(np.rint(data * 2147483648.0), -2147483648, 2147483647).astype(np.int32)
    if bits == "flt":
        return data.astype(np.float32)
    if bits == "u8":  # libsndfile converts float to unsigned 8-bit itself
        return np.clip(data, -1.0, 1.0)
    return data.astype(np.float64)


def _is_target_format(info, target: Target) -> bool:
    if info.samplerate != target.sampling_rate or info.channels != target.channels:
        return False
    return info.subtype in LOSSY_SUBTYPES or info.subtype == SAMPLE_FORMATS[target.bits]


def convert_file(source: str, destination: str, target: Target) -> Outcome:
    """Convert one file to ``target`` at ``destination`` (which may be ``source`` itself).

    Never raises for a bad file: the failure is returned and the source is left untouched.
    """
    import soundfile as sf

    try:
        remove_stale_partials(destination)
        if os.path.getsize(source) == 0:
            raise AudioDecodeError(f"{source}: empty file (0 bytes)")
        try:
            info = sf.info(source)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            raise AudioDecodeError(f"{source}: cannot decode audio ({str(exc).splitlines()[0]})") from None
        # Checked before the format: a header-only file already in the target format is no clip either.
        if info.frames == 0:
            raise AudioDecodeError(f"{source}: holds no audio samples (zero-length file)")
        if _is_target_format(info, target):
            if os.path.abspath(source) != os.path.abspath(destination):
                with open(source, "rb") as src, atomic_write(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return Outcome(source, destination, "unchanged")
        lossy = info.subtype in LOSSY_SUBTYPES
        subtype = info.subtype if lossy else SAMPLE_FORMATS[target.bits]
        if not sf.check_format(info.format, subtype):
            raise UserError(
                f"{source}: a {info.format} file cannot hold {target.bits} samples; "
                f"choose another --bits (e.g. s16) or convert the file to WAV first"
            )
        data, rate = read_audio(source, dtype="float64")
        data = resample(mix_channels(data, target.channels, source), rate, target.sampling_rate)
        samples = data.astype(np.float32) if lossy else quantise(data, target.bits)
        with atomic_write(destination, "wb", verify=lambda tmp: _verify(tmp, samples.shape[0], target)) as f:
            sf.write(f, samples, target.sampling_rate, subtype=subtype, format=info.format)
        remark = f"{source}: {info.subtype} is a lossy codec, so --bits does not apply; kept {info.subtype}" if lossy else ""
        return Outcome(source, destination, "converted", remark)
    except UserError as exc:
        return Outcome(source, destination, "failed", str(exc))
    except (OSError, ValueError, RuntimeError) as exc:
        return Outcome(source, destination, "failed", f"{source}: {exc}")


def _verify(written: str, frames: int, target: Target) -> None:
    """Read the new file's header back before it may replace anything."""
    import soundfile as sf

    info = sf.info(written)
    if info.frames != frames or info.channels != target.channels or info.samplerate != target.sampling_rate:
        raise UserError(f"verification of the converted file failed ({info.frames} frames written, {frames} expected)")


def plan_destinations(sources: Sequence[str], output_dir: Optional[str]) -> List[str]:
    """In place (no ``output_dir``), or mirrored under ``output_dir`` relative to the sources' common folder."""
    if output_dir is None:
        return list(sources)
    absolute = [os.path.abspath(s) for s in sources]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    out = os.path.abspath(output_dir)
    destinations = [os.path.join(out, os.path.relpath(a, root)) for a in absolute]
    clash = set(absolute) & set(destinations)
    if clash:
        raise UserError(f"--output_dir {output_dir} would overwrite the inputs (e.g. {sorted(clash)[0]}); choose another folder")
    return destinations


def convert_files(sources: Sequence[str], target: Target, output_dir: Optional[str] = None, jobs: int = 1) -> List[Outcome]:
    """Convert every source; returns one :class:`Outcome` per source, in input order."""
    destinations = plan_destinations(sources, output_dir)
    for d in set(os.path.dirname(d) for d in destinations):
        Path(d).mkdir(parents=True, exist_ok=True)
    outcomes: List[Optional[Outcome]] = [None] * len(sources)
    if jobs <= 1:
        for i in progress(range(len(sources)), desc="resample", total=len(sources)):
            outcomes[i] = convert_file(sources[i], destinations[i], target)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(convert_file, s, d, target): i for i, (s, d) in enumerate(zip(sources, destinations))}
            for future in progress(as_completed(futures), desc="resample", total=len(futures)):
                outcomes[futures[future]] = future.result()
    return outcomes  # type: ignore[return-value]
