"""The bundled example: a small synthetic scene set, generated deterministically.

Six clearly different scene types (speech-like babble, traffic, wind, tonal music,
birdsong-like chirps, room tone), eight clips each, four seconds long, stored in a mix of
rates, channel counts, bit depths and containers (WAV and FLAC) so that every preparation
step has real work to do. Beside the audio it writes what the model stages would produce for
these clips: a label file in the published format (several word pairs per clip, as an MLLM
writes them), a kept-label scores file (score ``nan``: no CLAP model has scored them, and
scores are never invented), a sparse human-annotations file, and the true scene of each clip.
"""

import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from auditoryhum.io.artefacts import ScoreRow, write_lines, write_scores
from auditoryhum.io.atomic import atomic_write

DURATION_S = 4.0
CLIPS_PER_SCENE = 8

# (sampling rate, channels, libsndfile subtype, container); clip k of every scene uses entry k.
STORAGE = [
    (44100, 2, "PCM_16", "WAV"),
    (48000, 1, "PCM_24", "WAV"),
    (22050, 1, "FLOAT", "WAV"),
    (32000, 2, "PCM_16", "FLAC"),
    (16000, 1, "PCM_16", "WAV"),  # already in the pipeline's format: resampling leaves it alone
    (44100, 1, "PCM_32", "WAV"),
    (48000, 2, "PCM_24", "FLAC"),
    (8000, 1, "PCM_U8", "WAV"),
]

# Word pairs an audio LLM would plausibly write for each scene.
VOCABULARY: Dict[str, List[str]] = {
    "babble": ["people talking", "crowd chatter", "indoor cafe", "background voices", "busy restaurant", "human speech"],
    "traffic": ["car traffic", "engine rumble", "busy road", "passing vehicles", "urban street", "road noise"],
    "wind": ["strong wind", "wind gusts", "outdoor ambience", "air blowing", "open field", "wind noise"],
    "music": ["piano music", "musical chords", "tonal melody", "instrumental music", "soft music", "music playing"],
    "birdsong": ["birds chirping", "bird song", "forest ambience", "nature sounds", "morning birds", "outdoor park"],
    "roomtone": ["quiet room", "room tone", "electrical hum", "indoor silence", "background hum", "empty office"],
}
# What a person would write where the model's label is vague (every fifth clip is annotated).
HUMAN_LABELS: Dict[str, str] = {
    "babble": "cafe chatter, people talking",
    "traffic": "road traffic, car engines",
    "wind": "wind gusts, outdoor wind",
    "music": "piano chords, instrumental music",
    "birdsong": "birds singing, forest birds",
    "roomtone": "quiet office, mains hum",
}
SCENES = list(VOCABULARY)


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 4) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, min(cutoff, 0.45 * sr), btype="low", fs=sr, output="sos"), x)


def _bandpass(x: np.ndarray, low: float, high: float, sr: int, order: int = 4) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    return sosfilt(butter(order, [low, min(high, 0.45 * sr)], btype="band", fs=sr, output="sos"), x)


def _smooth_envelope(rng, n: int, sr: int, rate_hz: float, floor: float) -> np.ndarray:
    """A slowly varying positive envelope (random points every 1/rate_hz s, interpolated)."""
    points = int(np.ceil(n / sr * rate_hz)) + 2
    knots = floor + (1 - floor) * rng.random(points)
    return np.interp(np.arange(n) / sr * rate_hz, np.arange(points), knots)


def _babble(rng, sr, n):
    t = np.arange(n) / sr
    out = np.zeros(n)
    for _ in range(5):  # five talkers: pulse trains through vowel-like resonances, syllable rhythm
        f0 = rng.uniform(95, 230) * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)))
        phase = np.cumsum(f0) / sr
        pulses = np.diff(np.floor(phase), prepend=0.0)
        voice = np.zeros(n)
        for formant in (rng.uniform(300, 800), rng.uniform(900, 2200), rng.uniform(2400, 3200)):
            voice += _bandpass(pulses, formant * 0.85, formant * 1.15, sr, order=2)
        syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5.5) * t + rng.uniform(0, 6)), 0, None) ** 2
        out += voice * syllables * _smooth_envelope(rng, n, sr, 1.5, 0.2)
    return out


def _traffic(rng, sr, n):
    t = np.arange(n) / sr
    rumble = _lowpass(np.cumsum(rng.standard_normal(n)) * 0.02 + rng.standard_normal(n), 350, sr)
    hum = sum(np.sin(2 * np.pi * h * rng.uniform(38, 55) * t) / h for h in (1, 2, 3, 4))
    passing = np.exp(-(((t - rng.uniform(0.8, 3.2)) / 0.9) ** 2))
    return rumble * (0.4 + passing) + 0.3 * hum * (0.3 + passing)


def _wind(rng, sr, n):
    return _bandpass(rng.standard_normal(n), 150, 1100, sr) * _smooth_envelope(rng, n, sr, 2.0, 0.05) ** 2


def _music(rng, sr, n):
    t = np.arange(n) / sr
    out = np.zeros(n)
    roots = rng.choice([0, 2, 5, 7, 9], size=4)
    chord_len = n // 4
    for c, root in enumerate(roots):
        seg = slice(c * chord_len, (c + 1) * chord_len)
        tt = t[seg] - t[seg][0]
        for interval in (0, 4, 7, 12):
            f = 220.0 * 2 ** ((root + interval) / 12)
            note = sum(np.sin(2 * np.pi * h * f * tt) / h ** 1.5 for h in range(1, 6))
            out[seg] += note * np.exp(-2.0 * tt)
    return out


def _birdsong(rng, sr, n):
    out = 0.02 * _bandpass(rng.standard_normal(n), 200, 2000, sr)
    position = int(rng.uniform(0.05, 0.3) * sr)
    while position < n:
        length = int(rng.uniform(0.04, 0.15) * sr)
        tt = np.arange(min(length, n - position)) / sr
        f_start, f_end = rng.uniform(2500, 5500), rng.uniform(2500, 6500)
        freq = f_start + (f_end - f_start) * tt / max(tt[-1], 1e-3) if tt.size else tt
        chirp = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.hanning(tt.size)
        out[position : position + tt.size] += chirp
        position += length + int(rng.uniform(0.05, 0.5) * sr)
    return out


def _roomtone(rng, sr, n):
    t = np.arange(n) / sr
    pinkish = _lowpass(rng.standard_normal(n), 500, sr, order=1)
    return 0.5 * pinkish + 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 100 * t)


SYNTHESISERS = {
    "babble": (_babble, 0.3),
    "traffic": (_traffic, 0.4),
    "wind": (_wind, 0.3),
    "music": (_music, 0.3),
    "birdsong": (_birdsong, 0.3),
    "roomtone": (_roomtone, 0.01),  # near silence
}


def synthesise(scene: str, clip: int, sr: int, channels: int) -> np.ndarray:
    """One clip of ``scene`` as (frames, channels) float in [-1, 1]; the same every time."""
    rng = np.random.default_rng(1000 * (SCENES.index(scene) + 1) + clip)
    n = int(DURATION_S * sr)
    function, peak = SYNTHESISERS[scene]
    mono = function(rng, sr, n)
    mono = peak * mono / max(np.max(np.abs(mono)), 1e-12)
    fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.01 * sr))
    mono = mono * fade
    if channels == 1:
        return mono[:, None]
    # a little inter-channel difference so stereo is really stereo
    delayed = np.concatenate([np.zeros(int(0.0005 * sr)), mono])[:n]
    return np.stack([mono, 0.9 * delayed], axis=1)


def _label_line(rng, scene: str) -> str:
    own = list(rng.choice(VOCABULARY[scene], size=rng.integers(3, 6), replace=False))
    if rng.random() < 0.25:  # the occasional confusion an MLLM makes
        other = SCENES[(SCENES.index(scene) + 1 + rng.integers(0, len(SCENES) - 1)) % len(SCENES)]
        own.insert(int(rng.integers(1, len(own) + 1)), str(rng.choice(VOCABULARY[other])))
    return ", ".join(own)


@dataclass
class ExampleSet:
    clips: List[str]
    scenes: List[str]
    label_file: str
    scores_file: str
    annotations_file: str
    truth_file: str


def make_example(out_dir: str, scored_audio_dir: str = None) -> ExampleSet:
    """Write the example scene set under ``out_dir`` and return where everything is.

    ``out_dir/clips/`` holds the audio; the scores file names each clip under
    ``scored_audio_dir`` (default ``out_dir/clips_16k``), where the pipeline's resampled copies go.
    """
    import soundfile as sf

    clip_dir = os.path.join(out_dir, "clips")
    scored_audio_dir = scored_audio_dir or os.path.join(out_dir, "clips_16k")
    items = []
    for scene in SCENES:
        for k in range(CLIPS_PER_SCENE):
            sr, channels, subtype, container = STORAGE[k % len(STORAGE)]
            name = f"{scene}_{k + 1:02d}.{'flac' if container == 'FLAC' else 'wav'}"
            items.append((name, scene, k, sr, channels, subtype, container))
    items.sort()  # the pipeline's sorted-path order
    for name, scene, k, sr, channels, subtype, container in items:
        data = synthesise(scene, k, sr, channels)
        with atomic_write(os.path.join(clip_dir, name), "wb") as f:
            sf.write(f, data, sr, subtype=subtype, format=container)

    rng = np.random.default_rng(2026)
    labels = [_label_line(rng, scene) for _, scene, *_ in items]
    annotations = [HUMAN_LABELS[scene] if i % 5 == 2 else "" for i, (_, scene, *_) in enumerate(items)]
    while annotations and not annotations[-1]:
        annotations.pop()  # annotation files end at the last annotated clip
    scores = [
        ScoreRow(i + 1, os.path.join(scored_audio_dir, name), line.split(",")[0].strip(), float("nan"))
        for i, ((name, *_), line) in enumerate(zip(items, labels))
    ]
    result = ExampleSet(
        clips=[os.path.join(clip_dir, item[0]) for item in items],
        scenes=[item[1] for item in items],
        label_file=os.path.join(out_dir, "text_labels.csv"),
        scores_file=os.path.join(out_dir, "top_label_scores.csv"),
        annotations_file=os.path.join(out_dir, "annotations.csv"),
        truth_file=os.path.join(out_dir, "true_scenes.csv"),
    )
    write_lines(result.label_file, labels)
    write_scores(result.scores_file, scores)
    write_lines(result.annotations_file, annotations)
    write_lines(result.truth_file, result.scenes)
    return result
