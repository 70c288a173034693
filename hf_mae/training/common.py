"""Plumbing shared by every ``hf-mae pretrain`` job: argument parsing, per-rank masks, train, save, then the
same tail: the held-out error next to a baseline, and a reload through the Auto classes compared with the model.

A job declares its data argument dataclass, its model arguments with ``config_arguments`` (the config's own
fields, types and defaults, with the job's sizes where they differ) and its defaults for ``TrainingArguments``;
``parse_args`` then accepts every Trainer flag on the command line (``--bf16``, ``--max_steps``,
``--resume_from_checkpoint``, ``--gradient_accumulation_steps`` ...).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed

from .cpu_memory import keep_freed_memory_for_cpu_training

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


def _option_type(annotation: Any) -> Any:
    """The type a command-line option parses into: one member of a union such as ``float | int`` or
    ``str | list[str]`` (the first), keeping ``None`` when the config allows it."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = [a for a in typing.get_args(annotation) if a is not type(None)]
    return members[0] | None if len(members) < len(typing.get_args(annotation)) else members[0]


def _field_type(config_class: type, source: dataclasses.Field) -> Any:
    """A config field's type. hf_mae's configuration files keep real annotations (no ``from __future__ import
    annotations``), so the type is there as an object; a string one is refused rather than evaluated."""
    if isinstance(source.type, str):
        raise ValueError(f"{config_class.__name__}.{source.name} is annotated with the string {source.type!r}: "
                         f"command-line options need the type itself.")
    return source.type


def config_arguments(config_class: type, names: Sequence[str], *, doc: str, defaults: Mapping[str, Any] | None = None,
                     help: Mapping[str, str] | None = None,
                     extra: Sequence[tuple[str, type, dataclasses.Field]] = ()) -> type:
    """The model arguments of a job: a dataclass for ``HfArgumentParser`` whose fields are the config fields
    ``names``, with the config's types and defaults (``defaults`` replaces some for the job; a ``None`` there
    means "decided by the job"), ``help`` texts, and ``extra`` fields that are not config fields.

    Example:
        >>> from hf_mae import ChemoMAEConfig
        >>> Args = config_arguments(ChemoMAEConfig, ["d_model", "n_mask"], doc="demo", defaults={"n_mask": None})
        >>> Args(), Args(d_model=128).d_model
        (ChemoMAEConfigArguments(d_model=384, n_mask=None), 128)
    """
    defaults, help = dict(defaults or {}), dict(help or {})
    config_fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(names) - set(config_fields))
    if unknown:
        raise ValueError(f"`names` {unknown} are not fields of {config_class.__name__}.")
    specs = []
    for name in names:
        source = config_fields[name]
        default = defaults[name] if name in defaults else (
            source.default if source.default is not dataclasses.MISSING else source.default_factory())
        option_type = _option_type(_field_type(config_class, source))
        if default is None and typing.get_origin(option_type) is not types.UnionType:
            option_type = option_type | None
        metadata = {"help": help[name]} if name in help else {}
        if isinstance(default, list):
            value = dataclasses.field(default_factory=lambda default=default: list(default), metadata=metadata)
        else:
            value = dataclasses.field(default=default, metadata=metadata)
        specs.append((name, option_type, value))
    arguments = dataclasses.make_dataclass(f"{config_class.__name__}Arguments", [*specs, *extra])
    arguments.__doc__ = doc
    return arguments


def has_accelerator() -> bool:
    """Whether torch sees a CUDA, MPS, XPU ... device."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, MPS, XPU ...
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


HELP_TRAINING = "--help-training"   # the full TrainingArguments help, after the job's own options


def _job_help(dataclass_types: Sequence[type], defaults: Mapping[str, Any], prog: str) -> str:
    """A job's ``--help``: its model and data options with their defaults (what the job changes first), then the
    TrainingArguments values the job sets, and where the rest of Trainer's flags are listed."""
    lines = [f"usage: {prog} [options] [TrainingArguments flags]", ""]
    for arguments in dataclass_types:
        doc = " ".join((arguments.__doc__ or "").split())
        lines.append(f"{arguments.__name__}: {doc}" if doc else f"{arguments.__name__}:")
        for field in dataclasses.fields(arguments):
            default = defaults.get(field.name, field.default if field.default is not dataclasses.MISSING
                                   else field.default_factory())
            text = field.metadata.get("help", "")
            lines.append(f"  --{field.name:<28} default {default!r}" + (f"   {text}" if text else ""))
        lines.append("")
    job_training = {name: value for name, value in {**COMMON_TRAINING_DEFAULTS, **defaults}.items()
                    if name in {f.name for f in dataclasses.fields(TrainingArguments)}}
    lines.append("TrainingArguments this job sets (any Trainer flag works too, e.g. --bf16, --max_steps, "
                 "--gradient_accumulation_steps, --resume_from_checkpoint):")
    lines += [f"  --{name:<28} {value!r}" for name, value in sorted(job_training.items())]
    lines += ["", f"`{prog} {HELP_TRAINING}` lists every TrainingArguments flag.",
              "On the CPU the job keeps freed memory in the process for the next step (faster; "
              "HF_MAE_KEEP_FREED_MEMORY=0 turns it off)."]
    return "\n".join(lines)


def parse_args(dataclass_types: Sequence[type], argv: Sequence[str] | None, defaults: dict[str, Any],
               prog: str) -> tuple:
    """Parse ``argv`` into the given dataclasses plus ``TrainingArguments`` (always last).

    ``defaults`` override the dataclass and TrainingArguments defaults; the command line overrides both.
    Every random generator is then seeded with ``--seed`` (``transformers.set_seed``).
    ``-h``/``--help`` prints the job's own options first (``_job_help``) and exits; ``--help-training``
    prints the full help, Trainer's flags included.
    """
    argv = list(argv or [])
    if "-h" in argv or "--help" in argv:
        print(_job_help(dataclass_types, defaults, prog))
        raise SystemExit(0)
    parser = HfArgumentParser([*dataclass_types, TrainingArguments], prog=prog)
    # pin_memory only helps (and only works quietly) with an accelerator; without any, `--bf16` means CPU autocast
    # (TrainingArguments refuses bf16 on a machine with no accelerator unless use_cpu is set)
    device = {"dataloader_pin_memory": torch.cuda.is_available(),
              "use_cpu": not has_accelerator()}
    parser.set_defaults(**{**COMMON_TRAINING_DEFAULTS, **device, **defaults})
    if HELP_TRAINING in argv:
        parser.print_help()
        raise SystemExit(0)
    parsed = parser.parse_args_into_dataclasses(args=argv)
    # Trainer seeds only when it is built, after the job has initialised its model (a new head, a model from
    # scratch): seed first, so that --seed fixes the initial weights too
    set_seed(parsed[-1].seed)
    return parsed


class PerRankMaskSeed(TrainerCallback):
    """Give each process its own random stream so DDP ranks draw different masks.

    Trainer seeds every rank identically, so ``torch.rand`` masks would be the same on all ranks and
    half the masks of a 2-process run would be wasted duplicates. Applied at train begin; on resume the
    RNG state saved in the checkpoint (per rank) is restored afterwards by Trainer and wins.
    """

    def on_train_begin(self, args: TrainingArguments, state, control, **kwargs):
        torch.manual_seed(args.seed + args.process_index)


def train_model(model, training_args: TrainingArguments, train_dataset, eval_dataset, data_collator,
                processing_class=None) -> tuple[Trainer, dict[str, float]]:
    """A ``Trainer`` whose ranks draw their own masks (``PerRankMaskSeed``), trained and saved
    (``train_and_save``); returns it and its final eval metrics."""
    trainer = Trainer(model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=data_collator, processing_class=processing_class, callbacks=[PerRankMaskSeed()])
    return trainer, train_and_save(trainer, training_args)


def train_and_save(trainer: Trainer, training_args: TrainingArguments,
                   before_save: Callable[[Trainer], None] | None = None) -> dict[str, float]:
    """Train (resuming when asked), save the final model + processor, return the final eval metrics.

    ``before_save(trainer)`` runs between training and saving (e.g. folding a target scaling into the head).
    On the CPU, freed memory stays in the process for the next step (``cpu_memory.keep_freed_memory``;
    ``HF_MAE_KEEP_FREED_MEMORY=0`` turns it off)."""
    resume = training_args.resume_from_checkpoint
    if resume is not None and not os.path.isdir(resume):
        raise ValueError(f"`resume_from_checkpoint`={resume!r} is not a directory (expected .../checkpoint-N).")
    keep_freed_memory_for_cpu_training(training_args.device.type)
    trainer.train(resume_from_checkpoint=resume)
    if before_save is not None:
        before_save(trainer)
    trainer.save_model()            # model.safetensors + config.json (+ the processing class)
    trainer.save_state()            # trainer_state.json with the loss curve, read by model cards and plots
    metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
    if metrics:
        trainer.save_metrics("eval", metrics)
    return metrics


def print_held_out(title: str, model: tuple[str, float], baseline: tuple[str, float],
                   metrics: Mapping[str, float]) -> None:
    """Print a held-out error of the model next to its baseline's (and their ratio), then Trainer's eval_loss.

    Example:
        >>> print_held_out("held-out MSE:", ("chemomae", 0.5), ("mean spectrum", 1.0), {"eval_loss": 0.49})
        <BLANKLINE>
        held-out MSE:
          chemomae                            0.5000
          mean spectrum                       1.0000   (model / baseline = 0.500)
          eval_loss (Trainer)                 0.4900
    """
    (model_label, model_value), (baseline_label, baseline_value) = model, baseline
    print(f"\n{title}")
    print(f"  {model_label:<35} {model_value:.4f}")
    print(f"  {baseline_label:<35} {baseline_value:.4f}   (model / baseline = {model_value / baseline_value:.3f})")
    if "eval_loss" in metrics:
        print(f"  {'eval_loss (Trainer)':<35} {metrics['eval_loss']:.4f}")


def check_reload(output_dir: str | os.PathLike, auto_class: type, run: Callable[[torch.nn.Module], torch.Tensor],
                 reference: torch.Tensor, what: str = "") -> float:
    """Reload the saved run with ``auto_class``, as a user would, run it (``run(model)``) and print the largest
    difference from ``reference`` (the trained model's output on the same inputs); returns that difference."""
    reloaded = auto_class.from_pretrained(output_dir).eval()
    with torch.no_grad():
        diff = (run(reloaded) - reference).abs().max().item()
    print(f"saved to {output_dir}; {auto_class.__name__}.from_pretrained -> {type(reloaded).__name__}, "
          f"max |{what + ' ' if what else ''}difference| = {diff:.1e}")
    return diff
