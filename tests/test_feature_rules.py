"""extract_features on every architecture: each base model states its own feature rule (get_features), and
extract_features gives exactly that: shapes, determinism in eval mode (dropout on in the configs), the training
flag restored, and agreement with the model's own encode / pooled output."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_mae import (
    ChemoMAE,
    ProteinMAEV2Config,
    ProteinMAEV2Model,
    ProteinMAEV5Config,
    ProteinMAEV5ForPreTraining,
    SmilesMLMFeaturizer,
    SMILESBERTForMaskedLM,
    SMILESBERTMLMConfig,
    SpectralGPTConfig,
    SpectralGPTForPreTraining,
    SpectralGPTModel,
    WaveMAEConfig,
    WaveMAEForPreTraining,
    extract_features,
)
from hf_mae.models.modeling_smiles_bert import smiles_embedding
from hf_mae.data.protein import DataCollatorForProteinEmbeddings
from hf_mae.processing.smiles import load_smiles_tokenizer

SMILES = ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "C[N+](C)(C)CC(=O)[O-]", "OC(=O)c1ccc(Br)cc1Cl"]


@dataclass
class Case:
    model: torch.nn.Module
    data: object                                   # what extract_features gets
    inputs: Callable[[], dict]                     # the same data as the model's keyword inputs
    expected: Callable[[torch.nn.Module, dict], torch.Tensor]   # the model's own encode / pooled output
    width: int


def chemomae() -> Case:
    torch.manual_seed(0)
    model = ChemoMAE(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, n_blocks=4, n_mask=2,
                     latent_dim=8, dropout=0.3)
    x = torch.randn(7, 32)
    return Case(model, x.numpy(), lambda: {"input_values": x}, lambda m, b: m.encode(b["input_values"]), 8)


def wavemae_for_pretraining() -> Case:
    torch.manual_seed(1)
    model = WaveMAEForPreTraining(WaveMAEConfig(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                                                n_blocks=4, n_mask=2, latent_dim=8, dropout=0.3))
    x = torch.randn(6, 32)
    return Case(model, Dataset.from_dict({"input_values": x.tolist()}), lambda: {"input_values": x},
                lambda m, b: m.mae.encode(b["input_values"]), 8)


def spectral_gpt() -> Case:
    torch.manual_seed(2)
    config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                               decoder_intermediate_size=32, dropout=0.3)
    model = SpectralGPTForPreTraining(config)
    cubes = torch.randn(5, 6, 32, 32)

    def pooled(m, batch):
        encoder = SpectralGPTModel(m.config)
        encoder.load_state_dict(m.spectral_gpt.state_dict())
        return encoder.eval()(batch["pixel_values"]).pooler_output

    return Case(model, cubes, lambda: {"pixel_values": cubes}, pooled, 32)


def smiles_bert() -> Case:
    torch.manual_seed(3)
    tokenizer = load_smiles_tokenizer()
    model = SMILESBERTForMaskedLM(SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                      intermediate_size=64, hidden_dropout_prob=0.3))

    def tokenize(smiles):
        return dict(tokenizer(list(smiles), padding=True, return_tensors="pt"))

    def atoms_mean(m, batch):       # by hand: mean over the tokens that are neither [CLS]/[SEP] nor padding
        hidden = m.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
        keep = (batch["attention_mask"].bool() & ~special).float()[..., None]
        return (hidden * keep).sum(1) / keep.sum(1)

    return Case(model, SMILES, lambda: tokenize(SMILES), atoms_mean, 32)


def protein_embeddings(seed: int, n: int = 6, width: int = 24) -> Dataset:
    """Proteins of different lengths as per-residue embeddings (what the embedder or --embeddings_dir give)."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal((int(rng.integers(5, 70)), width)).astype(np.float32) for _ in range(n)]
    return Dataset.from_dict({"residue_embeddings": rows, "length": [len(r) for r in rows]}).with_format("numpy")


def padded(dataset: Dataset) -> dict:
    return DataCollatorForProteinEmbeddings()([dataset[i] for i in range(len(dataset))])


def protein_preprocess(rows) -> dict:
    """A Dataset batch (dict of columns) of ragged proteins -> padded residue_embeddings + attention_mask."""
    return DataCollatorForProteinEmbeddings()([{"residue_embeddings": r} for r in rows["residue_embeddings"]])


def protein_v2() -> Case:
    torch.manual_seed(4)
    model = ProteinMAEV2Model(ProteinMAEV2Config(input_dim=24, max_length=128, embed_dim=16, num_layers=1, nhead=2,
                                                 dim_feedforward=32, decoder_hidden_dim=32, dropout=0.3))
    data = protein_embeddings(4)
    return Case(model, data, lambda: padded(data), lambda m, b: m.encode(**b).compressed, 24)


def protein_v5_for_pretraining() -> Case:
    torch.manual_seed(5)
    model = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(
        input_dim=24, max_length=128, num_patches=8, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2, decoder_dim_feedforward=32, dropout=0.3))
    data = protein_embeddings(5)

    def patch_mean(m, batch):       # by hand: CLS dropped, mean over the patches that hold residues
        out = m.mae(**batch)
        n_patches = (batch["attention_mask"].sum(1) + m.config.patch_size - 1) // m.config.patch_size   # (B,)
        rows = [out.last_hidden_state[i, 1:1 + int(k)].mean(0) for i, k in enumerate(n_patches)]
        return torch.stack(rows)

    return Case(model, data, lambda: padded(data), patch_mean, 16)


CASES = {"ChemoMAE": chemomae, "protein V2": protein_v2, "protein V5 (pretraining)": protein_v5_for_pretraining, "WaveMAEForPreTraining": wavemae_for_pretraining, "SpectralGPT": spectral_gpt,
         "SMILES BERT": smiles_bert}


@pytest.mark.parametrize("name", list(CASES))
def test_extract_features_is_the_models_own_rule(name):
    case = CASES[name]()
    preprocess = protein_preprocess if name.startswith("protein") else None
    if name == "SMILES BERT":
        tokenizer = load_smiles_tokenizer()

        def preprocess(batch):
            return tokenizer(list(batch), padding=True, return_tensors="pt")

    case.model.train()
    first = extract_features(case.model, case.data, batch_size=2, preprocess=preprocess, progress=False)
    assert case.model.training                                   # the caller's mode is restored
    second = extract_features(case.model, case.data, batch_size=3, preprocess=preprocess, progress=False)
    n = len(case.data)
    assert first.shape == (n, case.width) and first.dtype == np.float32
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)   # deterministic: no dropout, no mask
    case.model.eval()
    with torch.no_grad():
        own = case.model.get_features(**case.inputs())
        expected = case.expected(case.model, case.inputs())
    np.testing.assert_allclose(first, own.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_one_smiles_embedding_for_extract_features_and_the_featurizer():
    """SMILES BERT's get_features (positional [CLS]/[SEP]) and SmilesMLMFeaturizer (the tokenizer's special-tokens
    mask) are the one rule, smiles_embedding: the mean over each molecule's own tokens."""
    case = smiles_bert()
    tokenizer = load_smiles_tokenizer()
    featurizer = SmilesMLMFeaturizer.from_model(case.model, tokenizer, batch_size=2)
    by_featurizer = featurizer.featurize(SMILES)
    by_extract = extract_features(case.model, SMILES, batch_size=3, progress=False,
                                  preprocess=lambda b: tokenizer(list(b), padding=True, return_tensors="pt"))
    np.testing.assert_allclose(by_extract, by_featurizer, rtol=1e-5, atol=1e-6)
    batch = tokenizer(SMILES, padding=True, return_special_tokens_mask=True, return_tensors="pt")
    hidden = torch.randn(*batch["input_ids"].shape, 4)
    atoms = batch["attention_mask"].bool() & ~batch["special_tokens_mask"].bool()
    for row, smiles in enumerate(SMILES):         # = the mean over that molecule's atom tokens alone
        n_atoms = len(tokenizer(smiles, add_special_tokens=False)["input_ids"])
        torch.testing.assert_close(smiles_embedding(hidden, atoms)[row], hidden[row, 1:1 + n_atoms].mean(0))


def test_padding_does_not_change_protein_features():
    case = protein_v2()
    both = extract_features(case.model, case.data, batch_size=6, preprocess=protein_preprocess, progress=False)
    alone = [extract_features(case.model, case.data.select([i]), preprocess=protein_preprocess, progress=False)[0]
             for i in range(len(case.data))]
    np.testing.assert_allclose(both, np.stack(alone), rtol=1e-5, atol=1e-5)
