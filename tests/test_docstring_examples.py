"""The runnable examples in the docstrings of the shared modules run (in a scratch folder)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "hf_mae._auto", "hf_mae.models.masking", "hf_mae.models.validation", "hf_mae.models.pooling",
    "hf_mae.models.chemo_mae", "hf_mae.models.wave_mae", "hf_mae.models.modeling_spectral_mae",
    "hf_mae.models.modeling_smiles_bert", "hf_mae.models.modeling_spectral_gpt",
    "hf_mae.analysis.sphere", "hf_mae.analysis.kmeans", "hf_mae.analysis.vmf", "hf_mae.analysis.clustering",
    "hf_mae.data.spectra", "hf_mae.training.pretrain_spectral_gpt",
    # loading checkpoints people already have
    "hf_mae.models.serialization", "hf_mae.models.modeling_protein_mae_v2", "hf_mae.models.modeling_protein_mae_v5",
    "hf_mae.processing.pretrained", "hf_mae.processing.protein", "hf_mae.processing.smiles", "hf_mae.data.protein",
    "hf_mae.training.smiles_mlm", "hf_mae.analysis.features",
    # transformers' common outputs, the pair model, the seeds' training dictionaries
    "hf_mae.models.layers", "hf_mae.models.modeling_protein_interaction", "hf_mae.models.configuration_protein_mae",
    "hf_mae.training.seed_config",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, name
