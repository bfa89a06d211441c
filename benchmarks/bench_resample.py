#!/usr/bin/env python3
"""Resampling: in-process (``auditoryhum.resample``, both resamplers) vs one ffmpeg process per file.

The published recipe converts clips with ``ffmpeg -i in -vn -ar 16000 -ac 1 -sample_fmt s16 out``,
one process per file, four at a time. This benchmark generates the same clips for every method
(default 200 clips of 5 s, 44.1 kHz stereo 16-bit, mixed scene-like content), converts them to
16 kHz mono s16 with

* ``convert_files(..., jobs=1)`` and ``jobs=2`` in this process, with each resampler:
  ``ffmpeg`` (the default: ffmpeg's own filter, rebuilt in NumPy/SciPy) and ``soxr``;
* ``util_resample.py --jobs 2 --output_dir`` as a user runs it (default resampler; interpreter
  start and imports included);
* ffmpeg, one process per file, four at a time (the published ``rm``/``mv`` processes per file
  are left out, which flatters ffmpeg),

prints the times and the ratios, and compares each resampler's output with ffmpeg's clip by clip
(SNR, ffmpeg's output as the reference):

* **full-band SNR** (0 .. 8 kHz): the criterion. The default resampler must reach >= 40 dB on
  every clip, and its outputs must be identical across jobs=1, jobs=2 and the CLI; the benchmark
  exits 1 otherwise. The ``ffmpeg`` resampler follows swresample's 16-bit arithmetic for these
  16-bit clips, so it is expected to be sample-identical (SNR printed as ``inf``; the number of
  identical clips is printed too).
* **in-band SNR**, over 0 .. 0.8 x the target Nyquist frequency (0 .. 6.4 kHz): where both filters
  are flat (within 0.01 dB), so it isolates errors in alignment, gain, channel mixing or
  quantisation (computed on Hann-windowed clips so that differences above the band do not leak in).
  For ``soxr`` the full band differs by design: ffmpeg's default filter (cut-off 0.97 x Nyquist,
  32 taps at the lower rate) is -1 dB at 7.2 kHz yet still passes 7.9 kHz at about -8 dB and lets
  a 9 kHz tone fold back to 7 kHz at about -60 dB; soxr's is flat to 7.4 kHz and removes both
  (about -53 dB at 7.9 kHz, no measurable alias). The tone table at the end shows this, so on clips
  with strong content above 7 kHz (the "rain" hiss) soxr's output is ~20 dB away from ffmpeg's
  full-band although neither is misaligned or mis-scaled.

Usage: ``python benchmarks/bench_resample.py [--clips 200] [--seconds 5] [--workdir DIR]``.
Needs ffmpeg on PATH (``apt-get install -y ffmpeg``); says so and exits 2 without it.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SR_IN = 44100
SR_OUT = 16000
IN_BAND = 0.8  # share of the target Nyquist frequency compared for the 40 dB criterion
RESAMPLERS = ("ffmpeg", "soxr")  # the default first
KINDS = ("babble", "traffic", "wind", "music", "birdsong", "rain", "room")


# ----------------------------------------------------------------------------- clips


def _pink(rng, n):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    return x / np.max(np.abs(x))


def _scene(kind, rng, n):
    """One mono scene-like signal of ``n`` samples at 44.1 kHz, peak about 1."""
    from scipy.signal import butter, sosfilt

    t = np.arange(n) / SR_IN
    if kind == "babble":  # noise through moving formant band-passes, syllable-rate envelopes
        x = np.zeros(n)
        for _ in range(5):
            lo = rng.uniform(250, 900)
            sos = butter(2, [lo, lo * rng.uniform(2.5, 4.5)], btype="bandpass", fs=SR_IN, output="sos")
            envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
            x += sosfilt(sos, rng.standard_normal(n)) * envelope
    elif kind == "traffic":  # low rumble plus an engine tone with slow pitch drift
        rumble = np.cumsum(rng.standard_normal(n))
        rumble = sosfilt(butter(2, [20, 400], btype="bandpass", fs=SR_IN, output="sos"), rumble)
        f0 = rng.uniform(40, 90) * (1 + 0.2 * np.sin(2 * np.pi * 0.2 * t))
        engine = sum(np.sin(2 * np.pi * h * np.cumsum(f0) / SR_IN) / h for h in range(1, 6))
        x = rumble / np.max(np.abs(rumble)) + 0.3 * engine / 2.3
    elif kind == "wind":  # low-passed noise in gusts
        gusts = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t) ** 2
        x = sosfilt(butter(2, rng.uniform(300, 900), fs=SR_IN, output="sos"), rng.standard_normal(n)) * gusts
    elif kind == "music":  # chords of harmonic tones, changing every half second
        x = np.zeros(n)
        step = SR_IN // 2
        for start in range(0, n, step):
            seg = t[start:start + step] - t[start]
            root = 110 * 2 ** (rng.integers(0, 24) / 12)
            for interval in (0, 4, 7):
                f = root * 2 ** (interval / 12)
                for h in range(1, 9):
                    if f * h < 12000:
                        x[start:start + step] += np.sin(2 * np.pi * f * h * seg) / h * np.exp(-3 * seg)
    elif kind == "birdsong":  # short frequency sweeps between 2 and 7 kHz
        x = 0.02 * rng.standard_normal(n)
        for _ in range(int(rng.integers(15, 40))):
            length = int(SR_IN * rng.uniform(0.05, 0.15))
            start = int(rng.integers(0, n - length))
            tt = np.arange(length) / SR_IN
            f_start, f_end = rng.uniform(2000, 7000, size=2)
            phase = 2 * np.pi * (f_start * tt + (f_end - f_start) * tt ** 2 / (2 * tt[-1]))
            x[start:start + length] += np.sin(phase) * np.hanning(length)
    elif kind == "rain":  # broadband hiss up to 22 kHz with random drops: content above 8 kHz
        x = rng.standard_normal(n) * 0.3
        drops = rng.integers(0, n, size=400)
        x[drops] += rng.uniform(-1, 1, size=drops.size)
    else:  # room: quiet pink noise with a faint mains hum
        x = _pink(rng, n) + 0.05 * np.sin(2 * np.pi * 50 * t)
    return x / np.max(np.abs(x))


def make_clips(folder: Path, count: int, seconds: float, seed: int = 100):
    """Write ``count`` stereo 16-bit 44.1 kHz clips; returns ``[(path, kind)]`` in sorted order."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n = int(SR_IN * seconds)
    clips = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        left = _scene(kind, rng, n) + 0.003 * _pink(rng, n)  # every scene has some room tone under it
        delay = int(rng.integers(1, 40))  # the right microphone hears it a little later and softer
        right = np.concatenate([np.zeros(delay), left[:-delay]]) * rng.uniform(0.6, 1.0)
        stereo = np.stack([left, right], axis=1)
        stereo *= 10 ** (rng.uniform(-12, -3) / 20) / np.max(np.abs(stereo))
        path = folder / f"clip_{i:03d}_{kind}.wav"
        sf.write(str(path), stereo, SR_IN, subtype="PCM_16")
        clips.append((path, kind))
    return clips


# ----------------------------------------------------------------------------- conversions


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children: less sensitive to a busy machine."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(convert, *args, **kwargs):
    """``(wall seconds, CPU seconds)`` of one conversion run."""
    cpu = cpu_seconds()
    wall = convert(*args, **kwargs)
    return wall, cpu_seconds() - cpu


def ffmpeg_convert(sources, out_dir: Path, processes: int = 4) -> float:
    """One ffmpeg process per file, ``processes`` at a time; returns wall seconds."""
    def one(src):
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-vn",
               "-ar", str(SR_OUT), "-ac", "1", "-sample_fmt", "s16", str(out_dir / src.name)]
        subprocess.run(cmd, check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=processes) as pool:
        list(pool.map(one, sources))
    return time.perf_counter() - start


def ours_convert(sources, out_dir: Path, jobs: int, resampler: str) -> float:
    """``auditoryhum.resample.convert_files`` in this process; returns wall seconds."""
    from auditoryhum.resample import Target, convert_files

    start = time.perf_counter()
    target = Target(SR_OUT, 1, "s16", resampler)
    outcomes = convert_files([str(s) for s in sources], target, output_dir=str(out_dir), jobs=jobs)
    elapsed = time.perf_counter() - start
    failed = [o for o in outcomes if o.status != "converted"]
    if failed:
        sys.exit(f"our conversion did not convert {len(failed)} clip(s), e.g. {failed[0]}")
    return elapsed


def cli_convert(folder: Path, out_dir: Path, jobs: int) -> float:
    """``util_resample.py`` as a user runs it; returns wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "util_resample.py"), "--filedir", str(folder / "*.wav"),
                    "--output_dir", str(out_dir), "--jobs", str(jobs), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- comparison


def snr_db(ours: np.ndarray, reference: np.ndarray, band_hz=None) -> float:
    """SNR of ``ours`` against ``reference`` (same length), optionally over 0..``band_hz`` only."""
    if band_hz is None:
        error, signal = ours - reference, reference
        return float(10 * np.log10(np.sum(signal ** 2) / max(np.sum(error ** 2), 1e-30)))
    # A Hann window keeps the large, legitimate differences above the band from leaking into it.
    window = np.hanning(reference.size)
    freqs = np.fft.rfftfreq(reference.size, 1 / SR_OUT)
    keep = freqs <= band_hz
    ref_spec = np.fft.rfft(reference * window)[keep]
    err_spec = np.fft.rfft(ours * window)[keep] - ref_spec
    return float(10 * np.log10(np.sum(np.abs(ref_spec) ** 2) / max(np.sum(np.abs(err_spec) ** 2), 1e-30)))


def compare(clips, ours_dir: Path, ff_dir: Path):
    """Per clip ``(kind, in-band SNR, full-band SNR, identical)``; checks rates, channels and lengths agree."""
    import soundfile as sf

    rows = []
    for path, kind in clips:
        ours, sr_ours = sf.read(str(ours_dir / path.name), dtype="float64")
        ref, sr_ref = sf.read(str(ff_dir / path.name), dtype="float64")
        if (sr_ours, ours.ndim, ours.size) != (sr_ref, ref.ndim, ref.size):
            sys.exit(f"{path.name}: ours {sr_ours} Hz {ours.shape} vs ffmpeg {sr_ref} Hz {ref.shape}")
        same = bool(np.array_equal(ours, ref))
        if same:  # no error at all: the SNR is infinite, not the 1e-30 floor
            rows.append((kind, float("inf"), float("inf"), True))
        else:
            rows.append((kind, snr_db(ours, ref, IN_BAND * SR_OUT / 2), snr_db(ours, ref), False))
    return rows


EDGE_TONES_HZ = (6400, 7200, 7600, 7900, 9000)  # the last lies above the new Nyquist frequency


def edge_response(folder: Path):
    """Gain (dB) of each resampler for tones near and above the new Nyquist frequency.

    A tone above it can only appear as its alias at ``SR_OUT - f``; the gain is measured there.
    """
    import soundfile as sf
    from auditoryhum.resample import Target, convert_file

    t = np.arange(SR_IN * 2) / SR_IN
    gains = {**{f"ours, {r}": [] for r in RESAMPLERS}, "ffmpeg": []}
    for f in EDGE_TONES_HZ:
        src = folder / f"tone_{f}.wav"
        sf.write(str(src), 0.5 * np.sin(2 * np.pi * f * t), SR_IN, subtype="FLOAT")
        for name in gains:
            dst = folder / f"tone_{f}_{name.replace(', ', '_')}.wav"
            if name.startswith("ours"):
                convert_file(str(src), str(dst), Target(SR_OUT, 1, "s16", name.split(", ")[1]))
            else:
                subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), "-ar", str(SR_OUT),
                                "-ac", "1", "-sample_fmt", "s16", str(dst)], check=True)
            y, _ = sf.read(str(dst), dtype="float64")
            y = y[SR_OUT // 4: -SR_OUT // 4]  # steady state
            window = np.hanning(y.size)
            spectrum = np.abs(np.fft.rfft(y * window)) / (np.sum(window) / 2)
            freqs = np.fft.rfftfreq(y.size, 1 / SR_OUT)
            heard_at = f if f < SR_OUT / 2 else SR_OUT - f
            level = spectrum[np.abs(freqs - heard_at) < 20].max()
            gains[name].append(20 * np.log10(max(level, 1e-12) / 0.5))
    return gains


def print_snr_table(name: str, rows) -> None:
    in_band = np.array([r[1] for r in rows])
    full = np.array([r[2] for r in rows])
    band = IN_BAND * SR_OUT / 2
    print(f"\nSNR of ours ({name} resampler) against ffmpeg's output, per clip (dB; inf: sample-identical):")
    print(f"  {'':10s} {'in-band 0-' + format(band / 1000, 'g') + ' kHz':>22s} {'full band 0-8 kHz':>22s} {'identical':>11s}")
    print(f"  {'':10s} {'min':>10s} {'median':>11s} {'min':>10s} {'median':>11s}")
    for kind in KINDS + ("all",):
        sel = [i for i, r in enumerate(rows) if kind in ("all", r[0])]
        same = sum(rows[i][3] for i in sel)
        print(f"  {kind:10s} {in_band[sel].min():10.1f} {np.median(in_band[sel]):11.1f} {full[sel].min():10.1f} "
              f"{np.median(full[sel]):11.1f} {same:5d}/{len(sel):<5d}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workdir", help="keep the clips and outputs here (default: a temporary folder, removed)")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("bench_resample: ffmpeg is not on PATH; install it (e.g. apt-get update && apt-get install -y ffmpeg) "
              "to compare against the published recipe", file=sys.stderr)
        return 2
    from auditoryhum.console import set_quiet
    from auditoryhum.resample import DEFAULT_RESAMPLER

    set_quiet(True)  # no progress bars inside the timed calls
    version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir) if args.workdir else Path(tmp)
        names = ["clips", "cli_j2", "ffmpeg", "alias"] + [f"{r}_j{j}" for r in RESAMPLERS for j in (1, 2)]
        folders = {name: root / name for name in names}
        for folder in folders.values():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        start = time.perf_counter()
        clips = make_clips(folders["clips"], args.clips, args.seconds)
        print(f"{args.clips} clips of {args.seconds:g} s, 44.1 kHz stereo s16, {len(KINDS)} scene types "
              f"(generated in {time.perf_counter() - start:.1f} s); target 16 kHz mono s16; {os.cpu_count()} CPUs; {version}; "
              f"default resampler: {DEFAULT_RESAMPLER}")
        sources = [p for p, _ in clips]

        reference = "ffmpeg, one process per file, 4 at a time"
        times = {}
        for resampler in RESAMPLERS:
            for jobs in (1, 2):
                times[f"ours ({resampler}), in process, jobs={jobs}"] = timed(
                    ours_convert, sources, folders[f"{resampler}_j{jobs}"], jobs=jobs, resampler=resampler)
        times[f"ours ({DEFAULT_RESAMPLER}), util_resample.py --jobs 2"] = timed(
            cli_convert, folders["clips"], folders["cli_j2"], jobs=2)
        times[reference] = timed(ffmpeg_convert, sources, folders["ffmpeg"])
        ref_wall, ref_cpu = times[reference]
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\ntime for all clips (ratio = ffmpeg's time / this time; load average {load:.1f} at the end):")
        print(f"  {'':48s} {'wall':>8s} {'per clip':>10s} {'ratio':>7s} {'CPU':>9s} {'ratio':>7s}")
        for name, (wall, cpu) in times.items():
            print(f"  {name:48s} {wall:7.2f}s {1000 * wall / args.clips:7.1f} ms {ref_wall / wall:6.1f}x {cpu:8.2f}s {ref_cpu / cpu:6.1f}x")

        identical = all((folders[f"{DEFAULT_RESAMPLER}_j1"] / p.name).read_bytes() == (folders[d] / p.name).read_bytes()
                        for p in sources for d in (f"{DEFAULT_RESAMPLER}_j2", "cli_j2"))
        print(f"\nour outputs ({DEFAULT_RESAMPLER} resampler) identical across jobs=1, jobs=2 and the CLI: {identical}")

        results = {}
        for resampler in RESAMPLERS:
            results[resampler] = compare(clips, folders[f"{resampler}_j1"], folders["ffmpeg"])
            print_snr_table(resampler, results[resampler])

        gains = edge_response(folders["alias"])
        print("\nwhere the full band differs: gain (dB) for a tone near or above the new Nyquist frequency")
        print(f"  {'tone (Hz)':16s}" + "".join(f"{f:>9d}" for f in EDGE_TONES_HZ) + f"   ({EDGE_TONES_HZ[-1]} Hz: its alias at {SR_OUT - EDGE_TONES_HZ[-1]} Hz)")
        for name, row in gains.items():
            print(f"  {name:16s}" + "".join(f"{g:9.1f}" if g > -120 else f"{'< -120':>9s}" for g in row))

        full = np.array([r[2] for r in results[DEFAULT_RESAMPLER]])
        passed = full.min() >= 40.0
        print(f"\nfull-band SNR of the default resampler ({DEFAULT_RESAMPLER}) >= 40 dB for every clip: "
              f"{'PASS' if passed else 'FAIL'} (min {full.min():.1f} dB)")
        return 0 if passed and identical else 1


if __name__ == "__main__":
    sys.exit(main())
