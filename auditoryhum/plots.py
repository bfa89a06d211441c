"""Figures: the t-SNE scatter of a clustering."""

from typing import Optional

import numpy as np

from auditoryhum.io.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def marker_areas(counts: np.ndarray) -> np.ndarray:
    """Marker area (points^2) of a point standing for ``counts`` rows: 36 (a plain point) at the
    mean count, in proportion to the count, kept between 6 and 900 so every point stays visible."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.clip(36.0 * counts / counts.mean(), 6.0, 900.0)


def save_cluster_scatter(points: np.ndarray, labels: np.ndarray, title: str, path: str,
                         counts: Optional[np.ndarray] = None) -> None:
    """Scatter 2-D ``points`` coloured by cluster (noise -1 in grey) into a 12x12 in PNG, atomically.

    Rows without a label (id -2) are never passed here: they have no point in the layout.
    One scatter per cluster, in id order (later clusters drawn over earlier ones); a legend
    up to 20 clusters. ``counts``: each point stands for that many rows (distinct rows of a
    large input) and gets a marker area by count (:func:`marker_areas`).
    """
    areas = None if counts is None else marker_areas(counts)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 12))
    try:
        clusters = np.unique(labels)
        cmap = plt.get_cmap("tab20" if clusters.size > 10 else "tab10")
        # Autoscaling after each scatter re-reads every earlier one (quadratic in the number
        # of clusters: seconds at k = 639). The view is set once at drawing time instead, from
        # the same data limits, so the figure is the same.
        ax.set_autoscale_on(False)
        scatters = []
        for j, c in enumerate(clusters):
            colour = "lightgrey" if c < 0 else cmap(j % cmap.N)
            name = "noise" if c < 0 else f"cluster {c}"
            members = labels == c
            scatters.append(_add_scatter(ax, points[members], colour, name, None if areas is None else areas[members]))
        ax.set_autoscale_on(True)
        legend = clusters.size <= 20
        if legend:
            ax.legend(loc="best", fontsize=9, markerscale=1.5)
        ax.set_title(title, fontsize=14)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        # With a legend its "best" place depends on the points: let savefig measure as usual.
        bbox = "tight" if legend else _tight_bbox_without(fig, scatters)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches=bbox)
    finally:
        plt.close(fig)


def _add_scatter(ax, xy, colour, name, areas=None):
    """What ``ax.scatter(x, y, s=36, color=colour, label=name, alpha=0.85, linewidths=0)`` adds.

    The same collection with the same properties, built directly: ``Axes.scatter`` re-parses
    its arguments, colours, sizes and marker for each call, though here they are fixed floats,
    one colour and the default marker (a whole plot of 14,400 points: 1.60 -> 1.25 s at k = 300,
    3.04 -> 2.49 s at k = 639; the rest is drawing each cluster). The tests compare the PNG bytes
    with the plain ``ax.scatter`` figure.
    """
    import matplotlib as mpl
    from matplotlib import collections, colors, markers, transforms

    marker = markers.MarkerStyle(mpl.rcParams["scatter.marker"])
    path = marker.get_path().transformed(marker.get_transform())
    rgba = colors.to_rgba_array(colour)
    # scatter(color=...) colours the faces and the (zero-width) edges alike.
    collection = collections.PathCollection(
        (path,), np.array([36.0]) if areas is None else areas, facecolors=rgba, edgecolors=rgba, linewidths=0,
        offsets=np.column_stack([np.asarray(xy[:, 0], dtype=float), np.asarray(xy[:, 1], dtype=float)]),
        offset_transform=ax.transData, alpha=0.85,
    )
    collection.set_transform(transforms.IdentityTransform())
    collection.set_label(name)
    ax.add_collection(collection)
    return collection


def _tight_bbox_without(fig, artists):
    """The box ``savefig(bbox_inches="tight")`` would crop to, measured with ``artists`` hidden.

    savefig measures by drawing the whole figure once without rendering, then draws it again
    to render: with hundreds of scatter collections the first pass is a third of the plot's
    time. Scatters are clipped to the axes, so they never count in the box; measuring with
    them hidden gives the same box (the tests compare the PNG bytes), and the figure is then
    drawn once.
    """
    import matplotlib as mpl

    for artist in artists:
        artist.set_visible(False)
    try:
        renderer = fig.canvas.get_renderer()
        with renderer._draw_disabled():
            fig.draw(renderer)
        box = fig.get_tightbbox(renderer)
    finally:
        for artist in artists:
            artist.set_visible(True)
    pad = mpl.rcParams["savefig.pad_inches"]
    return box.padded(pad, pad)


def cluster_plot_title(algorithm_name: str, n_clusters: Optional[int], found: int, noise: int = 0) -> str:
    if n_clusters is None:
        return f"{algorithm_name}: {found} clusters found, {noise} noise points"
    return f"{algorithm_name}, k = {n_clusters}"


def save_sweep_plot(
    ks: np.ndarray,
    silhouette: np.ndarray,
    adjusted: np.ndarray,
    chosen_k: Optional[int],
    penalty: float,
    title: str,
    path: str,
) -> None:
    """Silhouette and adjusted score against k, the chosen k marked, into a 12x6 in PNG, atomically."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 6))
    try:
        marker = "o" if len(ks) <= 60 else None
        ax.plot(ks, silhouette, marker=marker, ms=3, lw=1.2, color="tab:blue", label="silhouette")
        ax.plot(ks, adjusted, marker=marker, ms=3, lw=1.2, color="tab:orange", label=f"adjusted (silhouette - {penalty:g} k)")
        if chosen_k is not None:
            i = int(np.flatnonzero(np.asarray(ks) == chosen_k)[0])
            ax.axvline(chosen_k, color="tab:red", ls="--", lw=1, label=f"chosen k = {chosen_k}")
            ax.plot([chosen_k, chosen_k], [silhouette[i], adjusted[i]], "o", color="tab:red", ms=7)
        ax.set_xlabel("number of clusters k")
        ax.set_ylabel("score")
        ax.set_title(title, fontsize=14)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def save_score_histogram(
    scores: np.ndarray,
    threshold: Optional[float],
    threshold_label: str,
    title: str,
    path: str,
) -> None:
    """Histogram of the finite ``scores`` into a 10x4 in PNG, atomically; the review threshold
    (when not ``None``) drawn as a dashed line, the scores at or below it shaded.

    NaN scores (clips with no usable label) are left out; the caller says how many there were.
    """
    plt = _pyplot()
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(10, 4))
    try:
        # sqrt(N) bins, kept between 10 (a few clips) and 60 (thousands: the shape, not the noise).
        bins = int(min(60, max(10, np.ceil(np.sqrt(max(values.size, 1))))))
        ax.hist(values, bins=bins, color="tab:blue", alpha=0.85, edgecolor="white", linewidth=0.5)
        if threshold is not None:
            low = min(float(values.min()), threshold) if values.size else threshold
            ax.axvspan(low, threshold, color="tab:red", alpha=0.08, lw=0)
            ax.axvline(threshold, color="tab:red", ls="--", lw=1.5, label=threshold_label)
            ax.legend(loc="upper left", fontsize=9)
        ax.set_xlabel("CLAP score of the kept label (cosine similarity with the clip)")
        ax.set_ylabel("clips")
        ax.set_title(title, fontsize=13)
        ax.grid(True, axis="y", alpha=0.3)
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


def png_bytes(save, *args, **kwargs) -> bytes:
    """Run one of this module's ``save_*`` functions into a temporary file and return the PNG
    it wrote, for embedding in an HTML page (``save(*args, path=<temporary>, **kwargs)``)."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="auditoryhum-plot-") as folder:
        target = os.path.join(folder, "figure.png")
        save(*args, path=target, **kwargs)
        with open(target, "rb") as f:
            return f.read()
