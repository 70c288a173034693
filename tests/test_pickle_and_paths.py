"""Every loader refuses pickled weights unless asked (use_safetensors=False, --allow_pickle), and a missing local
folder fails at once instead of after a minute of Hub retries; Hub ids still go to the Hub."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

from hf_mae import ChemoMAE, MAEEncoder, ProteinMAEV5Config
from hf_mae.models.serialization import check_pretrained_source, looks_local, pickled_weights
from hf_mae.processing.protein import ProteinEmbedder
from hf_mae.training.finetune_protein_interaction import InteractionArguments, build_model
from hf_mae.training.pretrain_protein import ProteinDataArguments, embed_proteins

REPO = Path(__file__).resolve().parents[1]


def pickle_only(model: torch.nn.Module, folder: Path, filename: str = "pytorch_model.bin") -> Path:
    """A checkpoint folder as older code wrote it: config.json + a pickled state dict, no safetensors."""
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / filename)
    assert not list(folder.glob("*.safetensors"))
    return folder


@pytest.fixture
def chemomae():
    torch.manual_seed(0)
    return ChemoMAE(seq_len=32, d_model=16, nhead=2, num_layers=1, n_blocks=4, n_mask=2, latent_dim=8).eval()


@pytest.mark.parametrize("load", [ChemoMAE.from_pretrained, AutoModel.from_pretrained],
                         ids=["ChemoMAE", "AutoModel"])
def test_hf_mae_models_refuse_pickles_unless_use_safetensors_false(tmp_path, chemomae, load):
    folder = pickle_only(chemomae, tmp_path / "old")
    with pytest.raises(OSError, match=r"only pickled weights \(pytorch_model.bin\) found.*refuses pickled weights"
                                      r".*pass use_safetensors=False \(on the hf-mae command line: --allow_pickle\)"):
        load(folder)
    reloaded = load(folder, use_safetensors=False).eval()
    x = torch.randn(3, 32)
    torch.testing.assert_close(reloaded.encode(x), chemomae.encode(x), rtol=0, atol=0)


def test_safetensors_always_load(tmp_path, chemomae):
    chemomae.save_pretrained(tmp_path / "new")
    reloaded = ChemoMAE.from_pretrained(tmp_path / "new").eval()
    x = torch.randn(3, 32)
    torch.testing.assert_close(reloaded.encode(x), chemomae.encode(x), rtol=0, atol=0)


@pytest.mark.parametrize("filename", ["pytorch_model.bin", "model.pt", "last.ckpt"])
def test_pickled_weights_are_named(tmp_path, chemomae, filename):
    folder = pickle_only(chemomae, tmp_path / "old", filename)
    assert pickled_weights(folder) == [filename]
    with pytest.raises(OSError, match=rf"only pickled weights \({filename}\) found"):
        ChemoMAE.from_pretrained(folder)
    chemomae.save_pretrained(folder)               # with a safetensors file next to it, the pickle is ignored
    assert pickled_weights(folder) == []


@pytest.fixture(scope="module")
def esm2_pickled(tmp_path_factory):
    embedder = ProteinEmbedder.tiny_random("esm2", hidden_size=16, num_layers=1, num_heads=2, max_length=64)
    folder = pickle_only(embedder.model, tmp_path_factory.mktemp("esm2"))
    embedder.tokenizer.save_pretrained(folder)
    return embedder, folder


def test_protein_embedder_refuses_pickles_unless_asked(esm2_pickled):
    original, folder = esm2_pickled
    with pytest.raises(OSError, match=r"ProteinEmbedder.from_pretrained\(.*only pickled weights.*use_safetensors=False"):
        ProteinEmbedder.from_pretrained(folder)
    loaded = ProteinEmbedder.from_pretrained(folder, use_safetensors=False, progress=False)
    for new, old in zip(loaded.embed(["MKTAYIAK", "MSV"]), original.embed(["MKTAYIAK", "MSV"])):
        np.testing.assert_array_equal(new, old)


def test_pretrain_job_plm_checkpoint_needs_allow_pickle(esm2_pickled, tmp_path):
    _, folder = esm2_pickled
    args = ProteinDataArguments(plm_checkpoint=str(folder), max_proteins=3, embeddings_dir=None)
    with pytest.raises(OSError, match="--allow_pickle"):
        embed_proteins(args, max_length=64)
    args.allow_pickle = True
    dataset = embed_proteins(args, max_length=64)
    assert len(dataset) == 3 and dataset.features["residue_embeddings"].shape == (None, 16)


def test_finetune_encoder_path_needs_allow_pickle(tmp_path):
    encoder = MAEEncoder(ProteinMAEV5Config(input_dim=16, max_length=64, num_patches=4, embed_dim=16, num_layers=1,
                                            nhead=2, dim_feedforward=32))
    folder = pickle_only(encoder, tmp_path / "v5")
    args = InteractionArguments(encoder_path=str(folder), adapter_dim=16, cross_attention_heads=2,
                                cross_attention_dim_feedforward=32)
    with pytest.raises(OSError, match=r"--encoder_path\(.*only pickled weights.*--allow_pickle"):
        build_model(args, input_dim=16)
    model = build_model(args, input_dim=16, allow_pickle=True)
    loaded = model.get_encoder().state_dict()
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# Missing local folders
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, local", [
    ("./model", True), ("../model", True), ("/abs/model", True), ("~/model", True),
    ("runs/v5/checkpoint-100", True),          # three components: no Hub id
    ("runs/typo", True),                       # `runs` exists in the working directory
    ("has space/model", True),
    ("facebook/esm2_t6_8M_UR50D", False), ("bert-base-uncased", False), ("lab/chemomae-corn", False),
])
def test_looks_local(tmp_path, monkeypatch, text, local):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_local(text) is local
    assert looks_local(Path("anything")) is True


@pytest.mark.parametrize("load", [
    ChemoMAE.from_pretrained,
    MAEEncoder.from_pretrained,
    ProteinEmbedder.from_pretrained,
    lambda path: build_model(InteractionArguments(encoder_path=path), input_dim=16),
], ids=["ChemoMAE", "MAEEncoder", "ProteinEmbedder", "--encoder_path"])
@pytest.mark.parametrize("path", ["runs/typo", "./typo", "runs/typo/checkpoint-1"])
def test_missing_local_folder_fails_at_once(tmp_path, monkeypatch, load, path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=rf"^folder {path} does not exist \(`[-\w]+` looks like a local path"):
        load(path)
    assert time.perf_counter() - start < 2.0        # no Hub retries


def test_check_pretrained_source_errors():
    with pytest.raises(ValueError, match=r"`encoder_path` must be a folder or a Hub id \(namespace/name\), got ''"):
        check_pretrained_source("", "encoder_path")
    assert check_pretrained_source(Path(__file__).parent) == str(Path(__file__).parent)


def test_hub_ids_still_go_to_the_hub_offline(tmp_path):
    """Under HF_HUB_OFFLINE=1 (set before huggingface_hub is imported) a Hub id reaches the Hub client, which
    answers with its own offline error, not with "folder ... does not exist"."""
    script = textwrap.dedent("""
        import time
        from hf_mae import ChemoMAE
        from hf_mae.processing.protein import ProteinEmbedder
        from hf_mae.training.smiles_mlm import SmilesMLMFeaturizer
        for load in (ChemoMAE.from_pretrained, ProteinEmbedder.from_pretrained, SmilesMLMFeaturizer):
            start = time.perf_counter()
            try:
                load("some-lab/some-model")
            except OSError as err:
                assert not isinstance(err, FileNotFoundError), err
                print(type(err).__name__, "|", str(err).splitlines()[0], "|", round(time.perf_counter() - start))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    for line in lines:
        kind, message, seconds = line.split(" | ")
        assert kind == "OSError" and "couldn't connect to 'https://huggingface.co'" in message
        assert int(seconds) < 10


def test_cli_reports_a_missing_encoder_folder_in_one_line(tmp_path, monkeypatch, capsys):
    from hf_mae.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.perf_counter()
    argv = ["finetune-protein-interaction", "--encoder_path", "runs/typo", "--output_dir", str(tmp_path / "out"),
            "--max_proteins", "8", "--esm_hidden_size", "16", "--esm_num_heads", "2"]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error == ("hf-mae: error: folder runs/typo does not exist (`--encoder_path` looks like a local path, so "
                     "the Hub was not asked; a Hub id has the form namespace/name). (--debug shows the traceback)\n")
    assert time.perf_counter() - start < 30
    with pytest.raises(FileNotFoundError, match="folder runs/typo does not exist"):
        main([*argv, "--debug"])
