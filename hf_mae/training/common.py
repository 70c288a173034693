"""Plumbing shared by every ``hf-mae pretrain`` job: argument parsing, per-rank masks, train, save, reload.

A job declares its own model and data argument dataclasses and its defaults for ``TrainingArguments``;
``parse_args`` then accepts every Trainer flag on the command line (``--bf16``, ``--max_steps``,
``--resume_from_checkpoint``, ``--gradient_accumulation_steps`` ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

# Defaults every job starts from; a job overrides some (output_dir, learning rate, steps ...).
COMMON_TRAINING_DEFAULTS: dict[str, Any] = {
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 128,
    "learning_rate": 5e-4,
    "weight_decay": 0.05,
    "warmup_steps": 0.05,
    "lr_scheduler_type": "cosine",
    "max_steps": 200,
    "eval_strategy": "steps",
    "eval_steps": 50,
    "logging_steps": 10,
    "save_steps": 100,
    "save_total_limit": 2,
    "report_to": "none",
    "seed": 42,
    "dataloader_num_workers": 0,
}


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None, defaults: dict[str, Any],
               prog: str) -> tuple:
    """Parse ``argv`` into the given dataclasses plus ``TrainingArguments`` (always last).

    ``defaults`` override the dataclass and TrainingArguments defaults; the command line overrides both.
    """
    parser = HfArgumentParser([*dataclass_types, TrainingArguments], prog=prog)
    # pin_memory only helps (and only works quietly) with an accelerator
    pin = {"dataloader_pin_memory": torch.cuda.is_available()}
    parser.set_defaults(**{**COMMON_TRAINING_DEFAULTS, **pin, **defaults})
    return parser.parse_args_into_dataclasses(args=list(argv or []))


class PerRankMaskSeed(TrainerCallback):
    """Give each process its own random stream so DDP ranks draw different masks.

    Trainer seeds every rank identically, so ``torch.rand`` masks would be the same on all ranks and
    half the masks of a 2-process run would be wasted duplicates. Applied at train begin; on resume the
    RNG state saved in the checkpoint (per rank) is restored afterwards by Trainer and wins.
    """

    def on_train_begin(self, args: TrainingArguments, state, control, **kwargs):
        torch.manual_seed(args.seed + args.process_index)


def train_and_save(trainer: Trainer, training_args: TrainingArguments) -> dict[str, float]:
    """Train (resuming when asked), save the final model + processor, return the final eval metrics."""
    resume = training_args.resume_from_checkpoint
    if resume is not None and not os.path.isdir(resume):
        raise ValueError(f"`resume_from_checkpoint`={resume!r} is not a directory (expected .../checkpoint-N).")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()            # model.safetensors + config.json (+ the processing class)
    trainer.save_state()            # trainer_state.json with the loss curve, read by model cards and plots
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if metrics:
        trainer.save_metrics("eval", metrics)
    return metrics
