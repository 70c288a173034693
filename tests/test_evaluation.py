"""Metrics for Trainer and the classic baselines, with values checked on generated and real data."""

import doctest
import importlib.util

import numpy as np
import pytest

pytest.importorskip("sklearn")

from transformers import EvalPrediction  # noqa: E402

from hf_mae.training import evaluation  # noqa: E402
from hf_mae.training.evaluation import (classification_metrics, compute_metrics_for, morgan_fingerprints,  # noqa: E402
                                        rdkit_descriptors, regression_metrics, run_baseline)

needs_chem = pytest.mark.skipif(importlib.util.find_spec("rdkit") is None or importlib.util.find_spec("datamol") is None,
                                reason="needs rdkit and datamol")


def test_docstring_examples_run():
    assert doctest.testmod(evaluation).failed == 0


def test_regression_metrics_by_hand_and_multi_target():
    m = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0])
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 1) / 4))
    assert m["mae"] == pytest.approx(1.5 / 4)
    assert m["r2"] == pytest.approx(1 - 1.25 / 5)
    multi = regression_metrics([[0, 0], [1, 2], [2, 4]], [[0, 0], [1, 2], [2, 3]])
    assert multi["r2_0"] == 1.0 and multi["r2_1"] == pytest.approx(1 - 1 / 8)
    assert multi["r2"] == pytest.approx((1 + 7 / 8) / 2) and multi["mae"] == pytest.approx((0 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="shape"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    logits = rng.standard_normal((30, 3)) + 1.5 * np.eye(3)[y]
    m = classification_metrics(y, logits)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert m["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    assert m["f1_macro"] == pytest.approx(f1_score(y, logits.argmax(1), average="macro"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probabilities, multi_class="ovr", average="macro"))
    binary = classification_metrics([0, 1, 1, 0], [[0.0, 0.1], [0.0, 0.9], [0.0, 0.4], [0.0, 0.5]])
    assert binary["roc_auc"] == pytest.approx(0.75)
    assert np.isnan(classification_metrics([1, 1], [[0.0, 1.0], [1.0, 0.0]])["roc_auc"])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 3], [[0.0, 1.0], [1.0, 0.0]])


def test_compute_metrics_for_trainer_predictions():
    reg = compute_metrics_for("regression")(EvalPrediction(predictions=np.array([[1.0], [2.0], [3.0]]),
                                                           label_ids=np.array([1.0, 2.0, 4.0])))
    assert reg["mae"] == pytest.approx(1 / 3)
    cls = compute_metrics_for("classification")(EvalPrediction(
        predictions=(np.array([[2.0, 0.0], [0.0, 1.0]]), np.zeros((2, 3))), label_ids=np.array([0, 0])))
    assert cls["accuracy"] == 0.5
    with pytest.raises(ValueError, match="task"):
        compute_metrics_for("ranking")


@pytest.mark.filterwarnings("ignore:y residual is constant")   # CV tries more components than the rank (3)
def test_pls_gets_a_noiseless_linear_problem_and_cv_picks_few_components():
    rng = np.random.default_rng(1)
    latent = rng.standard_normal((80, 3))
    x = latent @ rng.standard_normal((3, 50))                # 50 "wavelengths" of rank 3
    y = latent @ np.array([1.0, -2.0, 0.5])
    result = run_baseline("pls", x[:60], y[:60], x[60:], y[60:], "regression", seed=0)
    assert result.metrics["r2"] > 0.999999 and result.params["n_components"] >= 3
    assert result.predictions.shape == (20,) and result.seconds > 0


def test_classifiers_are_seeded_and_score_every_class():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((90, 5))
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0.8)
    for name in ("pls", "logistic", "svm_rbf", "random_forest"):
        first = run_baseline(name, x[:60], y[:60], x[60:], y[60:], "classification", seed=3, folds=3)
        again = run_baseline(name, x[:60], y[:60], x[60:], y[60:], "classification", seed=3, folds=3)
        assert first.predictions.shape == (30, 4)
        np.testing.assert_allclose(first.predictions, again.predictions)
        assert first.metrics["accuracy"] > 0.6, (name, first.metrics)
    # a class missing from the training split still gets a column (never predicted)
    result = run_baseline("logistic", x[:60][y[:60] < 2], y[:60][y[:60] < 2], x[60:], y[60:], "classification",
                          folds=3, n_classes=4)
    assert result.predictions.shape == (30, 4) and (result.predictions.argmax(1) < 2).all()
    with pytest.raises(ValueError, match="use `ridge`"):
        run_baseline("logistic", x, y, x, y, "regression")
    with pytest.raises(ValueError, match="`name` must be one of"):
        run_baseline("xgboost", x, y, x, y, "regression")


@needs_chem
def test_smiles_baselines_on_real_solubility():
    from hf_mae.data.molecules import load_solubility

    data = load_solubility()
    train, test = data["train"].select(range(0, 1000, 8)), data["test"].select(range(0, 250, 5))  # 125 / 50
    fp_train, fp_test = morgan_fingerprints(train["smiles"][:]), morgan_fingerprints(test["smiles"][:])
    assert fp_train.shape == (125, 2048) and set(np.unique(fp_train)) == {0.0, 1.0}
    d_train, d_test = rdkit_descriptors(train["smiles"][:]), rdkit_descriptors(test["smiles"][:])
    assert d_train.shape[0] == 125 and d_train.shape[1] > 150
    y_train, y_test = np.asarray(train["target"][:]), np.asarray(test["target"][:])
    ridge = run_baseline("ridge", d_train, y_train, d_test, y_test, "regression", seed=0)
    forest = run_baseline("random_forest", fp_train, y_train, fp_test, y_test, "regression", seed=0, n_estimators=100)
    assert ridge.metrics["r2"] > 0.6 and forest.metrics["r2"] > 0.3, (ridge.metrics, forest.metrics)
    again = run_baseline("random_forest", fp_train, y_train, fp_test, y_test, "regression", seed=0, n_estimators=100)
    np.testing.assert_array_equal(forest.predictions, again.predictions)
    classes = run_baseline("random_forest", d_train, np.asarray(train["label"][:]), d_test, np.asarray(test["label"][:]),
                           "classification", seed=0, n_estimators=100)
    assert classes.metrics["accuracy"] > 0.6 and 0.5 < classes.metrics["roc_auc"] <= 1
    with pytest.raises(ValueError, match="cannot be parsed"):
        morgan_fingerprints(["CCO", "C("])


def test_mean_pooled_embeddings_feed_the_protein_baseline():
    from hf_mae.training.evaluation import mean_pooled

    rng = np.random.default_rng(4)
    proteins = [rng.standard_normal((int(n), 6)) for n in rng.integers(5, 30, size=40)]
    x = mean_pooled(proteins)
    assert x.shape == (40, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[3], proteins[3].mean(0), rtol=1e-5)
    y = x @ np.arange(6.0)
    assert run_baseline("ridge", x[:30], y[:30], x[30:], y[30:], "regression").metrics["r2"] > 0.99
    with pytest.raises(ValueError, match="row 1"):
        mean_pooled([np.ones((2, 6)), np.ones((2, 5))])
