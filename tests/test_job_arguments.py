"""The `hf-mae pretrain` jobs take their model options from the config classes (`config_arguments`): same
names, parseable types, the config's defaults unless the job states its own."""

import doctest
from dataclasses import MISSING, asdict, fields

import pytest
from transformers import HfArgumentParser

from hf_mae import (
    ChemoMAEConfig,
    ProteinMAEV2Config,
    ProteinMAEV5Config,
    SMILESBERTMLMConfig,
    SpectralGPTConfig,
    WaveMAEConfig,
)
from hf_mae.training import common, pretrain_protein, pretrain_smiles, pretrain_spectra, pretrain_spectral_gpt

JOB_ARGUMENTS = [
    (pretrain_spectra.SpectralModelArguments, ChemoMAEConfig, {"d_model", "nhead", "num_layers", "dim_feedforward",
                                                                "n_mask"}),
    (pretrain_spectra.SpectralModelArguments, WaveMAEConfig, {"d_model", "nhead", "num_layers", "dim_feedforward",
                                                               "n_mask"}),
    (pretrain_spectral_gpt.SpectralGPTModelArguments, SpectralGPTConfig, {"num_bands", "aux_modalities"}),
    (pretrain_protein.ProteinV2ModelArguments, ProteinMAEV2Config, {"max_length", "embed_dim", "num_layers", "nhead",
                                                                     "dim_feedforward", "decoder_hidden_dim"}),
    (pretrain_protein.ProteinV5ModelArguments, ProteinMAEV5Config, {"embed_dim", "num_layers", "nhead",
                                                                     "dim_feedforward", "decoder_embed_dim",
                                                                     "decoder_num_layers", "decoder_nhead",
                                                                     "decoder_dim_feedforward"}),
    (pretrain_smiles.SmilesModelArguments, SMILESBERTMLMConfig, {"hidden_size", "num_hidden_layers",
                                                                  "num_attention_heads", "intermediate_size",
                                                                  "vocab_size", "max_length", "tokenizer"}),
]


def _default(f):
    return f.default if f.default is not MISSING else f.default_factory()


@pytest.mark.parametrize("arguments, config_class, job_own", JOB_ARGUMENTS,
                         ids=[f"{a.__name__}-{c.__name__}" for a, c, _ in JOB_ARGUMENTS])
def test_job_options_are_config_fields_with_the_config_defaults_unless_the_job_states_its_own(
        arguments, config_class, job_own):
    config_defaults = {f.name: _default(f) for f in fields(config_class)}
    job = arguments()
    for f in fields(arguments):
        if f.name in job_own:
            continue
        assert f.name in config_defaults, f.name
        assert getattr(job, f.name) == config_defaults[f.name], f.name
    stated = {f.name for f in fields(arguments) if getattr(job, f.name) != config_defaults.get(f.name, MISSING)}
    assert stated <= job_own                                  # nothing differs that the job does not state


def test_options_parse_into_the_types_the_configs_accept():
    (args,) = HfArgumentParser(pretrain_spectral_gpt.SpectralGPTModelArguments).parse_args_into_dataclasses(
        ["--dropout", "0.2", "--aux_modalities", "ir", "af", "--aux_num_channels", "1", "3", "--num_bands", "9"])
    assert args.dropout == 0.2 and args.aux_modalities == ["ir", "af"] and args.aux_num_channels == [1, 3]
    config = SpectralGPTConfig(**asdict(args))
    assert config.num_bands == 9 and config.aux_num_channels == [1, 3]
    (args,) = HfArgumentParser(pretrain_spectra.SpectralModelArguments).parse_args_into_dataclasses(
        ["--n_mask", "8", "--huber_delta", "2"])
    assert args.n_mask == 8 and args.huber_delta == 2.0 and isinstance(args.huber_delta, float)


def test_config_arguments_refuses_names_the_config_lacks_and_its_example_runs():
    with pytest.raises(ValueError, match=r"\['d_modle'\] are not fields of ChemoMAEConfig"):
        common.config_arguments(ChemoMAEConfig, ["d_modle"], doc="typo")
    result = doctest.testmod(common)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("job", ["chemomae", "spectral-gpt", "smiles-bert"])
def test_job_help_lists_model_options_with_defaults_before_the_training_flags(job, capsys):
    from hf_mae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", job, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    model_line = next(i for i, line in enumerate(lines) if line.strip().startswith("--hidden_size")
                      or line.strip().startswith("--d_model"))
    training_line = next(i for i, line in enumerate(lines) if line.startswith("TrainingArguments this job sets"))
    assert model_line < training_line
    assert "default " in lines[model_line]
    assert f"hf-mae pretrain {job} --help-training" in text
    assert "--adam_beta1" not in text          # Trainer's full list only with --help-training
    assert "HF_MAE_KEEP_FREED_MEMORY=0" in text  # how to turn off what the job does to the allocator


def test_help_training_lists_every_trainer_flag(capsys):
    from hf_mae.cli import main

    with pytest.raises(SystemExit):
        main(["pretrain", "chemomae", "--help-training"])
    assert "--adam_beta1" in capsys.readouterr().out


def test_spectral_gpt_default_size_is_flagged_on_a_cpu_with_a_smaller_one_that_works():
    import torch

    from hf_mae.models import SpectralGPTConfig, SpectralGPTForPreTraining
    from hf_mae.training.pretrain_spectral_gpt import SMALL_CPU_SIZES, size_note

    with torch.device("meta"):
        full = SpectralGPTForPreTraining(SpectralGPTConfig()).num_parameters()
        small = SpectralGPTForPreTraining(SpectralGPTConfig(**SMALL_CPU_SIZES)).num_parameters()
    assert round(full / 1e6, 1) == 145.6 and small < 20e6
    note = size_note(full, has_accelerator=False)
    assert "145.6M parameters" in note and "--hidden_size 192" in note
    assert size_note(full, has_accelerator=True) is None and size_note(small, has_accelerator=False) is None
