"""``hf-mae finetune-protein-interaction``: fine-tune the pair-interaction classifier with Trainer, report ROC-AUC.

The classifier sits on a V5 encoder, or on a V2 encoder through ``V2ToV5Adapter`` (``--encoder_path`` takes a
folder saved by ``hf-mae pretrain protein-mae-v5`` / ``protein-mae-v2``; without it a fresh small V5 or V2 is
used). No protein-interaction labels ship with any installable package, so the pairs come from
``fragment_pairs``: are two fragments the two halves of one protein? Proteins are split into train and held-out
sets first, so no held-out protein is seen in training. This checks the model and its training on real
sequences; it is not a biological interaction benchmark.

    hf-mae finetune-protein-interaction --encoder_path runs/protein-mae-v5 --output_dir runs/pair-v5
    hf-mae finetune-protein-interaction --encoder v2 --freeze_encoder
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from transformers import AutoModel, EvalPrediction, Trainer

from ..data.protein import DataCollatorForProteinPairs, fragment_pairs
from ..models import (
    MAEEncoder,
    ProteinInteractionForSequenceClassification,
    ProteinMAEV2Config,
    ProteinMAEV5Config,
    TransformerMAE,
)
from ..models.serialization import check_pretrained_source, load_safetensors_only
from ..models.validation import check_choice
from .common import parse_args, train_and_save
from .pretrain_protein import ProteinDataArguments, embed_proteins


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative
    (ties count one half), from average ranks (Mann-Whitney U).

    Example:
        >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
        0.75
    """
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels).ravel()
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if positives + negatives != labels.size or positives == 0 or negatives == 0:
        raise ValueError(f"ROC-AUC needs 0/1 labels with both classes present, got {positives} positives and "
                         f"{negatives} negatives out of {labels.size}.")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """ROC-AUC and accuracy from the classifier's logits (Trainer's ``compute_metrics``)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    logits = logits - logits.max(axis=1, keepdims=True)
    probability = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    labels = np.asarray(prediction.label_ids)
    return {"roc_auc": roc_auc(probability, labels), "accuracy": float(((probability > 0.5) == labels).mean())}


@dataclass
class InteractionArguments:
    """The encoder under the pair head, and the pair task."""

    encoder_path: str | None = field(default=None, metadata={"help": "a saved V5 or V2 protein MAE folder"})
    encoder: str = field(default="v5", metadata={"help": "fresh small encoder when no path: v5 or v2"})
    max_length: int = 1502
    encoder_embed_dim: int = field(default=128, metadata={"help": "width of the fresh encoder (no encoder_path)"})
    encoder_num_layers: int = field(default=2, metadata={"help": "depth of the fresh encoder (no encoder_path)"})
    freeze_encoder: bool = field(default=False, metadata={"help": "train only adapter, cross-attention, classifier"})
    adapter_dim: int = field(default=128, metadata={"help": "V2 adapter width (768 in the reference design)"})
    cross_attention_layers: int = 1
    cross_attention_heads: int = 4
    cross_attention_dim_feedforward: int = 256
    n_train_pairs: int = 512
    n_eval_pairs: int = 128


def build_model(args: InteractionArguments, input_dim: int, allow_pickle: bool = False
                ) -> ProteinInteractionForSequenceClassification:
    """The pair classifier around a pretrained encoder (``encoder_path``) or a fresh small one."""
    if args.encoder_path:   # a typo fails at once; pickles only with --allow_pickle
        encoder = load_safetensors_only(AutoModel.from_pretrained, args.encoder_path, parameter="--encoder_path",
                                        use_safetensors=False if allow_pickle else None, what="--encoder_path")
    else:
        check_choice("encoder", args.encoder, ("v5", "v2"))
        width = args.encoder_embed_dim
        small = dict(input_dim=input_dim, max_length=args.max_length, embed_dim=width,
                     num_layers=args.encoder_num_layers, nhead=4, dim_feedforward=2 * width)
        encoder = MAEEncoder(ProteinMAEV5Config(**small)) if args.encoder == "v5" \
            else TransformerMAE(ProteinMAEV2Config(**small, decoder_hidden_dim=2 * width))
    if encoder.config.input_dim != input_dim:
        raise ValueError(f"The encoder expects {encoder.config.input_dim}-d residue embeddings; the embedder gives "
                         f"{input_dim}-d.")
    return ProteinInteractionForSequenceClassification.from_encoder(
        encoder, adapter_dim=args.adapter_dim, freeze_encoder=args.freeze_encoder,
        cross_attention_layers=args.cross_attention_layers, cross_attention_heads=args.cross_attention_heads,
        cross_attention_dim_feedforward=args.cross_attention_dim_feedforward)


def finetune_interaction(argv: Sequence[str] | None = None) -> int:
    """Run the pair fine-tuning job; prints held-out ROC-AUC. Returns the exit code."""
    args, data_args, training_args = parse_args(
        [InteractionArguments, ProteinDataArguments], argv,
        {"output_dir": "runs/protein-interaction", "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32,
         "learning_rate": 3e-4, "max_steps": 100, "eval_steps": 50, "save_steps": 100, "logging_steps": 10},
        prog="hf-mae finetune-protein-interaction")
    if args.encoder_path:   # before any embedding work: a typo fails at once
        check_pretrained_source(args.encoder_path, "--encoder_path")
    with training_args.main_process_first(desc="embedding proteins"):
        proteins = embed_proteins(data_args, args.max_length)
    split = proteins.train_test_split(test_size=data_args.eval_fraction, seed=training_args.seed)
    train_pairs = fragment_pairs(split["train"], args.n_train_pairs, seed=training_args.seed)
    eval_pairs = fragment_pairs(split["test"], args.n_eval_pairs, seed=training_args.seed + 1)
    input_dim = int(proteins.features["residue_embeddings"].shape[1])

    model = build_model(args, input_dim, data_args.allow_pickle)
    trainer = Trainer(model=model, args=training_args, train_dataset=train_pairs, eval_dataset=eval_pairs,
                      data_collator=DataCollatorForProteinPairs(input_dim, args.max_length),
                      compute_metrics=compute_metrics)
    metrics = train_and_save(trainer, training_args)
    if trainer.is_world_process_zero():
        encoder = "V2 + V2ToV5Adapter" if model.config.uses_adapter else "V5"
        print(f"\npair classifier on {encoder} ({'frozen' if args.freeze_encoder else 'fine-tuned'} encoder): "
              f"{len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs from unseen proteins")
        print(f"  held-out ROC-AUC {metrics['eval_roc_auc']:.3f}   accuracy {metrics['eval_accuracy']:.3f}   "
              f"(chance: 0.5)")
    return 0
