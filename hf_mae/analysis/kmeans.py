"""Spherical k-means on the unit hypersphere: k-means++ start, cosine distance ``1 - cos``, mean directions.

Example:
    >>> import torch
    >>> z = torch.nn.functional.normalize(torch.randn(60, 4), dim=1)
    >>> CosineKMeans(n_clusters=3, random_state=0).fit_predict(z).shape
    torch.Size([60])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.validation import check_float, check_int
from .sphere import SphericalEstimator, as_output, make_generator, row_chunks, unit_rows, wide_dtype

__all__ = ["CosineKMeans", "best_similarity", "kmeans_plus_plus"]


# ----------------------------------------------------------------------------------------------------------
# Spherical k-means
# ----------------------------------------------------------------------------------------------------------
def best_similarity(X: torch.Tensor, centers: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of X: the largest cosine to a centre and that centre's index (chunked over rows)."""
    best = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    for rows in row_chunks(X.shape[0], chunk_size):
        best[rows], labels[rows] = (X[rows] @ centers.T).max(dim=1)   # (chunk, K) -> (chunk,)
    return best, labels


def kmeans_plus_plus(X: torch.Tensor, n_clusters: int, generator, chunk_size: int) -> torch.Tensor:
    """k-means++ seeding with the cosine distance: each new centre is drawn with probability ∝ distance²."""
    first = int(torch.randint(X.shape[0], (1,), generator=generator))
    centers = [X[first]]
    distance = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for rows in row_chunks(X.shape[0], chunk_size):
        distance[rows] = (1 - X[rows] @ centers[0]).clamp_min(0)
    for k in range(1, n_clusters):
        weights = distance.cpu().double().square()
        if float(weights.sum()) <= 0:
            raise ValueError(f"`X` has only {k} distinct direction(s), fewer than n_clusters={n_clusters}.")
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centers.append(X[pick])
        for rows in row_chunks(X.shape[0], chunk_size):
            distance[rows] = torch.minimum(distance[rows], (1 - X[rows] @ X[pick]).clamp_min(0))
    return torch.stack(centers)                                               # (K, D)


class CosineKMeans(SphericalEstimator):
    """Spherical k-means: clusters of directions, cosine distance ``1 - cos(x, centre)``, unit-norm centres.

    Args:
        n_clusters: number of clusters K.
        max_iter: most Lloyd iterations per start.
        tol: stop when no centre moves by more than ``tol`` in cosine distance.
        n_init: number of k-means++ starts; the one with the lowest inertia is kept.
        chunk_size: rows per block in the distance computations (bounds memory on large data).
        random_state: seed of the starts; ``generator`` (a CPU ``torch.Generator``) overrides it. With
            neither, torch's global RNG is used (fixed by ``torch.manual_seed``).

    Fitted attributes: ``cluster_centers_`` (K, D) unit vectors on the data's device, ``labels_`` (N,),
    ``inertia_`` (sum of cosine distances to the assigned centres), ``n_iter_``.

    Example:
        >>> import numpy as np
        >>> from hf_mae import CosineKMeans
        >>> X = np.array([[1, 0.1], [1, -0.1], [0.1, 1], [-0.1, 1]])
        >>> km = CosineKMeans(n_clusters=2, random_state=0).fit(X)
        >>> bool(km.labels_[0] == km.labels_[1] != km.labels_[2] == km.labels_[3])
        True
    """

    _params = ("n_clusters", "max_iter", "tol", "n_init", "chunk_size", "random_state")
    _fitted_tensors = ("cluster_centers_",)
    _fitted_scalars = ("inertia_", "n_iter_")

    def __init__(self, n_clusters: int = 8, *, max_iter: int = 100, tol: float = 1e-6, n_init: int = 1,
                 chunk_size: int = 16384, random_state: int | None = None,
                 generator: torch.Generator | None = None):
        check_int("n_clusters", n_clusters)
        check_int("max_iter", max_iter, minimum=0)
        check_float("tol", tol, minimum=0.0)
        check_int("n_init", n_init)
        check_int("chunk_size", chunk_size)
        if random_state is not None:
            check_int("random_state", random_state, minimum=0)
        self.n_clusters, self.max_iter, self.tol, self.n_init = n_clusters, max_iter, tol, n_init
        self.chunk_size, self.random_state, self.generator = chunk_size, random_state, generator

    def _check_samples(self, X: torch.Tensor) -> None:
        if self.n_clusters > X.shape[0]:
            raise ValueError(f"n_clusters={self.n_clusters} is larger than the number of samples ({X.shape[0]}).")

    def _lloyd(self, X: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, int]:
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            similarity, labels = best_similarity(X, centers, self.chunk_size)
            sums = torch.zeros_like(centers).index_add_(0, labels, X)                 # (K, D)
            counts = torch.bincount(labels, minlength=self.n_clusters)
            empty = torch.nonzero(counts == 0).flatten()
            if empty.numel():  # re-seed empty clusters at the points farthest from their centres
                far = torch.argsort(similarity)[: empty.numel()]
                sums[empty] = X[far]
            new_centers = F.normalize(sums, dim=1)
            shift = float((1 - (new_centers * centers).sum(dim=1)).max())
            centers = new_centers
            if shift <= self.tol and not empty.numel():
                break
        return centers, n_iter

    def fit(self, X, y=None) -> CosineKMeans:
        """Cluster the rows of X (N, D) by direction. Returns self."""
        X, as_numpy = unit_rows(X)
        self._check_samples(X)
        generator = make_generator(self.random_state, self.generator)
        best = None
        for _ in range(self.n_init):
            centers = kmeans_plus_plus(X, self.n_clusters, generator, self.chunk_size)
            centers, n_iter = self._lloyd(X, centers)
            similarity, labels = best_similarity(X, centers, self.chunk_size)
            inertia = float((1 - similarity).to(wide_dtype(X.device)).sum())
            if best is None or inertia < best[0]:
                best = (inertia, centers, labels, n_iter)
        self.inertia_, self.cluster_centers_, labels, self.n_iter_ = best
        self.labels_ = as_output(labels, as_numpy)
        return self

    def predict(self, X):
        """Index of the nearest centre (largest cosine) for each row of X."""
        self._check_fitted()
        X, as_numpy = unit_rows(X)
        self._check_dim(X)
        centers = self.cluster_centers_.to(device=X.device, dtype=X.dtype)
        return as_output(best_similarity(X, centers, self.chunk_size)[1], as_numpy)

    def fit_predict(self, X, y=None):
        """``fit(X)`` and return ``labels_``."""
        return self.fit(X).labels_

    def transform(self, X):
        """Cosine distances (N, K) from each row of X to each centre."""
        self._check_fitted()
        X, as_numpy = unit_rows(X)
        self._check_dim(X)
        centers = self.cluster_centers_.to(device=X.device, dtype=X.dtype)
        distances = torch.cat([1 - X[rows] @ centers.T for rows in row_chunks(X.shape[0], self.chunk_size)])
        return as_output(distances, as_numpy)
