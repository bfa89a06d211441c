"""Clustering on arrays: Ward, the silhouette, the k sweep, k-means, spectral, HDBSCAN.

Pure computation, arrays in and arrays out: no files, no flags. The file stages
(:mod:`auditoryhum.stages.cluster`, :mod:`auditoryhum.stages.sweep`) call these modules.

- :mod:`~auditoryhum.clustering.algorithms`: the single-k clusterings and the t-SNE layout
- :mod:`~auditoryhum.clustering.ward`: the Ward tree and its cuts
- :mod:`~auditoryhum.clustering.silhouette`: scikit-learn's silhouette, bit for bit
- :mod:`~auditoryhum.clustering.k_sweep`: every k in one process, the penalised choice of k
"""
