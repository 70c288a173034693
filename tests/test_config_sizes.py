"""One size vocabulary: every config answers to transformers' size names and to the reference packages'
(``d_model``/``nhead``/``num_layers``/``dim_feedforward``; the protein MAEs store ``embed_dim``) for reading,
writing and keyword arguments, and config.json stores one name per size."""

from __future__ import annotations

import json

import pytest

from hf_mae.models import (
    ChemoMAE,
    ChemoMAEConfig,
    ProteinMAEV2Config,
    ProteinMAEV5Config,
    SMILESBERTMLMConfig,
    SpectralGPTConfig,
    WaveMAEConfig,
)

TRANSFORMERS = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size")
REFERENCE = {
    ChemoMAEConfig: ("d_model", "nhead", "num_layers", "dim_feedforward"),
    WaveMAEConfig: ("d_model", "nhead", "num_layers", "dim_feedforward"),
    ProteinMAEV2Config: ("embed_dim", "nhead", "num_layers", "dim_feedforward"),
    ProteinMAEV5Config: ("embed_dim", "nhead", "num_layers", "dim_feedforward"),
    SpectralGPTConfig: ("d_model", "nhead", "num_layers", "dim_feedforward"),
    SMILESBERTMLMConfig: ("d_model", "nhead", "num_layers", "dim_feedforward"),
}
SIZES = (64, 4, 2, 96)


@pytest.mark.parametrize("config_class", list(REFERENCE), ids=lambda c: c.__name__)
@pytest.mark.parametrize("construct_with", ["transformers", "reference"])
def test_both_size_vocabularies_construct_read_write_and_round_trip(config_class, construct_with, tmp_path):
    reference = REFERENCE[config_class]
    names = TRANSFORMERS if construct_with == "transformers" else reference
    config = config_class(**dict(zip(names, SIZES)))
    assert [getattr(config, n) for n in TRANSFORMERS] == list(SIZES)
    assert [getattr(config, n) for n in reference] == list(SIZES)

    config.intermediate_size = 128
    assert getattr(config, reference[3]) == 128
    setattr(config, reference[0], 32)
    assert config.hidden_size == 32

    config.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert sum(name in stored for name in (*TRANSFORMERS, *reference)) == 4    # one key per size
    reloaded = config_class.from_pretrained(tmp_path)
    assert [reloaded.hidden_size, reloaded.num_attention_heads, reloaded.num_hidden_layers,
            reloaded.intermediate_size] == [32, 4, 2, 128]


def test_model_keyword_arguments_take_either_name_and_refuse_unknown_ones():
    mae = ChemoMAE(seq_len=64, hidden_size=32, num_attention_heads=2, num_hidden_layers=1, n_blocks=8, n_mask=4)
    assert (mae.config.d_model, mae.config.nhead, mae.config.num_layers) == (32, 2, 1)
    with pytest.raises(ValueError, match="unknown keyword argument `hiden_size`"):
        ChemoMAE(seq_len=64, hiden_size=32)
    with pytest.raises(ValueError, match="either `config` or keyword arguments"):
        ChemoMAE(ChemoMAEConfig(), seq_len=64)
