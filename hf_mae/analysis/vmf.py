"""The von Mises-Fisher distribution on the unit sphere: its special functions (in float64), the mixture
fitted by EM (Banerjee et al., JMLR 2005) and Wood's (1994) sampler.

Example:
    >>> from hf_mae.analysis.vmf import sample_vmf, VMFMixture
    >>> z = sample_vmf([1.0, 0.0, 0.0], kappa=50.0, n_samples=200, seed=0)
    >>> 40 < float(VMFMixture(n_components=1, random_state=0).fit(z).kappas_[0]) < 60
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models.validation import check_choice, check_float, check_int
from .kmeans import CosineKMeans, best_similarity, kmeans_plus_plus
from .sphere import SphericalEstimator, as_output, make_generator, row_chunks, unit_rows, wide_dtype

__all__ = ["VMFMixture", "log_bessel_iv", "vmf_log_normalizer", "vmf_mean_resultant", "sample_vmf",
           "sample_vmf_mixture"]


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
# Mixture of von Mises-Fisher distributions
# ----------------------------------------------------------------------------------------------------------
class VMFMixture(SphericalEstimator):
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
        wide = wide_dtype(X.device)
        constant = (torch.log(weights) + vmf_log_normalizer(kappas, X.shape[1])).to(X.device, wide)   # (K,)
        cosine = (X @ means.to(X.dtype).T).to(wide)                                                # (chunk, K)
        return cosine * kappas.to(X.device, wide) + constant

    def _e_step(self, X, means, kappas, weights, need_resp: bool = True):
        """Sufficient statistics for the M-step and the total log-likelihood, accumulated over chunks."""
        K, wide = means.shape[0], wide_dtype(X.device)
        counts = torch.zeros(K, dtype=wide, device=X.device)
        sums = torch.zeros(K, X.shape[1], dtype=wide, device=X.device)
        log_likelihood = torch.zeros((), dtype=wide, device=X.device)
        for rows in row_chunks(X.shape[0], self.chunk_size):
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
            worst = torch.argsort(best_similarity(X, F.normalize(sums[~dead], dim=1).to(X.dtype),
                                                   self.chunk_size)[0])[: int(dead.sum())]
            sums[dead], counts[dead], lengths[dead] = X[worst].to(sums.dtype), 1.0, 1.0
        means = (sums / lengths[:, None]).to(X.dtype)
        kappas = _estimate_kappa((lengths / counts).cpu().double(), dim, self.kappa_max)
        weights = (counts / counts.sum()).cpu().double()
        return means, kappas, weights

    def _start(self, X: torch.Tensor, generator) -> tuple:
        centers = kmeans_plus_plus(X, self.n_components, generator, self.chunk_size)
        if self.init == "kmeans":
            centers = CosineKMeans(self.n_components, chunk_size=self.chunk_size)._lloyd(X, centers)[0]
        labels = best_similarity(X, centers, self.chunk_size)[1]
        hard = F.one_hot(labels, self.n_components).to(wide_dtype(X.device))                # (N, K)
        counts = hard.sum(dim=0)
        sums = hard.T @ X.to(hard.dtype)
        return self._m_step(X, counts, sums)

    # -- public API ------------------------------------------------------------------------------------
    def fit(self, X, y=None) -> VMFMixture:
        """Fit the mixture to the rows of X (N, D), normalised to unit length. Returns self."""
        X, as_numpy = unit_rows(X)
        if self.n_components > X.shape[0]:
            raise ValueError(f"n_components={self.n_components} is larger than the number of samples ({X.shape[0]}).")
        generator = make_generator(self.random_state, self.generator)
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
        self.labels_ = as_output(self._predict_proba(X).argmax(dim=1), as_numpy)
        return self

    def _predict_proba(self, X: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self._log_joint(X[rows], self.means_.to(X.device), self.kappas_.cpu().double(),
                                           self.weights_.cpu().double())
                           for rows in row_chunks(X.shape[0], self.chunk_size)])
        return torch.softmax(joint, dim=1).to(X.dtype)

    def _prepare(self, X) -> tuple[torch.Tensor, bool]:
        self._check_fitted()
        X, as_numpy = unit_rows(X)
        self._check_dim(X)
        return X, as_numpy

    def predict_proba(self, X):
        """Posterior probability (N, K) of each component for each row of X."""
        X, as_numpy = self._prepare(X)
        return as_output(self._predict_proba(X), as_numpy)

    def predict(self, X):
        """The most probable component of each row of X."""
        X, as_numpy = self._prepare(X)
        return as_output(self._predict_proba(X).argmax(dim=1), as_numpy)

    def fit_predict(self, X, y=None):
        """``fit(X)`` and return ``labels_``."""
        return self.fit(X).labels_

    def score_samples(self, X):
        """Log density (N,) of each row of X under the mixture (w.r.t. the uniform measure on the sphere)."""
        X, as_numpy = self._prepare(X)
        kappas, weights = self.kappas_.cpu().double(), self.weights_.cpu().double()
        values = torch.cat([torch.logsumexp(self._log_joint(X[rows], self.means_.to(X.device), kappas, weights), dim=1)
                            for rows in row_chunks(X.shape[0], self.chunk_size)])
        return as_output(values, as_numpy)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        values = torch.as_tensor(self.score_samples(X))
        return float(values.to(wide_dtype(values.device)).mean())

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
        return float(values.to(wide_dtype(values.device)).sum()), int(values.shape[0])


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
