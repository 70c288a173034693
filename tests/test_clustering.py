import math

import numpy as np
import pytest
import torch

import hf_mae
from hf_mae import CosineKMeans, VMFMixture, sample_vmf, sample_vmf_mixture, select_n_clusters
from hf_mae.analysis.clustering import NotFittedError, log_bessel_iv, vmf_log_normalizer, vmf_mean_resultant

scipy_special = pytest.importorskip("scipy.special")
from scipy.optimize import linear_sum_assignment  # noqa: E402

TRUE_KAPPAS = [30.0, 60.0, 100.0, 45.0]
TRUE_WEIGHTS = [0.1, 0.2, 0.3, 0.4]

# Tiny tensors: single-threaded is faster, much faster on a shared machine (see conftest).
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def mixture():
    """2000 points in 16 dimensions from four vMF components with known means, kappas and weights."""
    rng = np.random.default_rng(0)
    means = rng.standard_normal((4, 16))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    X, labels = sample_vmf_mixture(means, TRUE_KAPPAS, 2000, weights=TRUE_WEIGHTS, seed=1)
    return X, labels, means


def adjusted_rand(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    pairs = lambda n: n * (n - 1) / 2  # noqa: E731
    index, rows, cols = pairs(table).sum(), pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = rows * cols / pairs(len(a))
    return float((index - expected) / ((rows + cols) / 2 - expected))


def match(true_labels, labels, k):
    """Hungarian matching of found to true clusters: (accuracy, found index for each true cluster)."""
    table = np.zeros((k, k))
    np.add.at(table, (true_labels, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    return table[rows, cols].sum() / len(labels), cols


# -- special functions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("nu", [0.0, 0.5, 3.0, 7.0, 19.5, 31.0, 383.0])
def test_log_bessel_matches_scipy(nu):
    x = np.logspace(-3, 4.5, 60)
    scaled = scipy_special.ive(nu, x)
    ok = scaled > 1e-280  # where scipy itself has not underflowed
    reference = np.log(scaled[ok]) + x[ok]
    got = log_bessel_iv(nu, x[ok]).numpy()
    np.testing.assert_allclose(got, reference, rtol=1e-7, atol=1e-8)
    ratio = vmf_mean_resultant(x[ok], int(2 * nu + 2)).numpy()
    np.testing.assert_allclose(ratio, scipy_special.ive(nu + 1, x[ok]) / scaled[ok], rtol=1e-7, atol=1e-12)


def test_log_bessel_where_scipy_underflows():
    # I_500(0.01) ~ (0.005)^500 / 500!: ~1e-2300, far below float64; the log is still finite and follows the
    # small-argument form nu log(x/2) - lgamma(nu + 1).
    value = float(log_bessel_iv(500.0, 0.01))
    assert math.isclose(value, 500 * math.log(0.005) - math.lgamma(501), rel_tol=1e-6)
    with pytest.raises(ValueError, match="> 0"):
        log_bessel_iv(1.0, [1.0, 0.0])


def test_vmf_normalizer_closed_forms():
    kappa = torch.tensor([1e-6, 0.3, 2.0, 50.0, 3000.0], dtype=torch.float64)
    # d = 3: C_3(kappa) = kappa / (4 pi sinh kappa), written stably
    expected = torch.log(kappa) - math.log(2 * math.pi) - kappa - torch.log1p(-torch.exp(-2 * kappa))
    torch.testing.assert_close(vmf_log_normalizer(kappa, 3), expected, rtol=1e-7, atol=1e-7)
    # kappa -> 0 in d = 64: the uniform density 1 / area(S^63) = Gamma(32) / (2 pi^32)
    assert math.isclose(float(vmf_log_normalizer(1e-12, 64)), math.lgamma(32) - math.log(2) - 32 * math.log(math.pi),
                        rel_tol=1e-9)


def test_wood_sampler_matches_expected_cosine():
    for dim, kappa in [(3, 5.0), (16, 40.0), (64, 500.0)]:
        mu = np.zeros(dim)
        mu[1] = 1.0
        x = sample_vmf(mu, kappa, 4000, seed=dim)
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
        expected = float(vmf_mean_resultant(kappa, dim))
        assert abs(x[:, 1].mean() - expected) < 4 * x[:, 1].std() / math.sqrt(4000) + 1e-4
    # kappa = 0 is the uniform distribution: mean close to zero in every coordinate
    assert np.abs(sample_vmf(np.ones(5), 0.0, 4000, seed=0).mean(axis=0)).max() < 0.05
    assert np.array_equal(sample_vmf(mu, 3.0, 10, seed=7), sample_vmf(mu, 3.0, 10, seed=7))


# -- estimators on known mixtures ---------------------------------------------------------------------------
def test_cosine_kmeans_recovers_known_mixture(mixture):
    X, truth, means = mixture
    km = CosineKMeans(n_clusters=4, random_state=0).fit(X)
    accuracy, found = match(truth, km.labels_, 4)
    assert accuracy > 0.99 and adjusted_rand(truth, km.labels_) > 0.97
    cosines = (km.cluster_centers_.numpy() @ means.T)[found, range(4)]
    assert cosines.min() > 0.99
    assert isinstance(km.labels_, np.ndarray) and km.labels_.shape == (2000,)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_.numpy(), axis=1), 1.0, atol=1e-6)
    # inertia is the sum of cosine distances to the assigned centres
    distances = km.transform(X)
    assert math.isclose(km.inertia_, distances[np.arange(2000), km.labels_].sum(), rel_tol=1e-6)
    assert np.array_equal(km.predict(X), km.labels_)
    assert np.array_equal(distances.argmin(axis=1), km.labels_)


def test_vmf_mixture_recovers_parameters(mixture):
    X, truth, means = mixture
    vmf = VMFMixture(n_components=4, random_state=0).fit(X)
    accuracy, found = match(truth, vmf.labels_, 4)
    assert accuracy > 0.99 and adjusted_rand(truth, vmf.labels_) > 0.97
    assert (vmf.means_.numpy() @ means.T)[found, range(4)].min() > 0.99
    np.testing.assert_allclose(vmf.kappas_.numpy()[found], TRUE_KAPPAS, rtol=0.15)
    np.testing.assert_allclose(vmf.weights_.numpy()[found], TRUE_WEIGHTS, atol=0.03)
    assert vmf.converged_
    # log-likelihood, BIC and AIC agree with one another and with score_samples
    assert math.isclose(vmf.log_likelihood_, vmf.score_samples(X).sum(), rel_tol=1e-9)
    assert math.isclose(vmf.score(X), vmf.log_likelihood_ / 2000, rel_tol=1e-9)
    p = 4 * 15 + 4 + 3
    assert vmf.n_parameters() == p
    assert math.isclose(vmf.bic(), -2 * vmf.log_likelihood_ + p * math.log(2000), rel_tol=1e-12)
    assert math.isclose(vmf.aic(X), -2 * vmf.log_likelihood_ + 2 * p, rel_tol=1e-9)
    proba = vmf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(proba.argmax(axis=1), vmf.predict(X))
    # The fitted model explains the data better than the true parameters' own value minus a little slack.
    true_model = VMFMixture(4)
    true_model.means_ = torch.tensor(means)
    true_model.kappas_, true_model.weights_ = torch.tensor(TRUE_KAPPAS), torch.tensor(TRUE_WEIGHTS)
    assert vmf.log_likelihood_ >= true_model.score_samples(X).sum() - 1e-6


def test_vmf_density_in_three_dimensions():
    """Single component, d = 3: the density has the closed form kappa exp(kappa mu.x) / (4 pi sinh kappa)."""
    vmf = VMFMixture(1)
    vmf.means_ = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    vmf.kappas_, vmf.weights_ = torch.tensor([4.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    x = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.6, -0.8]])
    expected = np.log(4.0 / (4 * np.pi * np.sinh(4.0))) + 4.0 * x[:, 2]
    np.testing.assert_allclose(vmf.score_samples(x), expected, rtol=1e-9)


def test_select_n_clusters_finds_true_k(mixture):
    X = mixture[0]
    bic = select_n_clusters(X, range(1, 7), method="bic")
    assert bic.best_k == 4 and bic.method == "bic" and sorted(bic.scores) == list(range(1, 7))
    assert bic.scores[4] == min(bic.scores.values())
    elbow = select_n_clusters(X, range(1, 7), method="elbow")
    assert elbow.best_k == 4
    assert all(elbow.scores[k] >= elbow.scores[k + 1] - 1e-6 for k in range(1, 4))
    with pytest.raises(ValueError, match="at least 3"):
        select_n_clusters(X, [2, 3], method="elbow")


# -- API: devices, dtypes, chunking, seeds, save/load -------------------------------------------------------
def test_chunking_and_tensor_round_trip(mixture):
    X = torch.tensor(mixture[0], dtype=torch.float32) * 7.0  # scale does not matter: only directions do
    whole = VMFMixture(4, random_state=3).fit(X)
    chunked = VMFMixture(4, random_state=3, chunk_size=300).fit(X)
    assert torch.equal(whole.labels_, chunked.labels_)
    assert math.isclose(whole.log_likelihood_, chunked.log_likelihood_, rel_tol=1e-6)
    assert isinstance(whole.labels_, torch.Tensor) and whole.means_.dtype == torch.float32
    km = CosineKMeans(4, random_state=3).fit(X)
    assert torch.equal(km.labels_, CosineKMeans(4, random_state=3, chunk_size=11).fit(X).labels_)


def test_seeds_and_generators_reproduce(mixture):
    X = mixture[0][:300]
    a = CosineKMeans(6, random_state=5).fit(X)
    b = CosineKMeans(6, generator=torch.Generator().manual_seed(5)).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    torch.manual_seed(1)
    c = VMFMixture(3).fit(X)  # no seed: torch's global RNG, fixed by torch.manual_seed
    torch.manual_seed(1)
    d = VMFMixture(3).fit(X)
    torch.testing.assert_close(c.means_, d.means_)
    # n_init keeps the best of several starts
    many = CosineKMeans(6, n_init=4, random_state=0).fit(X)
    assert many.inertia_ <= min(CosineKMeans(6, random_state=0).fit(X).inertia_, a.inertia_) + 1e-9


def test_save_load(tmp_path, mixture):
    X = mixture[0]
    km = CosineKMeans(4, random_state=0).fit(X)
    km.save(tmp_path / "km.safetensors")
    km2 = CosineKMeans.load(tmp_path / "km.safetensors")
    assert km2.get_params() == km.get_params() and km2.inertia_ == km.inertia_
    np.testing.assert_array_equal(km2.predict(X), km.labels_)
    vmf = VMFMixture(4, random_state=0).fit(X)
    vmf.save(tmp_path / "vmf.safetensors")
    vmf2 = VMFMixture.load(tmp_path / "vmf.safetensors")
    np.testing.assert_allclose(vmf2.score_samples(X), vmf.score_samples(X))
    assert vmf2.bic() == vmf.bic() and vmf2.converged_ == vmf.converged_
    with pytest.raises(ValueError, match="holds a 'CosineKMeans'"):
        VMFMixture.load(tmp_path / "km.safetensors")
    with pytest.raises(NotFittedError, match="not fitted"):
        VMFMixture(2).save(tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="not fitted"):
        CosineKMeans(2).predict(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_data_device(mixture):
    X = torch.tensor(mixture[0], dtype=torch.float32, device="cuda")
    vmf = VMFMixture(4, random_state=0).fit(X)
    km = CosineKMeans(4, random_state=0).fit(X)
    assert vmf.labels_.device.type == "cuda" and km.cluster_centers_.device.type == "cuda"
    cpu = VMFMixture(4, random_state=0).fit(X.cpu())
    assert adjusted_rand(cpu.labels_.numpy(), vmf.labels_.cpu().numpy()) > 0.99
    np.testing.assert_array_equal(km.predict(X.cpu()).numpy(), km.labels_.cpu().numpy())
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        VMFMixture(2, generator=torch.Generator(device="cuda")).fit(X)


def test_cpu_data_stays_on_cpu(mixture):
    vmf = VMFMixture(4, random_state=0).fit(torch.tensor(mixture[0][:200]))
    assert vmf.means_.device.type == "cpu" and vmf.labels_.device.type == "cpu"


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [CosineKMeans, VMFMixture])
def test_bad_input(estimator):
    X = np.random.default_rng(0).standard_normal((10, 4))
    with_nan = X.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in rows \[3\]"):
        estimator(2).fit(with_nan)
    with pytest.raises(ValueError, match="larger than the number of samples"):
        estimator(11).fit(X)
    zero = X.copy()
    zero[[2, 5]] = 0
    with pytest.raises(ValueError, match=r"zero vectors in rows \[2, 5\]"):
        estimator(2).fit(torch.tensor(zero))
    with pytest.raises(ValueError, match="shape"):
        estimator(2).fit(X[0])
    with pytest.raises(ValueError, match="2 features"):
        estimator(2).fit(X[:, :1])
    with pytest.raises(ValueError, match="numbers"):
        estimator(2).fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="must be >= 1"):
        estimator(0)
    with pytest.raises(ValueError, match="features but this model was fitted on 4"):
        estimator(2, random_state=0).fit(X).predict(X[:, :3])


def test_fewer_distinct_directions_than_clusters():
    X = np.repeat(np.eye(3)[:2], 5, axis=0)  # 10 samples, 2 directions
    with pytest.raises(ValueError, match="only 2 distinct direction"):
        CosineKMeans(3, random_state=0).fit(X)


def test_exported_from_package():
    assert hf_mae.CosineKMeans is CosineKMeans and hf_mae.VMFMixture is VMFMixture
    assert "select_n_clusters" in hf_mae.__all__
