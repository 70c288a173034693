import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from matplotlib.image import imread  # noqa: E402

from hf_mae import ChemoMAEForPreTraining, SpectraProcessor  # noqa: E402
from hf_mae.cli import main  # noqa: E402
from hf_mae.data.spectra import spectra_dataset  # noqa: E402
from hf_mae.analysis.plotting import embed_2d, plot_embedding  # noqa: E402

HAS_UMAP = importlib.util.find_spec("umap") is not None


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """scikit-learn's t-SNE spins OpenMP threads; on a shared 2-core machine that is 100x slower on 30 points."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A saved tiny ChemoMAE run (model + processor + trainer_state.json) and a small spectral data set."""
    root = tmp_path_factory.mktemp("plots")
    rng = np.random.default_rng(0)
    axis = np.linspace(1000, 2500, 120)
    spectra = np.exp(-((axis[None] - rng.uniform(1200, 2300, (24, 1))) / 150) ** 2) + 0.1 * rng.random((24, 120))
    spectra_dataset(spectra, axis, target=rng.random(24), instrument=np.arange(24) % 2).save_to_disk(root / "data")
    processor = SpectraProcessor.for_range(1100, 2400, 32, scaling="autoscale").fit(spectra, axis)
    model = ChemoMAEForPreTraining(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                                   n_blocks=8, n_mask=4, latent_dim=8)
    model.save_pretrained(root / "run")
    processor.save_pretrained(root / "run")
    history = [{"step": s, "loss": 1 / s, "epoch": s / 10} for s in range(1, 11)] + [{"step": 10, "eval_loss": 0.2}]
    (root / "run" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    return root


def test_plot_all(run):
    assert main(["plot", "all", str(run / "run"), "--dataset", str(run / "data"), "--color-by", "instrument"]) == 0
    for name in ("loss", "reconstructions", "embedding"):
        assert imread(run / "run" / "plots" / f"{name}.png").shape[0] > 100


def test_plot_each(run, tmp_path, capsys):
    assert main(["plot", "loss", str(run / "run" / "trainer_state.json"), "--out", str(tmp_path / "l.png")]) == 0
    assert main(["plot", "reconstructions", str(run / "run"), "--dataset", str(run / "data"), "--n-samples", "2",
                 "--out", str(tmp_path / "r.png")]) == 0
    assert main(["plot", "embedding", str(run / "run"), "--dataset", str(run / "data"), "--method", "tsne",
                 "--out", str(tmp_path / "e.png")]) == 0
    assert "t-SNE" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"l.png", "r.png", "e.png"}


def test_plot_errors(run, tmp_path, capsys):
    assert main(["plot", "embedding", str(run / "run"), "--dataset", str(run / "data"), "--color-by", "colour",
                 "--out", str(tmp_path / "e.png")]) == 2
    assert "not a column" in capsys.readouterr().out
    assert main(["plot", "reconstructions", str(run / "run"), "--dataset", "no-such-set"]) == 2
    assert main(["plot", "loss", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["plot", "nothing"])


def test_embedding_categorical_continuous_and_fallback(tmp_path):
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 0.1, (15, 6)) + 3 * np.eye(6)[0], rng.normal(0, 0.1, (15, 6)) + 3 * np.eye(6)[1]])
    coords, used = embed_2d(z, method="tsne")
    assert coords.shape == (30, 2) and used == "tsne"
    # the two directions stay apart in the cosine map: each point's nearest neighbour is in its own group
    d = np.linalg.norm(coords[:, None] - coords[None], axis=-1) + np.eye(30) * 1e9
    assert (d.argmin(axis=1) // 15 == np.arange(30) // 15).all()
    plot_embedding(z, np.repeat(["a", "b"], 15), tmp_path / "cat.png", method="tsne")
    plot_embedding(z, np.linspace(0, 1, 30), tmp_path / "cont.png", method="tsne")
    if not HAS_UMAP:
        with pytest.warns(UserWarning, match="umap-learn is not installed"):
            assert plot_embedding(z, None, tmp_path / "auto.png")[1] == "tsne"
        with pytest.raises(ImportError, match="umap"):
            embed_2d(z, method="umap")
    with pytest.raises(ValueError, match="labels"):
        plot_embedding(z, np.arange(5), tmp_path / "x.png", method="tsne")
    with pytest.raises(ValueError, match="zero vectors"):
        embed_2d(np.zeros((5, 3)), method="tsne")
