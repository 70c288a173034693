"""Clustering on the unit hypersphere, where ChemoMAE/WaveMAE latents live.

- ``CosineKMeans``: spherical k-means (k-means++ start, cosine distance ``1 - cos``, mean directions).
- ``VMFMixture``: a mixture of von Mises-Fisher distributions fitted by EM (Banerjee et al., JMLR 2005),
  with per-component concentrations, log-likelihood, BIC and AIC.
- ``select_n_clusters``: pick the number of clusters by BIC (vMF mixture) or by the elbow of the k-means
  inertia.
- ``sample_vmf`` / ``sample_vmf_mixture``: Wood's (1994) rejection sampler, for tests and simulations.

The vMF mixture and sampler live in ``vmf.py``, what both estimators share in ``sphere.py``; this module
is the clustering API.

Both estimators follow scikit-learn (``fit`` / ``predict`` / ``fit_predict``, fitted attributes end in
``_``): NumPy in gives NumPy out, a torch tensor in gives a tensor out on the same device. They compute on
the device of the data they are given (a CUDA tensor is clustered on that GPU, an array on the CPU); there
is no CUDA default. Rows are L2-normalised first (only directions matter), so a zero row is an error.
Large data are processed ``chunk_size`` rows at a time, so memory grows with ``chunk_size x n_clusters``,
not ``n_samples x n_clusters``. Random choices come from ``random_state`` or a CPU ``torch.Generator``, so a
seed gives the same start on every device.

Example:
    >>> import torch
    >>> from hf_mae import CosineKMeans, VMFMixture
    >>> z = torch.nn.functional.normalize(torch.randn(100, 8), dim=1)
    >>> labels = CosineKMeans(n_clusters=3, random_state=0).fit_predict(z)
    >>> vmf = VMFMixture(n_components=3, random_state=0).fit(z)
    >>> labels.shape, vmf.kappas_.shape
    (torch.Size([100]), torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from ..models.validation import check_choice, check_int
from .kmeans import CosineKMeans
from .sphere import NotFittedError, unit_rows
from .vmf import VMFMixture, log_bessel_iv, sample_vmf, sample_vmf_mixture, vmf_log_normalizer, vmf_mean_resultant

__all__ = [
    "CosineKMeans", "VMFMixture", "select_n_clusters", "KSelection", "NotFittedError", "log_bessel_iv",
    "vmf_log_normalizer", "vmf_mean_resultant", "sample_vmf", "sample_vmf_mixture",
]


# ----------------------------------------------------------------------------------------------------------
# Choosing K
# ----------------------------------------------------------------------------------------------------------
class KSelection(NamedTuple):
    """Result of ``select_n_clusters``: the chosen K, the score of every candidate, and how it was chosen."""

    best_k: int
    scores: dict[int, float]   # BIC (lower is better) or k-means inertia
    method: str


def _elbow(ks: Sequence[int], values: Sequence[float]) -> int:
    """The elbow of a decreasing curve: the inner candidate whose drop from the previous K is largest
    relative to the drop to the next K (where adding clusters stops paying). Needs consecutive-ish Ks."""
    if len(ks) < 3:
        raise ValueError(f"method='elbow' needs at least 3 candidate values of K, got {list(ks)}.")
    v = np.asarray(values, dtype=np.float64)
    before, after = v[:-2] - v[1:-1], v[1:-1] - v[2:]
    strength = before / np.maximum(after, 1e-12 * max(abs(v[0]), 1.0))
    return int(ks[1 + int(np.argmax(strength))])


def select_n_clusters(X, candidates: Iterable[int] = range(2, 11), *, method: str = "bic",
                      random_state: int | None = 0, **kwargs) -> KSelection:
    """Pick the number of clusters: the lowest BIC of a ``VMFMixture`` (``method="bic"``), or the elbow of
    the ``CosineKMeans`` inertia (``method="elbow"``: the K whose inertia drop from K-1 is largest relative
    to the drop to K+1, so never the first or last candidate). Extra keyword arguments go to the estimator.

    Example:
        >>> from hf_mae import select_n_clusters, sample_vmf_mixture
        >>> X, _ = sample_vmf_mixture(np.eye(4)[:3], [80.0] * 3, 300, seed=1)
        >>> select_n_clusters(X, range(1, 6)).best_k
        3
    """
    check_choice("method", method, ("bic", "elbow"))
    ks = sorted(set(candidates))
    if not ks:
        raise ValueError("`candidates` must hold at least one number of clusters.")
    for k in ks:
        check_int("candidates", k)
    X, _ = unit_rows(X)
    if ks[-1] > X.shape[0]:
        raise ValueError(f"The largest candidate K={ks[-1]} is larger than the number of samples ({X.shape[0]}).")
    scores = {}
    for k in ks:
        if method == "bic":
            scores[k] = VMFMixture(k, random_state=random_state, **kwargs).fit(X).bic()
        else:
            scores[k] = CosineKMeans(k, random_state=random_state, **kwargs).fit(X).inertia_
    best = min(scores, key=scores.get) if method == "bic" else _elbow(ks, [scores[k] for k in ks])
    return KSelection(best, scores, method)
