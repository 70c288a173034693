"""Protein language models people already have (ESM2, ESM C, ProtBert-style BERT, ProtT5-style T5) as saved folders
-> ProteinEmbedder -> one embedding per residue; precomputed embeddings of any width -> the pretraining job."""

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    BertTokenizer,
    EsmConfig,
    EsmModel,
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

from hf_mae import MAEEncoder, V2ToV5Adapter
from hf_mae.cli import main
from hf_mae.data.protein import load_residue_embeddings
from hf_mae.processing.protein import ProteinEmbedder, detect_input_format
from hf_mae.training.common import parse_args
from hf_mae.training.pretrain_protein import ProteinDataArguments

RESIDUES = list("ACDEFGHIKLMNPQRSTVWYXBZUO")
SEQUENCES = ["MKTAYIAKQRQISFVKSHFSRQ", "MSV", "GAVLIPFWMC"]
IDS = ["sp|P1", "sp|P2", "sp|P3"]


def protbert_like() -> tuple[BertModel, BertTokenizer]:
    """A BERT whose WordPiece vocabulary holds single residues (upper case): it needs "M K T"."""
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *RESIDUES])}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=False)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return BertModel(config, add_pooling_layer=False), tokenizer


def prott5_like() -> tuple[T5ForConditionalGeneration, T5Tokenizer]:
    """A T5 encoder-decoder whose Unigram vocabulary holds "▁M"-style pieces only, as ProtT5's: it needs "M K T"."""
    tokenizer = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{r}", -1.0) for r in RESIDUES],
                            extra_ids=0)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config), tokenizer


def tiny_esm(kind: str):
    embedder = ProteinEmbedder.tiny_random(kind, hidden_size=16, num_layers=1, num_heads=2, max_length=64)
    return embedder.model, embedder.tokenizer


BUILDERS = {"esm2": (lambda: tiny_esm("esm2"), "plain"), "esmc": (lambda: tiny_esm("esmc"), "plain"),
            "protbert": (protbert_like, "spaced"), "prott5": (prott5_like, "spaced")}


@pytest.fixture(scope="module")
def plm_folders(tmp_path_factory):
    folders = {}
    for kind, (build, _) in BUILDERS.items():
        model, tokenizer = build()
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[kind] = folder
    return folders


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_saved_plm_gives_one_embedding_per_residue_equal_to_its_own_forward(plm_folders, kind):
    embedder = ProteinEmbedder.from_pretrained(plm_folders[kind], max_length=60, progress=False)
    assert embedder.input_format == BUILDERS[kind][1]
    assert embedder.name == str(plm_folders[kind])
    if kind == "prott5":   # encoder only: the decoder's weights are never loaded
        assert type(embedder.model) is T5EncoderModel
    embeddings = embedder.embed(SEQUENCES, ids=IDS)
    assert [e.shape for e in embeddings] == [(len(s), 16) for s in SEQUENCES]
    assert all(e.dtype == np.float32 for e in embeddings)
    # the same numbers as running the model on one protein by hand and dropping the special tokens
    for sequence, embedding in zip(SEQUENCES, embeddings):
        text = " ".join(sequence) if embedder.input_format == "spaced" else sequence
        encoded = embedder.tokenizer(text, return_special_tokens_mask=True, return_tensors="pt")
        special = encoded.pop("special_tokens_mask")[0].bool()
        with torch.no_grad():
            hidden = embedder.model(input_ids=encoded["input_ids"],
                                    attention_mask=encoded["attention_mask"]).last_hidden_state[0]
        np.testing.assert_allclose(embedding, hidden[~special].numpy(), rtol=1e-4, atol=1e-5)


def test_explicit_input_format_and_a_mismatch_names_model_and_protein(plm_folders):
    folder = plm_folders["protbert"]
    spaced = ProteinEmbedder.from_pretrained(folder, input_format="spaced", progress=False)
    assert spaced.embed(["MKT"])[0].shape == (3, 16)
    plain = ProteinEmbedder.from_pretrained(folder, input_format="plain", progress=False)
    with pytest.raises(ValueError, match=rf"{folder}.* gave 1 token embeddings for the 22 residues of protein "
                                         r"'sp\|P1'.*input_format='plain'"):
        plain.embed(SEQUENCES[:1], ids=IDS[:1])
    with pytest.raises(ValueError, match=r"`input_format` must be one of \['auto', 'plain', 'spaced'\], got 'words'"):
        ProteinEmbedder.from_pretrained(folder, input_format="words")


def test_a_tokenizer_without_residue_tokens_is_refused_by_name(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "protein", "##s"]))
    tokenizer = BertTokenizer(str(vocab))
    with pytest.raises(ValueError, match=r"the tokenizer of 'generic-bert' \(BertTokenizer\) gives no single known "
                                         r"token per residue.*\[UNK\].*tokenizer="):
        detect_input_format(tokenizer, "'generic-bert'")


def test_progress_bar_on_when_asked_and_off_when_not_a_terminal(plm_folders, capsys):
    ProteinEmbedder.from_pretrained(plm_folders["esm2"], progress=True).embed(SEQUENCES)
    assert "Embedding proteins" in capsys.readouterr().err
    embedder = ProteinEmbedder.from_pretrained(plm_folders["esm2"])     # pytest's stderr is not a terminal
    assert embedder.progress is False
    embedder.embed(SEQUENCES)
    assert "Embedding proteins" not in capsys.readouterr().err


def test_absolute_position_tables_cap_max_length_where_the_model_ends(plm_folders, caplog):
    # ProtBert-style: 64 positions from 0, less [CLS] and [SEP] -> 62 residues; longer proteins are truncated
    protbert = ProteinEmbedder.from_pretrained(plm_folders["protbert"], progress=False)
    assert protbert.max_length == 62
    with caplog.at_level("WARNING", logger="hf_mae.processing.protein"):
        assert protbert.embed(["M" * 80], ids=["long"])[0].shape == (62, 16)
    assert "long (80)" in caplog.text
    with pytest.raises(ValueError, match=rf"max_length=63 is more residues than '{plm_folders['protbert']}' can embed: "
                                         r"its absolute position embeddings end at 62 residues.*max_length=62 or less"):
        ProteinEmbedder.from_pretrained(plm_folders["protbert"], max_length=63)
    # ESM-1b-style: positions counted from the padding index + 1, so 34 rows hold 32 tokens -> 30 residues
    torch.manual_seed(0)
    esm1b = EsmModel(EsmConfig(vocab_size=33, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, position_embedding_type="absolute", pad_token_id=1,
                               mask_token_id=32, max_position_embeddings=34), add_pooling_layer=False)
    tokenizer = ProteinEmbedder.tiny_random("esm2").tokenizer
    embedder = ProteinEmbedder(esm1b, tokenizer, progress=False)
    assert embedder.max_length == 30
    assert embedder.embed(["ACDEFGHIKL" * 3])[0].shape == (30, 16)
    with pytest.raises(IndexError):   # the limit is tight: one residue more is past the table
        esm1b(**tokenizer(["ACDEFGHIKL" * 3 + "M"], return_tensors="pt"))
    # rotary (ESM2, ESM C) and relative (T5) positions have no table to run past
    for kind in ("esm2", "esmc", "prott5"):
        assert ProteinEmbedder.from_pretrained(plm_folders[kind], progress=False).max_length == 1502


def test_plm_checkpoint_flag_and_its_esm_alias():
    for flag in ("--plm_checkpoint", "--esm_checkpoint"):
        data_args, _ = parse_args([ProteinDataArguments], [flag, "some/plm", "--output_dir", "x"], {}, prog="t")
        assert data_args.plm_checkpoint == "some/plm" and data_args.plm_input_format == "auto"
        assert not hasattr(data_args, "esm_checkpoint")     # one field, two option strings


TINY_V5 = ["--embed_dim", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32", "--num_patches", "8",
           "--decoder_embed_dim", "16", "--decoder_nhead", "2", "--decoder_dim_feedforward", "32", "--max_length", "256",
           "--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
           "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--eval_fraction", "0.25"]


def test_plm_checkpoint_runs_the_pretraining_job(plm_folders, tmp_path, capsys):
    out = tmp_path / "v5"
    assert main(["pretrain", "protein-mae-v5", "--plm_checkpoint", str(plm_folders["prott5"]), "--max_proteins", "12",
                 "--embeddings_dir", str(tmp_path / "emb"), "--output_dir", str(out), *TINY_V5]) == 0
    assert "input_dim 16" in capsys.readouterr().out
    saved = load_residue_embeddings(tmp_path / "emb")
    assert len(saved) == 12 and saved.features["residue_embeddings"].shape == (None, 16)


def width_24_embeddings(n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"prot_{i}": rng.standard_normal((int(rng.integers(20, 120)), 24)).astype(np.float32) for i in range(n)}


@pytest.mark.parametrize("layout", ["npy", "dataset"])
def test_precomputed_width_24_embeddings_pretrain_v5(tmp_path, layout, capsys):
    import datasets

    embeddings = width_24_embeddings()
    folder = tmp_path / "emb"
    folder.mkdir()
    if layout == "npy":
        for name, array in embeddings.items():
            np.save(folder / f"{name}.npy", array)
    else:   # nested lists, no length column: as another tool would write it
        datasets.Dataset.from_dict({"id": list(embeddings), "residue_embeddings": [a.tolist() for a in
                                                                                   embeddings.values()]}
                                   ).save_to_disk(str(folder))
    loaded = load_residue_embeddings(folder)
    assert list(loaded["id"]) == (sorted(embeddings) if layout == "npy" else list(embeddings))
    for name, length, values in zip(loaded["id"], loaded["length"], loaded["residue_embeddings"]):
        assert length == len(embeddings[name])
        np.testing.assert_array_equal(values, embeddings[name])

    out = tmp_path / "v5"
    assert main(["pretrain", "protein-mae-v5", "--embeddings_dir", str(folder), "--output_dir", str(out),
                 *TINY_V5]) == 0
    printed = capsys.readouterr().out
    assert "9 training / 3 held-out proteins, input_dim 24" in printed and "max |difference| = 0.0e+00" in printed
    model = AutoModel.from_pretrained(out)
    assert type(model) is MAEEncoder and model.config.input_dim == 24
    batch = torch.from_numpy(embeddings["prot_0"])[None]
    assert model(batch, torch.ones(1, batch.shape[1], dtype=torch.long)).last_hidden_state.shape == (1, 9, 16)


def test_precomputed_embeddings_errors_name_the_protein(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((5, 24), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((5, 32), np.float32))
    with pytest.raises(ValueError, match=r"different widths: 24 \(e.g. 'a'\), 32 \(e.g. 'b'\)"):
        load_residue_embeddings(tmp_path)
    (tmp_path / "b.npy").unlink()
    np.save(tmp_path / "c.npy", np.full((3, 24), np.nan, np.float32))
    with pytest.raises(ValueError, match="protein 'c'.*NaN"):
        load_residue_embeddings(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        load_residue_embeddings(tmp_path / "missing")


def test_v2_to_v5_adapter_checks_its_input_width():
    adapter = V2ToV5Adapter(v2_dim=32, v5_dim=16, num_patches=4, patch_size=8)
    valid = torch.ones(2, 20, dtype=torch.bool)
    tokens, mask = adapter(torch.randn(2, 20, 32), valid), adapter.token_mask(valid)
    assert tokens.shape == (2, 5, 16) and mask.shape == (2, 5)
    with pytest.raises(ValueError, match=r"expects `v2_output` of shape \(batch, length, 32\) \(v2_dim=32\), "
                                         r"got \(2, 20, 512\)"):
        adapter(torch.randn(2, 20, 512), torch.ones(2, 20, dtype=torch.bool))
