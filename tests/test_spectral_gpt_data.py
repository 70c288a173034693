"""Hyperspectral processor, cube data and the `hf-mae pretrain spectral-gpt` job, on generated cubes."""

import json

import numpy as np
import pytest
import torch
from scipy.io import savemat
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForPreTraining

from hf_mae import HyperspectralProcessor, SpectralGPTConfig, SpectralGPTForPreTraining, SpectralGPTModel
from hf_mae.cli import main
from hf_mae.data.hyperspectral import (
    DataCollatorForHyperspectral,
    HyperspectralDataset,
    load_cube_folder,
    synthetic_cubes,
)

TINY_ARGS = ("--image_size 32 --patch_size 8 --band_patch_size 2 --hidden_size 32 --num_hidden_layers 1 "
             "--num_attention_heads 2 --intermediate_size 64 --decoder_hidden_size 16 --decoder_num_hidden_layers 1 "
             "--decoder_num_attention_heads 2 --decoder_intermediate_size 32 --aux_hidden_size 16 --aux_patch_size 8 "
             "--aux_num_hidden_layers 1 --aux_num_attention_heads 2 --aux_intermediate_size 32 --projection_dim 8 "
             "--max_steps 2 --per_device_train_batch_size 4 --per_device_eval_batch_size 4 --save_steps 100 "
             "--logging_steps 1 --use_cpu").split()


def processor(**kwargs) -> HyperspectralProcessor:
    return HyperspectralProcessor(**{"analysis_dim": 32, "num_bands": 6, "patch_size": 8,
                                     "aux_modalities": ["ir", "af"], "aux_num_channels": [1, 3], **kwargs})


# -- processor -----------------------------------------------------------------------------------------------
def test_layouts_give_the_same_cube_and_bands_are_untouched():
    rng = np.random.default_rng(0)
    cube = rng.random((6, 50, 70)).astype(np.float32)
    proc = processor()
    first = proc(cube)["pixel_values"]
    last = proc(np.moveaxis(cube, 0, -1))["pixel_values"]
    assert first.shape == (1, 6, 32, 32) and torch.equal(first, last)
    # a cube whose band b is the constant b stays so: registration resizes space only
    flat = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 90, 45))
    out = proc(flat)["pixel_values"][0]
    assert torch.allclose(out, torch.arange(6.0)[:, None, None].expand(6, 32, 32), atol=1e-5)
    # cubes of different sizes in one call; torch input works too
    both = proc([cube, torch.from_numpy(rng.random((6, 20, 20)))])["pixel_values"]
    assert both.shape == (2, 6, 32, 32) and torch.equal(both[0], first[0])


def test_aux_images_of_any_size_with_per_sample_presence():
    rng = np.random.default_rng(1)
    cubes = [rng.random((6, 40, 40)) for _ in range(3)]
    out = processor()(cubes, aux_images={"ir": [rng.random((100, 120)), None, rng.random((1, 16, 16))],
                                         "af": [None, rng.random((64, 64, 3)), None]})
    ir, af = out["aux_pixel_values"]["ir"], out["aux_pixel_values"]["af"]
    assert ir.shape == (3, 1, 32, 32) and af.shape == (3, 3, 32, 32)
    assert out["aux_present"]["ir"].tolist() == [True, False, True]
    assert out["aux_present"]["af"].tolist() == [False, True, False]
    assert torch.equal(ir[1], torch.zeros(1, 32, 32))
    # standardised per image and channel
    assert torch.allclose(af[1].mean(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(af[1].std(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-4)
    as_numpy = processor()(cubes, return_tensors="np")["pixel_values"]
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32


def test_fit_standardises_per_band_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    cubes = [rng.random((6, 32, 32)) * np.arange(1, 7)[:, None, None] + np.arange(6)[:, None, None] for _ in range(4)]
    proc = processor().fit(cubes)
    assert np.allclose(proc.band_mean, [np.mean([c[b] for c in cubes]) for b in range(6)])
    values = proc(cubes)["pixel_values"]
    assert torch.allclose(values.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-4)
    assert torch.allclose(values.std(dim=(0, 2, 3), unbiased=False), torch.ones(6), atol=1e-3)
    proc.save_pretrained(tmp_path)
    loaded = HyperspectralProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == proc.to_dict()
    assert torch.equal(loaded(cubes)["pixel_values"], values)


def test_processor_loads_with_the_model_through_auto_classes(tmp_path):
    config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, aux_modalities=["ir"],
                               aux_hidden_size=16, aux_patch_size=8, aux_num_hidden_layers=1, aux_num_attention_heads=2)
    proc = HyperspectralProcessor.from_model_config(config)
    assert (proc.analysis_dim, proc.num_bands, proc.patch_size, proc.aux_modalities) == (32, 6, 8, ["ir"])
    SpectralGPTModel(config).save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, HyperspectralProcessor) and loaded.to_dict() == proc.to_dict()
    model = AutoModel.from_pretrained(tmp_path)
    assert model(loaded(np.random.rand(40, 40, 6))["pixel_values"]).last_hidden_state.shape == (1, 48, 32)


@pytest.mark.parametrize("call, message", [
    (lambda p: p(np.zeros((5, 32, 32))), r"expects 6 bands on the first or last axis"),
    (lambda p: HyperspectralProcessor(analysis_dim=30, patch_size=8), r"`analysis_dim`=30 must be a multiple"),
    (lambda p: p(np.zeros((6, 32, 32)), aux_images={"af": [np.zeros((32, 32, 2))]}), r"expects 3 channels on the first or last"),
    (lambda p: p(np.zeros((6, 32, 32)), aux_images={"ir": [np.zeros((3, 32, 32))]}), r"expects 1 channels"),
    (lambda p: p(np.full((6, 32, 32), np.nan)), r"NaN"),
    (lambda p: p(np.zeros((6, 32, 32)), aux_images={"ir": [np.full((8, 8), np.inf)]}), r"NaN or infinite"),
    (lambda p: p(np.zeros((6, 32, 32)), aux_images={"oct": [np.zeros((8, 8))]}), r"Unknown modality 'oct'"),
    (lambda p: p(np.zeros((6, 32, 6))), r"both the first and the last axis"),
    (lambda p: p([np.zeros((6, 8, 8))] * 2, aux_images={"ir": [np.zeros((8, 8))]}), r"one image \(or None\) per cube"),
    (lambda p: p(np.zeros((6, 8))), r"must be one 3D cube"),
    (lambda p: processor(layout="bands_last")(np.zeros((6, 32, 32))), r"has 32 bands on its last axis"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(processor())


# -- data -------------------------------------------------------------------------------------------------
def test_synthetic_cubes_are_reproducible_and_leave_modalities_out():
    a, b = synthetic_cubes(20, num_bands=6, size=16, seed=3), synthetic_cubes(20, num_bands=6, size=16, seed=3)
    assert all(np.array_equal(x["cube"], y["cube"]) for x, y in zip(a, b))
    assert a[0]["cube"].shape == (6, 16, 16) and np.isfinite(a[0]["cube"]).all()
    counts = [len(s["aux"]) for s in a]
    assert min(counts) < 3 and max(counts) > 0             # some samples lack some modalities
    with_ir = next(s for s in a if "ir" in s["aux"])
    with_thickness = next(s for s in a if "thickness" in s["aux"])
    assert with_ir["aux"]["ir"].shape == (16, 16) and with_thickness["aux"]["thickness"].shape == (32, 32)


def test_collator_batches_samples_with_different_modalities():
    samples = [{"cube": np.random.rand(6, 20, 20), "aux": {"ir": np.random.rand(10, 10)}},
               {"cube": np.random.rand(20, 20, 6), "aux": {}},
               {"cube": np.random.rand(6, 20, 20), "aux": {"ir": np.random.rand(40, 40)}}]
    dataset = HyperspectralDataset(samples, processor())
    assert sorted(dataset[0]["aux_pixel_values"]) == ["ir"] and dataset[1]["aux_pixel_values"] == {}
    batch = DataCollatorForHyperspectral()([dataset[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 6, 32, 32)
    assert sorted(batch["aux_pixel_values"]) == ["ir"]          # "af": no sample has it, left out
    assert batch["aux_present"]["ir"].tolist() == [True, False, True]
    assert torch.equal(batch["aux_pixel_values"]["ir"][1], torch.zeros(1, 32, 32))
    none = DataCollatorForHyperspectral()([dataset[1]])
    assert set(none) == {"pixel_values"}
    # a bad sample is named
    with pytest.raises(ValueError, match="sample 'broken'"):
        HyperspectralDataset([{"name": "broken", "cube": np.zeros((5, 8, 8)), "aux": {}}], processor())[0]


def test_cube_folder_with_npy_and_mat(tmp_path):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "a.npy", rng.random((6, 20, 20)))
    np.save(tmp_path / "a.ir.npy", rng.random((30, 30)))
    savemat(tmp_path / "b.mat", {"cube": rng.random((24, 24, 6)), "wavelengths": np.linspace(400, 900, 6)})
    savemat(tmp_path / "b.ir.mat", {"img": rng.random((12, 12))})
    samples = load_cube_folder(tmp_path, ["ir", "af"])
    assert [s["name"] for s in samples] == ["a", "b"]
    assert samples[1]["cube"].shape == (24, 24, 6) and sorted(samples[1]["aux"]) == ["ir"]
    savemat(tmp_path / "c.mat", {"x": rng.random((6, 8, 8)), "y": rng.random((6, 8, 8))})
    with pytest.raises(ValueError, match="expected exactly one 3D numeric array"):
        load_cube_folder(tmp_path, ["ir"])
    assert load_cube_folder(tmp_path, ["ir"], mat_key="x")[2]["cube"].shape == (6, 8, 8)
    np.save(tmp_path / "zzz.af.npy", rng.random((8, 8)))
    with pytest.raises(ValueError, match="no such cube"):
        load_cube_folder(tmp_path, ["ir", "af"], mat_key="x")


# -- the pretraining job -------------------------------------------------------------------------------------
def check_run(out_dir, num_bands):
    config = AutoConfig.from_pretrained(out_dir)
    assert config.num_bands == num_bands
    assert isinstance(AutoModelForPreTraining.from_pretrained(out_dir), SpectralGPTForPreTraining)
    encoder = AutoModel.from_pretrained(out_dir / "hsi_encoder")
    proc = AutoFeatureExtractor.from_pretrained(out_dir)
    assert isinstance(encoder, SpectralGPTModel) and proc.band_mean is not None and len(proc.band_mean) == num_bands
    metrics = json.loads((out_dir / "eval_results.json").read_text())
    assert np.isfinite(metrics["eval_loss"])


def test_pretrain_job_on_generated_cubes(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["pretrain", "spectral-gpt", *TINY_ARGS, "--num_bands", "6", "--num_synthetic", "12",
                 "--synthetic_size", "24", "--output_dir", str(out)])
    assert code == 0
    check_run(out, 6)
    printed = capsys.readouterr().out
    assert "masked reconstruction MSE" in printed and "max |hidden difference| = 0.0e+00" in printed


def test_pretrain_job_on_a_folder_of_cubes(tmp_path, capsys):
    rng = np.random.default_rng(5)
    data = tmp_path / "cubes"
    data.mkdir()
    for i in range(5):
        cube = rng.random((28 + i, 30, 8)).astype(np.float32)          # (H, W, bands), sizes differ
        if i % 2:
            savemat(data / f"scan{i}.mat", {"reflectance": cube})
        else:
            np.save(data / f"scan{i}.npy", cube)
        if i != 1:
            np.save(data / f"scan{i}.ir.npy", rng.random((50, 50)))
    out = tmp_path / "run"
    code = main(["pretrain", "spectral-gpt", *TINY_ARGS, "--data_dir", str(data), "--eval_fraction", "0.4",
                 "--output_dir", str(out)])
    assert code == 0
    assert "num_bands=8" in capsys.readouterr().out
    check_run(out, 8)


def test_job_defaults_are_the_config_defaults():
    from dataclasses import fields

    from hf_mae.training.pretrain_spectral_gpt import SpectralGPTModelArguments

    config, args = SpectralGPTConfig(), SpectralGPTModelArguments()
    for f in fields(SpectralGPTModelArguments):
        if getattr(args, f.name) is not None:  # None: derived (bands from the data, one channel per modality)
            assert getattr(args, f.name) == getattr(config, f.name), f.name
