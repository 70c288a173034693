"""Pretraining with Trainer: gradient accumulation, eval_loss, and the `hf-mae pretrain` job with resume."""

import json

import datasets
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

from hf_mae import ChemoMAEForPreTraining
from hf_mae.cli import main as cli_main

TINY = dict(seq_len=64, d_model=32, nhead=2, num_layers=1, dim_feedforward=64, latent_dim=8, n_blocks=8, n_mask=4,
            dropout=0.0, dec_dropout=0.0)


def _collate_with_noise(rows):
    # fixed per-sample noise makes the masks independent of how samples are split into micro-batches
    return {"input_values": torch.tensor([r["input_values"] for r in rows]),
            "noise": torch.tensor([r["noise"] for r in rows])}


def _one_step(tmp_path, batch_size, accumulation):
    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(**TINY)
    g = torch.Generator().manual_seed(1)
    data = datasets.Dataset.from_dict({"input_values": torch.randn(8, 64, generator=g).tolist(),
                                       "noise": torch.rand(8, 8, generator=g).tolist()})
    args = TrainingArguments(output_dir=str(tmp_path / f"ga{accumulation}"), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.1, optim="sgd",
                             lr_scheduler_type="constant", report_to="none", save_strategy="no", use_cpu=True,
                             disable_tqdm=True, remove_unused_columns=False, seed=0, dataloader_pin_memory=False)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=_collate_with_noise)
    result = trainer.train()
    return result.training_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    loss_full, params_full = _one_step(tmp_path, batch_size=8, accumulation=1)
    loss_ga, params_ga = _one_step(tmp_path, batch_size=4, accumulation=2)
    assert abs(loss_full - loss_ga) < 1e-5
    for name in params_full:
        assert torch.allclose(params_full[name], params_ga[name], atol=1e-6), name


def test_trainer_reports_eval_loss(tmp_path):
    model = ChemoMAEForPreTraining(**TINY)
    data = datasets.Dataset.from_dict({"input_values": torch.randn(16, 64).tolist()})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=8, report_to="none",
                             use_cpu=True, disable_tqdm=True, dataloader_pin_memory=False)
    from hf_mae.data.spectra import DataCollatorForSpectra

    metrics = Trainer(model=model, args=args, eval_dataset=data, data_collator=DataCollatorForSpectra()).evaluate()
    assert "eval_loss" in metrics and 0 < metrics["eval_loss"] < 100


def _pretrain(tmp_path, name, *extra):
    argv = ["pretrain", "chemomae", "--output_dir", str(tmp_path / name), "--d_model", "32", "--nhead", "2",
            "--num_layers", "1", "--dim_feedforward", "64", "--latent_dim", "16", "--dropout", "0",
            "--per_device_train_batch_size", "16", "--max_train_samples", "96", "--max_steps", "4",
            "--save_steps", "2", "--eval_steps", "4", "--logging_steps", "1", "--disable_tqdm", "true", *extra]
    assert cli_main(argv) == 0
    return tmp_path / name


def test_pretrain_job_saves_reloads_and_resumes_exactly(tmp_path, capsys):
    run = _pretrain(tmp_path, "full")
    out = capsys.readouterr().out
    assert "held-out masked reconstruction MSE" in out and "mean training spectrum" in out
    assert "AutoModel.from_pretrained -> ChemoMAE, max |z difference| = 0.0e+00" in out
    files = {p.name for p in run.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "trainer_state.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) and name != "training_args.bin" for name in files)
    assert (run / "checkpoint-2" / "model.safetensors").is_file()

    # interrupted at step 2, resumed: the same loss curve and the same final weights
    resumed = _pretrain(tmp_path, "resumed", "--resume_from_checkpoint", str(run / "checkpoint-2"))
    _assert_same_curve_and_weights(run, resumed)


def _curve(path):
    return [(h["step"], h["loss"]) for h in json.loads((path / "trainer_state.json").read_text())["log_history"]
            if "loss" in h]


def _assert_same_curve_and_weights(run, resumed):
    assert len(_curve(run)) == 4 and _curve(resumed)[-2:] == _curve(run)[-2:]
    final, again = load_file(run / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key in final:
        assert torch.equal(final[key], again[key]), key


def test_pretrain_job_resumes_exactly_in_bf16(tmp_path):
    # --bf16 on a machine without an accelerator: the job defaults to use_cpu, so this is CPU autocast
    run = _pretrain(tmp_path, "bf16", "--bf16")
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["log_history"][0]["loss"] > 0
    resumed = _pretrain(tmp_path, "bf16-resumed", "--bf16", "--resume_from_checkpoint", str(run / "checkpoint-2"))
    _assert_same_curve_and_weights(run, resumed)


def test_pretrain_job_rejects_unknown_model_and_dataset(tmp_path, capsys):
    assert cli_main(["pretrain", "nope"]) == 2
    import pytest

    capsys.readouterr()
    assert cli_main(["pretrain", "wavemae", "--dataset", "unknown", "--output_dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err          # one line, no traceback; --debug raises instead
    assert error.startswith("hf-mae: error: ") and "dataset" in error and error.count("\n") == 1
    with pytest.raises(ValueError, match="dataset"):
        cli_main(["pretrain", "wavemae", "--dataset", "unknown", "--output_dir", str(tmp_path), "--debug"])
