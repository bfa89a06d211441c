"""Composite labels: the per-cluster label distributions an LLM summarises into one label."""

from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

COMPOSITE_PROMPT = (
    "Provide a short sentence to describe this set of audio samples. "
    "The frequency distribution of individual labels for this set of audio samples is provided:"
)


@dataclass
class ClusterLabelStats:
    """Label counts per cluster and, per label, how many clusters it falls in."""

    per_cluster: Dict[int, List[Tuple[str, int]]]  # cluster -> [(label, count)], by count desc then label
    clusters_per_label: List[Tuple[str, int]]  # [(label, number of clusters)], by that number desc then label

    @property
    def n_shared_labels(self) -> int:
        return sum(1 for _, m in self.clusters_per_label if m > 1)


def _by_count_then_name(counts) -> List[Tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def cluster_label_stats(cluster_ids: Sequence[int], labels: Sequence[str]) -> ClusterLabelStats:
    """Distribution of ``labels`` within each cluster of ``cluster_ids`` (the two are line-aligned)."""
    if len(cluster_ids) != len(labels):
        raise ValueError("cluster_ids and labels must have the same length")
    per_cluster: Dict[int, Counter] = {}
    for cluster, label in zip(cluster_ids, labels):
        per_cluster.setdefault(int(cluster), Counter())[label] += 1
    membership: Counter = Counter()
    for counts in per_cluster.values():
        membership.update(counts.keys())
    return ClusterLabelStats(
        per_cluster={c: _by_count_then_name(per_cluster[c]) for c in sorted(per_cluster)},
        clusters_per_label=_by_count_then_name(membership),
    )


def cluster_prompt(distribution: Sequence[Tuple[str, int]]) -> str:
    """The composite-label prompt for one cluster: instruction, ``<label>, <count>`` lines, total."""
    lines = [COMPOSITE_PROMPT]
    lines += [f"{label}, {count}" for label, count in distribution]
    lines.append(f"Total samples: {sum(count for _, count in distribution)}")
    return "\n".join(lines)


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
