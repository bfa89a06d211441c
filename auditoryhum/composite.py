"""Composite labels: the per-cluster label distributions an LLM summarises into one label."""

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from auditoryhum.io.artefacts import NO_LABEL_CLUSTER, NOISE_CLUSTER, TaxonomyRow

COMPOSITE_PROMPT = (
    "Provide a short sentence to describe this set of audio samples. "
    "The frequency distribution of individual labels for this set of audio samples is provided:"
)


@dataclass
class ClusterLabelStats:
    """Label counts per cluster and, per label, how many clusters it falls in."""

    per_cluster: Dict[int, List[Tuple[str, int]]]  # cluster -> [(label, count)], by count desc then label
    clusters_per_label: List[Tuple[str, int]]  # [(label, number of clusters)], by that number desc then label
    n_without_label: int = 0  # clips left out: an empty kept label, or the no-label id -2

    @property
    def n_shared_labels(self) -> int:
        return sum(1 for _, m in self.clusters_per_label if m > 1)


def _by_count_then_name(counts) -> List[Tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def cluster_label_stats(cluster_ids: Sequence[int], labels: Sequence[str]) -> ClusterLabelStats:
    """Distribution of ``labels`` within each cluster of ``cluster_ids`` (the two are line-aligned).

    A clip without a label (empty kept label, or cluster id :data:`NO_LABEL_CLUSTER`) is not
    counted: ``""`` is no label, and such clips form no cluster (``n_without_label`` counts them).
    """
    if len(cluster_ids) != len(labels):
        raise ValueError("cluster_ids and labels must have the same length")
    per_cluster: Dict[int, Counter] = {}
    without = 0
    for cluster, label in zip(cluster_ids, labels):
        if not label.strip() or int(cluster) == NO_LABEL_CLUSTER:
            without += 1
            continue
        per_cluster.setdefault(int(cluster), Counter())[label] += 1
    membership: Counter = Counter()
    for counts in per_cluster.values():
        membership.update(counts.keys())
    return ClusterLabelStats(
        per_cluster={c: _by_count_then_name(per_cluster[c]) for c in sorted(per_cluster)},
        clusters_per_label=_by_count_then_name(membership),
        n_without_label=without,
    )


def cluster_prompt(distribution: Sequence[Tuple[str, int]]) -> str:
    """The composite-label prompt for one cluster: instruction, ``<label>, <count>`` lines, total."""
    lines = [COMPOSITE_PROMPT]
    lines += [f"{label}, {count}" for label, count in distribution]
    lines.append(f"Total samples: {sum(count for _, count in distribution)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# the naming request sent to a small local chat model

# cluster_prompt is the paper's text: composite_label_stats.py prints it (a published format) and
# the paper's models (Gemini, the Qwen Omni thinker) are asked with it. A small chat model
# (SmolLM2-135M, the bundled one) follows its "Provide a short sentence" over any system
# instruction and writes "The audio samples are a mix of ..., with a total of 9 samples". Asked
# a direct question about a few labels, it answers "The scene is a busy restaurant": a name
# clean_composite_answer can take out. Measured on the bundled example's six clusters.
NAMING_QUESTION = "What is the scene? Answer in two or three words."
#: Labels of a cluster (its most frequent) in the short naming prompt: more make the small
#: model list them back instead of naming the scene.
NAMING_TOP_LABELS = 3
PROMPT_STYLES = ("paper", "short")


def naming_prompt(distribution: Sequence[Tuple[str, int]], style: str = "paper") -> str:
    """The prompt that asks a chat model to name one cluster.

    Parameters
    ----------
    distribution : sequence of (str, int)
        The cluster's ``(label, count)`` pairs, most frequent first.
    style : {"paper", "short"}
        ``"paper"``: :func:`cluster_prompt`, the paper's request (the full distribution and the
        total). ``"short"``: ``Sounds heard: <label>, <label>, <label>. <NAMING_QUESTION>``
        with the :data:`NAMING_TOP_LABELS` most frequent labels, for small local chat models.

    Returns
    -------
    prompt : str
    """
    if style == "paper":
        return cluster_prompt(distribution)
    if style != "short":
        raise ValueError(f"style must be one of {PROMPT_STYLES}, got {style!r}")
    labels = ", ".join(label for label, _ in distribution[:NAMING_TOP_LABELS])
    return f"Sounds heard: {labels}. {NAMING_QUESTION}"


def prompt_style_for(backend: str, family_key: Optional[str] = None) -> str:
    """The naming prompt style of a backend: ``"paper"`` for Gemini and the audio-LLM families
    (the paper's models, which answer its prompt with a name), ``"short"`` for any other
    Hugging Face chat model (``family_key`` ``None``: a plain causal LM such as SmolLM2)."""
    return "paper" if backend == "gemini" or family_key is not None else "short"


def format_stats_report(stats: ClusterLabelStats) -> str:
    """The text ``composite_label_stats.py`` prints (the published format, deterministic order)."""
    out = []
    for distribution in stats.per_cluster.values():
        out.append(cluster_prompt(distribution))
        out.append("")
    out += [f"{label}, belongs to this many clusters: {m}" for label, m in stats.clusters_per_label]
    out.append(f"Total labels: {len(stats.clusters_per_label)}")
    out.append(f"Total labels belonging to more than 1 cluster: {stats.n_shared_labels}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------
# composite naming (composite_label.py): the instruction, the answer clean-up, the outputs

# The system instruction sent with every cluster's prompt (COMPOSITE_PROMPT asks for "a short
# sentence"; this asks for the concise, neutral label a taxonomy needs).
COMPOSITE_SYSTEM_INSTRUCTION = (
    "Answer with a short noun phrase of at most six words naming the auditory scene these clips share. "
    "No preamble, no punctuation at the end."
)

# HDBSCAN's noise label. Its clips share no dense region, so no LLM is asked to name them: the
# cluster is written with the fixed composite label NOISE_COMPOSITE_LABEL.
NOISE_COMPOSITE_LABEL = "noise"

from auditoryhum.defaults import COMPOSITE_TOP_LABELS as DEFAULT_TOP_LABELS  # noqa: E402

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_LINE_MARKUP = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+\u2022]\s+|\d{1,3}[.)]\s+)")
_INLINE_MARKUP = re.compile(r"\*\*|__|`+|~~")
_PREFIX = re.compile(r"^(?:composite\s+)?(?:label|name|answer|scene|sounds?)\s*:\s*", re.IGNORECASE)
_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e\u2039\u203a"
_END_PUNCTUATION = ".,;:!?\u2026\u3002"


def _printable(text: str) -> str:
    # Control and format characters (a random or broken model emits them) would corrupt the CSV
    # or the terminal; U+FFFD marks bytes that decoded to nothing.
    return "".join(" " if unicodedata.category(c) in ("Cc", "Cf") or c == "\ufffd" else c for c in text)


def clean_composite_answer(text: str) -> str:
    """A model's answer as one clean composite label.

    Steps: drop reasoning (``<think>...</think>``, or everything before a lone ``</think>``);
    take the first line that holds text after list/heading/quote markers are removed; delete
    inline markdown (``**``, ``__``, backticks, ``~~``) and control characters; drop a leading
    ``Label:`` (also ``Composite label:``, ``Name:``, ``Answer:``, ``Scene:``); strip
    surrounding quotes and trailing punctuation; collapse whitespace. Then a descriptive
    sentence (a small model's answer) is cut down to its name: a leading "The audio samples
    are a mix of", "The sound(s) of", "The scene is a", "This is a" ... is dropped, and with
    it "sounds, including"; the text is cut at its first verb ("is", "are", "has", ...),
    "that"/"which", ", with", "such as", a count (", 9"), and the first sentence end; after
    a dropped opening also at "with" and at the first comma (when two or more words precede
    it), and a leading article goes. At most :data:`MAX_NAME_WORDS` words are kept (whole
    comma-separated items where possible), without a dangling "and"/"of"/"in" at the end.
    A label that is already a name ("Park with birds") is unchanged. Case is kept.

    Parameters
    ----------
    text : str
        The raw answer (new tokens only, special tokens skipped).

    Returns
    -------
    label : str
        The label, or ``""`` when nothing usable is left.

    Examples
    --------
    >>> clean_composite_answer('**Label:** "Busy street traffic."\\nThese clips share cars.')
    'Busy street traffic'
    """
    text = _THINK_BLOCK.sub("\n", text)
    if re.search(r"</think>", text, re.IGNORECASE):
        text = re.split(r"</think>", text, flags=re.IGNORECASE)[-1]
    if re.search(r"<think>", text, re.IGNORECASE):
        text = re.split(r"<think>", text, flags=re.IGNORECASE)[0]  # reasoning cut off by the token limit
    for line in text.splitlines():
        line = _INLINE_MARKUP.sub("", _printable(line)).strip()
        line = _LINE_MARKUP.sub("", line).strip()
        previous = None
        while line != previous:
            previous = line
            line = _PREFIX.sub("", line)
            line = line.strip().strip(_QUOTES).strip().rstrip(_END_PUNCTUATION)
        line = _shorten(" ".join(line.split()))
        if line:
            return line
    return ""


# A small chat model (SmolLM2-135M) answers a naming request with a sentence about the clips
# ("The audio samples are a mix of open field, urban street, and outdoor park, with a total of
# 9 samples", "The sounds of wind noise, engine rumble, ..."), where a large one gives the name.
# Such openings say nothing about the scene: they are dropped, and the sentence is cut where it
# stops naming (its verb, a "with ..." tail, the end of the first sentence).
_FILLER = re.compile(
    r"^(?:(?:the|these|this|all)\s+)?(?:set\s+of\s+|group\s+of\s+|cluster\s+of\s+)?"
    r"(?:audio\s+)?(?:samples?|clips?|recordings?|sounds?|audio|noises?)\s+(?:of\s+)?"
    r"(?:(?:in\s+)?(?:this|the)\s+(?:set|group|cluster)\s+)?"
    r"(?:(?:are|is|include|includes|contain|contains|consist\s+of|consists\s+of|feature|features|describe|"
    r"describes|depict|depicts|capture|captures|heard\s+(?:here\s+)?(?:are|is))\s+)?"
    r"(?:(?:a|an|the)\s+)?(?:(?:mix|mixture|collection|combination|blend|variety|set|group|range|series)\s+of\s+)?"
    r"|^(?:this|it)\s+(?:is|sounds\s+like)\s+(?:(?:a|an|the)\s+)?(?:(?:mix|collection|combination)\s+of\s+)?"
    r"|^(?:the\s+)?(?:single\s+)?(?:sound\s+)?(?:acoustic\s+)?(?:scene|setting|place|location|source)\s+(?:described\s+|heard\s+)?(?:here\s+)?"
    r"(?:is|could\s+be|might\s+be|would\s+be)\s+(?:(?:a|an|the)\s+)?"
    r"(?:(?:mix|mixture|collection|combination|blend|variety|soundscape)\s+of\s+)?",
    re.IGNORECASE,
)
_GENERIC_HEAD = re.compile(r"^(?:different\s+|various\s+)?(?:sounds?|noises?|audio|things)\s*,?\s+"
                           r"(?:including|such\s+as|like)\s+", re.IGNORECASE)
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
# Where a descriptive sentence leaves the name: a finite verb, a "with ..." / "such as ..." tail
# or a count ("..., 9 samples"), and the first sentence end.
_SENTENCE_TAIL = re.compile(
    r"(?:,?\s+(?:is|are|was|were|has|have|can|creates?|makes?|fills?|which|that|such\s+as|including|featuring)\b"
    r"|,\s*with\b|\s+with\s+a\s+total\b|,\s*\d|\s*\(\d|[.!?;:](?:\s|$)).*$",
    re.IGNORECASE | re.DOTALL,
)
# Words a name does not end on once it is cut short.
_DANGLING = {"and", "or", "of", "with", "the", "a", "an", "in", "on", "at", "for", "to", "from", "by", "as", "&"}
MAX_NAME_WORDS = 6


def _shorten(label: str) -> str:
    """``label`` without a descriptive sentence's opening and tail, in at most
    :data:`MAX_NAME_WORDS` words (a label that is already a name comes back unchanged)."""
    core = _FILLER.sub("", label, count=1)
    sentence = core != label
    if sentence:
        # "The scene is a mix of sounds, including a background hum": the name follows.
        core = _GENERIC_HEAD.sub("", core, count=1)
    core = _SENTENCE_TAIL.sub("", core)
    if sentence:
        # After "The scene is a ...", a comma or "with" starts the description ("busy
        # restaurant, people talking", "forest with a soft ..."); a one-word head before a
        # comma is an adjective of a longer name ("small, isolated town").
        core = _LEADING_ARTICLE.sub("", core)
        core = re.sub(r"\s+with\b.*$", "", core, flags=re.IGNORECASE | re.DOTALL)
        head = core.split(",", 1)[0]
        if len(head.split()) >= 2:
            core = head
    elif core != label:
        core = _LEADING_ARTICLE.sub("", core)
    words = core.split()
    if len(words) > MAX_NAME_WORDS:
        # A list of labels: keep the whole items that fit, not half of the next one.
        fit = [i + 1 for i, w in enumerate(words[:MAX_NAME_WORDS]) if w.endswith(",") or words[i + 1].lower() == "and"]
        words = words[:fit[-1]] if fit else words[:MAX_NAME_WORDS]
    while words and (words[-1].lower().strip(",") in _DANGLING):
        words.pop()
    core = " ".join(words).strip().strip(_QUOTES).rstrip(_END_PUNCTUATION).strip()
    return core


# Words that say nothing about which scene a name is of.
_GENERIC_WORDS = {"sound", "noise", "audio", "scene", "mix", "and", "of", "the", "a", "an", "in", "with", "on", "at"}


def _stems(text: str) -> set:
    words = re.findall(r"[^\W\d_]+", text.lower())
    stems = {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words}
    # Five letters are enough to match "music"/"musical", "restaurant"/"restaurants".
    return {w[:5] for w in stems if w not in _GENERIC_WORDS}


def grounded_label(name: str, distribution: Sequence[Tuple[str, int]], n: int = NAMING_TOP_LABELS) -> str:
    """``name`` if it shares a word with the cluster's ``n`` most frequent labels (the ones a
    short naming prompt shows), else the most frequent label.

    A small model sometimes names a scene it was not shown (SmolLM2-135M: "car crash" for
    wind noise, engine rumble, road noise; "musical composition" for background hum,
    background voices, electrical hum); the cluster's own top label is then the honest name.
    Words match on their first five letters, a plural ``s`` dropped; "sound", "noise" and
    the like do not count. An empty ``name`` stays empty (a failed cluster).
    """
    if not name or not distribution:
        return name
    if _stems(name) & _stems(" ".join(label for label, _ in distribution[:n])):
        return name
    return distribution[0][0]


def settle_labels(labels: Dict[int, str], stats: ClusterLabelStats, style: str = "paper") -> Dict[int, str]:
    """The composite labels a run writes.

    ``"paper"`` style (Gemini, the Qwen Omni families): the model's labels as they are, as the
    paper reports them. ``"short"`` style (small local chat models): each name
    :func:`grounded_label` (not the noise cluster's fixed label), then :func:`distinct_labels`
    (the noise cluster -1 comes first and keeps ``noise``).

    Parameters
    ----------
    labels : dict of int to str
        Cluster id -> clean composite label (:func:`clean_composite_answer`).
    stats : ClusterLabelStats
    style : {"paper", "short"}
        The prompt style the labels were asked with (:func:`prompt_style_for`).
    """
    if style == "paper":
        return dict(labels)
    if style != "short":
        raise ValueError(f"style must be one of {PROMPT_STYLES}, got {style!r}")
    labels = {c: name if c == NOISE_CLUSTER else grounded_label(name, stats.per_cluster.get(c, []))
              for c, name in labels.items()}
    return distinct_labels(labels, stats)


def distinct_labels(labels: Dict[int, str], stats: ClusterLabelStats) -> Dict[int, str]:
    """Composite labels made distinct: a label given to several clusters (compared without
    case) stays with the first (lowest id) and every later one gets its most frequent label
    that the name does not already hold, as ``<name>, <label>`` (or ``<label>`` alone if that
    would pass :data:`MAX_NAME_WORDS` words); ``(cluster <id>)`` is appended as the last
    resort. Empty labels (failed clusters) are left as they are. Deterministic: the result
    depends only on ``labels`` and ``stats``.

    Parameters
    ----------
    labels : dict of int to str
        Cluster id -> clean composite label.
    stats : ClusterLabelStats
        The clusters' label distributions (most frequent first).

    Returns
    -------
    labels : dict of int to str
        The same keys; distinct non-empty values.

    Examples
    --------
    >>> s = cluster_label_stats([0, 0, 1], ["wind noise", "road noise", "birds chirping"])
    >>> distinct_labels({0: "outdoors", 1: "Outdoors"}, s)
    {0: 'outdoors', 1: 'Outdoors, birds chirping'}
    """
    out: Dict[int, str] = {}
    taken = set()
    for cluster in sorted(labels):
        name = labels[cluster]
        if name and name.lower() in taken:
            candidates = []
            for label, _ in stats.per_cluster.get(cluster, []):
                if label.lower() not in name.lower():
                    joined = f"{name}, {label}"
                    candidates.append(joined if len(joined.split()) <= MAX_NAME_WORDS else label)
            candidates.append(f"{name} (cluster {cluster})")
            name = next((c for c in candidates if c.lower() not in taken), candidates[-1])
        if name:
            taken.add(name.lower())
        out[cluster] = name
    return out


def format_top_labels(distribution: Sequence[Tuple[str, int]], n: int = DEFAULT_TOP_LABELS) -> str:
    """The ``top_labels`` field of a taxonomy row: the first ``n`` labels of a cluster's
    distribution (by count, then name) as ``label (count), label (count), ...``."""
    return ", ".join(f"{label} ({count})" for label, count in distribution[:n])


@dataclass(frozen=True)
class CompositeResult:
    """What naming one cluster gave: the clean label (``""`` when it failed), the raw answer
    (``None`` when no model was asked, as for noise) and the error, if any."""

    label: str
    answer: Optional[str] = None
    error: Optional[str] = None


def taxonomy_rows(stats: ClusterLabelStats, results: Dict[int, CompositeResult], top_labels: int = DEFAULT_TOP_LABELS) -> List[TaxonomyRow]:
    """One taxonomy row per cluster, clusters ascending (a cluster without a result gets an empty label)."""
    rows = []
    for cluster, distribution in stats.per_cluster.items():
        result = results.get(cluster)
        rows.append(TaxonomyRow(
            cluster=cluster,
            composite_label=result.label if result else "",
            n_clips=sum(count for _, count in distribution),
            top_labels=format_top_labels(distribution, top_labels),
        ))
    return rows


def composite_document(stats: ClusterLabelStats, results: Dict[int, CompositeResult], system_instruction: str,
                       run: Dict[str, Any], top_labels: int = DEFAULT_TOP_LABELS,
                       prompts: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
    """The JSON document of a composite-labelling run: every cluster's full label distribution,
    the prompt sent, the raw answer and the label kept, and the label-to-cluster counts that
    ``composite_label_stats.py`` prints.

    Parameters
    ----------
    stats : ClusterLabelStats
    results : dict of int to CompositeResult
    system_instruction : str
        The system message sent with every prompt.
    run : dict
        Backend, model and settings of the run (stored under ``"run"``).
    top_labels : int
        How many labels the taxonomy CSV's ``top_labels`` field holds.
    prompts : dict of int to str, optional
        The prompt sent for each cluster (:func:`naming_prompt`); default: the paper's
        :func:`cluster_prompt`.
    """
    clusters = []
    for cluster, distribution in stats.per_cluster.items():
        result = results.get(cluster, CompositeResult(""))
        noise = cluster == NOISE_CLUSTER
        clusters.append({
            "cluster": cluster,
            "noise": noise,
            "composite_label": result.label,
            "n_clips": sum(count for _, count in distribution),
            "n_distinct_labels": len(distribution),
            "top_labels": [{"label": label, "count": count} for label, count in distribution[:top_labels]],
            "distribution": [{"label": label, "count": count} for label, count in distribution],
            "prompt": None if noise else (prompts or {}).get(cluster, cluster_prompt(distribution)),
            "answer": result.answer,
            "error": result.error,
        })
    return {
        "format": "auditoryhum-composite-labels",
        "version": 1,
        "run": run,
        "instruction": COMPOSITE_PROMPT,
        "system_instruction": system_instruction,
        "noise_cluster": {"id": NOISE_CLUSTER, "composite_label": NOISE_COMPOSITE_LABEL, "named_by_model": False},
        "n_clips": sum(c["n_clips"] for c in clusters),
        "n_clusters": len(clusters),
        "clusters": clusters,
        "labels": [{"label": label, "clusters": m} for label, m in stats.clusters_per_label],
        "n_labels": len(stats.clusters_per_label),
        "n_shared_labels": stats.n_shared_labels,
    }
