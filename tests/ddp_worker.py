"""Worker for tests/test_multiprocess_training.py: run under ``torchrun --nproc_per_node 2`` (CPU, gloo).

    torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR

One launch does everything, so the suite pays the process start-up once. For ChemoMAE and SMILES BERT (step 2
also for the ChemoMAE regression head, ``chemomae-head``):
1. ``hf-mae pretrain chemomae`` / ``smiles-bert`` with tiny flags, through the real command; a global forward
   hook records the masks of the first training step of each rank -> OUT_DIR/{model}_masks_rank{r}.json.
2. One Trainer step at batch ``MICRO`` per process on fixed data whose masks do not depend on the split
   (fixed per-sample noise; pre-masked SMILES with 1, 2, 5 and 9 labels); the loss Trainer logs and the
   all-reduced gradients -> OUT_DIR/{model}_step_rank{r}.json / {model}_grads_rank{r}.safetensors.

``ONE_STEP`` is also imported by the test to compute the single-process reference (gradient accumulation 2).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import datasets
import torch
from safetensors.torch import save_file
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from hf_mae import (ChemoMAEForPreTraining, ChemoMAEForSequenceClassification, SMILESBERTForMaskedLM,
                    SMILESBERTMLMConfig)
from hf_mae.cli import close_process_group
from hf_mae.cli import main as cli_main
from hf_mae.processing.smiles import load_smiles_tokenizer
from hf_mae.training.smiles_mlm import make_mlm_trainer

TINY = dict(seq_len=64, d_model=32, nhead=2, num_layers=1, dim_feedforward=64, latent_dim=8, n_blocks=8, n_mask=4,
            dropout=0.0, dec_dropout=0.0)
MICRO = 4          # samples per micro-batch (per process, or per accumulation step)
N_SAMPLES = 8      # one optimizer step sees all of them: 2 processes x 4 or 1 process x 2 accumulations x 4

COMMON_FLAGS = ["--per_device_train_batch_size", "8", "--max_steps", "2", "--save_strategy", "no", "--eval_strategy",
                "no", "--logging_steps", "1", "--disable_tqdm", "true", "--use_cpu", "true"]
JOB_FLAGS = {
    "chemomae": ["--d_model", "32", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "64", "--latent_dim",
                 "16", "--dropout", "0", "--max_train_samples", "64", *COMMON_FLAGS],
    "smiles-bert": ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                    "--intermediate_size", "64", "--max_train_samples", "200", "--max_eval_samples", "32", *COMMON_FLAGS],
}
# SMILES long enough for 9 masked tokens; per-sample label counts 1, 2, 5, 9 make per-micro-batch means differ
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O",
          "OC(=O)CCc1ccc(O)c(O)c1CCN"]


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


def _step_args(output_dir: str, micro: int, accumulation: int) -> TrainingArguments:
    return TrainingArguments(output_dir=output_dir, per_device_train_batch_size=micro,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.1, optim="sgd",
                             lr_scheduler_type="constant", max_grad_norm=0.0, logging_steps=1, report_to="none",
                             save_strategy="no", use_cpu=True, disable_tqdm=True, remove_unused_columns=False, seed=0,
                             dataloader_pin_memory=False, ddp_find_unused_parameters=False)


def _train_one_step(trainer: Trainer, recorder: _GradientRecorder) -> tuple[float, dict[str, torch.Tensor], int]:
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return logged[0], recorder.grads, trainer.args.world_size


def one_step_chemomae(output_dir: str, accumulation: int) -> tuple[float, dict[str, torch.Tensor], int]:
    """One optimizer step over N_SAMPLES fixed spectra: (loss Trainer logs, gradients, world size)."""
    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(**TINY)
    g = torch.Generator().manual_seed(1)
    data = datasets.Dataset.from_dict({"input_values": torch.randn(N_SAMPLES, 64, generator=g).tolist(),
                                       "noise": torch.rand(N_SAMPLES, 8, generator=g).tolist()})
    recorder = _GradientRecorder(model)
    trainer = Trainer(model=model, args=_step_args(output_dir, MICRO, accumulation), train_dataset=data,
                      data_collator=_collate_with_noise, callbacks=[recorder])
    return _train_one_step(trainer, recorder)


def _premasked_smiles(tokenizer) -> list[dict]:
    examples = []
    for smiles, n_masked in zip(SMILES, (1, 2, 5, 9)):
        ids = tokenizer(smiles)["input_ids"]
        labels = [-100] * len(ids)
        for position in range(1, n_masked + 1):
            labels[position], ids[position] = ids[position], tokenizer.mask_token_id
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _collate_premasked(rows):
    width = max(len(r["input_ids"]) for r in rows)
    pad = lambda seqs, value: torch.tensor([s + [value] * (width - len(s)) for s in seqs])  # noqa: E731
    input_ids = pad([r["input_ids"] for r in rows], 0)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
            "labels": pad([r["labels"] for r in rows], -100)}


def one_step_smiles(output_dir: str, accumulation: int) -> tuple[float, dict[str, torch.Tensor], int]:
    """One optimizer step over 4 pre-masked SMILES (2 per micro-batch), through the job's MLM Trainer."""
    tokenizer = load_smiles_tokenizer()
    torch.manual_seed(0)
    model = SMILESBERTForMaskedLM(SMILESBERTMLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=64,
                                                      hidden_dropout_prob=0, attention_probs_dropout_prob=0))
    recorder = _GradientRecorder(model)
    trainer = make_mlm_trainer(model, tokenizer, _step_args(output_dir, 2, accumulation), _premasked_smiles(tokenizer),
                               _collate_premasked, callbacks=[recorder])
    return _train_one_step(trainer, recorder)


def one_step_chemomae_head(output_dir: str, accumulation: int) -> tuple[float, dict[str, torch.Tensor], int]:
    """One optimizer step of the regression head (MSE, a batch mean) over N_SAMPLES fixed labelled spectra."""
    torch.manual_seed(0)
    model = ChemoMAEForSequenceClassification(**TINY, num_labels=1)
    g = torch.Generator().manual_seed(2)
    data = datasets.Dataset.from_dict({"input_values": torch.randn(N_SAMPLES, 64, generator=g).tolist(),
                                       "labels": torch.randn(N_SAMPLES, generator=g).tolist()})
    recorder = _GradientRecorder(model)
    trainer = Trainer(model=model, args=_step_args(output_dir, MICRO, accumulation), train_dataset=data,
                      callbacks=[recorder])
    return _train_one_step(trainer, recorder)


ONE_STEP = {"chemomae": one_step_chemomae, "smiles-bert": one_step_smiles, "chemomae-head": one_step_chemomae_head}


def _first_masks(module, kwargs, output) -> list[list[bool]] | None:
    """The masks of a training forward, as rows of bools (True = hidden from the model), or None."""
    if not module.training:
        return None
    if isinstance(module, ChemoMAEForPreTraining):
        visible = output.visible_mask
        return (~visible.view(visible.shape[0], module.config.n_blocks, -1)[..., 0]).tolist()
    if isinstance(module, SMILESBERTForMaskedLM):   # Trainer pops the labels for the loss function: [MASK]ed ids
        return (kwargs["input_ids"] == module.config.mask_token_id).tolist()
    return None


def _record_job_masks(model: str, out: Path) -> None:
    """Run ``hf-mae pretrain MODEL`` and write this rank's first training masks."""
    masks: list[list[bool]] = []
    rng: list[str] = []   # this rank's global random state just before its first masks are drawn

    def record_rng():
        if not rng:
            rng.append(hashlib.sha1(torch.random.get_rng_state().numpy().tobytes()).hexdigest())

    def pre_hook(module, args):   # ChemoMAE draws its masks inside forward
        if isinstance(module, ChemoMAEForPreTraining) and module.training:
            record_rng()

    def hook(module, args, kwargs, output):
        if not masks:
            masks.extend(_first_masks(module, kwargs, output) or [])

    mask_tokens = DataCollatorForLanguageModeling.torch_mask_tokens

    def recording_mask_tokens(self, *args, **kwargs):   # the SMILES collator draws them before forward
        record_rng()
        return mask_tokens(self, *args, **kwargs)

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(pre_hook),
               torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)]
    DataCollatorForLanguageModeling.torch_mask_tokens = recording_mask_tokens
    try:
        exit_code = cli_main(["pretrain", model, "--output_dir", str(out / f"{model}_job"), *JOB_FLAGS[model]])
    finally:
        DataCollatorForLanguageModeling.torch_mask_tokens = mask_tokens
        for handle in handles:
            handle.remove()
    rank = torch.distributed.get_rank()
    (out / f"{model}_masks_rank{rank}.json").write_text(json.dumps(
        {"exit_code": exit_code, "world_size": torch.distributed.get_world_size(), "masked": masks,
         "rng": rng[0] if rng else None}))


def main(out_dir: str) -> None:
    out = Path(out_dir)
    try:
        for model in ONE_STEP:
            if model in JOB_FLAGS:   # the task head has no pretrain job, only the one-step check
                _record_job_masks(model, out)
            rank = torch.distributed.get_rank()
            loss, grads, world_size = ONE_STEP[model](str(out / f"{model}_step"), accumulation=1)
            (out / f"{model}_step_rank{rank}.json").write_text(json.dumps({"loss": loss, "world_size": world_size}))
            save_file(grads, str(out / f"{model}_grads_rank{rank}.safetensors"))
    finally:
        close_process_group()   # as the hf-mae executable does: never leave gloo's group to the interpreter's exit


if __name__ == "__main__":
    main(sys.argv[1])
