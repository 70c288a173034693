"""The real-data scoreboard: every labelled task, the classic baselines of its field, and the model rows.

For each task of ``hf_mae.data.tasks`` (fixed train/test split, seed 0), each row is run with several seeds
(``--seeds 0 1 2``; the seed drives cross-validation folds, random forests and model training, never the
split) and reported as mean ± standard deviation over seeds, with its run time. Rows:

- baselines (``hf_mae.training.evaluation.run_baseline``), hyperparameters chosen by 5-fold CV on the
  training split only:
  spectra: PLS (PLS-DA for classes) and ridge/logistic, plus an RBF-SVM for reflectance classes
  (earthlib, the hyperspectral pixel baseline), all on the processed spectra every model sees (resampled to
  256 points over the set's own range, SNV, autoscaling fitted on the training split);
  SMILES: random forest and ridge/logistic on Morgan fingerprints (radius 2, 2048 bits) and on RDKit
  descriptors; protein embeddings: ridge/logistic; hyperspectral pixels (``earthlib_scene``: measured
  earthlib spectra in a generated scene, 30 % of the labelled pixels for training): RBF-SVM on the pixel
  spectrum and on the mean spectrum of the 5 x 5 window around it.
- model rows (pretrained + fine-tuned, pretrained + frozen probe, untrained + fine-tuned): registered with
  ``register_model_row``; a task with no model row for its field shows the baselines only. Spectra have
  ChemoMAE rows: ``hf-mae pretrain chemomae`` on the unlabelled spectra of the task's training split (once per
  task and seed, shared by the first two rows), then ``hf-mae finetune chemomae`` on the training split's CSV
  with the test split as ``--test_data`` (sizes and steps: ``CHEMOMAE``, ``--pretrain_steps``,
  ``--finetune_steps``; stated in the page header). SMILES tasks have SMILES BERT rows: ``hf-mae pretrain
  smiles-bert --data`` on unlabelled SMILES (a seeded MOSES subset plus the SMILES tasks' training SMILES, no
  test SMILES of any of them; once per seed, shared by the four tasks), then ``hf-mae finetune smiles-bert``
  with the test split as ``--test_data`` (``SMILES_BERT``, ``SMILES_SETTINGS``). ``earthlib_scene`` has
  SpectralGPT rows: ``hf-mae pretrain spectral-gpt --data`` on the unlabelled cube, then ``hf-mae finetune
  spectral-gpt --labels`` on the training pixels with the baselines' test pixels as ``--test_labels``
  (``SCENE_GPT``, ``SCENE_SETTINGS``). ``tem1_fitness`` ships mean-pooled embeddings only, so no protein MAE
  can have a row (``NO_MODEL_ROW``). ``--no-model_rows`` runs the baselines only.

Primary metric: test RMSE for regression (lower is better), macro F1 for classification (higher is better);
the verdict counts the tasks where the best model row beats the best baseline ("wins out of N") and says by
how much each loss is.

    python scripts/scoreboard.py                                 # every task, 3 seeds -> docs/scoreboard.md
    python scripts/scoreboard.py --tasks corn coffee --seeds 0 --out /tmp/board.md
    python scripts/scoreboard.py --resume                        # reuse the rows already in --json, run the rest
    python scripts/scoreboard.py --resume --tasks freesolv       # run freesolv's missing rows; the page keeps all
    python scripts/scoreboard.py --resume --readme README.md     # and copy the summary into the README

Raw results go to ``--json`` (default scripts/results/scoreboard.json) after each task, so an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hf_mae.data.pixels import LabelledPixels, pixel_spectra, split_pixels, window_mean_spectra  # noqa: E402
from hf_mae.data.tasks import TASKS, earthlib_scene, load_task, task_metadata  # noqa: E402
from hf_mae.training.evaluation import morgan_fingerprints, rdkit_descriptors, run_baseline  # noqa: E402

PRIMARY = {"regression": ("rmse", "lower"), "classification": ("f1_macro", "higher")}
SECONDARY = {"regression": ("r2", "mae"), "classification": ("accuracy", "roc_auc")}
SPECTRA_POINTS = 256
SCENES = {"earthlib_scene": earthlib_scene}   # per-pixel hyperspectral tasks: (cube, label map, metadata)
SCENE_SPLIT = (0.3, 0.7)                      # labelled pixels for training / testing (seeded, stratified)
WINDOW_MEAN = 5                               # window of the window-mean SVM baseline
SUMMARY_START, SUMMARY_END = "<!-- scoreboard:start -->", "<!-- scoreboard:end -->"   # what README.md copies


@dataclass(frozen=True)
class Row:
    """A scoreboard row: ``run(data, seed) -> (metrics, seconds)`` for the tasks of ``fields``."""

    name: str
    kind: str                     # "baseline" or "model"
    fields: tuple[str, ...]
    tasks: tuple[str, ...]        # "regression"/"classification" it applies to
    run: Callable[[dict, int], tuple[dict, float] | None]
    only: tuple[str, ...] = ()    # task names it is limited to (empty: all of its fields)

    def applies(self, data: dict) -> bool:
        return data["field"] in self.fields and data["task"] in self.tasks and (not self.only or data["name"] in self.only)


def _baseline(name: str, feature: str, baseline: str, fields: tuple[str, ...], tasks=("regression", "classification"),
              only: tuple[str, ...] = ()) -> Row:
    def run(data: dict, seed: int) -> tuple[dict, float]:
        x_train, x_test = data["features"][feature]
        result = run_baseline(baseline, x_train, data["y_train"], x_test, data["y_test"], data["task"], seed=seed,
                              n_classes=data["num_labels"] if data["task"] == "classification" else None)
        return result.metrics, result.seconds + data["feature_seconds"][feature]

    return Row(name, "baseline", fields, tuple(tasks), run, only)


BASELINE_ROWS = [
    _baseline("PLS", "spectra", "pls", ("spectra",), ("regression",)),
    _baseline("PLS-DA", "spectra", "pls", ("spectra",), ("classification",)),
    _baseline("ridge", "spectra", "ridge", ("spectra",), ("regression",)),
    _baseline("logistic", "spectra", "logistic", ("spectra",), ("classification",)),
    _baseline("RBF-SVM", "spectra", "svm_rbf", ("spectra",), ("classification",), only=("earthlib_landcover",)),
    _baseline("RF on Morgan FP", "morgan", "random_forest", ("smiles",)),
    _baseline("ridge on Morgan FP", "morgan", "ridge", ("smiles",), ("regression",)),
    _baseline("logistic on Morgan FP", "morgan", "logistic", ("smiles",), ("classification",)),
    _baseline("RF on RDKit descriptors", "descriptors", "random_forest", ("smiles",)),
    _baseline("ridge on RDKit descriptors", "descriptors", "ridge", ("smiles",), ("regression",)),
    _baseline("logistic on RDKit descriptors", "descriptors", "logistic", ("smiles",), ("classification",)),
    _baseline("RBF-SVM on pixel spectra", "pixel", "svm_rbf", ("hyperspectral",)),
    _baseline(f"RBF-SVM on {WINDOW_MEAN}x{WINDOW_MEAN} window means", "window_mean", "svm_rbf", ("hyperspectral",)),
    _baseline("ridge on embeddings", "embedding", "ridge", ("protein_embedding",), ("regression",)),
    _baseline("logistic on embeddings", "embedding", "logistic", ("protein_embedding",), ("classification",)),
]
MODEL_ROWS: list[Row] = []


def register_model_row(name: str, fields: tuple[str, ...], run: Callable[[dict, int], tuple[dict, float]],
                       tasks: tuple[str, ...] = ("regression", "classification")) -> None:
    """Add a model row (e.g. "pretrained + fine-tuned"): ``run(data, seed)`` gets the prepared task (``name``,
    ``task``, ``train``/``test`` splits, ``y_train``/``y_test``, ``features``, ``processor``) and returns
    ``(test metrics, seconds)``, or None where the row does not apply."""
    MODEL_ROWS.append(Row(name, "model", tuple(fields), tuple(tasks), run))


# -- model rows: ChemoMAE pretrained on the task's training spectra, fine-tuned with `hf-mae finetune` ---------
# Sizes (stated on the page): a small ChemoMAE, pretrained briefly on the unlabelled training spectra of the task
# (never the test split) and fine-tuned by hf_mae.training.finetune (the one fine-tuning loop, early stopping on
# a validation split carved from the training split with split seed 0).
CHEMOMAE = {"seq_len": SPECTRA_POINTS, "d_model": 128, "nhead": 4, "num_layers": 3, "dim_feedforward": 256}
PRETRAIN_STEPS, FINETUNE_STEPS, BATCH = 1000, 1000, 32
MODEL_SETTINGS = {}   # filled by configure_model_rows (the page header states them)
_RUNS: dict[tuple[str, int], Path] = {}   # pretrained run per (task, seed), shared by rows (a) and (b)


def configure_model_rows(workdir: str | Path, pretrain_steps: int = PRETRAIN_STEPS,
                         finetune_steps: int = FINETUNE_STEPS, model: dict | None = None, batch: int = BATCH) -> None:
    MODEL_SETTINGS.update(workdir=Path(workdir), pretrain_steps=pretrain_steps, finetune_steps=finetune_steps,
                          model={**CHEMOMAE, **(model or {})}, batch=batch)
    _RUNS.clear()


def _spectra_table(split, path: Path, labels=None) -> Path:
    """A task split as the CSV a user would bring: wavelength headers (+ a ``y`` label column)."""
    import pandas as pd

    from hf_mae.data.spectra import spectral_metadata

    axis = np.asarray(spectral_metadata(split)["wavelengths"], dtype=float)
    frame = pd.DataFrame(np.asarray(split["spectrum"][:], dtype=np.float64), columns=[repr(float(w)) for w in axis])
    if labels is not None:
        frame["y"] = labels
    frame.to_csv(path, index=False)
    return path


def _cli_common(seed: int, steps: int, batch: int, out: Path, save: bool) -> list[str]:
    """Trainer flags shared by every row's CLI call (pretraining: ``save=False``; fine-tuning keeps checkpoints so
    that early stopping can restore the best one)."""
    return ["--max_steps", str(steps), "--per_device_train_batch_size", str(batch), "--seed", str(seed),
            "--output_dir", str(out), "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
            "--save_strategy", "steps" if save else "no", "--logging_steps", str(max(steps, 1))]


def finetune_defaults_note() -> str:
    """How ``hf-mae finetune`` evaluates and stops by default (every model row uses these)."""
    from hf_mae.training.finetune import FINETUNE_DEFAULTS, FinetuneArguments

    patience = FinetuneArguments.__dataclass_fields__["early_stopping_patience"].default
    return (f"evaluated every {FINETUNE_DEFAULTS['eval_steps']} steps with a patience of {patience} evaluations "
            "(the CLI's defaults)")


def _pretrained(data: dict, seed: int) -> tuple[Path, float]:
    """Pretrain (once per task and seed) ChemoMAE on the task's training spectra; ``(run dir, seconds)``."""
    from hf_mae.training.pretrain_spectra import pretrain

    key = (data["name"], seed)
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-pretrain"

    def run() -> None:
        table = _spectra_table(data["train"], out.parent / f"{data['name']}-unlabelled.csv")
        pretrain("chemomae", ["--data", str(table), *sum(([f"--{k}", str(v)] for k, v in
                                                          MODEL_SETTINGS["model"].items()), []),
                              "--eval_steps", str(MODEL_SETTINGS["pretrain_steps"]),
                              *_cli_common(seed, MODEL_SETTINGS["pretrain_steps"], MODEL_SETTINGS["batch"], out,
                                           save=False)])

    return _once(key, out, run)


def _once(key: tuple[str, int], out: Path, run: Callable[[], None]) -> tuple[Path, float]:
    """Run a pretraining into ``out`` once per ``key`` (task or field, seed), timed; ``(out, seconds)``."""
    if key not in _RUNS:
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        run()
        _RUNS[key] = out
        (out / "seconds.txt").write_text(f"{time.perf_counter() - start}")
    return out, float((out / "seconds.txt").read_text())


def _untrained(data: dict, seed: int) -> Path:
    """The same architecture and processor as the pretrained run, with a random (seeded) encoder."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForPreTraining

    run, _ = _pretrained(data, seed)
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-untrained"
    torch.manual_seed(seed)
    AutoModelForPreTraining.from_config(AutoConfig.from_pretrained(run)).save_pretrained(out)
    shutil.copy(run / "preprocessor_config.json", out / "preprocessor_config.json")
    return out


def _finetuned(data: dict, seed: int, model: Path, name: str, extra: list[str]) -> tuple[dict, float]:
    from hf_mae.training.finetune import finetune

    work = MODEL_SETTINGS["workdir"]
    files = [work / f"{data['name']}-{split}.csv" for split in ("train", "test")]
    for path, split, labels in zip(files, ("train", "test"), (data["y_train"], data["y_test"])):
        if not path.is_file():
            _spectra_table(data[split], path, labels)
    out = work / f"{data['name']}-seed{seed}-{name}"
    steps = MODEL_SETTINGS["finetune_steps"]
    start = time.perf_counter()
    finetune("chemomae", ["--model", str(model), "--data", str(files[0]), "--test_data", str(files[1]),
                          "--target", "y", "--task", data["task"], "--baseline", "false",
                          *extra, *_cli_common(seed, steps, MODEL_SETTINGS["batch"], out, save=True)])
    seconds = time.perf_counter() - start
    test = json.loads((out / "finetune_results.json").read_text())["test"]
    return {k: v for k, v in test.items() if k in SECONDARY[data["task"]] or k == PRIMARY[data["task"]][0]}, seconds


def _pretrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _pretrained(data, seed)
    metrics, seconds = _finetuned(data, seed, run, "finetuned", [])
    return metrics, seconds + pretrain_seconds


def _pretrained_probe(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _pretrained(data, seed)
    metrics, seconds = _finetuned(data, seed, run, "probe", ["--freeze_encoder", "true", "--learning_rate", "1e-3"])
    return metrics, seconds + pretrain_seconds


def _untrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    return _finetuned(data, seed, _untrained(data, seed), "untrained", [])


register_model_row("ChemoMAE pretrained + fine-tuned", ("spectra",), _pretrained_finetuned)
register_model_row("ChemoMAE pretrained + frozen probe", ("spectra",), _pretrained_probe)
register_model_row("ChemoMAE untrained + fine-tuned", ("spectra",), _untrained_finetuned)


# -- model rows: SMILES BERT pretrained on unlabelled SMILES, fine-tuned with `hf-mae finetune smiles-bert` -----
# One pretraining per seed, shared by the four SMILES tasks and by rows (a) and (b): a seeded MOSES subset plus
# the tasks' training SMILES, minus every SMILES of any task's test split (those are never seen, even unlabelled).
SMILES_TASKS = ("solubility_logs", "solubility_class", "freesolv", "qm9_gap")
SMILES_BERT = {"hidden_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 512,
               "max_length": 96}
SMILES_SETTINGS = {"moses": 50_000, "pretrain_steps": 800, "pretrain_batch": 64, "finetune_steps": 1000,
                   "finetune_batch": 32, "probe_learning_rate": 1e-3}
SMILES_PRETRAINING = ("moses", "pretrain_steps", "pretrain_batch")   # what a reused pretraining run must match


def smiles_corpus(path: Path, seed: int, n_moses: int) -> Path:
    """The unlabelled pretraining SMILES (.smi): ``n_moses`` MOSES training SMILES drawn with ``seed``, plus the
    SMILES tasks' training SMILES, minus every test SMILES of those tasks (RDKit canonical forms compared)."""
    from rdkit import Chem, RDLogger

    from hf_mae.data.smiles import load_smiles

    RDLogger.DisableLog("rdApp.*")
    moses = load_smiles("moses_train")
    picked = np.random.default_rng(seed).choice(len(moses), size=min(n_moses, len(moses)), replace=False)
    canonical = [Chem.MolToSmiles(m) for m in map(Chem.MolFromSmiles, (moses[i] for i in picked)) if m is not None]
    train, test = [], set()
    for name in SMILES_TASKS:   # task SMILES are RDKit canonical already
        splits = load_task(name)
        train += splits["train"]["smiles"][:]
        test.update(splits["test"]["smiles"][:])
    kept = [s for s in dict.fromkeys(canonical + train) if s not in test]
    path.write_text("\n".join(kept) + "\n")
    return path


def _smiles_pretrained(seed: int) -> tuple[Path, float]:
    """Pretrain SMILES BERT once per seed (kept on disk in the workdir and reused); ``(run dir, seconds)``. The
    seconds include building the corpus."""
    from hf_mae.training.pretrain_smiles import pretrain_smiles_bert

    s = SMILES_SETTINGS
    out = MODEL_SETTINGS["workdir"] / f"smiles-bert-seed{seed}-pretrain"
    stamp = json.dumps({**SMILES_BERT, **{k: s[k] for k in SMILES_PRETRAINING}}, sort_keys=True)   # today's sizes
    done = out / "seconds.txt"
    if not done.is_file() or (out / "settings.json").read_text() != stamp:
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        corpus = smiles_corpus(out.parent / f"smiles-seed{seed}-unlabelled.smi", seed, s["moses"])
        pretrain_smiles_bert(["--data", str(corpus), *sum(([f"--{k}", str(v)] for k, v in SMILES_BERT.items()), []),
                              "--eval_steps", str(s["pretrain_steps"]), "--max_eval_samples", "1000",
                              *_cli_common(seed, s["pretrain_steps"], s["pretrain_batch"], out, save=False)])
        (out / "settings.json").write_text(stamp)
        done.write_text(f"{time.perf_counter() - start}")
    return out, float(done.read_text())


def _smiles_untrained(seed: int) -> Path:
    """The pretrained run's config and tokenizer with a random (seeded) encoder."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    run, _ = _smiles_pretrained(seed)
    out = MODEL_SETTINGS["workdir"] / f"smiles-bert-seed{seed}-untrained"
    torch.manual_seed(seed)
    AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(run)).save_pretrained(out)
    AutoTokenizer.from_pretrained(run).save_pretrained(out)
    return out


def _smiles_table(data: dict, split: str) -> Path:
    """A task split as the CSV a user would bring: ``smiles`` and ``y`` columns."""
    import pandas as pd

    path = MODEL_SETTINGS["workdir"] / f"{data['name']}-{split}.csv"
    if not path.is_file():
        pd.DataFrame({"smiles": data[split]["smiles"][:], "y": data[f"y_{split}"]}).to_csv(path, index=False)
    return path


def _smiles_finetuned(data: dict, seed: int, model: Path, name: str, extra: list[str]) -> tuple[dict, float]:
    from hf_mae.training.finetune import finetune

    s = SMILES_SETTINGS
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-smiles-{name}"
    start = time.perf_counter()
    finetune("smiles-bert", ["--model", str(model), "--data", str(_smiles_table(data, "train")),
                             "--test_data", str(_smiles_table(data, "test")), "--target", "y", "--task", data["task"],
                             "--baseline", "false", *extra,   # evaluation, checkpoints, patience: the defaults
                             *_cli_common(seed, s["finetune_steps"], s["finetune_batch"], out, save=True)])
    seconds = time.perf_counter() - start
    test = json.loads((out / "finetune_results.json").read_text())["test"]
    return {k: v for k, v in test.items() if k in SECONDARY[data["task"]] or k == PRIMARY[data["task"]][0]}, seconds


def _smiles_pretrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _smiles_pretrained(seed)
    metrics, seconds = _smiles_finetuned(data, seed, run, "finetuned", [])
    return metrics, seconds + pretrain_seconds


def _smiles_pretrained_probe(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _smiles_pretrained(seed)
    metrics, seconds = _smiles_finetuned(data, seed, run, "probe", [
        "--freeze_encoder", "true", "--learning_rate", str(SMILES_SETTINGS["probe_learning_rate"])])
    return metrics, seconds + pretrain_seconds


def _smiles_untrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    return _smiles_finetuned(data, seed, _smiles_untrained(seed), "untrained", [])


register_model_row("SMILES BERT pretrained + fine-tuned", ("smiles",), _smiles_pretrained_finetuned)
register_model_row("SMILES BERT pretrained + frozen probe", ("smiles",), _smiles_pretrained_probe)
register_model_row("SMILES BERT untrained + fine-tuned", ("smiles",), _smiles_untrained_finetuned)


# -- model rows: SpectralGPT pretrained on the scene cube, fine-tuned per pixel with `hf-mae finetune spectral-gpt`
# The pretraining sees the whole cube without labels (no auxiliary modality), cut into tiles; fine-tuning reads
# the training pixels' label map and, through --test_labels, exactly the baselines' test pixels.
SCENE_GPT = {"image_size": 8, "patch_size": 4, "band_patch_size": 12, "hidden_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 256, "decoder_hidden_size": 64,
             "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2, "decoder_intermediate_size": 128}
SCENE_SETTINGS = {"tile_size": 8, "pretrain_steps": 600, "pretrain_batch": 16, "finetune_steps": 1000,
                  "finetune_batch": 32, "probe_learning_rate": 1e-3}


def _scene_files(data: dict) -> dict[str, Path]:
    """The scene as a user brings it: the cube (.npy, bands first) and the training and test label maps."""
    pixels, work = data["pixels"], MODEL_SETTINGS["workdir"]
    paths = {name: work / f"{data['name']}-{name}.npy" for name in ("cube", "train", "test")}
    np.save(paths["cube"], pixels.cube)
    for name in ("train", "test"):
        rows = data["splits"][name]
        label_map = np.full(pixels.label_map.shape, pixels.ignore_value, dtype=pixels.label_map.dtype)
        label_map[pixels.rows[rows], pixels.cols[rows]] = pixels.label_map[pixels.rows[rows], pixels.cols[rows]]
        np.save(paths[name], label_map)
    return paths


def _scene_pretrained(data: dict, seed: int) -> tuple[Path, float]:
    """Pretrain SpectralGPT once per scene and seed on the unlabelled cube; ``(run dir, seconds)``."""
    from hf_mae.training.pretrain_spectral_gpt import pretrain_spectral_gpt

    s = SCENE_SETTINGS
    key = (f"{data['name']}-gpt", seed)
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-gpt-pretrain"

    def run() -> None:
        cube = _scene_files(data)["cube"]
        pretrain_spectral_gpt(["--data", str(cube), "--band_axis", "0", "--tile_size", str(s["tile_size"]),
                               *sum(([f"--{k}", str(v)] for k, v in SCENE_GPT.items()), []),
                               "--eval_steps", str(s["pretrain_steps"]),
                               *_cli_common(seed, s["pretrain_steps"], s["pretrain_batch"], out, save=False)])

    return _once(key, out, run)


def _scene_untrained(data: dict, seed: int) -> Path:
    """The pretrained run's config with a random (seeded) SpectralGPT."""
    import torch

    from hf_mae.models import SpectralGPTConfig, SpectralGPTForPreTraining

    run, _ = _scene_pretrained(data, seed)
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-gpt-untrained"
    torch.manual_seed(seed)
    SpectralGPTForPreTraining(SpectralGPTConfig.from_pretrained(run)).save_pretrained(out)
    return out


def _scene_finetuned(data: dict, seed: int, model: Path, name: str, extra: list[str]) -> tuple[dict, float]:
    from hf_mae.training.finetune import finetune

    s = SCENE_SETTINGS
    files = _scene_files(data)
    out = MODEL_SETTINGS["workdir"] / f"{data['name']}-seed{seed}-gpt-{name}"
    start = time.perf_counter()
    finetune("spectral-gpt", ["--model", str(model), "--data", str(files["cube"]), "--band_axis", "0",
                              "--labels", str(files["train"]), "--test_labels", str(files["test"]),
                              "--ignore_value", str(data["pixels"].ignore_value), "--baseline", "false",
                              *extra,   # evaluation, checkpoints, patience: the defaults
                              *_cli_common(seed, s["finetune_steps"], s["finetune_batch"], out, save=True)])
    seconds = time.perf_counter() - start
    results = json.loads((out / "finetune_results.json").read_text())
    if results["split_sizes"]["test"] != len(data["y_test"]):   # the rows must share the baselines' test pixels
        raise RuntimeError(f"{out}: {results['split_sizes']['test']} test pixels, expected {len(data['y_test'])}")
    test = results["test"]
    return {k: v for k, v in test.items() if k in SECONDARY[data["task"]] or k == PRIMARY[data["task"]][0]}, seconds


def _scene_pretrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _scene_pretrained(data, seed)
    metrics, seconds = _scene_finetuned(data, seed, run, "finetuned", [])
    return metrics, seconds + pretrain_seconds


def _scene_pretrained_probe(data: dict, seed: int) -> tuple[dict, float]:
    run, pretrain_seconds = _scene_pretrained(data, seed)
    metrics, seconds = _scene_finetuned(data, seed, run, "probe", [
        "--freeze_encoder", "true", "--learning_rate", str(SCENE_SETTINGS["probe_learning_rate"])])
    return metrics, seconds + pretrain_seconds


def _scene_untrained_finetuned(data: dict, seed: int) -> tuple[dict, float]:
    return _scene_finetuned(data, seed, _scene_untrained(data, seed), "untrained", [])


register_model_row("SpectralGPT pretrained + fine-tuned", ("hyperspectral",), _scene_pretrained_finetuned)
register_model_row("SpectralGPT pretrained + frozen probe", ("hyperspectral",), _scene_pretrained_probe)
register_model_row("SpectralGPT untrained + fine-tuned", ("hyperspectral",), _scene_untrained_finetuned)


# -- what the page says about these rows, and about tasks that cannot have one ------------------------------
NO_MODEL_ROW = {   # task -> why no model of the package can have a row (the verdict column and its section)
    "tem1_fitness": "no model row possible: the task ships one mean-pooled embedding per variant (no sequences, "
                    "no per-residue vectors), and the protein MAEs read per-residue embeddings",
}


def _has_rows(results: dict, prefix: str) -> bool:
    return any(row.startswith(prefix) for result in results.values() for row in result["rows"])


def model_row_notes(results: dict, seeds: list[int]) -> list[str]:
    """Header paragraphs for the SMILES and scene model rows present in ``results``, and a line naming every row
    run with fewer seeds than the page's."""
    lines = []
    if _has_rows(results, "SMILES BERT"):
        s, size = SMILES_SETTINGS, ", ".join(f"{k} {v}" for k, v in SMILES_BERT.items())
        lines += [f"Model rows (SMILES): SMILES BERT ({size}; the bundled tokenizer) pretrained with `hf-mae pretrain "
                  f"smiles-bert --data` for {s['pretrain_steps']} steps (batch {s['pretrain_batch']}, masked "
                  f"language model) on unlabelled SMILES: {s['moses']:,} MOSES training SMILES drawn with the seed "
                  f"plus the training SMILES of {', '.join(SMILES_TASKS)}, minus every test SMILES of those tasks "
                  "(10 % held out for its check), once per seed and shared by the four tasks; then `hf-mae finetune "
                  f"smiles-bert` with the task's test split as `--test_data` (at most {s['finetune_steps']} steps, "
                  f"batch {s['finetune_batch']}, early stopping on a validation tenth of the training split, "
                  f"{finetune_defaults_note()}): "
                  "*pretrained + fine-tuned*, *pretrained + frozen probe* (`--freeze_encoder`, learning rate "
                  f"{s['probe_learning_rate']:g}) and *untrained + fine-tuned* (the same config, random seeded "
                  "weights). Seconds of the pretrained rows include the whole pretraining (corpus included) in "
                  "every task.", ""]
    if _has_rows(results, "SpectralGPT"):
        s, size = SCENE_SETTINGS, ", ".join(f"{k} {v}" for k, v in SCENE_GPT.items())
        lines += [f"Model rows (hyperspectral scene): SpectralGPT ({size}; no auxiliary modality) pretrained with "
                  f"`hf-mae pretrain spectral-gpt --data` for {s['pretrain_steps']} steps (batch "
                  f"{s['pretrain_batch']}, masked reconstruction) on the scene cube without labels (all pixels, cut "
                  f"into {s['tile_size']} x {s['tile_size']} tiles), once per seed; then `hf-mae finetune "
                  "spectral-gpt` on a window of image_size pixels around each pixel of the training label map, "
                  "scored on exactly the baselines' test pixels (`--test_labels`; at most "
                  f"{s['finetune_steps']} steps, batch {s['finetune_batch']}, early stopping on a validation tenth "
                  f"of the training pixels, {finetune_defaults_note()}): the same three rows. Seconds of the "
                  "pretrained rows include the "
                  "pretraining.", ""]
    partial = [f"{row} on {name} (seeds {', '.join(str(r['seed']) for r in data['runs'])})"
               for name, result in results.items() for row, data in result["rows"].items()
               if len(data["runs"]) < len(seeds)]
    if partial:
        lines += [f"**Partial rows** (fewer seeds than the page's; their mean ± std is over those seeds only): "
                  f"{'; '.join(partial)}.", ""]
    return lines


def _baselines_only(results: dict, compared: int) -> str:
    """The end of the wins sentence: how many tasks have baselines only, and which of them cannot have a model row."""
    impossible = [name for name, result in results.items() if name in NO_MODEL_ROW and
                  not any(row["kind"] == "model" for row in result["rows"].values())]
    pending = len(results) - compared - len(impossible)
    parts = ([f"{pending} tasks have baselines only so far"] if pending else []) + \
        ([f"{', '.join(impossible)}: no model row possible, see its verdict"] if impossible else [])
    return f" ({'; '.join(parts)})." if parts else "."


def with_saved_tasks(results: dict, saved: dict, seeds: list[int], order: list[str]) -> tuple[dict, list[str]]:
    """``--resume --tasks ...``: the page still lists every task of the raw results run with the same seeds
    (in ``order``); returns them and the names taken from ``saved``."""
    kept = [name for name in order if name not in results and saved.get(name, {}).get("seeds") == seeds]
    merged = {name: results.get(name) or saved[name] for name in order if name in results or name in kept}
    return merged, kept


def prepare_scene(name: str) -> dict:
    """A per-pixel scene: labelled pixels split by class, pixel spectra and window means as baseline features."""
    cube, label_map, scene = SCENES[name]()
    pixels = LabelledPixels(cube, label_map, band_axis=0)
    splits = split_pixels(pixels, SCENE_SPLIT, seed=0, names=("train", "test"))
    start = time.perf_counter()
    (x_train, y_train), (x_test, y_test) = (pixel_spectra(pixels, splits[k]) for k in ("train", "test"))
    pixel_seconds = time.perf_counter() - start
    start = time.perf_counter()
    means = tuple(window_mean_spectra(pixels, splits[k], WINDOW_MEAN) for k in ("train", "test"))
    meta = {"name": name, "field": "hyperspectral", "task": "classification", "num_labels": int(pixels.classes.size),
            "target": "land-cover class per pixel", "source": scene["source"], "licence": "MIT",
            "id2label": scene["id2label"]}
    return {"name": name, "task": "classification", "field": "hyperspectral", "meta": meta,
            "num_labels": meta["num_labels"], "pixels": pixels, "splits": splits, "y_train": y_train, "y_test": y_test,
            "features": {"pixel": (x_train, x_test), "window_mean": means},
            "feature_seconds": {"pixel": pixel_seconds, "window_mean": time.perf_counter() - start}}


def prepare(name: str) -> dict:
    """Load a task and compute the features its baselines read (timed, so rows report their full cost)."""
    if name in SCENES:
        return prepare_scene(name)
    data = load_task(name)
    meta = task_metadata(data["train"])
    prepared = {"name": name, "task": meta["task"], "field": meta["field"], "meta": meta,
                "num_labels": meta.get("num_labels", 1), "train": data["train"], "test": data["test"],
                "y_train": np.asarray(data["train"]["labels"][:]), "y_test": np.asarray(data["test"]["labels"][:]),
                "features": {}, "feature_seconds": {}}
    start = time.perf_counter()
    if meta["field"] == "spectra":
        from hf_mae.processing.spectra import SpectraProcessor

        axis = np.asarray(meta["wavelengths"], dtype=float)
        processor = SpectraProcessor.for_range(float(axis.min()), float(axis.max()), SPECTRA_POINTS,
                                               scaling="autoscale", wavelength_unit=meta["unit"])
        raw_train, raw_test = (np.asarray(data[s]["spectrum"][:]) for s in ("train", "test"))
        processor.fit(raw_train, axis)
        prepared["processor"] = processor
        prepared["features"]["spectra"] = tuple(processor(x, wavelengths=axis)["input_values"]
                                                for x in (raw_train, raw_test))
        prepared["feature_seconds"]["spectra"] = time.perf_counter() - start
    elif meta["field"] == "smiles":
        smiles = [data[s]["smiles"][:] for s in ("train", "test")]
        prepared["features"]["morgan"] = tuple(morgan_fingerprints(s) for s in smiles)
        prepared["feature_seconds"]["morgan"] = time.perf_counter() - start
        start = time.perf_counter()
        prepared["features"]["descriptors"] = tuple(rdkit_descriptors(s) for s in smiles)
        prepared["feature_seconds"]["descriptors"] = time.perf_counter() - start
    else:
        prepared["features"]["embedding"] = tuple(np.asarray(data[s]["embedding"][:], np.float32)
                                                  for s in ("train", "test"))
        prepared["feature_seconds"]["embedding"] = 0.0
    return prepared


def run_task(name: str, seeds: list[int], rows: list[Row]) -> dict:
    """Every applicable row with every seed: ``{row: {"kind", "runs": [{"seed", "metrics", "seconds"}]}}``."""
    data = prepare(name)
    results = {}
    for row in rows:
        if not row.applies(data):
            continue
        runs = []
        for seed in seeds:
            outcome = row.run(data, seed)
            if outcome is None:
                break
            metrics, seconds = outcome
            runs.append({"seed": seed, "metrics": metrics, "seconds": seconds})
            print(f"{name:22s} {row.name:30s} seed {seed}: " +
                  ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if "_" not in k or k == "f1_macro" or
                            k == "roc_auc") + f" ({seconds:.1f} s)", flush=True)
        if runs:
            results[row.name] = {"kind": row.kind, "runs": runs}
    return {"meta": {k: v for k, v in data["meta"].items() if k != "wavelengths"},
            "n": [len(data["y_train"]), len(data["y_test"])], "rows": results}


def summary(runs: list[dict], metric: str) -> tuple[float, float]:
    values = np.asarray([r["metrics"][metric] for r in runs], dtype=float)
    return float(np.mean(values)), float(np.std(values))


def best(rows: dict, kind: str, metric: str, direction: str) -> tuple[str, float] | None:
    scored = [(name, summary(r["runs"], metric)[0]) for name, r in rows.items() if r["kind"] == kind]
    if not scored:
        return None
    return (min if direction == "lower" else max)(scored, key=lambda item: item[1])


def headline(rows: dict, metric: str) -> tuple[str, float] | None:
    """The row the verdict judges (the issue's target): the pretrained + fine-tuned model, if the task has one."""
    for name, row in rows.items():
        if row["kind"] == "model" and name.endswith("pretrained + fine-tuned"):
            return name, summary(row["runs"], metric)[0]
    return None


def _fmt(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.4g}"


def markdown(results: dict, args) -> str:
    lines = ["# Scoreboard: fine-tuned models against the baselines each field trusts", "",
             f"Produced by `{' '.join(['python scripts/scoreboard.py', *args.argv])}`" +
             (f" (rows of {', '.join(args.reused)} reused from the raw results of earlier runs with the same seeds)"
              if getattr(args, "reused", None) else "") +
             (" (`--no-model_rows`: no model row was run; those shown were already in the raw results)"
              if getattr(args, "model_rows", True) is False else "") +
             f" on {date.today().isoformat()} ({platform.processor() or platform.machine()}, "
             f"{args.threads} thread(s)); seeds {', '.join(map(str, args.seeds))} (mean ± std over seeds; the "
             "seed drives CV folds, forests and training, never the split). Primary metric: test RMSE (regression, "
             "lower is better) or macro F1 (classification, higher is better). Seconds: features + fit + predict "
             "per seed, measured on a 2-core machine shared with other jobs (times are indicative).", ""]
    settings = getattr(args, "model_settings", None)
    if settings:
        size = ", ".join(f"{k} {v}" for k, v in settings["model"].items())
        lines += [f"Model rows (spectra): ChemoMAE ({size}) pretrained with `hf-mae pretrain chemomae` for "
                  f"{settings['pretrain_steps']} steps (batch {settings['batch']}, masked reconstruction) on the "
                  "unlabelled spectra of the task's training split only (10 % of them held out for its check; the "
                  "test split is never seen), once per task and seed, then fine-tuned by `hf-mae finetune chemomae` "
                  f"(the same loop users run: at most {settings['finetune_steps']} steps, batch {settings['batch']}, "
                  f"early stopping on a validation tenth of the training split, {finetune_defaults_note()}, "
                  "standardised targets): "
                  "*pretrained + fine-tuned* (all weights), *pretrained + frozen probe* (`--freeze_encoder`, head "
                  "only, learning rate 1e-3) and *untrained + fine-tuned* (the same head on a randomly initialised "
                  "encoder). Seconds of the pretrained rows include the pretraining.", ""]
    lines += model_row_notes(results, list(args.seeds))
    lines.append(SUMMARY_START)
    wins, compared, verdicts = 0, 0, []
    overview = ["| task | n train/test | target | best baseline | pretrained + fine-tuned | best other model row | "
                "verdict |", "|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        meta, rows = result["meta"], result["rows"]
        metric, direction = PRIMARY[meta["task"]]
        base, model = best(rows, "baseline", metric, direction), headline(rows, metric)
        other = best({k: v for k, v in rows.items() if model is None or k != model[0]}, "model", metric, direction)
        if model is None:
            verdict = NO_MODEL_ROW.get(name, "no model row yet")
        else:
            compared += 1
            better = model[1] < base[1] if direction == "lower" else model[1] > base[1]
            wins += better
            ratio = model[1] / base[1] if base[1] else float("inf")
            worse = 100 * abs(model[1] - base[1]) / abs(base[1]) if base[1] else float("inf")
            how = f"x{ratio:.2f}, {worse:.{0 if worse >= 10 else 1}f} % {'higher' if direction == 'lower' else 'lower'}"
            tie = np.isclose(model[1], base[1], rtol=1e-9, atol=0.0)
            verdict = (f"model wins ({metric} {_fmt(model[1])} vs {_fmt(base[1])})" if better else
                       f"tie, not a win ({metric} {_fmt(model[1])} vs {_fmt(base[1])})" if tie else
                       f"model loses: {metric} {_fmt(model[1])} vs {_fmt(base[1])} ({how})")
            if not better and not tie:
                verdicts.append(f"- {name}: {model[0]} loses to {base[0]}, {metric} {_fmt(model[1])} vs "
                                f"{_fmt(base[1])} ({how}).")
        overview.append(f"| {name} | {result['n'][0]}/{result['n'][1]} | {meta['target']} | {base[0]} "
                        f"({metric} {_fmt(base[1])}) | {'—' if model is None else _fmt(model[1])} "
                        f"| {'—' if other is None else f'{other[0]} ({_fmt(other[1])})'} | {verdict} |")
    lines.append(f"**Wins out of N: {wins} of {compared}**: tasks where the pretrained + fine-tuned model beats the "
                 "best baseline, of the tasks with that row" + _baselines_only(results, compared))
    lines += ["", *overview, ""]
    if verdicts:
        lines += ["Where the model loses:", "", *verdicts, ""]
    lines.append(SUMMARY_END)
    for name, result in results.items():
        meta, rows = result["meta"], result["rows"]
        metric, direction = PRIMARY[meta["task"]]
        others = SECONDARY[meta["task"]]
        lines += [f"## {name}", "", f"{meta['target']}; {meta['source']} ({meta['licence']}); train/test "
                  f"{result['n'][0]}/{result['n'][1]}.", "",
                  *([f"{NO_MODEL_ROW[name][0].upper()}{NO_MODEL_ROW[name][1:]}.", ""] if name in NO_MODEL_ROW else []),
                  f"| row | kind | {metric} | {' | '.join(others)} | seconds |", "|---|---|---|---|---|---|"]
        best_row = best(rows, "baseline" if best(rows, "model", metric, direction) is None else "model", metric,
                        direction)
        for row, data in rows.items():
            mean, std = summary(data["runs"], metric)
            cell = f"{_fmt(mean)} ± {_fmt(std)}"
            cell = f"**{cell}**" if best_row and row == best_row[0] else cell
            extra = " | ".join(f"{_fmt(summary(data['runs'], m)[0])}" for m in others)
            seconds = np.mean([r["seconds"] for r in data["runs"]])
            lines.append(f"| {row} | {data['kind']} | {cell} | {extra} | {seconds:.1f} |")
        lines.append("")
    return "\n".join(lines)


def update_readme(page: str, readme: Path) -> None:
    """Copy the page's summary (verdict, overview table, losses) between the README's scoreboard markers."""
    text = readme.read_text()
    if text.count(SUMMARY_START) != 1 or text.count(SUMMARY_END) != 1:
        raise ValueError(f"{readme} needs one {SUMMARY_START!r} and one {SUMMARY_END!r} line to update.")
    summary_block = page[page.index(SUMMARY_START):page.index(SUMMARY_END) + len(SUMMARY_END)]
    head, tail = text.split(SUMMARY_START)[0], text.split(SUMMARY_END)[1]
    readme.write_text(head + summary_block + tail)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=[*TASKS, *SCENES], choices=[*TASKS, *SCENES])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "docs" / "scoreboard.md"))
    parser.add_argument("--json", default=str(ROOT / "scripts" / "results" / "scoreboard.json"))
    parser.add_argument("--resume", action="store_true", help="keep the tasks already in --json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model_rows", action=argparse.BooleanOptionalAction, default=True,
                        help="run the model rows (--no-model_rows: baselines only)")
    parser.add_argument("--pretrain_steps", type=int, default=PRETRAIN_STEPS)
    parser.add_argument("--finetune_steps", type=int, default=FINETUNE_STEPS)
    parser.add_argument("--workdir", default=None, help="model runs (default: a temporary folder)")
    parser.add_argument("--readme", default=None, help="also copy the summary into this README's scoreboard block")
    args = parser.parse_args(argv)
    args.argv, args.reused = argv, []
    if len(args.seeds) < 1:
        parser.error("--seeds needs at least one seed")
    import torch

    import tempfile

    torch.set_num_threads(args.threads)
    # a temporary folder only when model rows may run
    workdir = args.workdir or (tempfile.mkdtemp(prefix="scoreboard-") if args.model_rows else tempfile.gettempdir())
    configure_model_rows(workdir, args.pretrain_steps,
                         args.finetune_steps)
    args.model_settings = MODEL_SETTINGS
    rows = BASELINE_ROWS + (MODEL_ROWS if args.model_rows else [])
    json_path = Path(args.json)
    saved = json.loads(json_path.read_text()) if args.resume and json_path.is_file() else {}
    results = {}
    for name in args.tasks:
        done = saved[name] if name in saved and saved[name].get("seeds") == args.seeds else None
        # --resume: rows already run with these seeds are kept, only the missing ones run
        missing = [row for row in rows if done is None or row.name not in done["rows"]]
        if done is not None:   # rows of other fields or task kinds are not missing here
            meta = done["meta"]
            missing = [row for row in missing if row.applies({"name": name, "field": meta["field"],
                                                               "task": meta["task"]})]
            if not missing:
                results[name] = done
                args.reused.append(name)
                continue
        start = time.perf_counter()
        result = run_task(name, args.seeds, missing)
        if done is not None:
            args.reused.append(name)
            result["rows"] = {**done["rows"], **result["rows"]}
        results[name] = {**result, "seeds": args.seeds}
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({**saved, **results}, indent=1))
    if args.resume:
        order = [*TASKS, *SCENES]
        results, kept = with_saved_tasks(results, saved, args.seeds, order + [n for n in saved if n not in order])
        args.reused += kept
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    page = markdown(results, args)
    Path(args.out).write_text(page + "\n")
    print(f"wrote {args.out}")
    if args.readme:
        update_readme(page, Path(args.readme))
        print(f"updated the scoreboard block of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
