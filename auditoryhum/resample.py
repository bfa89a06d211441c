"""Audio preparation: convert clips to one rate, channel count and sample format, in process.

The reference pipeline starts one ffmpeg process per file and deletes the original before
moving the converted file in. Here each file is decoded with libsndfile, resampled and mixed,
quantised exactly as ffmpeg does (round to nearest, clip), written to a hidden temporary file
beside its destination, verified by reading its header back, and only then renamed over the
destination. A killed run leaves every clip either untouched or complete.

Two resamplers (``Target.resampler``):

* ``"ffmpeg"`` (default) reproduces the filter of ffmpeg's default resampler (libswresample:
  windowed sinc, Kaiser window with beta 9, cutoff 0.97, 32 taps at the lower rate, 1024 phases
  or the exact rational phase count, its start and end padding and output length), written
  here from those parameters with NumPy/SciPy. For 8/16-bit sources converted to 8/16-bit it
  also follows swresample's integer arithmetic (16-bit coefficients, rounding, mixing after
  resampling), so its output equals the published recipe's ``ffmpeg -ar ... -ac ... -sample_fmt
  ...`` sample for sample; other sources agree to float rounding.
* ``"soxr"``: soxr's "HQ" filter, steeper and free of aliasing (flat to 0.93 x the new Nyquist
  frequency, -53 dB at 0.99 x, nothing above it), but not the audio the published recipe
  produced. ffmpeg's filter is -1 dB at 0.9 x, -6 dB at 0.97 x and -10 dB at 1 x.
"""

import io
import math
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from auditoryhum.defaults import DEFAULT_RESAMPLER, RESAMPLER_CHOICES
from auditoryhum.errors import ParameterError, UserError
from auditoryhum.io.atomic import atomic_write, describe_os_error, remove_stale_partials
from auditoryhum.io.audio import AudioDecodeError, check_readable, read_audio
from auditoryhum.console import progress
from auditoryhum.errors import MentionError, mention

# ffmpeg sample-format names (the published `bits` values) -> libsndfile PCM subtype; the keys
# are auditoryhum.defaults.BITS_CHOICES (a test keeps the two equal).
SAMPLE_FORMATS = {
    "u8": "PCM_U8",
    "s16": "PCM_16",
    "s32": "PCM_32",
    "flt": "FLOAT",
    "dbl": "DOUBLE",
}
# Lossy codecs have no sample format of their own: `bits` does not apply to them.
LOSSY_SUBTYPES = {"VORBIS", "OPUS", "MPEG_LAYER_III", "MPEG_LAYER_II", "MPEG_LAYER_I"}

RESAMPLERS = RESAMPLER_CHOICES  # defined in auditoryhum.defaults (``--help`` reads it without NumPy)

# libswresample's defaults, as the published recipe's ffmpeg command uses them.
SWR_FILTER_SIZE = 32  # taps at the lower of the two rates
SWR_PHASES = 1 << 10  # phase_shift 10: sub-sample positions when the rate ratio is not exact
SWR_CUTOFF = 0.97  # of the lower Nyquist frequency
SWR_KAISER_BETA = 9.0
SWR_INT_SCALE = 1 << 15  # 16-bit filter coefficients when swresample works in s16
# Sources ffmpeg decodes to 8- or 16-bit samples: with an 8/16-bit target, swresample then
# resamples and mixes in 16-bit integers instead of floats.
SWR_INT_SOURCES = {"PCM_16", "PCM_U8", "PCM_S8"}
SWR_INT_TARGETS = {"s16", "u8"}
# Sources ffmpeg decodes to 32-bit integers: converted to 8/16 bits with neither resampling nor
# mixing, ffmpeg drops the low bits (rounds down) instead of rounding to nearest.
SWR_S32_SOURCES = {"PCM_24", "PCM_32"}


@dataclass(frozen=True)
class Target:
    """The format every clip is converted to, and the resampler (one of :data:`RESAMPLERS`)."""

    sampling_rate: int
    channels: int
    bits: str
    resampler: str = DEFAULT_RESAMPLER

    def __post_init__(self):
        # ParameterError names the field's parameter (the command line shows it as its flag).
        if self.sampling_rate <= 0:
            raise ParameterError("sampling_rate", f"must be positive, got {self.sampling_rate}")
        if self.channels <= 0:
            raise ParameterError("channels", f"must be positive, got {self.channels}")
        if self.bits not in SAMPLE_FORMATS:
            raise ParameterError("bits", f"{self.bits!r} is not one of {', '.join(SAMPLE_FORMATS)}")
        if self.resampler not in RESAMPLERS:
            raise ParameterError("resampler", f"{self.resampler!r} is not one of {', '.join(RESAMPLERS)}")


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: ``converted``, ``unchanged`` (already in format) or ``failed``.

    ``message`` names parameters by name (``convert this clip with resampler soxr``); ``marked``
    is the same text with :func:`~auditoryhum.stages._base.mention` markers (empty when it names
    none), so a front end can show them its own way (:meth:`shown`; the command line: flags).
    """

    source: str
    destination: str
    status: str
    message: str = ""
    marked: str = ""

    @classmethod
    def of(cls, source: str, destination: str, status: str, text: str = "") -> "Outcome":
        """An outcome whose message ``text`` may hold mention markers."""
        if "\x00" not in text:
            return cls(source, destination, status, text)
        return cls(source, destination, status, str(MentionError(text)), text)

    def shown(self, flag_of) -> str:
        """The message with each parameter it names shown as ``flag_of(param)``."""
        return MentionError(self.marked).with_flags(flag_of) if self.marked else self.message


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


def resample(data: np.ndarray, orig_sr: int, target_sr: int, resampler: str = "soxr") -> np.ndarray:
    """Resample (frames, channels) float samples.

    Parameters
    ----------
    data : np.ndarray, shape (frames, channels)
    orig_sr, target_sr : int
    resampler : {"soxr", "ffmpeg"}
        ``"soxr"``: soxr's "HQ" filter (linear phase); ``"ffmpeg"``: :func:`swr_resample` in
        floating point.

    Returns
    -------
    np.ndarray, shape (frames_out, channels)
        ``data`` itself when the rates are equal.
    """
    if orig_sr == target_sr:
        return data
    if resampler == "ffmpeg":
        return swr_resample(data, orig_sr, target_sr)
    import soxr

    return soxr.resample(data, orig_sr, target_sr, quality="HQ")


# ----------------------------------------------------------------------------- ffmpeg's resampler


@dataclass(frozen=True, eq=False)  # holds arrays: compared and hashed by identity
class SwrFilter:
    """ffmpeg's default (libswresample) polyphase filter for one rate conversion.

    Attributes
    ----------
    in_rate, out_rate : int
    factor : float
        Cut-off as a share of the input Nyquist frequency, ``min(0.97 * out_rate / in_rate, 1)``:
        0.97 x the output Nyquist frequency when downsampling, the input Nyquist frequency when
        upsampling by more than 1/0.97.
    taps : int
        Taps per phase, ``ceil(32 / factor)`` rounded up to even (32 when upsampling).
    phases : int
        Output positions between two input samples the bank resolves: ``out_rate / gcd`` when
        that is at most 1024 (``exact``: every output falls on a phase), else 1024.
    exact : bool
        False: an output between two phases is interpolated linearly between them.
    bank : np.ndarray, shape (phases + 1, taps), float64, read-only
        Row ``p`` weights input samples ``s - centre .. s - centre + taps - 1`` for an output at
        input position ``s + p / phases``: a sinc at ``factor`` under a Kaiser window (beta 9)
        spanning ``taps`` samples. All rows are divided by the sum of row 0 (as swresample does:
        phase 0 has DC gain 1, the others within about 1e-5 of it). Row ``phases`` is row 0 one
        sample later, its last tap dropped: the interpolation partner of the last phase.
    int_bank : np.ndarray, shape (phases + 1, taps), float64, read-only
        ``bank`` as swresample's 16-bit coefficients: ``bank * 2**15`` rounded, clipped to int16.
    """

    in_rate: int
    out_rate: int
    factor: float
    taps: int
    phases: int
    exact: bool
    bank: np.ndarray
    int_bank: np.ndarray

    @property
    def centre(self) -> int:
        """The tap that sits on the output position in phase 0."""
        return (self.taps - 1) // 2


@lru_cache(maxsize=32)
def swr_filter(in_rate: int, out_rate: int) -> SwrFilter:
    """Design ffmpeg's default resampling filter for ``in_rate`` -> ``out_rate`` (see :class:`SwrFilter`).

    Cached: a run converts many clips between the same two rates.
    """
    from scipy.special import i0

    if in_rate <= 0 or out_rate <= 0:
        raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
    # Same operation order as swresample's double arithmetic, so that ceil() agrees at the edges.
    factor = min(out_rate * SWR_CUTOFF / in_rate, 1.0)
    taps = max(math.ceil(SWR_FILTER_SIZE / factor), 1)
    taps += taps % 2
    reduced = out_rate // math.gcd(in_rate, out_rate)
    exact = reduced <= SWR_PHASES
    phases = reduced if exact else SWR_PHASES
    centre = (taps - 1) // 2
    offset = np.arange(taps)[None, :] - centre - np.arange(phases)[:, None] / phases
    window = i0(SWR_KAISER_BETA * np.sqrt(np.maximum(1.0 - (2.0 * offset / taps) ** 2, 0.0)))
    rows = np.sinc(factor * offset) * window
    rows /= rows[0].sum()
    bank = np.vstack([rows, np.concatenate([[0.0], rows[0, :-1]])])
    int_bank = np.clip(np.rint(bank * SWR_INT_SCALE), -32768, 32767)
    bank.setflags(write=False)
    int_bank.setflags(write=False)
    return SwrFilter(in_rate, out_rate, factor, taps, phases, exact, bank, int_bank)


def _outputs_within(last_input: int, filt: SwrFilter) -> int:
    """How many outputs (from output 0 on) have their last tap at input index <= ``last_input``."""
    # Output n's taps start at floor(n * in / out) - centre, so the condition is
    # floor(n * in / out) <= bound, i.e. n * in < (bound + 1) * out.
    bound = last_input - (filt.taps - 1) + filt.centre
    return max(0, -(-(bound + 1) * filt.out_rate // filt.in_rate)) if bound + 1 > 0 else 0


def swr_plan(frames: int, filt: SwrFilter) -> Tuple[int, int]:
    """ffmpeg's output length for a clip, and the end padding that length relies on.

    swresample computes an output once every tap has an input sample; at the end of the
    stream it appends a mirror image of the last samples (the last one repeated), half as
    long as what it still holds (at most ``taps``), and computes the outputs that now fit.
    A clip too short to fill the filter once before that (``frames + padding <= taps``)
    gives no output at all.

    Parameters
    ----------
    frames : int
        Input samples per channel.
    filt : SwrFilter

    Returns
    -------
    (frames_out, padding) : (int, int)
    """
    if frames <= filt.taps:  # nothing computed before the end: every sample is still held
        padding = (frames + 1) // 2
        if frames + padding < filt.taps + 1:
            return 0, padding
    else:
        first_pending = _outputs_within(frames - 1, filt)
        held = frames - (first_pending * filt.in_rate // filt.out_rate - filt.centre)
        padding = (min(held, filt.taps) + 1) // 2
    return _outputs_within(frames - 1 + padding, filt), padding


def swr_output_length(frames: int, in_rate: int, out_rate: int) -> int:
    """Frames ffmpeg's default resampler outputs for ``frames`` input frames (0 for a very short clip)."""
    return swr_plan(frames, swr_filter(in_rate, out_rate))[0]


def _swr_pad(data: np.ndarray, filt: SwrFilter, padding: int, lead: int = 0) -> np.ndarray:
    """``data`` (frames, channels) with swresample's padding, as (channels, positions) rows.

    Column ``lead`` is input position ``-centre``, after ``lead`` zeros. Start: a mirror image
    about the first sample (not repeated), so output 0 is centred on input sample 0. End:
    ``padding`` samples mirrored with the last sample repeated.
    """
    frames, channels = data.shape
    centre = filt.centre
    rows = np.zeros((channels, lead + centre + frames + padding))
    signal = rows[:, lead + centre:]  # the clip and its end padding (a view)
    signal[:, :frames] = data.T
    signal[:, frames:] = data[frames - padding:][::-1].T
    rows[:, lead:lead + centre] = signal[:, centre:0:-1]
    return rows


def _polyphase_exact(data: np.ndarray, filt: SwrFilter, bank: np.ndarray, frames_out: int, padding: int) -> np.ndarray:
    """Filter sums (frames_out, channels) when every output falls on a phase: one upfirdn call."""
    from scipy.signal import upfirdn

    up = filt.phases
    down = filt.in_rate // math.gcd(filt.in_rate, filt.out_rate)
    # upfirdn weights input k for output j with proto[j * down - k * up]; with
    # proto[(taps - 1 - i) * up + p] = bank[p, i], output j is output n shifted by
    # (lead + taps - 1) * up / down, an integer thanks to ``lead`` leading zeros.
    # (Channels as contiguous rows: upfirdn runs about a third faster along the last axis.)
    proto = np.ascontiguousarray(bank[:up, ::-1].T).reshape(-1)
    lead = -(filt.taps - 1) % down
    start = (lead + filt.taps - 1) // down * up
    padded = _swr_pad(data, filt, padding, lead)
    return upfirdn(proto, padded, up, down, axis=1)[:, start:start + frames_out].T


def _polyphase_interpolated(data: np.ndarray, filt: SwrFilter, bank: np.ndarray, frames_out: int, padding: int,
                            integer: bool, chunk: int = 8192) -> np.ndarray:
    """Filter sums (frames_out, channels) of outputs between phases: interpolated between the two nearest.

    Output n sits at ``n * in_rate * phases / out_rate`` phase steps; the remainder of that
    division weights the next phase. With ``integer`` the interpolation is swresample's
    integer one (the product divided with truncation toward zero).
    """
    padded = _swr_pad(data, filt, padding)
    steps = np.arange(frames_out, dtype=np.int64) * (filt.in_rate * filt.phases)
    index, remainder = np.divmod(steps, filt.out_rate)
    first, phase = np.divmod(index, filt.phases)
    taps = np.arange(filt.taps)
    sums = np.empty((frames_out, padded.shape[0]))
    for start in range(0, frames_out, chunk):
        part = slice(start, start + chunk)
        positions = first[part, None] + taps
        lower, upper = bank[phase[part]], bank[phase[part] + 1]
        for channel, samples in enumerate(padded):
            window = samples[positions]
            low = np.einsum("ij,ij->i", window, lower)
            high = np.einsum("ij,ij->i", window, upper)
            if integer:
                step = (high - low).astype(np.int64) * remainder[part]
                sums[part, channel] = low + np.sign(step) * (np.abs(step) // filt.out_rate)
            else:
                sums[part, channel] = low + (high - low) * remainder[part] / filt.out_rate
    return sums


def swr_resample(data: np.ndarray, in_rate: int, out_rate: int, integer: bool = False) -> np.ndarray:
    """Resample every channel as ffmpeg's default resampler (libswresample) does.

    Parameters
    ----------
    data : np.ndarray, shape (frames, channels)
        Float samples; with ``integer``, 16-bit sample values (float x 32768, whole numbers).
    in_rate, out_rate : int
    integer : bool
        swresample's s16 arithmetic, which ffmpeg uses when source and target are 8 or 16
        bits: 16-bit coefficients, each sum rounded half up to a multiple of 2^15, clipped.

    Returns
    -------
    np.ndarray, shape (frames_out, channels), float64
        ``frames_out = swr_output_length(frames, in_rate, out_rate)`` (0 when the clip is too
        short for ffmpeg to output anything); whole numbers in the int16 range with ``integer``.
    """
    data = np.asarray(data, dtype=np.float64)
    filt = swr_filter(in_rate, out_rate)
    frames_out, padding = swr_plan(data.shape[0], filt)
    if frames_out == 0:
        return np.zeros((0, data.shape[1]))
    bank = filt.int_bank if integer else filt.bank
    if filt.exact:
        sums = _polyphase_exact(data, filt, bank, frames_out, padding)
    else:
        sums = _polyphase_interpolated(data, filt, bank, frames_out, padding, integer)
    if integer:
        # The sums are whole numbers below 2^53, exact in float64.
        return np.clip(np.floor((sums + SWR_INT_SCALE // 2) / SWR_INT_SCALE), -32768, 32767)
    return sums


def _convert_like_ffmpeg(data: np.ndarray, rate: int, target: Target, subtype: str, path: str) -> np.ndarray:
    """Float samples of one clip -> the array to write, as ``ffmpeg -ar -ac -sample_fmt`` computes it.

    8/16-bit sources going to an 8/16-bit target take swresample's integer path: each channel
    is resampled, then the channels are mixed with rounding half up (ffmpeg's order, which
    matters in integers); the result is int16, which libsndfile maps to u8 as ffmpeg does,
    ``(s >> 8) + 128``. Other sources are resampled in float64 (ffmpeg: float32, so a sample
    rarely ends one step apart) and quantised as ffmpeg does. Without resampling or mixing,
    ffmpeg converts 24/32-bit integer samples to 8/16 bits by dropping the low bits; so does this.

    The channel mapping stays :func:`mix_channels`' level-preserving one, which is ffmpeg's for
    stereo to mono with an integer target; ffmpeg differs elsewhere: mono to N channels at
    -3 dB each, more than two channels through a layout matrix, stereo to a float target as
    (L + R) / sqrt(2).
    """
    lossy = subtype in LOSSY_SUBTYPES
    mix_channels(data[:0], target.channels, path)  # refuse an ambiguous mapping before any work
    if (rate == target.sampling_rate and data.shape[1] == target.channels
            and subtype in SWR_S32_SOURCES and target.bits in SWR_INT_TARGETS):
        steps = 32768.0 if target.bits == "s16" else 128.0
        return (np.floor(data * steps) * (32768.0 / steps)).astype(np.int16)
    integer = not lossy and subtype in SWR_INT_SOURCES and target.bits in SWR_INT_TARGETS
    if integer:  # libsndfile decodes 8/16-bit samples to exact multiples of 2^-15
        data = np.rint(data * SWR_INT_SCALE)
    elif target.channels < data.shape[1]:  # in floats mixing commutes with resampling: mix first, half the work
        data = mix_channels(data, target.channels, path)
    if rate != target.sampling_rate:
        frames = data.shape[0]
        data = swr_resample(data, rate, target.sampling_rate, integer)
        if data.shape[0] == 0:
            raise MentionError(f"{path}: {frames} samples are too few for ffmpeg's resampler to output any; "
                               f"convert this clip with {mention('resampler')} soxr")
    mixed = mix_channels(data, target.channels, path)
    if integer:
        return np.floor(mixed + 0.5).astype(np.int16)
    if lossy:
        return mixed.astype(np.float32)
    if target.bits == "u8":  # ffmpeg: round(x * 128) + 128, clipped; libsndfile maps int16 s to (s >> 8) + 128
        return (np.clip(np.rint(mixed * 128.0), -128, 127) * 256).astype(np.int16)
    return quantise(mixed, target.bits)


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


# ----------------------------------------------------------------------------- parallel workers

# Set in each worker of a --jobs pool: the pid of the run that started it. A worker whose run is
# gone (killed with -9) must not replace another file: it checks before every replacement.
_PARENT_PID: Optional[int] = None
_PR_SET_PDEATHSIG = 1


def _parent_gone() -> bool:
    return _PARENT_PID is not None and os.getppid() != _PARENT_PID


def _worker_init(parent_pid: int) -> None:
    """Tie a pool worker's life to its run's: it dies when the run dies, whatever killed it.

    On Linux the kernel sends SIGKILL to the worker when the run exits (``PR_SET_PDEATHSIG``);
    everywhere a watchdog thread ends the worker within a fraction of a second of the run's
    death (its parent pid changes when it is re-parented), and :func:`convert_file` checks
    again right before each replacement, so no file is replaced after the run has died.
    """
    import signal
    import sys
    import threading
    import time

    global _PARENT_PID
    _PARENT_PID = parent_pid
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the worker
    if _parent_gone():  # the run died before the death signal was armed
        os._exit(1)

    def watchdog():
        while True:
            if _parent_gone():
                os._exit(1)
            time.sleep(0.2)

    threading.Thread(target=watchdog, name="parent-watchdog", daemon=True).start()


def convert_file(source: str, destination: str, target: Target, in_place: Optional[bool] = None) -> Outcome:
    """Convert one file to ``target`` at ``destination`` (which may be ``source`` itself).

    ``in_place``: whether replacing ``source`` is intended (default: when ``destination`` is the
    same path as ``source``). A copy whose destination turns out to be the source itself (through
    a symbolic or hard link) fails instead of replacing the original. In place, the source is
    replaced only if it is still the file that was read, with the same size, modification time,
    inode and bytes (:func:`~auditoryhum.io.atomic.file_state`): a clip that another program is
    still writing fails and is left as it is.

    Never raises for a bad file: the failure is returned and the source is left untouched.
    """
    import soundfile as sf

    from auditoryhum.io.atomic import file_state
    from auditoryhum.io.guard import path_identity, same_file

    if in_place is None:
        in_place = os.path.abspath(source) == os.path.abspath(destination)
    try:
        if not in_place and same_file(path_identity(source), path_identity(destination)):
            raise UserError(f"{source}: its copy {destination} would be the clip itself (through a link); "
                            f"left untouched, choose an output folder outside the clips' folders")
        remove_stale_partials(destination)
        check_readable(source)
        # Before anything is read: what the in-place replacement must still find at the end.
        read_state = file_state(source) if in_place else None
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
            if not in_place:
                with open(source, "rb") as src, atomic_write(destination, "wb", verify=_check_parent) as dst:
                    shutil.copyfileobj(src, dst)
            return Outcome(source, destination, "unchanged")
        lossy = info.subtype in LOSSY_SUBTYPES
        subtype = info.subtype if lossy else SAMPLE_FORMATS[target.bits]
        if not sf.check_format(info.format, subtype):
            raise MentionError(
                f"{source}: a {info.format} file cannot hold {target.bits} samples; "
                f"choose another {mention('bits')} (e.g. s16) or convert the file to WAV first"
            )
        data, rate = read_audio(source, dtype="float64")
        if target.resampler == "ffmpeg":
            samples = _convert_like_ffmpeg(data, rate, target, info.subtype, source)
        else:
            data = resample(mix_channels(data, target.channels, source), rate, target.sampling_rate)
            samples = data.astype(np.float32) if lossy else quantise(data, target.bits)
        # Encoded in memory first: libsndfile writing through a file object turns a full disk into
        # callback tracebacks and a bare AssertionError; a plain write raises one clean OSError.
        encoded = io.BytesIO()
        try:
            sf.write(encoded, samples, target.sampling_rate, subtype=subtype, format=info.format)
        except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
            # soundfile names the in-memory buffer ("Error opening <_io.BytesIO ...>: "); say the file.
            reason = re.sub(r"^Error opening <[^>]*>: ", "", str(exc).splitlines()[0] if str(exc) else "")
            raise UserError(f"{source}: cannot encode it as {info.format} {subtype} "
                            f"({reason or type(exc).__name__}); left untouched") from None
        # In place, the file keeps its permissions (a read-only clip stays read-only) and a
        # symbolic link keeps pointing at the converted file: its target is replaced, not the link.
        real = os.path.realpath(destination) if in_place else destination
        permissions = os.stat(real).st_mode & 0o7777 if in_place else None

        def verify(tmp: str) -> None:
            _verify(tmp, samples.shape[0], target, destination)
            _check_parent(tmp)

        with atomic_write(real, "wb", verify=verify, permissions=permissions, expect=read_state) as f:
            f.write(encoded.getbuffer())
        del encoded
        remark = (f"{source}: {info.subtype} is a lossy codec, so {mention('bits')} does not apply; "
                  f"kept {info.subtype}") if lossy else ""
        return Outcome.of(source, destination, "converted", remark)
    except MentionError as exc:
        return Outcome.of(source, destination, "failed", exc.text)
    except UserError as exc:
        return Outcome(source, destination, "failed", str(exc))
    except OSError as exc:
        return Outcome(source, destination, "failed", f"{source}: {describe_os_error(exc)}")
    except (ValueError, RuntimeError, AssertionError) as exc:
        return Outcome(source, destination, "failed", f"{source}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def _check_parent(tmp: str = "") -> None:
    """Veto a replacement by a pool worker whose run has died (see :func:`_worker_init`)."""
    if _parent_gone():
        os._exit(1)


def _verify(written: str, frames: int, target: Target, destination: str = "") -> None:
    """Read the new file's header back before it may replace anything."""
    import soundfile as sf

    try:
        info = sf.info(written)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise UserError(f"{destination}: the converted file does not read back "
                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); left untouched") from None
    if info.frames != frames or info.channels != target.channels or info.samplerate != target.sampling_rate:
        raise UserError(f"{destination}: verification of the converted file failed ({info.frames} frames written, "
                        f"{frames} expected); left untouched")


def plan_destinations(sources: Sequence[str], output_dir: Optional[str]) -> List[str]:
    """In place (no ``output_dir``), or mirrored under ``output_dir`` relative to the sources' common folder.

    Raises
    ------
    ParameterError
        Naming ``output_dir`` when a destination is one of the sources (:func:`overwritten_source`):
        writing there would replace the user's original clip.
    """
    if output_dir is None:
        return list(sources)
    destinations = mirror_destinations(sources, output_dir)
    clash = overwritten_source(sources, destinations)
    if clash is not None:
        raise ParameterError("output_dir", f"{output_dir} would overwrite the inputs (e.g. {clash}); "
                                           f"choose a folder outside the clips' folders")
    return destinations


def mirror_destinations(sources: Sequence[str], output_dir: str) -> List[str]:
    """Each source's path under ``output_dir``, relative to the sources' common folder (unchecked)."""
    absolute = [os.path.abspath(s) for s in sources]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute])
    out = os.path.abspath(output_dir)
    return [os.path.join(out, os.path.relpath(a, root)) for a in absolute]


def overwritten_source(sources: Sequence[str], destinations: Sequence[str]) -> Optional[str]:
    """The first destination that is one of the sources (shown with what it resolves to), or None.

    Compared by resolved path and by inode, not by absolute path: a symbolic link (to the output
    folder, a parent, or the clip itself), a hard link, ``..`` or a relative alias all reach the
    same file, and converting "a copy" there would replace the original.
    """
    from auditoryhum.io.guard import path_identity

    source_paths, source_inodes = set(), set()
    for source in sources:
        real, inode = path_identity(source)
        source_paths.add(real)
        if inode is not None:
            source_inodes.add(inode)
    for destination in destinations:
        real, inode = path_identity(destination)
        if real in source_paths or (inode is not None and inode in source_inodes):
            return destination if real == destination else f"{destination}, which is {real}"
    return None


def convert_files(sources: Sequence[str], target: Target, output_dir: Optional[str] = None, jobs: int = 1) -> List[Outcome]:
    """Convert every source; returns one :class:`Outcome` per source, in input order."""
    destinations = plan_destinations(sources, output_dir)
    for d in set(os.path.dirname(d) for d in destinations):
        Path(d).mkdir(parents=True, exist_ok=True)
    outcomes: List[Optional[Outcome]] = [None] * len(sources)
    if jobs <= 1:
        for i in progress(range(len(sources)), desc="resample", total=len(sources)):
            outcomes[i] = convert_file(sources[i], destinations[i], target, in_place=output_dir is None)
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(convert_file, s, d, target, output_dir is None): i
                       for i, (s, d) in enumerate(zip(sources, destinations))}
            for future in progress(as_completed(futures), desc="resample", total=len(futures)):
                outcomes[futures[future]] = future.result()
    return outcomes  # type: ignore[return-value]
