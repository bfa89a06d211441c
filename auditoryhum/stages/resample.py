"""Resampling: convert clips to one rate, channel count and sample format (in place or into a folder)."""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

# The choices a caller may pass (sample formats, ffmpeg's names; resamplers): one definition, in
# auditoryhum.defaults, which auditoryhum.resample uses too.
from auditoryhum.defaults import BITS_CHOICES, DEFAULT_RESAMPLER, RESAMPLER_CHOICES  # noqa: F401 (re-exported)
from auditoryhum.recipe import RESAMPLE_BITS, RESAMPLE_CHANNELS, RESAMPLE_RATE
from auditoryhum.stages._base import StageResult, expand_clips, guarded


def default_jobs() -> int:
    """Files converted in parallel by default: min(4, CPUs)."""
    return min(4, os.cpu_count() or 1)


@dataclass
class ResampleResult(StageResult):
    """What :func:`resample` did.

    Attributes
    ----------
    outcomes : list of Outcome
        One per clip, in input order: ``source``, ``destination``, ``status``
        (``converted``, ``unchanged`` or ``failed``) and a message.
    counts : dict of str to int
        How many clips had each status.
    """

    outcomes: List[Any] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)


def resample(filedir: Union[str, Sequence[str]], *, sampling_rate: int = RESAMPLE_RATE, bits: str = RESAMPLE_BITS,
             channels: int = RESAMPLE_CHANNELS, output_dir: Optional[str] = None, jobs: Optional[int] = None,
             resampler: str = DEFAULT_RESAMPLER) -> ResampleResult:
    """Convert every clip to ``sampling_rate`` Hz, ``channels`` channels and sample format ``bits``.

    Parameters
    ----------
    filedir : str or sequence of str
        A glob of the clips or the clip paths.
    sampling_rate, channels, bits : int, int, str
        The target; default the recipe's 16 kHz, mono, ``s16``. Lossy Ogg/MP3 files keep their format.
    output_dir : str, optional
        Write converted copies here, mirroring the input folders; default: replace the originals
        (atomically, so a kill never leaves a half-written clip).
    jobs : int, optional
        Files converted in parallel (default min(4, CPUs)).
    resampler : {"ffmpeg", "soxr"}
        ``ffmpeg``: the filter of ffmpeg's default resampler (the recipe's audio); ``soxr``: soxr HQ.

    Returns
    -------
    ResampleResult
        ``failures`` lists each failed clip's message (the clip is left untouched).
    """
    from auditoryhum.validation import one_of, path_args, positive_int

    path_args(output_dir=output_dir, optional=("output_dir",))
    sampling_rate = positive_int(sampling_rate, "sampling_rate")
    channels = positive_int(channels, "channels")
    one_of(bits, BITS_CHOICES, "bits")
    one_of(resampler, RESAMPLER_CHOICES, "resampler")
    jobs = positive_int(default_jobs() if jobs is None else jobs, "jobs")
    sources, _ = expand_clips(filedir)
    # In place, every output is its own input by design; into output_dir, convert_files refuses a
    # folder that would overwrite an input. The guard still vets the inputs.
    with guarded("resample", {"filedir": sources}, {}):
        from auditoryhum.resample import Target, convert_files

        outcomes = convert_files(sources, Target(sampling_rate, channels, bits, resampler), output_dir, jobs=jobs)
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("converted", "unchanged", "failed")}
    outputs = {"output_dir": str(output_dir)} if output_dir else {}
    return ResampleResult(outputs=outputs, failures=[o.message for o in outcomes if o.status == "failed"],
                          outcomes=outcomes, counts=counts)
