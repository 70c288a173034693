"""``hf-mae finetune`` for the sequence heads: chemomae, wavemae, smiles-bert, protein-mae-v2/v5, end to end on
tiny real data (tiny models, a few steps)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hf_mae.cli import main

STEPS = ["--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
         "--disable_tqdm", "true", "--report_to", "none", "--per_device_train_batch_size", "16"]
TINY_SPECTRAL = ["--seq_len", "64", "--d_model", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32",
                 "--n_blocks", "8", "--n_mask", "4"]


@pytest.fixture(scope="module")
def tablet(tmp_path_factory):
    """Real tablet NIR spectra: a labelled CSV (active ingredient, and a text class from it) of 48 spectra."""
    from hf_mae.data.spectra import load_nir_tablet, spectral_metadata

    folder = tmp_path_factory.mktemp("tablet")
    data = load_nir_tablet()["train"]
    wavelengths = spectral_metadata(data)["wavelengths"]
    spectra = np.asarray(data["spectrum"][:48])
    target = np.asarray(data["target"][:48], dtype=float).reshape(48, -1)[:, 0]
    frame = pd.DataFrame(spectra, columns=[f"{w:g}" for w in wavelengths])
    frame.insert(0, "active", target)
    frame.insert(1, "dose", np.where(target > np.median(target), "high", "low"))
    frame.to_csv(folder / "tablet.csv", index=False)
    return folder / "tablet.csv"


def _results(out):
    return json.loads((out / "finetune_results.json").read_text())


def _check_standardised_checkpoints(out, final):
    """Checkpoints hold the head before the target scaling is folded in: their config says so (and loading one
    warns); folding their mean/std into the best checkpoint's head gives the final model's head."""
    from safetensors.torch import load_file
    from transformers.testing_utils import CaptureLogger
    from transformers.utils import logging

    assert "standardised_targets" not in final.config.to_dict()
    best = json.loads((out / "trainer_state.json").read_text())["best_model_checkpoint"]
    scaling = json.loads((out / best.split("/")[-1] / "config.json").read_text())["standardised_targets"]
    mean, std = torch.tensor(scaling["mean"]), torch.tensor(scaling["std"])
    assert std.shape == (1,) and std.item() > 0
    weights = load_file(out / best.split("/")[-1] / "model.safetensors")
    final_weights = dict(final.named_parameters())
    for name in ("classifier.classifier.weight", "classifier.classifier.bias"):
        folded = weights[name] * std[:, None] if name.endswith("weight") else weights[name] * std + mean
        torch.testing.assert_close(final_weights[name].detach(), folded, rtol=4 * torch.finfo(torch.float32).eps,
                                   atol=0.0)
    with CaptureLogger(logging.get_logger("hf_mae.models.heads")) as captured:
        AutoModelForSequenceClassification.from_pretrained(out / best.split("/")[-1])
    assert "predicts standardised targets" in captured.out and "multiply its outputs by std" in captured.out


@pytest.mark.parametrize("arch", ["chemomae", "wavemae"])
def test_spectral_finetune_end_to_end(tablet, tmp_path, capsys, arch):
    run = tmp_path / "pre"
    assert main(["pretrain", arch, "--data", str(tablet), "--output_dir", str(run), *TINY_SPECTRAL, *STEPS]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", arch, "--model", str(run), "--data", str(tablet), "--target", "active",
                 "--output_dir", str(out), *STEPS]) == 0
    printed = capsys.readouterr().out
    assert "regression of active (1 target(s)); train / validation / test = 34 / 4 / 10" in printed
    assert "baseline: PLS (CV components) on the spectra" in printed and "max |logit difference| = 0.0e+00" in printed
    results = _results(out)
    assert results["split_sizes"] == {"train": 34, "validation": 4, "test": 10}
    assert set(results["test"]) >= {"rmse", "mae", "r2"} and results["baselines"][0]["name"] == "pls"
    assert results["baselines"][0]["params"]["n_components"] >= 1
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == {"chemomae": "ChemoMAEForSequenceClassification",
                                    "wavemae": "WaveMAEForSequenceClassification"}[arch]
    assert model.config.problem_type == "regression"
    _check_standardised_checkpoints(out, model)

    # classification on a held-out test file, frozen encoder (linear probe), mean pooling
    pd.read_csv(tablet).iloc[:36].to_csv(tmp_path / "train.csv", index=False)
    pd.read_csv(tablet).iloc[36:].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "probe"
    assert main(["finetune", arch, "--model", str(run), "--data", str(tmp_path / "train.csv"), "--target", "dose",
                 "--test_data", str(tmp_path / "test.csv"), "--freeze_encoder", "--classifier_pooling", "mean",
                 "--output_dir", str(out), *STEPS]) == 0
    results = _results(out)
    assert results["task"] == "classification" and results["id2label"] == {"0": "high", "1": "low"}
    assert results["split_sizes"]["test"] == 12 and set(results["test"]) >= {"accuracy", "f1_macro", "roc_auc"}
    probe = AutoModelForSequenceClassification.from_pretrained(out)
    assert probe.config.freeze_encoder and probe.config.classifier_pooling == "mean"
    trained = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trained == {"classifier.classifier.weight", "classifier.classifier.bias"}


def test_smiles_finetune_end_to_end(tmp_path, capsys):
    from hf_mae.data.molecules import load_solubility

    train = load_solubility()["train"]
    frame = pd.DataFrame({"smiles": [*train["smiles"][:40], "C1CC"], "logS": [*train["target"][:40], 0.0]})
    frame.to_csv(tmp_path / "sol.csv", index=False)
    run = tmp_path / "bert"
    assert main(["pretrain", "smiles-bert", "--data", str(tmp_path / "sol.csv"), "--output_dir", str(run),
                 "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                 "--intermediate_size", "64", "--eval_fraction", "0.2", *STEPS]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", "smiles-bert", "--model", str(run), "--data", str(tmp_path / "sol.csv"),
                 "--target", "logS", "--n_estimators", "20", "--output_dir", str(out), *STEPS]) == 0
    printed = capsys.readouterr().out
    assert "sol.csv: 1 SMILES skipped (RDKit cannot parse them)" in printed
    assert "baseline: random forest on RDKit descriptors" in printed and "max |logit difference| = 0.0e+00" in printed
    results = _results(out)
    assert sum(results["split_sizes"].values()) == 40 and len(results["baselines"]) == 4
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "SMILESBERTForSequenceClassification"


@pytest.mark.parametrize("arch", ["protein-mae-v2", "protein-mae-v5"])
def test_protein_finetune_end_to_end(tmp_path, capsys, arch):
    """Real proteins (pyhmmer's proteome, first 30, cut to 60 residues), labelled by a property of their sequence
    (the hydrophobic share), embedded by the pretraining job's tiny random ESM C; then from an embeddings folder."""
    from hf_mae.data.protein import load_pyhmmer_proteins

    ids, sequences = load_pyhmmer_proteins(30)
    sequences = [s[:60] for s in sequences]
    (tmp_path / "p.fasta").write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, sequences)))
    hydrophobic = [sum(c in "AILMFVW" for c in s) / len(s) for s in sequences]
    pd.DataFrame({"id": ids, "hydrophobic": hydrophobic}).to_csv(tmp_path / "y.csv", index=False)
    run, sizes = tmp_path / "pre", ["--embed_dim", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32"]
    if arch == "protein-mae-v5":
        sizes += ["--num_patches", "4", "--decoder_embed_dim", "16", "--decoder_nhead", "2",
                  "--decoder_dim_feedforward", "32"]
    else:
        sizes += ["--decoder_hidden_dim", "32"]
    assert main(["pretrain", arch, "--data", str(tmp_path / "p.fasta"), "--esm_hidden_size", "32", "--esm_num_heads",
                 "2", "--max_length", "128", "--embeddings_dir", str(tmp_path / "emb"), "--output_dir", str(run),
                 *sizes, *STEPS]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", arch, "--model", str(run), "--data", str(tmp_path / "p.fasta"), "--label_table",
                 str(tmp_path / "y.csv"), "--target", "hydrophobic", "--esm_num_heads", "2", "--output_dir", str(out),
                 *STEPS]) == 0
    printed = capsys.readouterr().out
    assert "train / validation / test = 22 / 2 / 6" in printed
    assert "baseline: ridge on mean-pooled embeddings" in printed and "max |logit difference| = 0.0e+00" in printed
    first = _results(out)
    assert first["baselines"][0]["name"] == "ridge" and set(first["test"]) >= {"rmse", "mae", "r2"}

    # the same proteins from the embeddings folder the pretraining job saved: the same baseline numbers
    out = tmp_path / "ft-emb"
    assert main(["finetune", arch, "--model", str(run), "--data", str(tmp_path / "p.fasta"), "--label_table",
                 str(tmp_path / "y.csv"), "--target", "hydrophobic", "--embeddings_dir", str(tmp_path / "emb"),
                 "--output_dir", str(out), *STEPS]) == 0
    assert _results(out)["baselines"][0]["metrics"] == pytest.approx(first["baselines"][0]["metrics"], rel=1e-5)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == {"protein-mae-v2": "ProteinMAEV2ForSequenceClassification",
                                    "protein-mae-v5": "ProteinMAEV5ForSequenceClassification"}[arch]


def test_multi_target_regression_on_real_soil_spectra(tmp_path, capsys):
    """Soil mid-IR spectra (wavenumber headers) with two measured properties: one model, two outputs."""
    from hf_mae.data.spectra import load_soil_mir, spectral_metadata

    data = load_soil_mir()["train"]
    axis = spectral_metadata(data)["wavelengths"]
    frame = pd.DataFrame(np.asarray(data["spectrum"][:48])[:, ::8], columns=[f"{w:g}" for w in axis[::8]])
    frame["organic_carbon"], frame["clay"] = data["organic_carbon"][:48], data["clay"][:48]
    frame.to_csv(tmp_path / "soil.csv", index=False)
    run = tmp_path / "pre"
    assert main(["pretrain", "chemomae", "--data", str(tmp_path / "soil.csv"), "--output_dir", str(run),
                 *TINY_SPECTRAL, *STEPS]) == 0
    out = tmp_path / "ft"
    assert main(["finetune", "chemomae", "--model", str(run), "--data", str(tmp_path / "soil.csv"),
                 "--target", "organic_carbon,clay", "--output_dir", str(out), *STEPS]) == 0
    assert "regression of organic_carbon, clay (2 target(s))" in capsys.readouterr().out
    results = _results(out)
    assert results["target"] == ["organic_carbon", "clay"] and {"eval_rmse_0", "eval_rmse_1"} <= set(results["validation"])
    assert {"rmse_0", "rmse_1", "r2_0"} <= set(results["test"])
    assert {"rmse_0", "r2_1"} <= set(results["baselines"][0]["metrics"])
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2 and model.config.problem_type == "regression"
