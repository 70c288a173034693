"""``hf-mae plot``: PNGs of a pretraining run for papers and model cards.

    hf-mae plot loss RUN_DIR                                    loss.png from trainer_state.json
    hf-mae plot reconstructions MODEL_DIR --dataset tablet     inputs vs reconstructions, masked blocks shaded
    hf-mae plot embedding MODEL_DIR --dataset corn              cosine UMAP (or t-SNE) of the latents
    hf-mae plot all RUN_DIR --dataset tablet                    all three into RUN_DIR/plots/

``--dataset`` is a real data set name (``tablet``, ``corn``, ...) or a folder written by
``Dataset.save_to_disk`` with a ``spectrum`` column and wavelength metadata (see ``hf_mae.data.spectra``).
Spectra go through the processor saved with the model, as in training.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .plotting import plot_embedding, plot_loss_curve, plot_reconstructions


def _load_split(dataset: str, split: str):
    import datasets

    from ..data.spectra import SPECTRAL_DATASETS, load_spectral_dataset

    if dataset in SPECTRAL_DATASETS:
        data = load_spectral_dataset(dataset)
    elif Path(dataset).is_dir():
        data = datasets.load_from_disk(dataset)
    else:
        raise ValueError(f"--dataset must be one of {sorted(SPECTRAL_DATASETS)} or a save_to_disk folder, got {dataset!r}.")
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"--split {split!r} is not in the data set; it has {sorted(data)}.")
        data = data[split]
    return data


def _model_and_inputs(model_dir: str, dataset: str, split: str, max_samples: int | None):
    """The model (AutoModel, eval mode), its processor, processed inputs (N, L) and the split's rows."""
    import torch
    from transformers import AutoModel

    from ..data.spectra import spectral_metadata
    from ..processing.spectra import SpectraProcessor

    data = _load_split(dataset, split)
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    model = AutoModel.from_pretrained(model_dir).eval()
    processor = SpectraProcessor.from_pretrained(model_dir)
    wavelengths = np.asarray(spectral_metadata(data)["wavelengths"])
    values = processor(np.asarray(data["spectrum"]), wavelengths=wavelengths)["input_values"]
    return model, processor, torch.as_tensor(values), data


def plot_reconstructions_of(model_dir: str, dataset: str, out: str, *, split: str = "test", n_samples: int = 4,
                            seed: int = 0) -> Path:
    """Reconstructions of the first ``n_samples`` spectra of a split, with a seeded block mask."""
    import torch

    model, processor, x, _ = _model_and_inputs(model_dir, dataset, split, n_samples)
    if not callable(getattr(model, "reconstruct", None)):
        raise ValueError(f"{type(model).__name__} does not reconstruct spectra; `plot reconstructions` needs a "
                         "ChemoMAE/WaveMAE checkpoint.")
    with torch.no_grad():
        x_recon, _, visible = model(x, generator=torch.Generator().manual_seed(seed))
    # Undo the per-wavelength scaling so the curves look like (SNV) spectra, not z-scores.
    inputs, recon = processor.inverse_scale(x.numpy()), processor.inverse_scale(x_recon.numpy())
    return plot_reconstructions(inputs, recon, visible, out, np.asarray(processor.wavelengths),
                                n_samples=n_samples, wavelength_unit=processor.wavelength_unit)


def plot_embedding_of(model_dir: str, dataset: str, out: str, *, split: str = "test", color_by: str = "target",
                      method: str = "auto", max_samples: int | None = None, seed: int = 0) -> tuple[Path, str]:
    """Features of a split (all visible) mapped to 2D with the cosine metric, coloured by a column."""
    from .features import extract_features

    model, _, x, data = _model_and_inputs(model_dir, dataset, split, max_samples)
    if color_by not in data.column_names:
        raise ValueError(f"--color-by {color_by!r} is not a column; the data set has {data.column_names}.")
    z = extract_features(model, x.numpy(), progress=False)
    return plot_embedding(z, np.asarray(data[color_by]), out, method=method, label_name=color_by,
                          title=f"{Path(model_dir).name}: {len(z)} {split} spectra", random_state=seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-mae plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="what", required=True)

    loss = commands.add_parser("loss", help="training and eval loss against the step")
    loss.add_argument("run", help="output folder of a run, a checkpoint folder, or a trainer_state.json")
    loss.add_argument("--out", default=None, help="PNG to write (default RUN/plots/loss.png)")
    loss.add_argument("--log-scale", action="store_true")

    def data_flags(sub):
        sub.add_argument("model", help="folder of a saved ChemoMAE/WaveMAE (model + processor)")
        sub.add_argument("--dataset", required=True, help="tablet, corn, ... or a save_to_disk folder")
        sub.add_argument("--split", default="test")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--out", default=None)

    recon = commands.add_parser("reconstructions", help="inputs against reconstructions, masked blocks shaded")
    data_flags(recon)
    recon.add_argument("--n-samples", type=int, default=4)

    embed = commands.add_parser("embedding", help="cosine UMAP (t-SNE without umap-learn) of the latents")
    data_flags(embed)
    embed.add_argument("--color-by", default="target", help="column that colours the points")
    embed.add_argument("--method", default="auto", choices=("auto", "umap", "tsne"))
    embed.add_argument("--max-samples", type=int, default=None)

    every = commands.add_parser("all", help="loss, reconstructions and embedding into RUN/plots/")
    every.add_argument("run", help="output folder of `hf-mae pretrain` (model, processor, trainer_state.json)")
    every.add_argument("--dataset", required=True)
    every.add_argument("--split", default="test")
    every.add_argument("--seed", type=int, default=0)
    every.add_argument("--color-by", default="target")

    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.what == "loss":
            run = Path(args.run)
            out = args.out or (run if run.is_dir() else run.parent) / "plots" / "loss.png"
            print(f"wrote {plot_loss_curve(run, out, log_scale=args.log_scale)}")
        elif args.what == "reconstructions":
            out = args.out or Path(args.model) / "plots" / "reconstructions.png"
            print(f"wrote {plot_reconstructions_of(args.model, args.dataset, out, split=args.split, n_samples=args.n_samples, seed=args.seed)}")
        elif args.what == "embedding":
            out = args.out or Path(args.model) / "plots" / "embedding.png"
            path, used = plot_embedding_of(args.model, args.dataset, out, split=args.split, color_by=args.color_by,
                                           method=args.method, max_samples=args.max_samples, seed=args.seed)
            print(f"wrote {path} ({'UMAP' if used == 'umap' else 't-SNE: umap-learn is not installed' if args.method == 'auto' else 't-SNE'})")
        else:
            plots = Path(args.run) / "plots"
            print(f"wrote {plot_loss_curve(args.run, plots / 'loss.png')}")
            print(f"wrote {plot_reconstructions_of(args.run, args.dataset, plots / 'reconstructions.png', split=args.split, seed=args.seed)}")
            path, used = plot_embedding_of(args.run, args.dataset, plots / "embedding.png", split=args.split,
                                           color_by=args.color_by, seed=args.seed)
            print(f"wrote {path} ({'UMAP' if used == 'umap' else 't-SNE: umap-learn is not installed'})")
    except (ValueError, ImportError, FileNotFoundError) as err:
        print(f"hf-mae plot {args.what}: {err}", flush=True)
        return 2
    return 0
