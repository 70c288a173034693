"""``hf-mae push OUTPUT_DIR namespace/name``: publish a finished training run with its model card.

What is pushed: the weights (safetensors) and config with the self-contained modeling code and ``auto_map``
(so the model loads with ``trust_remote_code=True`` where hf_mae is not installed), the processor or
tokenizer saved with the run, ``trainer_state.json``, the rendered ``README.md``, and PNG figures (loss curve;
for reconstruction models, inputs against reconstructions). Pickles (``training_args.bin``, optimizer and
scheduler states, ``pytorch_model.bin``) and intermediate ``checkpoint-*`` folders stay behind.

The endpoint and token are the usual ``HF_ENDPOINT`` and ``HF_TOKEN``.

Example:
    hf-mae push runs/chemomae lab/chemomae-corn --dataset lab/corn-nir --examples runs/chemomae/examples.safetensors
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Files never pushed: pickles (unpickling runs code) and what save_pretrained writes again.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_REWRITTEN = ("README.md", "config.json", "model.safetensors", "model.safetensors.index.json")
EXAMPLES_FILE = "examples.safetensors"
FINETUNE_RESULTS = "finetune_results.json"   # written by `hf-mae finetune`


def _checkpoints(output_dir: Path) -> list[Path]:
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def find_model_dir(output_dir: str | Path) -> Path:
    """The folder holding the final model: ``output_dir`` itself, else its newest ``checkpoint-*``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ValueError(f"OUTPUT_DIR {str(output_dir)!r} is not a folder.")
    for candidate in [output_dir, *reversed(_checkpoints(output_dir))]:
        if (candidate / "config.json").is_file():
            return candidate
    raise ValueError(f"No config.json in {str(output_dir)!r} or its checkpoint-* folders: is it a training run's "
                     "output_dir (after trainer.save_model())?")


def read_trainer_state(output_dir: Path, model_dir: Path) -> dict[str, Any] | None:
    """``trainer_state.json`` of the run: in the output folder, else in the newest checkpoint."""
    for candidate in [model_dir, output_dir, *reversed(_checkpoints(output_dir))]:
        if (candidate / "trainer_state.json").is_file():
            return json.loads((candidate / "trainer_state.json").read_text())
    return None


def load_examples(path: str | Path) -> torch.Tensor:
    """Example model inputs for the reconstruction figure: ``.safetensors`` (tensor ``input_values``) or ``.npy``."""
    path = Path(path)
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)).float()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "input_values" not in tensors:
            raise ValueError(f"{path} must hold a tensor named 'input_values', found {sorted(tensors)}.")
        return tensors["input_values"].float()
    raise ValueError(f"`examples` must be a .safetensors or .npy file, got {str(path)!r}.")


def _registry_row(config):
    from .._auto import REGISTRY

    for config_class, models, processor_class in REGISTRY:
        if type(config) is config_class:
            return config_class, models, processor_class
    raise ValueError(f"{type(config).__name__} (model_type {config.model_type!r}) is not an hf_mae architecture.")


def stage_run(output_dir: str | Path, repo_id: str, stage_dir: str | Path, *, examples: torch.Tensor | None = None,
              license: str = "apache-2.0", datasets: Sequence[str] = (), data_description: str | None = None,
              seed: int = 0) -> Path:
    """Write into ``stage_dir`` exactly what ``push_run`` uploads; returns ``stage_dir``."""
    from .cards import card_spec, render_model_card

    output_dir, stage = Path(output_dir), Path(stage_dir)
    stage.mkdir(parents=True, exist_ok=True)
    model_dir = find_model_dir(output_dir)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    _, models, processor_class = _registry_row(config)
    by_name = {model_class.__name__: model_class for model_class in models.values()}
    architecture = (config.architectures or [None])[0]
    if architecture not in by_name:
        raise ValueError(f"config.json names architecture {architecture!r}; expected one of {sorted(by_name)}.")
    spec = card_spec(config.model_type)
    model = by_name[architecture].from_pretrained(model_dir).eval()  # safetensors only
    model.save_pretrained(stage)  # weights, config with the full auto_map, modeling code

    processor_file = model_dir / "preprocessor_config.json"
    if processor_class is not None and processor_file.is_file():
        processor_class.from_pretrained(model_dir).save_pretrained(stage)
    for item in model_dir.iterdir():  # tokenizer files, results, trainer_state.json ...
        if item.is_file() and not (stage / item.name).exists() and item.name not in _REWRITTEN \
                and item.suffix not in _PICKLE_SUFFIXES and item.suffix != ".py":
            shutil.copy2(item, stage / item.name)
    trainer_state = read_trainer_state(output_dir, model_dir)
    if trainer_state is not None and not (stage / "trainer_state.json").exists():
        (stage / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
    results = None  # Trainer.save_metrics: final eval metrics and what the job measured after training
    for candidate in (model_dir, output_dir):
        if (candidate / "all_results.json").is_file():
            results = json.loads((candidate / "all_results.json").read_text())
            break
    finetune_results = None  # an `hf-mae finetune` run: test metrics and baselines go into the card's metadata
    for candidate in (model_dir, output_dir):
        if (candidate / FINETUNE_RESULTS).is_file():
            finetune_results = json.loads((candidate / FINETUNE_RESULTS).read_text())
            break
    tokenizer = None
    if (stage / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(stage)  # what users will load, from the staged files
    training_args = None
    if (output_dir / "training_args.json").is_file():
        training_args = json.loads((output_dir / "training_args.json").read_text())

    figures: dict[str, str] = {}
    try:
        from ..analysis import plotting

        history = (trainer_state or {}).get("log_history") or []
        if any("loss" in entry or "eval_loss" in entry for entry in history):
            plotting.plot_loss_curve(history, stage / "loss_curve.png")
            figures["loss_curve"] = "loss_curve.png"
        if examples is None and (output_dir / EXAMPLES_FILE).is_file():
            examples = load_examples(output_dir / EXAMPLES_FILE)
        if spec.reconstruct is not None and finetune_results is None:   # a fine-tuned head reconstructs nothing
            if examples is None:
                warnings.warn(f"No example inputs (--examples or {EXAMPLES_FILE} in OUTPUT_DIR): the card of "
                              f"{repo_id} will have no reconstruction figure.", stacklevel=2)
            else:
                drawn = spec.reconstruct(model, examples, torch.Generator().manual_seed(seed))
                if drawn is None:
                    warnings.warn(f"{type(model).__name__} holds no decoder: the card of {repo_id} will have no "
                                  "reconstruction figure.", stacklevel=2)
                else:
                    plot = plotting.plot_image_reconstructions if drawn[0].ndim == 3 else plotting.plot_reconstructions
                    plot(*drawn, stage / "reconstructions.png")
                    figures["reconstructions"] = "reconstructions.png"
    except ImportError as err:
        warnings.warn(f"Figures skipped ({err}); pip install matplotlib to draw them.", stacklevel=2)

    card = render_model_card(model, repo_id, trainer_state=trainer_state, training_args=training_args,
                             license=license, datasets=datasets, data_description=data_description, figures=figures,
                             results=results, tokenizer=tokenizer, finetune_results=finetune_results)
    card.save(stage / "README.md")
    return stage


def push_run(output_dir: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
             commit_message: str | None = None, token: str | None = None, **stage_kwargs: Any):
    """Stage a training run (see ``stage_run``) and upload it as one commit; returns the ``CommitInfo``.

    The repository is created if needed; a ``revision`` other than main is created as a branch from main.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf-mae-push-") as stage:
        stage_run(output_dir, repo_id, stage, **stage_kwargs)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=stage, revision=revision,
                                 commit_message=commit_message or f"Upload {Path(output_dir).name} with hf-mae push")


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-mae push OUTPUT_DIR REPO_ID [--flags]``."""
    parser = argparse.ArgumentParser(prog="hf-mae push", description="Publish a training run with its model card.")
    parser.add_argument("output_dir", help="the run's output_dir (config.json + model.safetensors, trainer_state.json)")
    parser.add_argument("repo_id", help="namespace/name of the repository (created if missing)")
    parser.add_argument("--revision", help="branch to push to (created from main if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--license", default="apache-2.0", help="Hub license id (default apache-2.0)")
    parser.add_argument("--dataset", action="append", default=[], help="Hub dataset id trained on (repeatable)")
    parser.add_argument("--data-description", help="a sentence on the training data, for the card")
    parser.add_argument("--examples", help=f"model inputs for the reconstruction figure (.safetensors with "
                                           f"'input_values', or .npy); default: OUTPUT_DIR/{EXAMPLES_FILE}")
    parser.add_argument("--commit-message", help="commit message")
    parser.add_argument("--stage-dir", help="only write the files that would be pushed into this folder")
    args = parser.parse_args(argv)
    stage_kwargs = dict(examples=load_examples(args.examples) if args.examples else None, license=args.license,
                        datasets=args.dataset, data_description=args.data_description)
    try:
        if args.stage_dir:
            print(stage_run(args.output_dir, args.repo_id, args.stage_dir, **stage_kwargs))
        else:
            info = push_run(args.output_dir, args.repo_id, revision=args.revision, private=args.private or None,
                            commit_message=args.commit_message, **stage_kwargs)
            print(info.commit_url)
    except (ValueError, OSError) as err:
        print(f"hf-mae push: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
