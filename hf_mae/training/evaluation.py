"""Metrics for ``Trainer`` and the classic baselines each field trusts, run on a given split.

Metrics (numpy in, plain floats out):

- ``regression_metrics(y_true, y_pred)``: ``rmse``, ``mae``, ``r2``; for several targets (n, k) the
  uniform average over targets, plus ``rmse_<i>``/``mae_<i>``/``r2_<i>`` per target.
- ``classification_metrics(y_true, scores)``: ``accuracy``, ``f1_macro`` and ``roc_auc`` from class scores
  (n, K): logits (or log-probabilities), turned into probabilities by a softmax; binary ROC-AUC reads class 1, multiclass is one-vs-rest macro over the classes present in ``y_true`` (NaN when fewer than
  two are present).
- ``compute_metrics_for(task)``: the ``compute_metrics`` function ``Trainer`` calls with an ``EvalPrediction``.

Baselines (``run_baseline(name, x_train, y_train, x_test, y_test, task, seed)``; hyperparameters chosen by
seeded K-fold cross-validation on the training split only):

| name | field | model |
|---|---|---|
| ``pls`` | spectra | PLS regression, components by CV (1..20); classification: PLS-DA (one-hot PLS, argmax) |
| ``ridge`` / ``logistic`` | proteins (mean-pooled embeddings), SMILES features | standardised ridge (alpha by exact leave-one-out CV) / logistic regression (C by K-fold CV) |
| ``random_forest`` | SMILES (Morgan fingerprints, RDKit descriptors) | 500 trees (``n_estimators``), seeded |
| ``svm_rbf`` | hyperspectral pixel spectra | standardised RBF-SVM/SVR, C and gamma by CV |

``morgan_fingerprints(smiles)`` and ``rdkit_descriptors(smiles)`` build the SMILES features. scikit-learn
(``hf-mae[eval]``) and RDKit (``hf-mae[chem]``) are imported only when used.

Example:
    >>> import numpy as np
    >>> regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))["mae"]
    0.3333333333333333
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

TASKS = ("regression", "classification")
BASELINES = ("pls", "ridge", "logistic", "random_forest", "svm_rbf")


def _sklearn():
    try:
        import sklearn
    except ImportError as err:
        raise ImportError('Metrics and baselines need scikit-learn: pip install "hf-mae[eval]".') from err
    return sklearn


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """RMSE, MAE and R² (per target and averaged over targets for (n, k) arrays).

    Example:
        >>> m = regression_metrics([[0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 5.0]])
        >>> m["rmse"], m["rmse_1"], m["r2_0"]
        (0.7071067811865476, 1.4142135623730951, 1.0)
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if y_pred.ndim == 1 or (y_pred.ndim == 2 and y_pred.shape[1] == 1 and y_true.shape[1] == 1):
        y_pred = y_pred.reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"`y_pred` has shape {y_pred.shape} but `y_true` has {y_true.shape}.")
    if len(y_true) < 2:
        raise ValueError(f"Regression metrics need at least 2 samples, got {len(y_true)}.")
    error = y_pred - y_true
    rmse = np.sqrt((error ** 2).mean(axis=0))
    mae = np.abs(error).mean(axis=0)
    total = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(total > 0, 1 - (error ** 2).sum(axis=0) / np.where(total > 0, total, 1), np.nan)
    metrics = {"rmse": float(rmse.mean()), "mae": float(mae.mean()), "r2": float(np.mean(r2))}
    if y_true.shape[1] > 1:
        for i in range(y_true.shape[1]):
            metrics.update({f"rmse_{i}": float(rmse[i]), f"mae_{i}": float(mae[i]), f"r2_{i}": float(r2[i])})
    return metrics


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def classification_metrics(y_true, scores) -> dict[str, float]:
    """Accuracy, macro F1 and ROC-AUC from (n, K) class scores (see the module docstring).

    Example:
        >>> m = classification_metrics([0, 1, 1, 0], [[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
        >>> m["accuracy"], m["roc_auc"]
        (0.75, 1.0)
    """
    _sklearn()
    from sklearn.metrics import f1_score, roc_auc_score

    y_true, scores = np.asarray(y_true).astype(np.int64).ravel(), np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != y_true.size or scores.shape[1] < 2:
        raise ValueError(f"`scores` must be (n_samples={y_true.size}, n_classes >= 2), got {scores.shape}.")
    if y_true.size and (y_true.min() < 0 or y_true.max() >= scores.shape[1]):
        raise ValueError(f"`y_true` must be class indices in [0, {scores.shape[1] - 1}].")
    predicted = scores.argmax(axis=1)
    probabilities = _softmax(scores)
    present = np.unique(y_true)
    if present.size < 2:
        auc = float("nan")
    elif scores.shape[1] == 2:
        auc = float(roc_auc_score(y_true, probabilities[:, 1]))
    else:
        auc = float(np.mean([roc_auc_score(y_true == k, probabilities[:, k]) for k in present]))
    return {"accuracy": float(np.mean(predicted == y_true)),
            "f1_macro": float(f1_score(y_true, predicted, average="macro", labels=np.arange(scores.shape[1]),
                                       zero_division=0)),
            "roc_auc": auc}


def compute_metrics_for(task: str) -> Callable:
    """``compute_metrics`` for ``Trainer``: regression or classification metrics of an ``EvalPrediction``.

    Example:
        >>> from transformers import EvalPrediction
        >>> fn = compute_metrics_for("regression")
        >>> fn(EvalPrediction(predictions=np.array([[1.0], [2.0]]), label_ids=np.array([1.0, 3.0])))["rmse"]
        0.7071067811865476
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)}, got {task!r}.")

    def compute_metrics(prediction) -> dict[str, float]:
        predictions = prediction.predictions
        if isinstance(predictions, tuple):  # models returning hidden states too: logits come first
            predictions = predictions[0]
        if task == "regression":
            return regression_metrics(prediction.label_ids, predictions)
        return classification_metrics(prediction.label_ids, predictions)

    return compute_metrics


# -- features of the SMILES baselines --------------------------------------------------------------------------
def _molecules(smiles: Sequence[str]):
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError('SMILES baselines need RDKit: pip install "hf-mae[chem]".') from err
    RDLogger.DisableLog("rdApp.*")
    molecules = [Chem.MolFromSmiles(s) for s in smiles]
    bad = [i for i, m in enumerate(molecules) if m is None]
    if bad:
        raise ValueError(f"{len(bad)} SMILES cannot be parsed by RDKit (first: index {bad[0]}, {smiles[bad[0]]!r}); "
                         f"read them with hf_mae.data.files.read_smiles, which reports and leaves them out.")
    return molecules


def morgan_fingerprints(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan (ECFP-like) bit fingerprints (n, n_bits) float32.

    Example:
        >>> morgan_fingerprints(["CCO", "c1ccccc1"], n_bits=64).shape
        (2, 64)
    """
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    return np.stack([generator.GetFingerprintAsNumPy(m) for m in _molecules(smiles)]).astype(np.float32)


def rdkit_descriptors(smiles: Sequence[str]) -> np.ndarray:
    """RDKit's 2D descriptors (n, ~217) float64 (logP, TPSA, counts ...); NaN where RDKit cannot compute one
    (``run_baseline`` imputes those with training medians)."""
    from rdkit.Chem import Descriptors

    with np.errstate(all="ignore"):
        values = np.array([[f(m) for _, f in Descriptors.descList] for m in _molecules(smiles)], dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return values


def mean_pooled(rows: Sequence) -> np.ndarray:
    """One vector per protein: the mean over residues of each (L_i, H) per-residue embedding -> (n, H) float32,
    the input of the protein baselines (ridge/logistic on mean-pooled embeddings).

    Example:
        >>> mean_pooled([np.ones((3, 2)), np.array([[0.0, 2.0], [2.0, 4.0]])]).tolist()
        [[1.0, 1.0], [1.0, 3.0]]
    """
    arrays = [np.asarray(row, dtype=np.float32) for row in rows]
    for i, array in enumerate(arrays):
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != arrays[0].shape[1]:
            raise ValueError(f"row {i}: per-residue embeddings must be (length >= 1, {arrays[0].shape[-1]}), got "
                             f"shape {array.shape}.")
    return np.stack([array.mean(axis=0) for array in arrays])


# -- baselines -------------------------------------------------------------------------------------------------
@dataclass
class BaselineResult:
    """One baseline on one split: ``predictions`` (regression values, or class scores (n, K)), ``metrics``,
    the hyperparameters CV chose (``params``) and fit + predict ``seconds``."""

    name: str
    task: str
    predictions: np.ndarray
    metrics: dict[str, float]
    params: dict = field(default_factory=dict)
    seconds: float = 0.0


def _pls(task: str, n_train: int, n_features: int, folds: int, seed: int):
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

    max_components = max(1, min(20, n_features, n_train * (folds - 1) // folds - 1))
    cv = (KFold if task == "regression" else StratifiedKFold)(folds, shuffle=True, random_state=seed)
    if task == "regression":
        return GridSearchCV(PLSRegression(scale=False), {"n_components": list(range(1, max_components + 1))},
                            cv=cv, scoring="neg_mean_squared_error")
    return GridSearchCV(_plsda_class()(), {"n_components": list(range(1, max_components + 1))}, cv=cv, scoring="accuracy")


@functools.cache
def _plsda_class():
    """PLS discriminant analysis as a scikit-learn classifier (built on first use: sklearn is optional)."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.cross_decomposition import PLSRegression

    class PLSDA(ClassifierMixin, BaseEstimator):
        """PLS on one-hot classes; the predicted class is the largest response."""

        def __init__(self, n_components: int = 2):
            self.n_components = n_components

        def fit(self, x, y):
            self.classes_ = np.unique(y)
            one_hot = (np.asarray(y)[:, None] == self.classes_[None]).astype(float)
            self.pls_ = PLSRegression(n_components=self.n_components, scale=False).fit(x, one_hot)
            return self

        def decision_function(self, x) -> np.ndarray:
            return self.pls_.predict(x)

        def predict(self, x) -> np.ndarray:
            return self.classes_[self.decision_function(x).argmax(axis=1)]

    return PLSDA


def _estimator(name: str, task: str, n_train: int, n_features: int, folds: int, seed: int, n_estimators: int):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, SVR

    cv = (KFold if task == "regression" else StratifiedKFold)(folds, shuffle=True, random_state=seed)
    if name == "pls":
        return _pls(task, n_train, n_features, folds, seed)
    if name in ("ridge", "logistic"):
        if task == "regression":
            # alpha by efficient leave-one-out CV (exact, closed form): deterministic, and fast on 2048-bit prints
            return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 5, 17)))
        return GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                            {"logisticregression__C": np.logspace(-3, 3, 7).tolist()}, cv=cv, scoring="accuracy")
    if name == "random_forest":
        forest = RandomForestRegressor if task == "regression" else RandomForestClassifier
        return forest(n_estimators=n_estimators, n_jobs=1, random_state=seed)
    if name == "svm_rbf":
        model, scoring = (SVR(), "neg_mean_squared_error") if task == "regression" else (SVC(), "accuracy")
        step = type(model).__name__.lower()                              # the pipeline's name for the SVM
        grid = {f"{step}__C": np.logspace(-1, 3, 5).tolist(), f"{step}__gamma": ["scale", 0.01, 0.1]}
        return GridSearchCV(make_pipeline(StandardScaler(), model), grid, cv=cv, scoring=scoring)
    raise ValueError(f"`name` must be one of {list(BASELINES)}, got {name!r}.")


def _chosen(model) -> dict:
    if hasattr(model, "best_params_"):
        return {k.split("__")[-1]: v for k, v in model.best_params_.items()}
    if hasattr(model, "steps") and hasattr(model.steps[-1][1], "alpha_"):
        return {"alpha": float(model.steps[-1][1].alpha_)}
    return {}


def _scores(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Class scores (n, n_classes) for ``classification_metrics``: log-probabilities where the model has
    ``predict_proba``, else its decision function; classes absent from training get a score of -1e9."""
    fitted = model.best_estimator_ if hasattr(model, "best_estimator_") else model
    if hasattr(fitted, "predict_proba"):
        raw = np.log(np.clip(fitted.predict_proba(x), 1e-12, None))
    else:
        raw = np.asarray(fitted.decision_function(x), dtype=np.float64)
        if raw.ndim == 1:  # binary decision function: the score of class 1
            raw = np.stack([-raw, raw], axis=1) / 2
    scores = np.full((len(x), n_classes), -1e9)
    scores[:, np.asarray(fitted.classes_, dtype=np.int64)] = raw
    return scores


def run_baseline(name: str, x_train, y_train, x_test, y_test, task: str, *, seed: int = 0, folds: int = 5,
                 n_classes: int | None = None, n_estimators: int = 500) -> BaselineResult:
    """Fit baseline ``name`` (``BASELINES``) on the training split and score it on the test split.

    ``x`` are feature matrices (spectra, fingerprints, descriptors, embeddings, pixel spectra); NaN features are
    imputed with the training medians (RDKit descriptors). Classification ``y`` are class indices;
    ``n_classes`` defaults to the largest index + 1 over both splits. ``n_estimators``: trees of the random
    forest. Everything random is seeded by ``seed``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((60, 8)); y = x @ rng.standard_normal(8)
        >>> result = run_baseline("pls", x[:40], y[:40], x[40:], y[40:], "regression")
        >>> round(result.metrics["r2"], 6), result.params["n_components"] <= 8
        (1.0, True)
    """
    _sklearn()
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)}, got {task!r}.")
    if name == "logistic" and task == "regression":
        raise ValueError("`logistic` is a classifier; use `ridge` for regression.")
    x_train, x_test = np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64)
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"`x_train`/`x_test` must be 2D with the same width, got {x_train.shape} and {x_test.shape}.")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"{len(x_train)}/{len(x_test)} feature rows for {len(y_train)}/{len(y_test)} labels.")
    if np.isnan(x_train).any() or np.isnan(x_test).any():
        median = np.nanmedian(x_train, axis=0)
        keep = np.isfinite(median)          # a feature missing for every training sample is dropped
        x_train = np.where(np.isnan(x_train), median, x_train)[:, keep]
        x_test = np.where(np.isnan(x_test), median, x_test)[:, keep]
    start = time.perf_counter()
    model = _estimator(name, task, len(x_train), x_train.shape[1], folds, seed, n_estimators)
    if task == "regression":
        model.fit(x_train, y_train.astype(np.float64))
        predictions = np.asarray(model.predict(x_test), dtype=np.float64).reshape(y_test.shape)
        metrics = regression_metrics(y_test, predictions)
    else:
        y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
        n_classes = n_classes or int(max(y_train.max(), y_test.max())) + 1
        model.fit(x_train, y_train)
        predictions = _scores(model, x_test, n_classes)
        metrics = classification_metrics(y_test, predictions)
    return BaselineResult(name, task, predictions, metrics, _chosen(model), time.perf_counter() - start)
