"""Protein sequences -> ESM embeddings -> datasets -> collators -> the pretraining and pair jobs, on real proteins."""

import json
import logging

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from hf_mae import MAEEncoder, ProteinMAEV5Config, ProteinMAEV5ForPreTraining, TransformerMAE
from hf_mae.cli import main
from hf_mae.data.protein import (
    DataCollatorForProteinEmbeddings,
    DataCollatorForProteinPairs,
    fragment_pairs,
    load_pyhmmer_proteins,
    read_fasta,
)
from hf_mae.processing.protein import ProteinEmbedder, clean_sequence
from hf_mae.training.finetune_protein_interaction import roc_auc


@pytest.fixture(scope="module")
def proteins():
    return load_pyhmmer_proteins()


@pytest.fixture(scope="module")
def embedded(proteins):
    ids, sequences = proteins
    embedder = ProteinEmbedder.tiny_random("esmc", hidden_size=32, num_layers=1, num_heads=2, max_length=200)
    return embedder.to_dataset(sequences[:24], ids[:24])


def test_pyhmmer_proteome_is_read_whole(proteins):
    ids, sequences = proteins
    assert len(ids) == len(sequences) == 2100 and len(set(ids)) == 2100
    assert ids[0] == "938293.PRJEB85.HG003688_1"
    cleaned = [clean_sequence(s) for s in sequences]       # every real sequence passes the alphabet check
    assert (min(map(len, sequences)), max(map(len, sequences))) == (33, 4560)
    assert sum(s.endswith("*") for s in sequences) == 2099           # the gene caller's stop codon, dropped
    assert (min(map(len, cleaned)), max(map(len, cleaned))) == (32, 4559) and not any("*" in s for s in cleaned)


def test_clean_sequence_and_bad_letters():
    assert clean_sequence(" mkt\nAVX* ") == "MKTAVX"
    with pytest.raises(ValueError, match="empty"):
        clean_sequence("*")
    with pytest.raises(ValueError, match=r"\['1', 'J'\].*position 2"):
        clean_sequence("MKJ1")
    with pytest.raises(ValueError, match="protein 'p7' has letters"):
        ProteinEmbedder.tiny_random(hidden_size=16, num_heads=2).embed(["MKT", "MK*T"], ids=["p6", "p7"])


def test_read_fasta_errors(tmp_path):
    good = tmp_path / "good.faa"
    good.write_text(">a first\nMKT\nAV\n>b\nQQ*\n")
    assert read_fasta(good) == (["a", "b"], ["MKTAV", "QQ*"])
    bad = tmp_path / "bad.faa"
    bad.write_text(">a\n>b\nMK\n")
    with pytest.raises(ValueError, match="'a' has an empty sequence"):
        read_fasta(bad)
    with pytest.raises(ValueError, match="does not exist"):
        read_fasta(tmp_path / "missing.faa")


@pytest.mark.parametrize("kind", ["esmc", "esm2"])
def test_embedder_batched_by_length_equals_one_at_a_time(proteins, kind, caplog):
    ids, sequences = proteins
    embedder = ProteinEmbedder.tiny_random(kind, hidden_size=32, num_layers=1, num_heads=2, max_length=150,
                                           max_tokens_per_batch=600)
    chosen = sequences[:10]
    assert len(embedder.length_batches([len(s) for s in chosen])) > 1
    with caplog.at_level(logging.WARNING):
        batched = embedder.embed(chosen, ids[:10])
    assert "truncated to their first 150 residues" in caplog.text
    for sequence, array in zip(chosen, batched):
        n = min(len(clean_sequence(sequence)), 150)
        assert array.shape == (n, 32) and array.dtype == np.float32
    alone = embedder.embed([chosen[3]])[0]
    np.testing.assert_allclose(alone, batched[3], atol=1e-5)
    strict = ProteinEmbedder(embedder.model, embedder.tokenizer, max_length=150, too_long="error")
    long_one = next(s for s in chosen if len(s) > 151)
    with pytest.raises(ValueError, match="more than max_length=150"):
        strict.embed([long_one])


def test_dataset_collator_and_pretraining_on_real_embeddings(embedded):
    assert embedded.column_names == ["id", "sequence", "length", "residue_embeddings"]
    assert all(embedded[i]["residue_embeddings"].shape == (embedded[i]["length"], 32) for i in range(24))
    collator = DataCollatorForProteinEmbeddings(input_dim=32, max_length=200)
    batch = collator([embedded[i] for i in range(6)])
    lengths = [int(embedded[i]["length"]) for i in range(6)]
    assert batch["residue_embeddings"].shape == (6, max(lengths), 32)
    assert batch["attention_mask"].sum(1).tolist() == lengths
    model = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(
        input_dim=32, max_length=200, num_patches=10, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2, decoder_dim_feedforward=32))
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and model.mae.patch_embed.proj.weight.grad.abs().sum() > 0


def test_collators_refuse_bad_rows(embedded):
    collator = DataCollatorForProteinEmbeddings(input_dim=32)
    row = dict(embedded[0])
    nan = row["residue_embeddings"].copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        collator([row, {"residue_embeddings": nan}])
    with pytest.raises(ValueError, match="widths"):
        collator([row, {"residue_embeddings": np.zeros((5, 31), np.float32)}])
    with pytest.raises(ValueError, match="length >= 1"):
        collator([{"residue_embeddings": np.zeros((0, 32), np.float32)}])
    with pytest.raises(ValueError, match="more than max_length=10"):
        DataCollatorForProteinEmbeddings(max_length=10)([row])


def test_fragment_pairs_are_balanced_halves(embedded):
    pairs = fragment_pairs(embedded, 20, seed=3)
    assert sum(pairs["labels"]) == 10
    first = pairs[0]
    assert first["labels"] == 1
    full = next(embedded[i]["residue_embeddings"] for i in range(24)
                if np.array_equal(embedded[i]["residue_embeddings"][: len(first["residue_embeddings_a"])],
                                  first["residue_embeddings_a"]))
    np.testing.assert_array_equal(first["residue_embeddings_b"], full[len(full) // 2:])
    batch = DataCollatorForProteinPairs(input_dim=32)([pairs[i] for i in range(4)])
    assert set(batch) == {"residue_embeddings_a", "attention_mask_a", "residue_embeddings_b", "attention_mask_b",
                          "labels"}
    assert batch["labels"].tolist() == [int(pairs[i]["labels"]) for i in range(4)]


def test_roc_auc_against_hand_counts():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5   # ties count one half
    with pytest.raises(ValueError, match="both classes"):
        roc_auc(np.array([0.1, 0.2]), np.array([1, 1]))


TINY_ESM = ["--max_proteins", "32", "--esm_hidden_size", "32", "--esm_num_heads", "2", "--max_length", "256",
            "--max_steps", "2", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8",
            "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--eval_fraction", "0.25"]


@pytest.mark.parametrize("job, extra, base_class", [
    ("protein-mae-v2", ["--embed_dim", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32",
                        "--decoder_hidden_dim", "32"], TransformerMAE),
    ("protein-mae-v5", ["--embed_dim", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32",
                        "--num_patches", "8", "--decoder_embed_dim", "16", "--decoder_nhead", "2",
                        "--decoder_dim_feedforward", "32"], MAEEncoder),
])
def test_pretrain_jobs_run_the_whole_path(tmp_path, job, extra, base_class, capsys):
    out = tmp_path / job
    assert main(["pretrain", job, "--output_dir", str(out), "--embeddings_dir", str(tmp_path / "emb"),
                 *TINY_ESM, *extra]) == 0
    printed = capsys.readouterr().out
    assert "held-out masked loss" in printed and "max |difference| = 0.0e+00" in printed
    assert (out / "model.safetensors").exists() and (tmp_path / "emb" / "dataset_info.json").exists()
    model = AutoModel.from_pretrained(out)
    assert type(model) is base_class and model.config.input_dim == 32


def test_finetune_interaction_with_trainer_reports_roc_auc(tmp_path, capsys):
    out = tmp_path / "pair"
    assert main(["finetune-protein-interaction", "--encoder", "v2", "--output_dir", str(out), *TINY_ESM,
                 "--max_steps", "3", "--eval_steps", "3", "--n_train_pairs", "24", "--n_eval_pairs", "16",
                 "--encoder_embed_dim", "16", "--encoder_num_layers", "1", "--adapter_dim", "16",
                 "--cross_attention_heads", "2", "--cross_attention_dim_feedforward", "32"]) == 0
    metrics = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_roc_auc"] <= 1.0 and "eval_accuracy" in metrics
    assert "held-out ROC-AUC" in capsys.readouterr().out
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.uses_adapter and model.config.hidden_size == 16
