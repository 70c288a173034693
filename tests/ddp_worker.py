"""Worker for tests/test_multiprocess_training.py: run under ``torchrun --nproc_per_node 2`` (CPU, gloo).

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR

One launch does two things, so the suite pays the process start-up once:
1. ``hf-mae pretrain chemomae`` with tiny flags, through the real command; a global forward hook records
   the masks of the first training step of each rank -> OUT_DIR/masks_rank{r}.json.
2. One Trainer step of ChemoMAE at batch ``MICRO`` per process on fixed data with fixed per-sample noise;
   the loss Trainer logs and the (all-reduced) gradients -> OUT_DIR/step_rank{r}.json / .safetensors.

``one_step`` is also imported by the test to compute the single-process reference (gradient accumulation 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets
import torch
from safetensors.torch import save_file
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_mae import ChemoMAEForPreTraining
from hf_mae.cli import main as cli_main

TINY = dict(seq_len=64, d_model=32, nhead=2, num_layers=1, dim_feedforward=64, latent_dim=8, n_blocks=8, n_mask=4,
            dropout=0.0, dec_dropout=0.0)
MICRO = 4          # samples per micro-batch (per process, or per accumulation step)
N_SAMPLES = 8      # one optimizer step sees all of them: 2 processes x 4 or 1 process x 2 accumulations x 4

JOB_FLAGS = ["--d_model", "32", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "64", "--latent_dim", "16",
             "--dropout", "0", "--per_device_train_batch_size", "8", "--max_train_samples", "64", "--max_steps", "2",
             "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true",
             "--use_cpu", "true"]


def _collate_with_noise(rows):
    # fixed per-sample noise: a sample's mask does not depend on which process or micro-batch it lands in
    return {"input_values": torch.tensor([r["input_values"] for r in rows]),
            "noise": torch.tensor([r["noise"] for r in rows])}


class _GradientRecorder(TrainerCallback):
    """Copies the gradients Trainer is about to apply (after DDP's all-reduce and accumulation)."""

    def __init__(self, model):
        self.model, self.grads = model, {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}


def one_step(output_dir: str, accumulation: int) -> tuple[float, dict[str, torch.Tensor], int]:
    """One optimizer step over N_SAMPLES fixed samples: (loss Trainer logs, gradients, world size)."""
    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(**TINY)
    g = torch.Generator().manual_seed(1)
    data = datasets.Dataset.from_dict({"input_values": torch.randn(N_SAMPLES, 64, generator=g).tolist(),
                                       "noise": torch.rand(N_SAMPLES, 8, generator=g).tolist()})
    args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=MICRO,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.1, optim="sgd",
                             lr_scheduler_type="constant", max_grad_norm=0.0, logging_steps=1, report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True, remove_unused_columns=False, seed=0,
                             dataloader_pin_memory=False, ddp_find_unused_parameters=False)
    recorder = _GradientRecorder(model)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=_collate_with_noise,
                      callbacks=[recorder])
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return logged[0], recorder.grads, args.world_size


def _record_job_masks(out: Path) -> None:
    """Run ``hf-mae pretrain chemomae`` and write this rank's first training masks."""
    masks: list[list[bool]] = []

    def hook(module, args, output):
        if isinstance(module, ChemoMAEForPreTraining) and module.training and not masks:
            blocks = output.visible_mask.view(output.visible_mask.shape[0], module.config.n_blocks, -1)[..., 0]
            masks.extend(blocks.tolist())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        exit_code = cli_main(["pretrain", "chemomae", "--output_dir", str(out / "job"), *JOB_FLAGS])
    finally:
        handle.remove()
    rank = torch.distributed.get_rank()
    (out / f"masks_rank{rank}.json").write_text(json.dumps(
        {"exit_code": exit_code, "world_size": torch.distributed.get_world_size(), "visible_blocks": masks}))


def main(out_dir: str) -> None:
    out = Path(out_dir)
    _record_job_masks(out)
    loss, grads, world_size = one_step(str(out / "ddp_step"), accumulation=1)
    rank = torch.distributed.get_rank()
    (out / f"step_rank{rank}.json").write_text(json.dumps({"loss": loss, "world_size": world_size}))
    save_file(grads, str(out / f"grads_rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
