"""The bundled example: how well each finished clustering of it recovers the true scenes."""

from dataclasses import dataclass, field
from typing import List

from auditoryhum.stages._base import StageResult


@dataclass(frozen=True)
class ClusteringScore:
    """One cluster-id file of the example: its name, clusters found (noise -1 not counted),
    noise clips, and the adjusted Rand index against the true scenes."""

    name: str
    n_clusters: int
    n_noise: int
    ari: float


@dataclass
class ExampleSummary(StageResult):
    """Every clustering found in ``<out_dir>/clusters``, in file-name order."""

    clusterings: List[ClusteringScore] = field(default_factory=list)


def summarize_example(out_dir: str) -> ExampleSummary:
    """Score every ``<out_dir>/clusters/*.csv`` against ``<out_dir>/true_scenes.csv`` (ARI).

    Parameters
    ----------
    out_dir : str
        The folder the example was generated into and run in. Nothing is written.
    """
    import glob
    import os

    from sklearn.metrics import adjusted_rand_score

    from auditoryhum.errors import UserError
    from auditoryhum.io.artefacts import read_cluster_ids, read_text_lines

    truth = read_text_lines(os.path.join(out_dir, "true_scenes.csv"), "true-scenes file")
    files = sorted(glob.glob(os.path.join(out_dir, "clusters", "*.csv")))
    if not files:
        raise UserError(f"no cluster-id files in {out_dir}/clusters; run the example first")
    scores = []
    for path in files:
        ids = read_cluster_ids(path)
        if len(ids) != len(truth):
            raise UserError(f"{path} has {len(ids)} lines but {len(truth)} clips")
        scores.append(ClusteringScore(os.path.splitext(os.path.basename(path))[0], len(set(ids.tolist()) - {-1}),
                                      int((ids < 0).sum()), float(adjusted_rand_score(truth, ids))))
    return ExampleSummary(clusterings=scores)
