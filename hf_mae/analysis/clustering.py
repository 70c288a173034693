"""Clustering on the unit hypersphere, where ChemoMAE/WaveMAE latents live.

- ``CosineKMeans``: spherical k-means (k-means++ start, cosine distance ``1 - cos``, mean directions).
- ``VMFMixture``: a mixture of von Mises-Fisher distributions fitted by EM (Banerjee et al., JMLR 2005),
  with per-component concentrations, log-likelihood, BIC and AIC.
- ``select_n_clusters``: pick the number of clusters by BIC (vMF mixture) or by the elbow of the k-means
  inertia.
- ``sample_vmf`` / ``sample_vmf_mixture``: Wood's (1994) rejection sampler, for tests and simulations.

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

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..models.validation import check_choice, check_float, check_int

__all__ = [
    "CosineKMeans", "VMFMixture", "select_n_clusters", "KSelection", "NotFittedError", "log_bessel_iv",
    "vmf_log_normalizer", "vmf_mean_resultant", "sample_vmf", "sample_vmf_mixture",
]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (a ValueError, like scikit-learn's)."""


# ----------------------------------------------------------------------------------------------------------
# Special functions, in float64. Only n_components values go through them per EM step, so they run on the
# CPU whatever the data's device (float64 is not available everywhere, e.g. on Apple MPS).
# ----------------------------------------------------------------------------------------------------------
_DEBYE_MIN_ORDER = 30.0  # from this order up the expansion below is within ~1e-9 (relative) of log I


def _log_iv_debye(nu: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """log I_nu(x) by the uniform (Debye) asymptotic expansion in nu, four correction terms (DLMF 10.41.3)."""
    z = x / nu
    root = torch.sqrt(1 + z * z)
    t = 1 / root
    eta = root + torch.log(z / (1 + root))
    t2 = t * t
    u1 = t * (3 - 5 * t2) / 24
    u2 = t2 * (81 - 462 * t2 + 385 * t2 ** 2) / 1152
    u3 = t * t2 * (30375 - 369603 * t2 + 765765 * t2 ** 2 - 425425 * t2 ** 3) / 414720
    u4 = t2 ** 2 * (4465125 - 94121676 * t2 + 349922430 * t2 ** 2 - 446185740 * t2 ** 3
                    + 185910725 * t2 ** 4) / 39813120
    series = 1 + u1 / nu + u2 / nu ** 2 + u3 / nu ** 3 + u4 / nu ** 4
    return nu * eta - 0.5 * math.log(2 * math.pi) - 0.5 * torch.log(nu * torch.ones_like(x)) + 0.5 * torch.log(t) \
        + torch.log(series)


def _log_iv_and_ratio(nu: float, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``log I_nu(x)`` and ``I_{nu+1}(x) / I_nu(x)`` for x > 0, nu >= 0, stable for any size of either.

    Low orders are shifted up to ``nu + m >= 20``, evaluated there by the Debye expansion, and brought back
    with the downward recurrence of the ratio r_j = I_{j+1}/I_j:  r_{j-1} = 1 / (2j/x + r_j), which is
    stable (a continued fraction); then log I_nu = log I_{nu+m} - sum_j log r_j.
    """
    steps = max(0, math.ceil(_DEBYE_MIN_ORDER - nu))
    top = nu + steps
    log_top = _log_iv_debye(top, x)
    ratio = torch.exp(_log_iv_debye(top + 1, x) - log_top)             # r_top
    log_iv = log_top
    for j in range(steps, 0, -1):                                       # orders top-1 down to nu
        ratio = 1 / (2 * (nu + j) / x + ratio)                          # r_{nu+j-1}
        log_iv = log_iv - torch.log(ratio)
    return log_iv, ratio


def log_bessel_iv(nu: float, x) -> torch.Tensor:
    """log of the modified Bessel function of the first kind, ``log I_nu(x)``, for nu >= 0 and x > 0.

    Stable where ``I_nu`` itself under- or overflows (large order, tiny or huge argument). Float64 result.

    >>> round(float(log_bessel_iv(0.5, 2.0)), 6)  # I_{1/2}(x) = sqrt(2/(pi x)) sinh(x)
    0.716002
    """
    check_float("nu", nu, minimum=0.0)
    x = torch.as_tensor(x, dtype=torch.float64)
    if not bool((x > 0).all()) or not bool(torch.isfinite(x).all()):
        raise ValueError("`x` must be finite and > 0 for log_bessel_iv.")
    return _log_iv_and_ratio(float(nu), x)[0]


def vmf_log_normalizer(kappa, dim: int) -> torch.Tensor:
    """log C_d(kappa) of the vMF density ``C_d(kappa) exp(kappa mu.x)`` on the sphere S^{d-1} in R^d.

    C_d(kappa) = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa)); at kappa -> 0 it tends to 1 / area(S^{d-1}).
    """
    kappa = torch.as_tensor(kappa, dtype=torch.float64).clamp_min(1e-10)
    nu = dim / 2 - 1
    return nu * torch.log(kappa) - (dim / 2) * math.log(2 * math.pi) - _log_iv_and_ratio(nu, kappa)[0]


def vmf_mean_resultant(kappa, dim: int) -> torch.Tensor:
    """A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa): the expected ``mu.x`` under vMF(mu, kappa)."""
    kappa = torch.as_tensor(kappa, dtype=torch.float64).clamp_min(1e-10)
    return _log_iv_and_ratio(dim / 2 - 1, kappa)[1]


def _estimate_kappa(rbar: torch.Tensor, dim: int, kappa_max: float, newton_steps: int = 2) -> torch.Tensor:
    """Maximum-likelihood kappa from the mean resultant length: Banerjee et al.'s closed-form start,
    kappa = rbar (d - rbar^2) / (1 - rbar^2), then Newton steps on A_d(kappa) = rbar (Sra, 2012)."""
    rbar = rbar.to(torch.float64).clamp(1e-8, 1 - 1e-10)
    kappa = (rbar * (dim - rbar ** 2) / (1 - rbar ** 2)).clamp(1e-8, kappa_max)
    for _ in range(newton_steps):
        a = vmf_mean_resultant(kappa, dim)
        slope = (1 - a ** 2 - (dim - 1) / kappa * a).clamp_min(1e-300)
        kappa = (kappa - (a - rbar) / slope).clamp(1e-8, kappa_max)
    return kappa


# ----------------------------------------------------------------------------------------------------------
# Input handling shared by the estimators
# ----------------------------------------------------------------------------------------------------------
def _unit_rows(X, name: str = "X") -> tuple[torch.Tensor, bool]:
    """X (N, D), tensor or array-like -> L2-normalised float tensor on X's device, and whether X was NumPy."""
    was_numpy = not isinstance(X, torch.Tensor)
    if was_numpy:
        array = np.asarray(X)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
        X = torch.from_numpy(np.ascontiguousarray(array))
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n_samples, n_features), got {tuple(X.shape)}.")
    if X.shape[0] == 0 or X.shape[1] < 2:
        raise ValueError(f"`{name}` needs at least 1 sample and 2 features, got shape {tuple(X.shape)}.")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.float()  # half precision would make the cosine too coarse; integers are promoted
    bad = ~torch.isfinite(X).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"`{name}` contains NaN or infinite values in rows {rows}; clean or impute them first.")
    norms = torch.linalg.vector_norm(X, dim=1)
    zero = norms <= torch.finfo(X.dtype).tiny
    if bool(zero.any()):
        rows = torch.nonzero(zero).flatten()[:10].tolist()
        raise ValueError(f"`{name}` has zero vectors in rows {rows}: a zero vector has no direction on the sphere.")
    return X / norms[:, None], was_numpy


def _out(values: torch.Tensor, as_numpy: bool):
    return values.cpu().numpy() if as_numpy else values


def _make_generator(random_state: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None:
        if generator.device.type != "cpu":
            raise ValueError(f"`generator` must be a CPU torch.Generator (draws are made on the CPU so that a "
                             f"seed gives the same start on every device), got one on {generator.device}.")
        return generator
    if random_state is not None:
        check_int("random_state", random_state, minimum=0)
        return torch.Generator().manual_seed(random_state)
    return None  # torch's global RNG: torch.manual_seed fixes it


def _wide(device: torch.device) -> torch.dtype:
    """The accumulation dtype: float64, except where a device has none (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class _SphericalEstimator:
    """save/load, parameter bookkeeping and fitted checks shared by the two estimators."""

    _params: tuple[str, ...] = ()
    _fitted_tensors: tuple[str, ...] = ()
    _fitted_scalars: tuple[str, ...] = ()

    def get_params(self) -> dict:
        """The constructor arguments (as in scikit-learn), without the generator."""
        return {name: getattr(self, name) for name in self._params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _check_fitted(self) -> None:
        if not all(hasattr(self, name) for name in self._fitted_tensors):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call `fit` first.")

    def _check_dim(self, X: torch.Tensor) -> None:
        expected = getattr(self, self._fitted_tensors[0]).shape[1]
        if X.shape[1] != expected:
            raise ValueError(f"`X` has {X.shape[1]} features but this model was fitted on {expected}.")

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one safetensors file (parameters and scalars in its metadata).

        >>> km = CosineKMeans(n_clusters=2, random_state=0).fit(torch.eye(4))
        >>> km.save("km.safetensors"); CosineKMeans.load("km.safetensors").n_clusters  # doctest: +SKIP
        2
        """
        from safetensors.torch import save_file

        self._check_fitted()
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in self._fitted_tensors}
        metadata = {"class": type(self).__name__, "params": json.dumps(self.get_params()),
                    "scalars": json.dumps({name: getattr(self, name) for name in self._fitted_scalars})}
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu"):
        """Read a model written by ``save``; its tensors are placed on ``device`` (CPU by default)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("class") != cls.__name__:
                raise ValueError(f"{str(path)!r} holds a {metadata.get('class')!r}, not a {cls.__name__}.")
            model = cls(**json.loads(metadata["params"]))
            for name in cls._fitted_tensors:
                setattr(model, name, handle.get_tensor(name).to(device))
        for name, value in json.loads(metadata["scalars"]).items():
            setattr(model, name, value)
        return model


# ----------------------------------------------------------------------------------------------------------
# Spherical k-means
# ----------------------------------------------------------------------------------------------------------
def _best_similarity(X: torch.Tensor, centers: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of X: the largest cosine to a centre and that centre's index (chunked over rows)."""
    best = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    for rows in _chunks(X.shape[0], chunk_size):
        best[rows], labels[rows] = (X[rows] @ centers.T).max(dim=1)   # (chunk, K) -> (chunk,)
    return best, labels


def _kmeans_plus_plus(X: torch.Tensor, n_clusters: int, generator, chunk_size: int) -> torch.Tensor:
    """k-means++ seeding with the cosine distance: each new centre is drawn with probability ∝ distance²."""
    first = int(torch.randint(X.shape[0], (1,), generator=generator))
    centers = [X[first]]
    distance = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    for rows in _chunks(X.shape[0], chunk_size):
        distance[rows] = (1 - X[rows] @ centers[0]).clamp_min(0)
    for k in range(1, n_clusters):
        weights = distance.cpu().double().square()
        if float(weights.sum()) <= 0:
            raise ValueError(f"`X` has only {k} distinct direction(s), fewer than n_clusters={n_clusters}.")
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centers.append(X[pick])
        for rows in _chunks(X.shape[0], chunk_size):
            distance[rows] = torch.minimum(distance[rows], (1 - X[rows] @ X[pick]).clamp_min(0))
    return torch.stack(centers)                                               # (K, D)


class CosineKMeans(_SphericalEstimator):
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
            similarity, labels = _best_similarity(X, centers, self.chunk_size)
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
        X, as_numpy = _unit_rows(X)
        self._check_samples(X)
        generator = _make_generator(self.random_state, self.generator)
        best = None
        for _ in range(self.n_init):
            centers = _kmeans_plus_plus(X, self.n_clusters, generator, self.chunk_size)
            centers, n_iter = self._lloyd(X, centers)
            similarity, labels = _best_similarity(X, centers, self.chunk_size)
            inertia = float((1 - similarity).to(_wide(X.device)).sum())
            if best is None or inertia < best[0]:
                best = (inertia, centers, labels, n_iter)
        self.inertia_, self.cluster_centers_, labels, self.n_iter_ = best
        self.labels_ = _out(labels, as_numpy)
        return self

    def predict(self, X):
        """Index of the nearest centre (largest cosine) for each row of X."""
        self._check_fitted()
        X, as_numpy = _unit_rows(X)
        self._check_dim(X)
        centers = self.cluster_centers_.to(device=X.device, dtype=X.dtype)
        return _out(_best_similarity(X, centers, self.chunk_size)[1], as_numpy)

    def fit_predict(self, X, y=None):
        """``fit(X)`` and return ``labels_``."""
        return self.fit(X).labels_

    def transform(self, X):
        """Cosine distances (N, K) from each row of X to each centre."""
        self._check_fitted()
        X, as_numpy = _unit_rows(X)
        self._check_dim(X)
        centers = self.cluster_centers_.to(device=X.device, dtype=X.dtype)
        distances = torch.cat([1 - X[rows] @ centers.T for rows in _chunks(X.shape[0], self.chunk_size)])
        return _out(distances, as_numpy)


# ----------------------------------------------------------------------------------------------------------
# Mixture of von Mises-Fisher distributions
# ----------------------------------------------------------------------------------------------------------
class VMFMixture(_SphericalEstimator):
    """A mixture of von Mises-Fisher distributions on the unit sphere, fitted by EM (soft assignments).

    Each component k has a mean direction ``mu_k``, a concentration ``kappa_k`` (0 = uniform on the sphere,
    large = tight) and a weight ``w_k``; the density of a unit vector x is
    ``sum_k w_k C_d(kappa_k) exp(kappa_k mu_k . x)``. The M-step estimates kappa with Banerjee et al.'s
    approximation refined by two Newton steps; Bessel functions are evaluated in log space, so high
    dimensions and large concentrations neither overflow nor underflow.

    Args:
        n_components: number of components K.
        max_iter: most EM iterations per start.
        tol: stop when the mean log-likelihood per sample improves by less than ``tol``.
        n_init: number of starts; the one with the highest log-likelihood is kept.
        init: ``"kmeans"`` (spherical k-means, then one M-step) or ``"kmeans++"`` (seeding only).
        kappa_max: upper bound on concentrations (a component on a few identical points would diverge).
        chunk_size, random_state, generator: as in ``CosineKMeans``.

    Fitted attributes: ``means_`` (K, D), ``kappas_`` (K,), ``weights_`` (K,) on the data's device;
    ``labels_``; ``log_likelihood_`` (total over the training samples); ``n_iter_``; ``converged_``.

    Example:
        >>> from hf_mae import VMFMixture, sample_vmf_mixture
        >>> X, truth = sample_vmf_mixture(np.eye(3), [50.0, 50.0, 50.0], 300, seed=0)
        >>> vmf = VMFMixture(n_components=3, random_state=0).fit(X)
        >>> bool(np.allclose(vmf.kappas_.numpy(), 50.0, rtol=0.3))  # the true concentrations are 50
        True
    """

    _params = ("n_components", "max_iter", "tol", "n_init", "init", "kappa_max", "chunk_size", "random_state")
    _fitted_tensors = ("means_", "kappas_", "weights_")
    _fitted_scalars = ("log_likelihood_", "n_iter_", "converged_", "n_train_samples_")

    def __init__(self, n_components: int = 8, *, max_iter: int = 100, tol: float = 1e-4, n_init: int = 1,
                 init: str = "kmeans", kappa_max: float = 1e6, chunk_size: int = 16384,
                 random_state: int | None = None, generator: torch.Generator | None = None):
        check_int("n_components", n_components)
        check_int("max_iter", max_iter, minimum=0)
        check_float("tol", tol, minimum=0.0)
        check_int("n_init", n_init)
        check_choice("init", init, ("kmeans", "kmeans++"))
        check_float("kappa_max", kappa_max, minimum=0.0, minimum_exclusive=True)
        check_int("chunk_size", chunk_size)
        if random_state is not None:
            check_int("random_state", random_state, minimum=0)
        self.n_components, self.max_iter, self.tol, self.n_init, self.init = n_components, max_iter, tol, n_init, init
        self.kappa_max, self.chunk_size, self.random_state, self.generator = kappa_max, chunk_size, random_state, generator

    # -- the two EM steps ------------------------------------------------------------------------------
    def _log_joint(self, X: torch.Tensor, means, kappas, weights) -> torch.Tensor:
        """log w_k + log C_d(kappa_k) + kappa_k mu_k.x for a chunk of rows: (chunk, K), in float64."""
        wide = _wide(X.device)
        constant = (torch.log(weights) + vmf_log_normalizer(kappas, X.shape[1])).to(X.device, wide)   # (K,)
        cosine = (X @ means.to(X.dtype).T).to(wide)                                                # (chunk, K)
        return cosine * kappas.to(X.device, wide) + constant

    def _e_step(self, X, means, kappas, weights, need_resp: bool = True):
        """Sufficient statistics for the M-step and the total log-likelihood, accumulated over chunks."""
        K, wide = means.shape[0], _wide(X.device)
        counts = torch.zeros(K, dtype=wide, device=X.device)
        sums = torch.zeros(K, X.shape[1], dtype=wide, device=X.device)
        log_likelihood = torch.zeros((), dtype=wide, device=X.device)
        for rows in _chunks(X.shape[0], self.chunk_size):
            joint = self._log_joint(X[rows], means, kappas, weights)                   # (chunk, K)
            log_density = torch.logsumexp(joint, dim=1)                                 # (chunk,)
            log_likelihood += log_density.sum()
            if need_resp:
                resp = torch.exp(joint - log_density[:, None])                         # (chunk, K)
                counts += resp.sum(dim=0)
                sums += resp.T @ X[rows].to(wide)                                       # (K, D)
        return counts, sums, float(log_likelihood)

    def _m_step(self, X, counts: torch.Tensor, sums: torch.Tensor):
        """Mean directions, concentrations and weights from soft counts (K,) and resultant sums (K, D)."""
        n, dim = X.shape
        lengths = torch.linalg.vector_norm(sums, dim=1)
        dead = counts < 1e-8 * n
        if bool(dead.any()):  # a component that lost all its points restarts on badly explained ones
            worst = torch.argsort(_best_similarity(X, F.normalize(sums[~dead], dim=1).to(X.dtype),
                                                   self.chunk_size)[0])[: int(dead.sum())]
            sums[dead], counts[dead], lengths[dead] = X[worst].to(sums.dtype), 1.0, 1.0
        means = (sums / lengths[:, None]).to(X.dtype)
        kappas = _estimate_kappa((lengths / counts).cpu().double(), dim, self.kappa_max)
        weights = (counts / counts.sum()).cpu().double()
        return means, kappas, weights

    def _start(self, X: torch.Tensor, generator) -> tuple:
        centers = _kmeans_plus_plus(X, self.n_components, generator, self.chunk_size)
        if self.init == "kmeans":
            centers = CosineKMeans(self.n_components, chunk_size=self.chunk_size)._lloyd(X, centers)[0]
        labels = _best_similarity(X, centers, self.chunk_size)[1]
        hard = F.one_hot(labels, self.n_components).to(_wide(X.device))                # (N, K)
        counts = hard.sum(dim=0)
        sums = hard.T @ X.to(hard.dtype)
        return self._m_step(X, counts, sums)

    # -- public API ------------------------------------------------------------------------------------
    def fit(self, X, y=None) -> VMFMixture:
        """Fit the mixture to the rows of X (N, D), normalised to unit length. Returns self."""
        X, as_numpy = _unit_rows(X)
        if self.n_components > X.shape[0]:
            raise ValueError(f"n_components={self.n_components} is larger than the number of samples ({X.shape[0]}).")
        generator = _make_generator(self.random_state, self.generator)
        best = None
        for _ in range(self.n_init):
            means, kappas, weights = self._start(X, generator)
            previous, converged, n_iter = -math.inf, False, 0
            for n_iter in range(1, self.max_iter + 1):
                counts, sums, log_likelihood = self._e_step(X, means, kappas, weights)
                if (log_likelihood - previous) / X.shape[0] < self.tol:
                    converged = True
                    break
                previous = log_likelihood
                means, kappas, weights = self._m_step(X, counts, sums)
            else:  # the last M-step changed the parameters: score them
                log_likelihood = self._e_step(X, means, kappas, weights, need_resp=False)[2]
            if best is None or log_likelihood > best[0]:
                best = (log_likelihood, means, kappas, weights, n_iter, converged)
        self.log_likelihood_, self.means_, kappas, weights, self.n_iter_, self.converged_ = best
        self.kappas_, self.weights_ = kappas.to(X.device, X.dtype), weights.to(X.device, X.dtype)
        self.n_train_samples_ = int(X.shape[0])
        self.labels_ = _out(self._predict_proba(X).argmax(dim=1), as_numpy)
        return self

    def _predict_proba(self, X: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self._log_joint(X[rows], self.means_.to(X.device), self.kappas_.cpu().double(),
                                           self.weights_.cpu().double())
                           for rows in _chunks(X.shape[0], self.chunk_size)])
        return torch.softmax(joint, dim=1).to(X.dtype)

    def _prepare(self, X) -> tuple[torch.Tensor, bool]:
        self._check_fitted()
        X, as_numpy = _unit_rows(X)
        self._check_dim(X)
        return X, as_numpy

    def predict_proba(self, X):
        """Posterior probability (N, K) of each component for each row of X."""
        X, as_numpy = self._prepare(X)
        return _out(self._predict_proba(X), as_numpy)

    def predict(self, X):
        """The most probable component of each row of X."""
        X, as_numpy = self._prepare(X)
        return _out(self._predict_proba(X).argmax(dim=1), as_numpy)

    def fit_predict(self, X, y=None):
        """``fit(X)`` and return ``labels_``."""
        return self.fit(X).labels_

    def score_samples(self, X):
        """Log density (N,) of each row of X under the mixture (w.r.t. the uniform measure on the sphere)."""
        X, as_numpy = self._prepare(X)
        kappas, weights = self.kappas_.cpu().double(), self.weights_.cpu().double()
        values = torch.cat([torch.logsumexp(self._log_joint(X[rows], self.means_.to(X.device), kappas, weights), dim=1)
                            for rows in _chunks(X.shape[0], self.chunk_size)])
        return _out(values, as_numpy)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        values = torch.as_tensor(self.score_samples(X))
        return float(values.to(_wide(values.device)).mean())

    def n_parameters(self) -> int:
        """Free parameters: K (D - 1) directions, K concentrations, K - 1 weights."""
        self._check_fitted()
        k, d = self.means_.shape
        return k * (d - 1) + k + (k - 1)

    def bic(self, X=None) -> float:
        """Bayesian information criterion ``-2 log L + p log N`` (lower is better); on the training data
        when X is None."""
        log_likelihood, n = self._total_log_likelihood(X)
        return -2 * log_likelihood + self.n_parameters() * math.log(n)

    def aic(self, X=None) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` (lower is better)."""
        log_likelihood, _ = self._total_log_likelihood(X)
        return -2 * log_likelihood + 2 * self.n_parameters()

    def _total_log_likelihood(self, X) -> tuple[float, int]:
        self._check_fitted()
        if X is None:
            return self.log_likelihood_, self.n_train_samples_
        values = torch.as_tensor(self.score_samples(X))
        return float(values.to(_wide(values.device)).sum()), int(values.shape[0])


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
    X, _ = _unit_rows(X)
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


# ----------------------------------------------------------------------------------------------------------
# Sampling (Wood, 1994)
# ----------------------------------------------------------------------------------------------------------
def sample_vmf(mu, kappa: float, n_samples: int, *, seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Draw ``n_samples`` unit vectors from vMF(mu, kappa) with Wood's rejection sampler. Returns (n, D).

    The cosine w = mu.x is drawn by rejection from a Beta proposal; the rest of x is a uniform direction
    orthogonal to mu.

    >>> x = sample_vmf([0.0, 0.0, 1.0], 100.0, 1000, seed=0)
    >>> round(float(x[:, 2].mean()), 2)  # A_3(100) = coth(100) - 1/100 = 0.99
    0.99
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 1 or mu.shape[0] < 2 or not np.isfinite(mu).all() or np.linalg.norm(mu) == 0:
        raise ValueError(f"`mu` must be a finite non-zero vector of at least 2 values, got shape {mu.shape}.")
    check_float("kappa", kappa, minimum=0.0)
    check_int("n_samples", n_samples, minimum=0)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mu = mu / np.linalg.norm(mu)
    dim = mu.shape[0]
    # Wood's constants, with b written in the form that does not cancel for large kappa.
    b = (dim - 1) / (2 * kappa + math.sqrt(4 * kappa ** 2 + (dim - 1) ** 2))
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + (dim - 1) * math.log(1 - x0 ** 2)
    w = np.empty(0)
    while w.shape[0] < n_samples:
        need = n_samples - w.shape[0]
        z = rng.beta((dim - 1) / 2, (dim - 1) / 2, size=2 * need + 8)
        candidate = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        accept = kappa * candidate + (dim - 1) * np.log(1 - x0 * candidate) - c >= np.log(rng.uniform(size=z.shape))
        w = np.concatenate([w, candidate[accept][:need]])
    tangent = rng.standard_normal((n_samples, dim))
    tangent -= (tangent @ mu)[:, None] * mu
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return w[:, None] * mu + np.sqrt(np.clip(1 - w ** 2, 0, None))[:, None] * tangent


def sample_vmf_mixture(means, kappas: Sequence[float], n_samples: int, *, weights: Sequence[float] | None = None,
                       seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` points from a vMF mixture: returns X (n, D) and the true component labels (n,).

    >>> X, labels = sample_vmf_mixture(np.eye(3), [20.0, 20.0, 20.0], 90, seed=0)
    >>> X.shape, np.bincount(labels).sum()
    ((90, 3), np.int64(90))
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"`means` must have shape (K, D), got {means.shape}.")
    k = means.shape[0]
    if len(kappas) != k:
        raise ValueError(f"`kappas` must hold one value per mean ({k}), got {len(kappas)}.")
    weights = np.full(k, 1 / k) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (k,) or (weights < 0).any() or not np.isclose(weights.sum(), 1):
        raise ValueError(f"`weights` must be {k} non-negative numbers summing to 1, got {weights.tolist()}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    labels = rng.choice(k, size=n_samples, p=weights)
    X = np.empty((n_samples, means.shape[1]))
    for j in range(k):
        rows = np.flatnonzero(labels == j)
        X[rows] = sample_vmf(means[j], float(kappas[j]), rows.shape[0], seed=rng)
    return X, labels
