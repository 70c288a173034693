"""``hf-mae pretrain ... --data FILE``: every pretraining job on the user's own file (tiny real data, 2 steps)."""

import doctest
import json

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModel

from hf_mae.cli import main
from hf_mae.data.molecules import load_solubility
from hf_mae.data.protein import load_pyhmmer_proteins
from hf_mae.data.spectra import load_nir_corn, spectral_metadata
from hf_mae.training import pretrain_smiles, pretrain_spectra, pretrain_spectral_gpt

STEPS = ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
         "--disable_tqdm", "true", "--report_to", "none"]
TINY_SPECTRAL = ["--seq_len", "64", "--d_model", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32",
                 "--n_blocks", "8", "--n_mask", "4", "--per_device_train_batch_size", "8", *STEPS]


def test_docstring_examples_run():
    for module in (pretrain_spectra, pretrain_smiles, pretrain_spectral_gpt):
        assert doctest.testmod(module).failed == 0, module.__name__


def corn_table(tmp_path, n: int = 30):
    """The first ``n`` real corn NIR spectra as a CSV with wavelength headers and a moisture column."""
    data = load_nir_corn()["train"]
    wavelengths = spectral_metadata(data)["wavelengths"]
    frame = pd.DataFrame(np.asarray(data["spectrum"][:n]), columns=[f"{w:g}" for w in wavelengths])
    frame.insert(0, "moisture", data["target"][:n])
    path = tmp_path / "corn.csv"
    frame.to_csv(path, index=False)
    return path, np.asarray(wavelengths)


@pytest.mark.parametrize("job", ["chemomae", "wavemae"])
def test_spectra_jobs_take_a_csv(tmp_path, capsys, job):
    path, wavelengths = corn_table(tmp_path)
    out = tmp_path / job
    assert main(["pretrain", job, "--data", str(path), "--eval_fraction", "0.2", "--output_dir", str(out),
                 *TINY_SPECTRAL]) == 0
    printed = capsys.readouterr().out
    assert "held-out masked reconstruction MSE (6 corn.csv test spectra" in printed
    assert "max |z difference| = 0.0e+00" in printed
    grid = json.loads((out / "preprocessor_config.json").read_text())["wavelengths"]
    assert len(grid) == 64 and grid[0] == pytest.approx(wavelengths.min()) and grid[-1] == pytest.approx(wavelengths.max())


def test_spectra_job_takes_npy_with_axis_and_refuses_a_missing_axis(tmp_path, capsys):
    path, wavelengths = corn_table(tmp_path, 20)
    spectra = pd.read_csv(path).drop(columns="moisture").to_numpy()
    np.save(tmp_path / "x.npy", spectra)
    np.save(tmp_path / "axis.npy", wavelengths)
    out = tmp_path / "npy"
    assert main(["pretrain", "chemomae", "--data", str(tmp_path / "x.npy"), "--axis", str(tmp_path / "axis.npy"),
                 "--output_dir", str(out), *TINY_SPECTRAL]) == 0
    assert "(2 x.npy test spectra" in capsys.readouterr().out
    assert type(AutoModel.from_pretrained(out)).__name__ == "ChemoMAE"
    assert main(["pretrain", "chemomae", "--data", str(tmp_path / "x.npy"), "--output_dir", str(out)]) == 1
    assert "a .npy file has no wavelength axis; pass `axis`" in capsys.readouterr().err


def test_smiles_job_takes_a_csv_and_reports_skipped_smiles(tmp_path, capsys):
    smiles = load_solubility()["train"]["smiles"][:40]
    frame = pd.DataFrame({"mol": [*smiles, "C1CC", "not a smiles"]})
    frame.to_csv(tmp_path / "mols.csv", index=False)
    out = tmp_path / "bert"
    assert main(["pretrain", "smiles-bert", "--data", str(tmp_path / "mols.csv"), "--smiles_column", "mol",
                 "--eval_fraction", "0.25", "--output_dir", str(out), "--hidden_size", "32", "--num_hidden_layers",
                 "1", "--num_attention_heads", "2", "--intermediate_size", "64", "--per_device_train_batch_size", "8",
                 *STEPS]) == 0
    printed = capsys.readouterr().out
    assert "mols.csv: 40 of 42 SMILES kept, 2 skipped (row 40: 'C1CC'" in printed
    assert "validation masked-token accuracy (10 mols.csv (validation) SMILES" in printed
    assert main(["pretrain", "smiles-bert", "--data", str(tmp_path / "mols.csv"), "--output_dir", str(out)]) == 1
    assert "no column 'smiles' for `smiles_column`; available columns: ['mol']" in capsys.readouterr().err


def test_protein_job_takes_a_fasta_with_data(tmp_path, capsys):
    ids, sequences = load_pyhmmer_proteins(10)
    (tmp_path / "mine.fasta").write_text("".join(f">{i}\n{s[:120]}\n" for i, s in zip(ids, sequences)))
    out = tmp_path / "v5"
    assert main(["pretrain", "protein-mae-v5", "--data", str(tmp_path / "mine.fasta"), "--output_dir", str(out),
                 "--esm_hidden_size", "32", "--esm_num_heads", "2", "--embed_dim", "16", "--nhead", "2",
                 "--num_layers", "1", "--dim_feedforward", "32", "--num_patches", "4", "--decoder_embed_dim", "16",
                 "--decoder_nhead", "2", "--decoder_dim_feedforward", "32", "--max_length", "128",
                 "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--eval_fraction", "0.2",
                 *STEPS]) == 0
    assert "8 training / 2 held-out proteins, input_dim 32" in capsys.readouterr().out


TINY_GPT = ["--image_size", "16", "--patch_size", "8", "--band_patch_size", "3", "--hidden_size", "32",
            "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
            "--decoder_hidden_size", "16", "--decoder_num_hidden_layers", "1", "--decoder_num_attention_heads", "2",
            "--decoder_intermediate_size", "32", "--per_device_train_batch_size", "4", *STEPS]


def test_spectral_gpt_takes_one_scene_cut_into_tiles(tmp_path, capsys):
    scene = np.random.default_rng(0).random((40, 50, 9)).astype(np.float32)         # (H, W, bands)
    np.save(tmp_path / "scene.npy", scene)
    out = tmp_path / "sgpt"
    assert main(["pretrain", "spectral-gpt", "--data", str(tmp_path / "scene.npy"), "--band_axis", "-1",
                 "--tile_size", "10", "--eval_fraction", "0.25", "--output_dir", str(out), *TINY_GPT]) == 0
    printed = capsys.readouterr().out
    assert "9 bands x 40 x 50 pixels (bands on axis -1) -> 20 tiles of 10 x 10" in printed
    assert "their encoders are not built" in printed and "max |hidden difference| = 0.0e+00" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["num_bands"] == 9 and config["aux_modalities"] == []


def test_spectral_gpt_scene_errors_name_the_flag(tmp_path, capsys):
    np.save(tmp_path / "scene.npy", np.random.default_rng(0).random((40, 50, 10)).astype(np.float32))
    base = ["pretrain", "spectral-gpt", "--data", str(tmp_path / "scene.npy"), "--output_dir", str(tmp_path / "o")]
    for extra, message in [
            ([], "pass `band_axis` (0, 1 or 2/-1; `--band_axis` on the command line)"),
            (["--band_axis", "-1"], "has 10 bands: `--band_patch_size` 3 does not divide them; divisors of 10: "
                                    "[1, 2, 5, 10]"),
            (["--band_axis", "-1", "--band_patch_size", "5", "--tile_size", "45"],
             "`tile_size`=45 is larger than the 40x50 scene"),
            (["--band_axis", "-1", "--band_patch_size", "5", "--tile_size", "30"],
             "give 1 tile of 30x30; pass a smaller --tile_size"),
            (["--band_axis", "-1", "--band_patch_size", "5", "--num_bands", "12"],
             "`--num_bands` 12 does not match")]:
        assert main([*base, "--band_patch_size", "3", *extra]) == 1, extra
        assert message in capsys.readouterr().err, extra
