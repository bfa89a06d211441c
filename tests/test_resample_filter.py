"""The ffmpeg-compatible resampler (``--resampler ffmpeg``, the default of util_resample.py).

Without ffmpeg: the designed filter (parameters, frequency response, DC gain), the output
length and alignment rules, and the fast and general polyphase paths against each other.
With ffmpeg on PATH: util_resample.py's output against real ffmpeg output of the published
recipe's command for noise, tones and a chirp at several rates, channel counts and sample
formats (skipped, with the reason, where ffmpeg is not installed).
"""

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_script
from auditoryhum.resample import (
    DEFAULT_RESAMPLER,
    RESAMPLERS,
    Target,
    _polyphase_exact,
    _polyphase_interpolated,
    swr_filter,
    swr_output_length,
    swr_plan,
    swr_resample,
)
from auditoryhum.errors import UserError

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (apt-get install -y ffmpeg); "
                                  "the comparison with real ffmpeg output needs it")


def response_db(in_rate: int, out_rate: int, freqs: np.ndarray) -> np.ndarray:
    """Gain (dB) of the designed filter at ``freqs`` (Hz): the DTFT of its interleaved phases."""
    filt = swr_filter(in_rate, out_rate)
    impulse = filt.bank[:filt.phases, ::-1].T.reshape(-1)  # the filter at in_rate * phases
    j = np.arange(impulse.size)
    gain = np.abs(np.exp(-2j * np.pi * np.outer(freqs, j) / (in_rate * filt.phases)) @ impulse) / filt.phases
    return 20 * np.log10(gain)


def tone_gain_db(freq: float, in_rate: int = 44100, out_rate: int = 16000) -> float:
    """Level (dB re input) of a steady tone after :func:`swr_resample`, read off a windowed FFT."""
    t = np.arange(in_rate) / in_rate
    y = swr_resample(0.5 * np.sin(2 * np.pi * freq * t)[:, None], in_rate, out_rate)[:, 0]
    y = y[out_rate // 8: -out_rate // 8]
    window = np.hanning(y.size)
    spectrum = np.abs(np.fft.rfft(y * window)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(y.size, 1 / out_rate)
    return float(20 * np.log10(spectrum[np.abs(freqs - freq) < 10].max() / 0.5))


# ----------------------------------------------------------------------------- design, no ffmpeg


@pytest.mark.parametrize("in_rate,out_rate,taps,phases,exact", [
    (44100, 16000, 92, 160, True),  # ceil(32 / (0.97 * 16000 / 44100)) = 91, rounded up to even
    (48000, 16000, 100, 1, True),
    (22050, 16000, 46, 320, True),
    (8000, 16000, 32, 2, True),  # upsampling: cut-off at the input Nyquist frequency, 32 taps
    (44056, 16000, 92, 1024, False),  # 16000 / gcd = 2000 > 1024 phases: interpolated
])
def test_filter_follows_swresample_defaults(in_rate, out_rate, taps, phases, exact):
    filt = swr_filter(in_rate, out_rate)
    assert (filt.taps, filt.phases, filt.exact) == (taps, phases, exact)
    assert filt.factor == pytest.approx(min(0.97 * out_rate / in_rate, 1.0))
    assert filt.bank.shape == (phases + 1, taps) and filt.int_bank.shape == (phases + 1, taps)
    assert filt.bank[0].sum() == pytest.approx(1.0, abs=1e-12)  # every row scaled by phase 0's sum
    np.testing.assert_allclose(filt.bank[:phases].sum(axis=1), 1.0, atol=2e-5)  # other phases: within ~1e-5
    # Phase p and phase P - p are mirror images (the kernel is symmetric, taps is even).
    np.testing.assert_allclose(filt.bank[1:phases, ::-1], filt.bank[phases - 1:0:-1], atol=1e-15)
    np.testing.assert_array_equal(filt.bank[phases], np.concatenate([[0.0], filt.bank[0, :-1]]))
    assert np.array_equal(filt.int_bank, np.clip(np.rint(filt.bank * 32768), -32768, 32767))
    with pytest.raises(ValueError):
        filt.bank[0, 0] = 1.0  # cached and shared: read-only


def test_frequency_response_44k1_to_16k():
    freqs = np.arange(0, 6001, 100.0)
    assert np.abs(response_db(44100, 16000, freqs)).max() < 0.01  # flat (well within 0.1 dB) below 6 kHz
    edge = np.arange(7000, 8001, 10.0)
    gains = response_db(44100, 16000, edge)
    assert np.all(np.diff(gains) < 0)  # a monotonic roll-off through the transition band
    minus6 = np.interp(-6.0206, gains[::-1], edge[::-1])
    assert abs(minus6 - 0.97 * 8000) <= 5, minus6  # -6 dB (half amplitude) at the 0.97 cut-off
    assert gains[edge == 7200][0] == pytest.approx(-1.0, abs=0.1)
    assert gains[edge == 7900][0] == pytest.approx(-8.4, abs=0.2)
    assert response_db(44100, 16000, np.array([9000.0, 10000.0, 12000.0])).max() < -60  # stop band
    # The same through the resampler itself (tones, level read off the output).
    assert abs(tone_gain_db(1000.0)) < 0.01 and abs(tone_gain_db(5900.0)) < 0.01
    assert tone_gain_db(0.97 * 8000) == pytest.approx(-6.02, abs=0.15)


def test_dc_gain_and_mirrored_edges():
    """A constant stays constant, first and last output samples included (mirror padding)."""
    for in_rate, out_rate in [(44100, 16000), (8000, 16000), (44056, 16000)]:
        y = swr_resample(np.full((3000, 1), 0.25), in_rate, out_rate)
        np.testing.assert_allclose(y, 0.25, rtol=2e-5, err_msg=f"{in_rate} -> {out_rate}")


@pytest.mark.parametrize("in_rate,delay", [(44100, 441 * 7), (48000, 3 * 333), (8000, 1234)])
def test_delayed_impulse_lands_on_its_output_sample(in_rate, delay):
    """Output n is centred on input position n * in / out: an impulse at ``delay`` peaks there."""
    frames = in_rate // 2
    x = np.zeros((frames, 1))
    x[delay] = 0.5
    y = swr_resample(x, in_rate, 16000)[:, 0]
    assert y.size == swr_output_length(frames, in_rate, 16000)
    at = delay * 16000 // in_rate  # the delays are chosen to fall exactly on an output sample
    assert delay * 16000 % in_rate == 0
    assert np.argmax(np.abs(y)) == at
    filt = swr_filter(in_rate, 16000)
    assert y[at] == pytest.approx(0.5 * filt.bank[0, filt.centre])
    half = 20
    np.testing.assert_allclose(y[at - half:at], y[at + half:at:-1], atol=1e-15)  # linear phase: symmetric


# Output lengths measured with ffmpeg 5.1 (`ffmpeg -i in.wav -ar 16000 -ac 1 -sample_fmt s16`).
FFMPEG_LENGTHS = [
    (44100, 47, 0), (44100, 100, 36), (44100, 1000, 363), (44100, 1001, 363), (44100, 1002, 364),
    (44100, 1003, 364), (44100, 220500, 80000), (44100, 220501, 80001), (44100, 220503, 80001),
    (48000, 1000, 333), (48000, 1001, 334), (48000, 220501, 73500), (48000, 220502, 73501),
    (22050, 45, 33), (22050, 46, 34), (22050, 1003, 728), (22050, 220501, 160000), (22050, 220502, 160002),
    (8000, 45, 90), (8000, 1001, 2002), (44056, 1000, 363), (44056, 1001, 364), (44056, 220500, 80080),
]


@pytest.mark.parametrize("in_rate,frames,expected", FFMPEG_LENGTHS)
def test_output_length_is_ffmpegs(in_rate, frames, expected):
    assert swr_output_length(frames, in_rate, 16000) == expected
    if expected:
        assert swr_resample(np.zeros((frames, 1)), in_rate, 16000).shape == (expected, 1)


def test_fast_exact_path_equals_the_general_one():
    """The upfirdn path (outputs on a phase) against the per-output gather with weight 0."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, (5000, 2))
    for in_rate, out_rate in [(44100, 16000), (22050, 16000), (8000, 16000), (16000, 44100)]:
        filt = swr_filter(in_rate, out_rate)
        frames_out, padding = swr_plan(len(x), filt)
        fast = _polyphase_exact(x, filt, filt.bank, frames_out, padding)
        general = _polyphase_interpolated(x, filt, filt.bank, frames_out, padding, integer=False, chunk=777)
        np.testing.assert_allclose(fast, general, atol=1e-13, err_msg=f"{in_rate} -> {out_rate}")


def test_integer_path_stays_within_coefficient_quantisation_of_the_float_result():
    """swresample's s16 arithmetic: whole numbers, off the float result by the 16-bit coefficients' error."""
    rng = np.random.default_rng(1)
    x = np.rint(rng.uniform(-0.5, 0.5, (20000, 1)) * 32768)  # no overshoot past full scale
    for in_rate in (44100, 8000, 44056):
        exact = swr_resample(x / 32768, in_rate, 16000) * 32768
        integer = swr_resample(x, in_rate, 16000, integer=True)
        assert integer.shape == exact.shape
        assert np.array_equal(integer, np.rint(integer)) and np.abs(integer).max() <= 32768
        # Each coefficient is off by up to 2^-16: over ~92 taps of this signal about 1.5 steps RMS.
        error = integer - exact
        assert np.sqrt(np.mean(error ** 2)) < 2.5 and np.abs(error).max() < 12, in_rate
    # Upsampling by 2: phase 0 is the input itself, whose coefficient 1.0 swresample clips to 32767/32768.
    y = swr_resample(np.array([[20000.0]] * 200), 8000, 16000, integer=True)
    assert y[100, 0] == math.floor((20000 * 32767 + 16384) / 32768)


def test_resampler_choice_is_validated_and_the_cli_offers_it():
    assert Target(16000, 1, "s16").resampler == DEFAULT_RESAMPLER == "ffmpeg"
    with pytest.raises(UserError, match="resampler 'sox' is not one of ffmpeg, soxr"):
        Target(16000, 1, "s16", "sox")
    from auditoryhum.cli import COMMANDS, build_parser

    parser = build_parser(next(c for c in COMMANDS if c.script == "util_resample.py"))
    action = next(a for a in parser._actions if a.dest == "resampler")
    assert tuple(action.choices) == RESAMPLERS and action.default == DEFAULT_RESAMPLER


@pytest.mark.slow
def test_clip_too_short_for_ffmpeg_fails_untouched_and_soxr_converts_it(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(str(src / "tiny.wav"), np.full(40, 0.1), 44100, subtype="PCM_16")  # < 1 ms
    before = (src / "tiny.wav").read_bytes()
    proc = run_script("util_resample.py", "--filedir", src / "*.wav")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"failed: {src / 'tiny.wav'}: 40 samples are too few for ffmpeg's resampler to output any; "
            f"convert this clip with --resampler soxr") in proc.stderr
    assert (src / "tiny.wav").read_bytes() == before
    proc = run_script("util_resample.py", "--filedir", src / "*.wav", "--resampler", "soxr")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sf.info(str(src / "tiny.wav")).samplerate == 16000


# ----------------------------------------------------------------------------- against real ffmpeg


def snr_db(ours: np.ndarray, reference: np.ndarray) -> float:
    error = np.sum((ours - reference) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(np.sum(reference ** 2) / error))


def signal(kind: str, rate: int, seconds: float, rng) -> np.ndarray:
    """Mono test signal, peak 0.7: white noise, three tones (one near the new Nyquist frequency), or a chirp."""
    t = np.arange(int(rate * seconds)) / rate
    if kind == "noise":  # broadband: the case where the two filters' transition bands differ most
        x = rng.standard_normal(t.size)
    elif kind == "tones":
        x = sum(np.sin(2 * np.pi * f * t + p) for f, p in [(440, 0.0), (3000, 1.0), (min(7500, 0.45 * rate), 2.0)])
    else:  # chirp from 50 Hz to just below the input Nyquist frequency
        f1 = 0.49 * rate
        x = np.sin(2 * np.pi * (50 * t + (f1 - 50) * t ** 2 / (2 * seconds)))
    return 0.7 * x / np.max(np.abs(x))


# name -> (rate, channels, libsndfile subtype); the target is the recipe's 16 kHz mono s16.
CONVERSIONS = {
    "44k1_stereo_s16": (44100, 2, "PCM_16"),
    "48k_mono_s16": (48000, 1, "PCM_16"),
    "22k05_stereo_s16": (22050, 2, "PCM_16"),
    "8k_mono_s16_up": (8000, 1, "PCM_16"),
    "44k1_stereo_float": (44100, 2, "FLOAT"),
    "48k_stereo_s24": (48000, 2, "PCM_24"),
}


def ffmpeg_recipe(source: Path, destination: Path) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-vn", "-ar", "16000",
                    "-ac", "1", "-sample_fmt", "s16", str(destination)], check=True)


@pytest.mark.slow
@needs_ffmpeg
def test_util_resample_matches_real_ffmpeg(tmp_path):
    """Default util_resample.py against the recipe's ffmpeg command, clip by clip.

    Required: same length, full-band SNR >= 40 dB. In fact 8/16-bit sources come out
    sample-identical and float/24-bit sources within float rounding (one step, rarely).
    """
    rng = np.random.default_rng(11)
    src, ref_dir = tmp_path / "in", tmp_path / "ffmpeg"
    src.mkdir()
    ref_dir.mkdir()
    names = []
    for conversion, (rate, channels, subtype) in CONVERSIONS.items():
        for kind in ("noise", "tones", "chirp"):
            mono = signal(kind, rate, 0.6, rng)
            data = mono if channels == 1 else np.stack([mono, 0.8 * np.roll(mono, 7)], axis=1)  # the right mic later
            name = f"{conversion}_{kind}.wav"
            sf.write(str(src / name), data, rate, subtype=subtype)
            names.append((name, subtype))
    proc = run_script("util_resample.py", "--filedir", src / "*.wav", "--output_dir", tmp_path / "out", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, subtype in names:
        ffmpeg_recipe(src / name, ref_dir / name)
        ours, sr = sf.read(str(tmp_path / "out" / name), dtype="int16")
        ref, sr_ref = sf.read(str(ref_dir / name), dtype="int16")
        assert (sr, ours.shape) == (sr_ref, ref.shape), name
        ours, ref = ours.astype(np.float64), ref.astype(np.float64)
        assert snr_db(ours, ref) >= 40, (name, snr_db(ours, ref))
        if subtype == "PCM_16":
            assert np.array_equal(ours, ref), (name, int(np.sum(ours != ref)))
        else:  # ffmpeg filters in float32 here, we in float64: a rare one-step rounding difference
            assert np.abs(ours - ref).max() <= 1 and np.mean(ours != ref) < 0.01, name


@pytest.mark.slow
@needs_ffmpeg
def test_soxr_is_the_steeper_filter_not_ffmpegs(tmp_path):
    """The documented trade-off: on broadband noise soxr's output is far from ffmpeg's, ours is not."""
    rng = np.random.default_rng(12)
    (tmp_path / "in").mkdir()
    sf.write(str(tmp_path / "in" / "noise.wav"), signal("noise", 44100, 0.6, rng), 44100, subtype="PCM_16")
    ffmpeg_recipe(tmp_path / "in" / "noise.wav", tmp_path / "ffmpeg.wav")
    ref = sf.read(str(tmp_path / "ffmpeg.wav"), dtype="float64")[0]
    snrs = {}
    for resampler in ("soxr", "ffmpeg"):
        out = tmp_path / resampler
        proc = run_script("util_resample.py", "--filedir", tmp_path / "in" / "*.wav", "--output_dir", out,
                          "--resampler", resampler)
        assert proc.returncode == 0, proc.stderr
        ours = sf.read(str(out / "noise.wav"), dtype="float64")[0]
        assert ours.shape == ref.shape
        snrs[resampler] = snr_db(ours, ref)
    assert snrs["soxr"] < 30 and snrs["ffmpeg"] == float("inf"), snrs
