"""Model cards: one Jinja template per architecture in ``model_cards/``, rendered with
``huggingface_hub.ModelCard``.

The template holds what is fixed for an architecture (what it is, how to load and use it); this module fills
in what comes from the checkpoint and its training run: YAML metadata, parameter count per part, which parts
the checkpoint holds, the configuration, training settings and metrics read from ``trainer_state.json``, and
the figures pushed with the model.

A new architecture needs a row in ``CARD_SPECS`` (keyed by ``model_type``) and a template in
``model_cards/``; ``tests/test_hub.py`` checks that every registered architecture has both.

Example:
    >>> from hf_mae import ChemoMAE
    >>> model = ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
    >>> card = render_model_card(model, "lab/chemomae-tiny", datasets=["lab/corn-nir"])
    >>> card.data.library_name, card.data.license
    ('transformers', 'apache-2.0')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData

from .._shipped import shipped_dir
from .metadata import validate_card

TEMPLATES = "model_cards"  # the templates' folder: in the source tree, or shipped in the wheel (hf_mae._shipped)

# (model, examples, generator) -> (inputs, reconstructions, visible_mask), each (N, L) profiles (drawn as curves)
# or (N, H, W) images (drawn as images), for the figure; None when this checkpoint cannot reconstruct (an
# encoder saved without its decoder). The numbers come from the model's own ``masked_reconstruction``.
Reconstruct = Callable[[torch.nn.Module, torch.Tensor, torch.Generator],
                       tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]


@dataclass(frozen=True)
class CardSpec:
    """What a card needs to know about one architecture beyond its checkpoint."""

    template: str                      # file name in model_cards/
    title: str                         # the architecture's name in prose
    tags: tuple[str, ...]              # Hub tags besides "hf-mae"
    pipeline_tag: str | None           # the Hub task, where one fits
    reconstruct: Reconstruct | None    # for reconstruction models: draws the inputs-vs-reconstructions figure
    # the part (a substring of its name in parameter_parts) that makes outputs, not only embeddings: whether
    # the checkpoint holds it decides which of the two sentences the card says
    output_part: tuple[str, str, str] = (
        "decoder", "With its decoder it reconstructs masked inputs, not only embeds them.",
        "It holds no decoder, so it embeds inputs but cannot reconstruct them.")
    part_names: tuple[tuple[str, str], ...] = ()  # (name in parameter_parts, name in prose)


def _masked_reconstruction(model: torch.nn.Module, examples: torch.Tensor, generator: torch.Generator):
    """The model's ``(inputs, reconstructions, visible)`` in float32, or None for a checkpoint without decoder."""
    method = getattr(model, "masked_reconstruction", None)
    if method is None:
        return None
    return tuple(t.float() if t.is_floating_point() else t
                 for t in method(examples.to(model.dtype), generator=generator))


def spectral_reconstructions(model: torch.nn.Module, examples: torch.Tensor, generator: torch.Generator):
    """ChemoMAE/WaveMAE: spectra (N, L) with ``n_mask`` blocks hidden, drawn as they are."""
    return _masked_reconstruction(model, examples, generator)


def embedding_reconstructions(model: torch.nn.Module, examples: torch.Tensor, generator: torch.Generator):
    """Protein MAEs: per-residue (V2) or per-patch (V5) embeddings (N, L, C); the channel that varies most
    across the examples is drawn along the protein."""
    drawn = _masked_reconstruction(model, examples, generator)
    if drawn is None:
        return None
    inputs, reconstructions, visible = drawn
    channel = inputs.flatten(0, 1).var(dim=0).argmax()
    return inputs[..., channel], reconstructions[..., channel], visible


def band_reconstructions(model: torch.nn.Module, examples: torch.Tensor, generator: torch.Generator):
    """SpectralGPT: cubes (N, bands, H, W); the middle band is drawn as an image, with the patches hidden in
    that band's group."""
    drawn = _masked_reconstruction(model, examples, generator)
    if drawn is None:
        return None
    band = model.config.num_bands // 2
    return tuple(t[:, band] for t in drawn)                                         # each (N, H, W)


_SPECTRA_TAGS = ("masked-autoencoder", "spectroscopy", "nir", "chemometrics")
_PROTEIN_TAGS = ("masked-autoencoder", "protein", "biology", "protein-language-model-embeddings")
_PROTEIN_PARTS = (("embed", "the input projection"), ("patch_embed", "the patch embedding"),
                  ("mask_token", "the mask token"), ("cls_token", "the CLS token"),
                  ("pos_embed", "the position embeddings"), ("head: decoder", "the decoder"))
CARD_SPECS: dict[str, CardSpec] = {
    "hf_mae_chemomae": CardSpec("chemomae.md", "ChemoMAE", _SPECTRA_TAGS, "feature-extraction",
                                spectral_reconstructions),
    "hf_mae_wavemae": CardSpec("wavemae.md", "WaveMAE", _SPECTRA_TAGS, "feature-extraction",
                               spectral_reconstructions),
    "hf_mae_spectral_gpt": CardSpec("spectral_gpt.md", "SpectralGPT",
                                    ("masked-autoencoder", "hyperspectral", "remote-sensing"), "image-feature-extraction",
                                    band_reconstructions),
    "hf_mae_protein_mae_v2": CardSpec("protein_mae_v2.md", "Protein MAE V2", _PROTEIN_TAGS, "feature-extraction",
                                      embedding_reconstructions, part_names=_PROTEIN_PARTS),
    "hf_mae_protein_mae_v5": CardSpec("protein_mae_v5.md", "Protein MAE V5", _PROTEIN_TAGS, "feature-extraction",
                                      embedding_reconstructions, part_names=_PROTEIN_PARTS),
    "hf_mae_protein_interaction": CardSpec(
        "protein_interaction.md", "protein-interaction classifier", ("protein-protein-interaction", "biology"),
        None, None,
        output_part=("head: classifier", "With its classifier it scores whether two proteins interact.",
                     "It holds no classifier: it gives each pair's interaction vector."),
        part_names=(("head: classifier", "the classifier"), ("encoder", "the protein MAE encoder"),
                    ("adapter", "the V2-to-V5 adapter"), ("cross_attention", "the cross-attention blocks"),
                    ("combine", "the layer combining both directions"), ("norm", "the final layer norm"))),
    "hf_mae_smiles_bert": CardSpec(
        "smiles_bert.md", "SMILES BERT", ("bert", "masked-language-model", "smiles", "chemistry", "cheminformatics"),
        "fill-mask", None,
        output_part=("head: cls", "With its masked-language-model head it predicts the tokens at masked positions "
                                  "(fill-mask), not only embeds them.",
                     "It holds no masked-language-model head, so it gives token vectors but cannot fill in masks."),
        part_names=(("embeddings", "the token and position embeddings"),
                    ("head: cls", "the masked-language-model head (tied to the token embeddings)"))),
}


def card_spec(model_type: str) -> CardSpec:
    """The card spec of an architecture, or a ValueError saying what to add."""
    if model_type not in CARD_SPECS:
        raise ValueError(f"No model card for model_type {model_type!r}: add a CardSpec to CARD_SPECS in "
                         f"hf_mae/hub/cards.py and a template in model_cards/ (known: {sorted(CARD_SPECS)}).")
    spec = CARD_SPECS[model_type]
    try:
        template_path(spec)
    except FileNotFoundError as err:
        raise ValueError(f"Model card template of {model_type!r} is missing: {err}") from None
    return spec


def template_path(spec: CardSpec) -> Path:
    """The template file of ``spec``, from the source tree or the installed wheel."""
    return shipped_dir(TEMPLATES, spec.template) / spec.template


def parameter_parts(model: torch.nn.Module) -> list[tuple[str, int]]:
    """Parameters per part of the checkpoint: the base model's top-level modules (``encoder``, ``decoder``,
    ...) and, for task models, the heads outside the base model (named ``head: <module>``)."""
    prefix = getattr(model, "base_model_prefix", "")
    has_base = bool(prefix) and hasattr(model, prefix)
    counts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        if has_base and parts[0] == prefix:
            key = parts[1]
        else:
            key = f"head: {parts[0]}" if has_base else parts[0]
        counts[key] = counts.get(key, 0) + parameter.numel()
    return list(counts.items())


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(int(n))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_summary(trainer_state: dict[str, Any] | None) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(training settings, metrics) read from a ``trainer_state.json`` dict; empty lists without one."""
    if not trainer_state:
        return [], []
    history = trainer_state.get("log_history") or []
    train_losses = [entry["loss"] for entry in history if "loss" in entry]
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    learning_rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    summary = next((entry for entry in reversed(history) if "train_runtime" in entry), {})
    settings = [("optimisation steps", trainer_state.get("global_step")),
                ("epochs", trainer_state.get("epoch")),
                ("batch size per device", trainer_state.get("train_batch_size")),
                ("peak learning rate", max(learning_rates) if learning_rates else None),
                ("logging / eval / save every (steps)",
                 " / ".join(str(trainer_state.get(k)) for k in ("logging_steps", "eval_steps", "save_steps")))]
    metrics = [("final training loss", train_losses[-1] if train_losses else None),
               ("final eval loss", eval_losses[-1] if eval_losses else None),
               ("best eval loss", min(eval_losses) if eval_losses else None),
               ("mean training loss (whole run)", summary.get("train_loss")),
               ("training time (s)", summary.get("train_runtime")),
               ("training samples / s", summary.get("train_samples_per_second"))]
    keep = lambda rows: [(name, value) for name, value in rows if value is not None]  # noqa: E731
    return keep(settings), keep(metrics)


def result_rows(results: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The numbers of a run's ``all_results.json`` (``Trainer.save_metrics``: final eval metrics and what the
    pretrain job measured after training, e.g. ``validation_masked_token_accuracy``), timings left out."""
    timing = ("_runtime", "_per_second", "_flos")
    return [(key, value) for key, value in (results or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"
            and not key.endswith(timing)]


def tokenizer_rows(tokenizer: Any) -> list[tuple[str, Any]]:
    """What a card says about the tokenizer saved with the model: class, vocabulary, specials, length."""
    ids = sorted((tokenizer.convert_tokens_to_ids(token), token) for token in tokenizer.all_special_tokens)
    specials = ", ".join(f"`{token}` {token_id}" for token_id, token in ids)
    return [("class", f"`{type(tokenizer).__name__}`"), ("vocabulary size", len(tokenizer)),
            ("special tokens (id)", specials), ("longest input (tokens)", tokenizer.model_max_length)]


# Hub task of a fine-tuned run: (field of the architecture, task) -> pipeline_tag
FINETUNED_PIPELINE_TAGS = {"hf_mae_smiles_bert": {"classification": "text-classification",
                                                  "regression": "text-classification"},
                           "hf_mae_spectral_gpt": {"classification": "image-classification",
                                                   "regression": "image-classification"}}
FINETUNE_METRICS = {"regression": (("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²")),
                    "classification": (("accuracy", "accuracy"), ("f1_macro", "macro F1"), ("roc_auc", "ROC-AUC"))}


def finetune_metadata(results: dict[str, Any], model_name: str) -> tuple[list, list[dict], str]:
    """From an ``hf-mae finetune`` run's ``finetune_results.json``: the ``EvalResult`` entries of the card's
    ``model-index`` (the fine-tuned model's test metrics), the baselines for the ``baselines`` metadata key, and
    a Markdown section with both side by side.

    Example:
        >>> results = {"task": "regression", "data": "corn.csv", "target": ["moisture"], "architecture": "chemomae",
        ...            "split_sizes": {"train": 50, "validation": 6, "test": 14},
        ...            "test": {"rmse": 0.5, "mae": 0.4, "r2": 0.9, "loss": 0.3},
        ...            "baselines": [{"label": "PLS on the spectra", "name": "pls", "params": {"n_components": 7},
        ...                           "metrics": {"rmse": 0.6, "mae": 0.5, "r2": 0.85}}]}
        >>> evals, baselines, text = finetune_metadata(results, "chemomae-corn")
        >>> [(e.metric_type, e.metric_value) for e in evals], baselines[0]["metrics"]["rmse"]
        ([('rmse', 0.5), ('mae', 0.4), ('r2', 0.9)], 0.6)
        >>> print(text.splitlines()[-1])
        | chemomae-corn (fine-tuned) | 0.5 | 0.4 | 0.9 |
    """
    from huggingface_hub import EvalResult

    task, dataset = results["task"], Path(results["data"]).name
    task_type = {"regression": "tabular-regression", "classification": "tabular-classification"}[task]
    names = FINETUNE_METRICS[task]
    evals = [EvalResult(task_type=task_type, dataset_type=dataset, dataset_name=dataset, metric_type=key,
                        metric_name=f"test {label}", metric_value=float(results["test"][key]))
             for key, label in names if isinstance(results["test"].get(key), (int, float))
             and results["test"][key] == results["test"][key]]         # NaN (one test class) left out
    baselines = [{"name": b["name"], "description": b["label"], "params": {k: _number(v) for k, v in
                                                                              b.get("params", {}).items()},
                  "metrics": {key: float(b["metrics"][key]) for key, _ in names if key in b["metrics"]}}
                 for b in results.get("baselines", [])]
    sizes = results.get("split_sizes", {})
    rows = [(f"{b['description']} (baseline)", *(_number(b["metrics"].get(key, "")) for key, _ in names))
            for b in baselines]
    rows.append((f"{model_name} (fine-tuned)", *(_number(results["test"].get(key, "")) for key, _ in names)))
    text = (f"\n## Fine-tuning results\n\nFine-tuned with `hf-mae finetune {results.get('architecture', '')}` to "
            f"predict {', '.join(results.get('target', []))} ({task}) from {dataset}: "
            f"{sizes.get('train', '?')} training, {sizes.get('validation', '?')} validation (early stopping) and "
            f"{sizes.get('test', '?')} test rows. Test-split metrics, the field's classic baseline on the same split:\n\n"
            + _table(("", *(label for _, label in names)), rows) + "\n")
    return evals, baselines, text


def render_model_card(model: torch.nn.Module, repo_id: str, *, trainer_state: dict[str, Any] | None = None,
                      training_args: dict[str, Any] | None = None, license: str = "apache-2.0",
                      datasets: Sequence[str] = (), data_description: str | None = None,
                      figures: dict[str, str] | None = None, results: dict[str, Any] | None = None,
                      tokenizer: Any = None, finetune_results: dict[str, Any] | None = None) -> ModelCard:
    """The model card of ``model`` as it will be pushed to ``repo_id``.

    Args:
        trainer_state: the run's ``trainer_state.json`` (settings and metrics are read from it).
        training_args: optional ``TrainingArguments.to_dict()`` of the run, shown as a table.
        license: a Hub license id. datasets: Hub dataset ids the model was trained on.
        data_description: a sentence or two on the training data, shown in the card.
        figures: ``{"reconstructions": "reconstructions.png", "loss_curve": "loss_curve.png"}``, paths
            relative to the repository root, for the figures pushed with the model.
        results: the run's ``all_results.json``; its metrics join those read from ``trainer_state``.
        tokenizer: the tokenizer pushed with the model, described in the card.
        finetune_results: an ``hf-mae finetune`` run's ``finetune_results.json``: its test metrics go into the
            ``model-index`` metadata, its baselines into ``baselines``, both into a "Fine-tuning results" section.
    """
    config = model.config
    spec = card_spec(config.model_type)
    parts = parameter_parts(model)
    total = sum(count for _, count in parts)
    part_names = [name for name, _ in parts]
    prose = dict(spec.part_names)
    named = [prose.get(name, f"the {name}") for name in part_names]
    holds = ", ".join(named[:-1]) + (" and " if len(named) > 1 else "") + named[-1]
    output_part, with_it, without_it = spec.output_part
    holds += ". " + (with_it if any(output_part in name for name in part_names) else without_it)
    config_dict = {key: value for key, value in config.to_diff_dict().items()
                   if key not in ("auto_map", "transformers_version", "architectures", "dtype")}
    settings, metrics = run_summary(trainer_state)
    shown = {name for name, _ in metrics}
    # all_results' eval_loss is one more evaluation after training: the curve's last one is shown already
    metrics += [(name.replace("_", " "), value) for name, value in result_rows(results)
                if not (name == "eval_loss" and "final eval loss" in shown)]
    if training_args:
        wanted = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                  "max_steps", "warmup_steps", "lr_scheduler_type", "weight_decay", "bf16", "seed")
        settings += [(key, training_args[key]) for key in wanted if key in training_args]
    figures = figures or {}
    model_name = repo_id.split("/")[-1]
    evals, baselines, finetune_text, pipeline_tag = None, None, "", spec.pipeline_tag
    if finetune_results is not None:
        evals, baselines, finetune_text = finetune_metadata(finetune_results, model_name)
        task = finetune_results["task"]
        pipeline_tag = FINETUNED_PIPELINE_TAGS.get(config.model_type, {}).get(
            task, "tabular-regression" if task == "regression" else "tabular-classification")
    card_data = ModelCardData(
        library_name="transformers", license=license, tags=["hf-mae", *spec.tags],
        datasets=list(datasets) or None, pipeline_tag=pipeline_tag, model_name=model_name,
        eval_results=evals or None, **({"baselines": baselines} if baselines else {}),
    )
    card = ModelCard.from_template(
        card_data, template_path=str(template_path(spec)),
        repo_id=repo_id, title=spec.title, model_class=type(model).__name__,
        total_parameters=_count(total), total_parameters_exact=f"{total:,}",
        parameters_table=_table(("part", "parameters"), [(name, f"{count:,}") for name, count in parts]),
        holds=holds, config_json=json.dumps(config_dict, indent=2, sort_keys=True),
        training_table=_table(("setting", "value"), [(k, _number(v)) for k, v in settings]) if settings else "",
        metrics_table=_table(("metric", "value"), [(k, _number(v)) for k, v in metrics]) if metrics else "",
        datasets=list(datasets), data_description=data_description or "",
        reconstruction_figure=figures.get("reconstructions"), loss_figure=figures.get("loss_curve"),
        tokenizer_table=_table(("tokenizer", ""), tokenizer_rows(tokenizer)) if tokenizer is not None else "",
    )
    if finetune_text:
        card.text += finetune_text
    errors, _ = validate_card(str(card))
    if errors:  # the template itself is wrong: say so before anything is pushed
        raise ValueError(f"Model card for {repo_id} has invalid metadata: {errors}")
    return card
