"""``hf-mae finetune ARCH``: fine-tune a pretrained run on the user's labelled file, next to the field's baseline.

One implementation for all six architectures::

    hf-mae finetune chemomae --model runs/chemomae --data corn.csv --target moisture
    hf-mae finetune smiles-bert --model runs/smiles-bert --data solubility.csv --target logS --task regression
    hf-mae finetune protein-mae-v5 --model runs/protein-mae-v5 --data proteins.fasta --label_table y.csv --target y
    hf-mae finetune spectral-gpt --model runs/spectral-gpt --data scene.npy --band_axis -1 --labels classes.npy
    hf-mae finetune spectral-gpt --model runs/spectral-gpt --data scene.npy --band_axis -1 --labels train.npy \\
        --test_labels test.npy

What it does, in order:

1. reads ``--data`` (and ``--test_data`` when given) with ``hf_mae.data.files`` / ``cube_files`` / ``pixels``:
   every bad input (a missing target column, NaN labels, one class, text as a regression target, spectra that
   do not cover the model's grid, no usable row) is a one-line error naming the file/column and what was
   expected; skipped rows (unparsable SMILES) are counted and printed;
2. splits: test = ``--test_data`` (spectral-gpt: ``--test_labels``, a second label map of the same shape whose
   labelled pixels, disjoint from ``--labels``', are the test set) or a seeded ``--test_fraction``; validation
   (early stopping) = a seeded ``--validation_fraction`` of the rest; stratified for classification;
3. loads the pretrained run with ``AutoModelForSequenceClassification`` (``SpectralGPTForImageClassification``
   for per-pixel SpectralGPT) with ``num_labels``/``problem_type`` from the labels and the head options
   (``--classifier_pooling``, ``--classifier_dropout``, ``--freeze_encoder``, ``--layerwise_lr_decay``);
4. trains with ``Trainer`` (every TrainingArguments flag works), ``compute_metrics`` (RMSE, MAE, R² / accuracy,
   macro F1, ROC-AUC), early stopping on the validation loss, the best checkpoint kept;
5. scores the model and the classic baseline of the field on the same test split (``run_baseline``) and prints
   them side by side; saves the model (loads with the Auto class), ``finetune_results.json`` (metrics,
   baselines, seeds, split sizes) and, for SpectralGPT, the predicted class map (``class_map.npy``, and
   ``class_map.png`` when matplotlib is installed).

The baselines see the same rows: spectra -> PLS (components by CV) on the file's spectra; SMILES -> random forest
and ridge (logistic for classes) on Morgan fingerprints and on RDKit descriptors; proteins -> ridge/logistic on
mean-pooled residue embeddings; pixels -> RBF-SVM on the pixel spectra.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, EarlyStoppingCallback, Trainer, TrainerCallback

from ..data.files import LabelInfo, load_labelled
from ..data.spectra import DataCollatorForSpectra, spectral_metadata
from ..models.validation import check_choice, check_float
from .common import check_reload, parse_args, train_and_save
from .evaluation import compute_metrics_for, mean_pooled, morgan_fingerprints, rdkit_descriptors, run_baseline

ARCHITECTURES = ("chemomae", "wavemae", "smiles-bert", "protein-mae-v2", "protein-mae-v5", "spectral-gpt")
FIELDS = {"chemomae": "spectra", "wavemae": "spectra", "smiles-bert": "smiles", "protein-mae-v2": "proteins",
          "protein-mae-v5": "proteins", "spectral-gpt": "pixels"}
# Fine-tuning defaults: a lower learning rate than pretraining, evaluation and checkpoints on the same steps so
# that early stopping can keep the best one; long enough for small spectral sets, where 300 steps stopped short
# (validation losses in the scoreboard's commit message).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "learning_rate": 2e-4, "weight_decay": 0.01, "warmup_steps": 0.1, "max_steps": 1000, "eval_steps": 40,
    "save_steps": 40, "logging_steps": 10, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
    "load_best_model_at_end": True, "metric_for_best_model": "loss", "greater_is_better": False,
    "save_total_limit": 2, "remove_unused_columns": False,
}


@dataclass
class FinetuneArguments:
    """The pretrained run, the labelled data, the head, the baselines."""

    model: str = field(default="", metadata={"help": "pretraining run folder or Hub id (required)"})
    data: str = field(default="", metadata={"help": "labelled file: spectra table/.npy, SMILES table, FASTA, or a "
                                                      "cube (spectral-gpt) (required)"})
    target: str | None = field(default=None, metadata={
        "help": "label column; a,b,c: several columns = multi-target regression (not for spectral-gpt: --labels)"})
    task: str | None = field(default=None, metadata={
        "help": "regression or classification (default: text labels classify, numbers regress)"})
    test_data: str | None = field(default=None, metadata={"help": "a labelled test file read like --data"})
    test_fraction: float = field(default=0.2, metadata={"help": "seeded share of --data held out for testing"})
    validation_fraction: float = field(default=0.1, metadata={
        "help": "seeded share of the training rows for early stopping"})
    split_seed: int = field(default=0, metadata={"help": "seed of the test/validation splits"})
    early_stopping_patience: int = field(default=10, metadata={"help": "evaluations without a better eval_loss"})
    # the head (config fields of the ...ForSequenceClassification models)
    classifier_pooling: str | None = field(default=None, metadata={"help": "cls or mean (default: the head's)"})
    classifier_dropout: float | None = None
    freeze_encoder: bool = field(default=False, metadata={"help": "train only the head (a linear probe)"})
    layerwise_lr_decay: float | None = field(default=None, metadata={"help": "in (0, 1]; 1 = none"})
    # spectra
    axis: str | None = field(default=None, metadata={"help": "wavelength axis of .npy spectra (file)"})
    # SMILES
    smiles_column: str = field(default="smiles", metadata={"help": "SMILES column of a table"})
    # proteins
    label_table: str | None = field(default=None, metadata={"help": "CSV/TSV/Parquet with an id column + labels "
                                                                     "for a FASTA --data"})
    id_column: str = "id"
    embeddings_dir: str | None = field(default=None, metadata={
        "help": "precomputed per-residue embeddings (<id>.npy or a saved Dataset) instead of embedding --data"})
    plm_checkpoint: str | None = field(default=None, metadata={
        "help": "protein language model embedding the FASTA (default: the pretraining job's random tiny ESM C)"})
    esm_num_layers: int = 1
    esm_num_heads: int = 15
    # spectral-gpt
    labels: str | None = field(default=None, metadata={"help": "label map (H, W) .npy/.mat for --data's cube"})
    test_labels: str | None = field(default=None, metadata={
        "help": "a second label map (same shape) whose labelled pixels are the test set, disjoint from --labels' "
                "(instead of a seeded --test_fraction)"})
    band_axis: int | None = field(default=None, metadata={"help": "axis of the cube holding the bands (never guessed)"})
    ignore_value: int = field(default=0, metadata={"help": "label value of unlabelled pixels"})
    # baselines
    baseline: bool = field(default=True, metadata={"help": "run the classic baseline on the same test split"})
    n_estimators: int = field(default=200, metadata={"help": "trees of the random-forest baseline"})
    scale_targets: bool = field(default=True, metadata={
        "help": "standardise regression targets for training (folded back into the saved head)"})


@dataclass
class Prepared:
    """What the shared training loop needs from an architecture: splits, collator, labels and the baselines'
    inputs, ``(label, baseline name, x_train, x_test)`` each, with ``y_train``/``y_test``."""

    splits: dict[str, Any]
    collator: Callable
    labels: LabelInfo
    baselines: list[tuple[str, str, np.ndarray, np.ndarray]]
    y_train: np.ndarray
    y_test: np.ndarray
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def targets(target: str) -> str | list[str]:
    """``--target``: one column, or comma-separated columns for a multi-target regression.

    Example:
        >>> targets("moisture"), targets("moisture, oil")
        ('moisture', ['moisture', 'oil'])
    """
    names = [name.strip() for name in target.split(",")]
    if not all(names):
        raise ValueError(f"`--target` {target!r} has an empty column name; expected COLUMN or COLUMN,COLUMN,...")
    return names[0] if len(names) == 1 else names


def _baseline_for(task: str, regression: str, classification: str) -> str:
    return regression if task == "regression" else classification


# -- spectra --------------------------------------------------------------------------------------------------
def prepare_spectra(args: FinetuneArguments, seed: int) -> Prepared:
    """Spectra resampled by the run's saved ``SpectraProcessor``; the file's axis must cover its grid."""
    from transformers import AutoFeatureExtractor

    processor = AutoFeatureExtractor.from_pretrained(args.model)
    grid = np.asarray(processor.wavelengths, dtype=float)
    options = {"axis": args.axis, "grid": grid} if args.axis else {"grid": grid}
    data, info = load_labelled(args.data, "spectra", targets(args.target), task=args.task, test_file=args.test_data,
                               test_fraction=args.test_fraction, validation_fraction=args.validation_fraction,
                               seed=seed, **options)

    def process(split: datasets.Dataset) -> datasets.Dataset:
        wavelengths = np.asarray(spectral_metadata(split)["wavelengths"])
        inputs = processor(np.asarray(split["spectrum"][:]), wavelengths=wavelengths)["input_values"]
        return datasets.Dataset.from_dict({"input_values": np.asarray(inputs, np.float32),
                                           "labels": split["labels"][:]}).with_format("numpy")

    splits = {name: process(split) for name, split in data.items()}
    raw = {name: np.asarray(split["spectrum"][:], dtype=np.float64) for name, split in data.items()}
    if raw["train"].shape[1] != raw["test"].shape[1]:   # a test file on another axis: PLS sees the model's grid
        raw = {name: np.asarray(split["input_values"], dtype=np.float64) for name, split in splits.items()}
    name = _baseline_for(info.task, "pls", "pls")
    return Prepared(splits, DataCollatorForSpectra(), info, [("PLS (CV components) on the spectra", name,
                                                               raw["train"], raw["test"])],
                    np.asarray(data["train"]["labels"][:]), np.asarray(data["test"]["labels"][:]),
                    extra={"processor": processor})


# -- SMILES ---------------------------------------------------------------------------------------------------
def prepare_smiles(args: FinetuneArguments, seed: int) -> Prepared:
    """SMILES tokenised by the run's tokenizer; unparsable ones skipped, counted and reported."""
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    data, info = load_labelled(args.data, "smiles", targets(args.target), task=args.task, test_file=args.test_data,
                               test_fraction=args.test_fraction, validation_fraction=args.validation_fraction,
                               seed=seed, smiles_column=args.smiles_column)
    notes = []
    for name, split in (("data", data["train"]), ("test_data", data["test"])):
        skipped = json.loads(split.info.description or "{}").get("skipped", 0)
        source = json.loads(split.info.description or "{}").get("source", args.data)
        if skipped and (name == "data" or args.test_data):
            notes.append(f"{source}: {skipped} SMILES skipped (RDKit cannot parse them); see the warning above "
                         f"for the rows")
    config = run_config(args.model)
    max_length = int(getattr(config, "max_position_embeddings", 512))

    def encode(split: datasets.Dataset) -> datasets.Dataset:
        smiles = split["smiles"][:]
        encoded = tokenizer(smiles, truncation=False)
        too_long = [s for s, ids in zip(smiles, encoded["input_ids"]) if len(ids) > max_length]
        if too_long:
            raise ValueError(f"{len(too_long)} SMILES are longer than the model's {max_length} tokens (e.g. "
                             f"{too_long[0]!r}); remove them from {args.data} (truncating would change the molecule).")
        return datasets.Dataset.from_dict({"input_ids": encoded["input_ids"],
                                           "attention_mask": encoded["attention_mask"],
                                           "labels": split["labels"][:]})

    splits = {name: encode(split) for name, split in data.items()}
    train_smiles, test_smiles = data["train"]["smiles"][:], data["test"]["smiles"][:]
    linear = _baseline_for(info.task, "ridge", "logistic")
    fingerprints = (morgan_fingerprints(train_smiles), morgan_fingerprints(test_smiles))
    descriptors = (rdkit_descriptors(train_smiles), rdkit_descriptors(test_smiles))
    baselines = [("random forest on Morgan fingerprints", "random_forest", *fingerprints),
                 (f"{linear} on Morgan fingerprints", linear, *fingerprints),
                 ("random forest on RDKit descriptors", "random_forest", *descriptors),
                 (f"{linear} on RDKit descriptors", linear, *descriptors)]
    return Prepared(splits, DataCollatorWithPadding(tokenizer), info, baselines,
                    np.asarray(data["train"]["labels"][:]), np.asarray(data["test"]["labels"][:]), notes,
                    extra={"processor": tokenizer})


def run_config(model: str):
    """The run's config (``AutoConfig``), for sizes the data must respect."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model)


# -- proteins -------------------------------------------------------------------------------------------------
def _protein_embeddings(args: FinetuneArguments, ids: list[str], sequences: list[str], input_dim: int,
                        max_length: int) -> dict[str, np.ndarray]:
    """id -> (length, width) per-residue embeddings: from ``--embeddings_dir`` or embedded now."""
    from ..data.protein import load_residue_embeddings
    from ..processing.protein import ProteinEmbedder

    if args.embeddings_dir:
        stored = load_residue_embeddings(args.embeddings_dir)
        table = dict(zip(stored["id"], stored["residue_embeddings"]))
        missing = [i for i in ids if i not in table]
        if missing:
            raise ValueError(f"`embeddings_dir`={args.embeddings_dir!r} has no embeddings for {len(missing)} proteins "
                             f"of {args.data} (e.g. {missing[:3]}); expected one per id.")
        found = {i: np.asarray(table[i], np.float32) for i in ids}
    else:
        kwargs = {"max_length": max_length}
        embedder = (ProteinEmbedder.from_pretrained(args.plm_checkpoint, **kwargs) if args.plm_checkpoint else
                    ProteinEmbedder.tiny_random("esmc", hidden_size=input_dim, num_layers=args.esm_num_layers,
                                                num_heads=args.esm_num_heads, **kwargs))
        embedded = embedder.to_dataset(sequences, ids)
        found = dict(zip(embedded["id"], (np.asarray(e, np.float32) for e in embedded["residue_embeddings"])))
    width = next(iter(found.values())).shape[1]
    if width != input_dim:
        raise ValueError(f"the embeddings are {width}-d but {args.model} was pretrained on {input_dim}-d ones; embed "
                         f"with the same protein language model (--plm_checkpoint / --embeddings_dir).")
    return found


def prepare_proteins(args: FinetuneArguments, seed: int) -> Prepared:
    """A FASTA with ``--label_table`` (or a FASTA whose table columns hold the target) -> embeddings."""
    from ..data.protein import DataCollatorForProteinEmbeddings

    config = run_config(args.model)
    options = {"table": args.label_table, "id_column": args.id_column}
    data, info = load_labelled(args.data, "proteins", targets(args.target), task=args.task, test_file=args.test_data,
                               test_fraction=args.test_fraction, validation_fraction=args.validation_fraction,
                               seed=seed, **options)
    ids = [i for split in data.values() for i in split["id"][:]]
    sequences = [s for split in data.values() for s in split["sequence"][:]]
    embeddings = _protein_embeddings(args, ids, sequences, int(config.input_dim), int(config.max_length))

    def rows(split: datasets.Dataset) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"residue_embeddings": [embeddings[i] for i in split["id"][:]],
                                           "labels": split["labels"][:]}).with_format("numpy")

    splits = {name: rows(split) for name, split in data.items()}
    pooled = [mean_pooled([embeddings[i] for i in data[name]["id"][:]]) for name in ("train", "test")]
    name = _baseline_for(info.task, "ridge", "logistic")
    return Prepared(splits, DataCollatorForProteinEmbeddings(input_dim=int(config.input_dim),
                                                             max_length=int(config.max_length)), info,
                    [(f"{name} on mean-pooled embeddings", name, *pooled)],
                    np.asarray(data["train"]["labels"][:]), np.asarray(data["test"]["labels"][:]))


# -- hyperspectral pixels -------------------------------------------------------------------------------------
def _given_test_pixels(cube: np.ndarray, label_map: np.ndarray, test_map: np.ndarray, args: FinetuneArguments,
                       seed: int) -> tuple[Any, dict[str, np.ndarray]]:
    """``--test_labels``: the pixels labelled there are the test set; the validation split is a seeded, stratified
    ``--validation_fraction`` of ``--labels``' pixels. Returns the pixels of both maps together (class indices
    shared) and the ``train``/``validation``/``test`` indices into them."""
    from ..data.pixels import LabelledPixels, split_pixels

    ignore = args.ignore_value
    if test_map.shape != label_map.shape:
        raise ValueError(f"`--test_labels` {args.test_labels} has shape {test_map.shape}; expected the shape of "
                         f"`--labels` {args.labels}, {label_map.shape}.")
    both = (label_map != ignore) & (test_map != ignore)
    if both.any():
        row, col = np.argwhere(both)[0]
        raise ValueError(f"`--test_labels` {args.test_labels} labels {int(both.sum())} pixels that `--labels` "
                         f"{args.labels} labels too (e.g. row {row}, column {col}); expected disjoint label maps.")
    train_pixels = LabelledPixels(cube, label_map, band_axis=0, ignore_value=ignore)
    test_values = np.unique(test_map[test_map != ignore])
    if test_values.size == 0:
        raise ValueError(f"`--test_labels` {args.test_labels} has no labelled pixel (every value is the ignore "
                         f"value {ignore}); expected the test pixels.")
    unseen = np.setdiff1d(test_values, train_pixels.classes)
    if unseen.size:
        raise ValueError(f"`--test_labels` {args.test_labels} has classes {unseen.tolist()} that `--labels` "
                         f"{args.labels} never labels; expected test classes among {train_pixels.classes.tolist()}.")
    pixels = LabelledPixels(cube, np.where(label_map != ignore, label_map, test_map), band_axis=0,
                            ignore_value=ignore)
    # both enumerate labelled pixels in row-major order: flat positions map one onto the other
    width = label_map.shape[1]
    flat = pixels.rows * width + pixels.cols
    inner = split_pixels(train_pixels, (1 - args.validation_fraction, args.validation_fraction), seed,
                         names=("train", "validation"))
    parts = {name: np.searchsorted(flat, train_pixels.rows[rows] * width + train_pixels.cols[rows])
             for name, rows in inner.items()}
    parts["test"] = np.flatnonzero(test_map[pixels.rows, pixels.cols] != ignore)
    return pixels, parts


def _label_map(path: str, flag: str) -> np.ndarray:
    """A (H, W) label map file of whole-number class values; anything else names the flag and the file."""
    from ..data.hyperspectral import load_array

    label_map = load_array(path, ndims=(2,))
    whole = np.issubdtype(label_map.dtype, np.integer) or (
        np.issubdtype(label_map.dtype, np.floating) and np.all(np.mod(label_map, 1) == 0))
    if not whole:
        raise ValueError(f"`{flag}` {path} holds {label_map.dtype} values that are not whole numbers; expected "
                         "integer class labels.")
    return label_map.astype(np.int64)


def prepare_pixels(args: FinetuneArguments, seed: int) -> Prepared:
    """Windows of ``image_size`` pixels around each labelled pixel of ``--data``'s cube (``--labels``)."""
    from ..data.cube_files import read_cube
    from ..data.pixels import (DataCollatorForPixelWindows, LabelledPixels, PixelWindowDataset, band_statistics,
                               pixel_spectra, split_pixels)

    if args.labels is None:
        raise ValueError("spectral-gpt fine-tunes per pixel: pass `--labels` (a (H, W) label map .npy/.mat, "
                         f"{args.ignore_value} = unlabelled).")
    if args.test_data is not None or args.target is not None:
        raise ValueError("spectral-gpt takes `--labels` (a label map) and splits its pixels, or `--test_labels` for "
                         "the test pixels; `--target` and `--test_data` are for the other architectures.")
    config = run_config(args.model)
    cube, meta = read_cube(args.data, args.band_axis)
    label_map = _label_map(args.labels, "--labels")
    if args.test_labels is None:
        pixels = LabelledPixels(cube, label_map, band_axis=0, ignore_value=args.ignore_value)
        test = args.test_fraction
        validation = (1 - test) * args.validation_fraction
        parts = split_pixels(pixels, (1 - test - validation, validation, test), seed)
    else:
        pixels, parts = _given_test_pixels(cube, label_map, _label_map(args.test_labels, "--test_labels"), args,
                                            seed)
    if pixels.num_bands != config.num_bands:
        raise ValueError(f"{args.data} has {pixels.num_bands} bands but {args.model} was pretrained on "
                         f"{config.num_bands}; fine-tune a run pretrained on this sensor's bands.")
    empty = [name for name, rows in parts.items() if rows.size == 0]
    if empty:
        raise ValueError(f"{args.labels}: {len(pixels)} labelled pixels leave the {empty} split(s) empty; label more "
                         f"pixels or change --test_fraction/--validation_fraction.")
    mean, std = band_statistics(pixels, parts["train"])
    window = int(config.image_size)
    padding = "reflect" if window // 2 < min(pixels.cube.shape[1:]) else "zero"
    splits = {name: PixelWindowDataset(pixels, rows, window=window, padding=padding, band_mean=mean, band_std=std)
              for name, rows in parts.items()}
    info = LabelInfo("classification", int(pixels.classes.size), "single_label_classification", ("label map",),
                     pixels.id2label())
    x_train, y_train = pixel_spectra(pixels, parts["train"])
    x_test, y_test = pixel_spectra(pixels, parts["test"])
    return Prepared(splits, DataCollatorForPixelWindows(), info, [("RBF-SVM on pixel spectra", "svm_rbf", x_train,
                                                                   x_test)], y_train, y_test,
                    extra={"pixels": pixels, "parts": parts, "window": window, "padding": padding,
                           "band_mean": mean, "band_std": std, "band_axis": meta["band_axis"]})


PREPARE = {"spectra": prepare_spectra, "smiles": prepare_smiles, "proteins": prepare_proteins,
           "pixels": prepare_pixels}


# -- the shared loop ------------------------------------------------------------------------------------------
def load_model(arch: str, args: FinetuneArguments, labels: LabelInfo) -> torch.nn.Module:
    """The pretrained run with a new head: ``AutoModelForSequenceClassification`` (or
    ``SpectralGPTForImageClassification``) with the label and head options on its config."""
    from ..models import SpectralGPTForImageClassification

    head = {name: value for name, value in (("classifier_pooling", args.classifier_pooling),
                                            ("classifier_dropout", args.classifier_dropout),
                                            ("layerwise_lr_decay", args.layerwise_lr_decay)) if value is not None}
    kwargs = {**labels.config_kwargs(), **head}
    if arch == "spectral-gpt":
        if head:
            raise ValueError(f"{sorted(head)} are options of the sequence heads; SpectralGPT's image head averages "
                             f"its tokens.")
        return SpectralGPTForImageClassification.from_pretrained(args.model, **kwargs)
    return AutoModelForSequenceClassification.from_pretrained(args.model, freeze_encoder=args.freeze_encoder,
                                                              **kwargs)


def _test_scores(trainer: Trainer, dataset) -> tuple[np.ndarray, dict[str, float]]:
    output = trainer.predict(dataset, metric_key_prefix="test")
    predictions = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    return np.asarray(predictions), {k.removeprefix("test_"): float(v) for k, v in output.metrics.items()}


METRICS = {"regression": ("rmse", "mae", "r2"), "classification": ("accuracy", "f1_macro", "roc_auc")}


def results_table(task: str, rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    """The model and baseline rows as an aligned text table of the task's metrics.

    Example:
        >>> print(results_table("regression", [("model", {"rmse": 0.5, "mae": 0.4, "r2": 0.9})]))
        row                                                 rmse        mae         r2
        model                                             0.5000     0.4000     0.9000
    """
    names = METRICS[task]
    lines = [f"{'row':<45}" + "".join(f"{n:>11}" for n in names)]
    lines += [f"{label:<45}" + "".join(f"{metrics.get(n, float('nan')):>11.4f}" for n in names)
              for label, metrics in rows]
    return "\n".join(lines)


def predict_class_map(prepared: Prepared, trainer: Trainer) -> np.ndarray:
    """The (H, W) map of predicted label values at every labelled pixel, the ignore value elsewhere (every
    process runs it: ``Trainer.predict`` gathers across processes)."""
    from ..data.pixels import PixelWindowDataset, predictions_to_map

    pixels, extra = prepared.extra["pixels"], prepared.extra
    everything = np.arange(len(pixels))
    windows = PixelWindowDataset(pixels, everything, window=extra["window"], padding=extra["padding"],
                                 band_mean=extra["band_mean"], band_std=extra["band_std"])
    scores, _ = _test_scores(trainer, windows)
    return predictions_to_map(pixels, everything, scores.argmax(axis=1))


def write_class_map(out_dir: Path, label_map: np.ndarray, class_map: np.ndarray) -> Path:
    """Write ``class_map.npy`` and, when matplotlib is installed, ``class_map.png`` (labels next to predictions);
    returns the .npy path."""
    path = out_dir / "class_map.npy"
    np.save(path, class_map)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return path
    figure, axes = plt.subplots(1, 2, figsize=(8, 4))
    for axis, (title, image) in zip(axes, (("labels", label_map), ("predicted", class_map))):
        axis.imshow(image, interpolation="nearest", cmap="tab20")
        axis.set_title(title)
        axis.axis("off")
    figure.savefig(out_dir / "class_map.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


@dataclass(frozen=True)
class TargetScaling:
    """Regression targets standardised for training (``(y - mean) / std`` per target, fitted on the training
    split), folded back into the head's last linear layer afterwards so the saved model predicts in the file's
    units. Metrics are always computed in those units.

    Example:
        >>> scaling = TargetScaling.fit(np.array([1.0, 3.0, 5.0]))
        >>> scaling.mean.tolist(), scaling.scale(np.array([5.0])).tolist(), scaling.unscale(np.array([[0.0]])).tolist()
        ([3.0], [1.224744871391589], [[3.0]])
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, y: np.ndarray) -> TargetScaling:
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        std = y.std(axis=0)
        return cls(y.mean(axis=0), np.where(std > 0, std, 1.0))

    def scale(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return ((y.reshape(len(y), -1) - self.mean) / self.std).reshape(y.shape)

    def unscale(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        return (y.reshape(len(y), -1) * self.std + self.mean).reshape(y.shape)

    def mark_checkpoints(self) -> TrainerCallback:
        """A callback writing ``standardised_targets`` (mean, std) into each checkpoint's config.json: checkpoints
        hold the head before folding, and ``from_pretrained`` of one then warns instead of passing standardised
        predictions off as the file's units. The run's final model is folded and carries no such field."""
        scaling = {"mean": self.mean.tolist(), "std": self.std.tolist()}

        class MarkStandardisedCheckpoints(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                config = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "config.json"
                if state.is_world_process_zero and config.is_file():
                    values = json.loads(config.read_text())
                    config.write_text(json.dumps({**values, "standardised_targets": scaling}, indent=2) + "\n")

        return MarkStandardisedCheckpoints()

    def fold_into(self, model: torch.nn.Module, num_labels: int) -> None:
        """Rescale the last ``Linear`` of ``model.classifier`` (out_features ``num_labels``): outputs in file units."""
        linears = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)
                   and m.out_features == num_labels]
        if not linears:
            raise ValueError(f"{type(model).__name__}.classifier has no Linear layer with {num_labels} outputs to "
                             f"fold the target scaling into.")
        last = linears[-1]
        std = torch.as_tensor(self.std, dtype=last.weight.dtype, device=last.weight.device)
        mean = torch.as_tensor(self.mean, dtype=last.weight.dtype, device=last.weight.device)
        with torch.no_grad():
            last.weight.mul_(std[:, None])
            last.bias.mul_(std).add_(mean)


def _with_labels(split, values: np.ndarray):
    """``split`` (a Dataset) with its ``labels`` replaced by ``values`` (float32)."""
    values = np.asarray(values, dtype=np.float32)
    return split.remove_columns("labels").add_column("labels", values.tolist())


def _scaled_metrics(task: str, scaling: TargetScaling | None) -> Callable:
    """``compute_metrics`` in the file's units: predictions and labels unscaled first when targets were scaled."""
    from transformers import EvalPrediction

    metrics = compute_metrics_for(task)
    if scaling is None:
        return metrics

    def compute(prediction) -> dict[str, float]:
        predictions = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metrics(EvalPrediction(predictions=scaling.unscale(predictions),
                                      label_ids=scaling.unscale(prediction.label_ids)))

    return compute


def finetune(arch: str, argv: Sequence[str] | None = None) -> int:
    """Run ``hf-mae finetune ARCH`` (see the module docstring); returns the exit code."""
    check_choice("arch", arch, ARCHITECTURES)
    args, training_args = parse_args([FinetuneArguments], argv, {"output_dir": f"runs/finetune-{arch}",
                                                                 **FINETUNE_DEFAULTS}, prog=f"hf-mae finetune {arch}")
    for name in ("model", "data"):
        if not getattr(args, name):
            raise ValueError(f"`--{name}` is required (hf-mae finetune {arch} --model RUN --data FILE ...).")
    if FIELDS[arch] != "pixels" and not args.target:
        raise ValueError(f"`--target` is required: the column of {args.data} to predict.")
    check_float("test_fraction", args.test_fraction, minimum=0.0, maximum=1.0, minimum_exclusive=True,
                maximum_exclusive=True)
    check_float("validation_fraction", args.validation_fraction, minimum=0.0, maximum=1.0, minimum_exclusive=True,
                maximum_exclusive=True)
    if args.test_labels is not None and FIELDS[arch] != "pixels":
        raise ValueError(f"`--test_labels` {args.test_labels} is a label map for spectral-gpt; {arch} takes its test "
                         f"rows from `--test_data`.")
    if not Path(args.model).exists() and "/" not in args.model:
        raise ValueError(f"`--model` {args.model!r} is neither a folder nor a Hub id (namespace/name).")

    prepared = PREPARE[FIELDS[arch]](args, args.split_seed)
    for note in prepared.notes:
        print(note)
    splits, labels = prepared.splits, prepared.labels
    print(f"{args.data}: {labels.task} of {', '.join(labels.target)} ({labels.num_labels} "
          f"{'classes' if labels.task == 'classification' else 'target(s)'}); train / validation / test = "
          f"{len(splits['train'])} / {len(splits['validation'])} / {len(splits['test'])}"
          + (f" (test: {args.test_data or args.test_labels})" if args.test_data or args.test_labels else ""))

    scaling, training_splits = None, splits          # ``splits`` keep the file's units
    if labels.task == "regression" and args.scale_targets:
        scaling = TargetScaling.fit(prepared.y_train)
        training_splits = {name: _with_labels(split, scaling.scale(np.asarray(split["labels"][:])))
                           for name, split in splits.items()}
    model = load_model(arch, args, labels)
    if args.freeze_encoder and arch == "spectral-gpt":   # the sequence heads freeze from their config
        from ..models.heads import freeze_encoder

        freeze_encoder(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{type(model).__name__} from {args.model}: {model.num_parameters():,} parameters, {trainable:,} trainable")
    optimizer = None
    if args.layerwise_lr_decay not in (None, 1.0):   # the heads' config-driven layer-wise learning-rate decay
        optimizer = model.layerwise_lr_optimizer(training_args.learning_rate, weight_decay=training_args.weight_decay)
    trainer = Trainer(model=model, args=training_args, train_dataset=training_splits["train"],
                      eval_dataset=training_splits["validation"],
                      data_collator=prepared.collator, processing_class=prepared.extra.get("processor"),
                      compute_metrics=_scaled_metrics(labels.task, scaling), optimizer_cls_and_kwargs=optimizer,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience),
                                 *([scaling.mark_checkpoints()] if scaling is not None else [])])

    def unscale(trainer: Trainer) -> None:
        """The saved model predicts in the file's units; the final evaluation reads them."""
        if scaling is not None:
            scaling.fold_into(trainer.model, labels.num_labels)
            trainer.eval_dataset, trainer.compute_metrics = splits["validation"], compute_metrics_for(labels.task)

    start = time.perf_counter()
    validation = train_and_save(trainer, training_args, before_save=unscale)
    seconds = time.perf_counter() - start
    # predictions on every process (Trainer.predict gathers across them), the rest on the main one
    _, test_metrics = _test_scores(trainer, splits["test"])
    class_map = predict_class_map(prepared, trainer) if arch == "spectral-gpt" else None
    if not trainer.is_world_process_zero():
        return 0

    baselines = []
    if args.baseline:
        for label, name, x_train, x_test in prepared.baselines:
            result = run_baseline(name, x_train, prepared.y_train, x_test, prepared.y_test, labels.task,
                                  seed=training_args.seed, n_classes=labels.num_labels if labels.task ==
                                  "classification" else None, n_estimators=args.n_estimators)
            baselines.append({"label": label, "name": name, "metrics": result.metrics, "params": result.params,
                              "seconds": result.seconds})
    print(f"\ntest split ({len(splits['test'])} rows), fine-tuned {trainer.state.global_step} steps in "
          f"{seconds:.1f} s:")
    print(results_table(labels.task, [(f"{arch} fine-tuned", test_metrics),
                                      *((f"baseline: {b['label']}", b["metrics"]) for b in baselines)]))

    out_dir = Path(training_args.output_dir)
    results = {"architecture": arch, "model": args.model, "data": args.data, "test_data": args.test_data,
               "test_labels": args.test_labels,
               "target": list(labels.target), "task": labels.task, "num_labels": labels.num_labels,
               "id2label": labels.id2label, "split_sizes": {k: len(v) for k, v in splits.items()},
               "test": {k: v for k, v in test_metrics.items() if k.split("_")[0] in
                        {"rmse", "mae", "r2", "accuracy", "f1", "roc", "loss"}},
               "validation": validation, "baselines": baselines, "train_seconds": seconds,
               "steps": trainer.state.global_step, "freeze_encoder": args.freeze_encoder,
               "seeds": {"training": training_args.seed, "split": args.split_seed},
               "options": asdict(args)}
    if arch == "spectral-gpt":
        path = write_class_map(out_dir, prepared.extra["pixels"].label_map, class_map)
        results["class_map"] = path.name
        print(f"predicted class map of the {len(prepared.extra['pixels'])} labelled pixels: {path}")
    (out_dir / "finetune_results.json").write_text(json.dumps(results, indent=2, default=float))

    # reload as a user would
    batch = prepared.collator([splits["test"][i] for i in range(min(4, len(splits["test"])))])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model = trainer.model.float().cpu().eval()
    with torch.no_grad():
        reference = model(**inputs).logits
    auto_class = type(model) if arch == "spectral-gpt" else AutoModelForSequenceClassification
    check_reload(out_dir, auto_class, lambda reloaded: reloaded(**inputs).logits, reference, "logit")
    print(f"results in {out_dir / 'finetune_results.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-mae finetune ARCH ...``: the first argument picks the architecture."""
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: hf-mae finetune ARCH --model RUN_DIR_OR_HUB_ID --data FILE --target COLUMN [flags]\n"
              f"ARCH is one of: {', '.join(ARCHITECTURES)}\n`hf-mae finetune ARCH --help` lists the flags.")
        return 0 if argv else 2
    if argv[0] not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {argv[0]!r} for `hf-mae finetune`; expected one of "
                         f"{list(ARCHITECTURES)}.")
    return finetune(argv[0], argv[1:])
