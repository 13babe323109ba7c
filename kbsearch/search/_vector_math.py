"""The geometry under `vectors`: unit rows, the principal-axes projection and the partition (IVF).

Pure numpy and scikit-learn on arrays; `vectors` decides when each is used and owns the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..storage import save_npz

#: Rows k-means is fitted on, per cluster (a random sample; every row is then assigned).
PARTITION_SAMPLE_PER_CLUSTER = 64


class Projection:
    """Principal axes of a base segment (scikit-learn's PCA), applied to every vector of the version."""

    def __init__(self, mean: np.ndarray, axes: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.axes = np.asarray(axes, dtype=np.float32)

    @classmethod
    def fit(cls, sample: np.ndarray, dims: int) -> Projection:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(dims, *sample.shape), svd_solver="randomized", random_state=0)
        pca.fit(np.asarray(sample, dtype=np.float32))
        return cls(pca.mean_, pca.components_)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return unit((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.axes.T)

    def save(self, path: Path) -> None:
        save_npz(path, mean=self.mean, axes=self.axes)

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path) as z:
            return cls(z["mean"], z["axes"])


@dataclass(frozen=True)
class Partition:
    """A segment's clusters: unit centroids and where each cluster's rows lie (the segment's rows are
    stored cluster by cluster: cluster ``c`` is rows ``offsets[c]:offsets[c + 1]``)."""

    centroids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def fit(cls, matrix: np.ndarray) -> tuple[Partition, np.ndarray]:
        """Cluster ``matrix``'s unit rows; the partition and the row order that stores it."""
        from sklearn.cluster import MiniBatchKMeans

        n = len(matrix)
        clusters = max(2, min(n, int(4 * np.sqrt(n))))
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, size=min(n, PARTITION_SAMPLE_PER_CLUSTER * clusters), replace=False))
        km = MiniBatchKMeans(n_clusters=clusters, random_state=0, n_init=1, batch_size=4096, max_iter=10)
        centroids = unit(km.fit(np.asarray(matrix[sample], dtype=np.float32)).cluster_centers_)
        assign = np.concatenate([np.argmax(matrix[i:i + 16384] @ centroids.T, axis=1)
                                 for i in range(0, n, 16384)])
        order = np.argsort(assign, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(assign, minlength=clusters))]).astype(np.int64)
        return cls(centroids, offsets), order

    def save(self, path: Path) -> None:
        save_npz(path, centroids=self.centroids, offsets=self.offsets)

    @classmethod
    def load(cls, path: Path, rows: int, dims: int) -> Partition:
        with np.load(path) as data:
            part = cls(np.asarray(data["centroids"], dtype=np.float32), np.asarray(data["offsets"], dtype=np.int64))
        offsets = part.offsets
        if (part.centroids.ndim != 2 or part.centroids.shape[1] != dims or len(offsets) != len(part.centroids) + 1
                or offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0)):
            raise ValueError("its clusters do not match its rows")
        return part

    def read(self, matrix: np.ndarray, q: np.ndarray, probe: int) -> tuple[np.ndarray, np.ndarray]:
        """The similarities to ``q`` of the rows of its nearest clusters, ``probe`` rows or a few more,
        and those rows' numbers."""
        near = np.argsort(-(self.centroids @ q), kind="stable")
        sizes = self.offsets[near + 1] - self.offsets[near]
        chosen = np.sort(near[:int(np.searchsorted(np.cumsum(sizes), probe)) + 1])
        spans = [(int(self.offsets[c]), int(self.offsets[c + 1])) for c in chosen]
        sims = np.concatenate([matrix[a:b] @ q for a, b in spans if b > a] or [np.zeros(0, np.float32)])
        rows = np.concatenate([np.arange(a, b) for a, b in spans] or [np.zeros(0, np.int64)])
        return sims, rows


def unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return (x / norms).astype(np.float32, copy=False)
