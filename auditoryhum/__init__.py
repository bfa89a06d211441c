"""AuditoryHuM: auditory scene label generation and clustering with MLLMs and a human in the loop.

The Python front door: every stage of the pipeline is a function of this package, e.g.::

    import auditoryhum as ah

    ah.label("clips/*.wav", "models/qwen2-audio", "labels.csv", family="qwen2a")
    ah.embed_audio("clips/*.wav", "models/clap", "clap.npy", kind="clap")
    scored = ah.score_labels("clips/*.wav", "models/clap", "clap.npy", "labels.csv", "scores.csv")
    print(scored.mean_score)

Each returns a result whose ``outputs`` maps a role to the file written, with the numbers the
matching command prints and ``failures``. Importing the package is cheap: the stage functions
are loaded on first use, and heavy libraries (numpy, torch, transformers, librosa,
scikit-learn, matplotlib) only inside the functions that need them.
"""

import importlib

__version__ = "0.1.0"

from auditoryhum.errors import ParameterError, UserError  # noqa: E402,F401  (auditoryhum.UserError)

# Public name -> (module, attribute) of the stage functions, loaded lazily by __getattr__.
_STAGES = {
    # resample, sweep and report are also submodules of this package: importing one would replace
    # a function of that name here, so their stage functions are exported under other names.
    "resample_clips": ("auditoryhum.stages.resample", "resample"),
    "label": ("auditoryhum.stages.label", "label"),
    "label_gemini": ("auditoryhum.stages.label", "label_gemini"),
    "embed_mfcc": ("auditoryhum.stages.embed", "embed_mfcc"),
    "embed_audio": ("auditoryhum.stages.embed", "embed_audio"),
    "embed_tower": ("auditoryhum.stages.embed", "embed_tower"),
    "embed_sentences": ("auditoryhum.stages.embed", "embed_sentences"),
    "score_labels": ("auditoryhum.stages.score", "score_labels"),
    "keep_first_labels": ("auditoryhum.stages.score", "keep_first_labels"),
    "select_review": ("auditoryhum.stages.review", "select_review"),
    "merge_labels": ("auditoryhum.stages.review", "merge_labels"),
    "score_boost": ("auditoryhum.stages.review", "score_boost"),
    "composite_stats": ("auditoryhum.stages.composite", "composite_stats"),
    "composite_labels": ("auditoryhum.stages.composite", "composite_labels"),
    "composite_prompt": ("auditoryhum.stages.composite", "composite_prompt"),
    "cluster": ("auditoryhum.stages.cluster", "cluster"),
    "sweep_clusters": ("auditoryhum.stages.sweep", "sweep"),
    "write_report": ("auditoryhum.stages.report", "report"),
    "class_vectors": ("auditoryhum.stages.cvector", "class_vectors"),
    "summarize_example": ("auditoryhum.stages.example", "summarize_example"),
    # The array-level tier (numpy rows in, numbers out; no files): what the cluster scripts compute.
    "cluster_rows": ("auditoryhum.clustering.rows", "cluster_rows"),
    "sweep_rows": ("auditoryhum.clustering.rows", "sweep_rows"),
    "find_distinct_rows": ("auditoryhum.clustering.distinct", "find_distinct_rows"),
}

__all__ = ["UserError", "ParameterError", *_STAGES]


def __getattr__(name):
    try:
        module, attribute = _STAGES[name]
    except KeyError:
        raise AttributeError(f"module 'auditoryhum' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_STAGES))
