"""Spectra processor, real-data loaders and the collator."""

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoProcessor

import hf_mae
from hf_mae import ChemoMAEForPreTraining, SpectraProcessor
from hf_mae.data.spectra import (
    DataCollatorForSpectra,
    load_nir_corn,
    load_nir_tablet,
    spectra_dataset,
    spectral_metadata,
)


# -- processor ------------------------------------------------------------------------------------------
def test_resampling_is_exact_on_linear_spectra_and_handles_descending_axes():
    proc = SpectraProcessor.for_range(1000, 2000, 11, do_snv=False)
    axis = np.linspace(900, 2100, 37)
    spectra = np.stack([3.0 * axis + 1.0, -0.5 * axis])
    out = proc(spectra, wavelengths=axis)["input_values"]
    grid = np.linspace(1000, 2000, 11)
    assert np.allclose(out, np.stack([3.0 * grid + 1.0, -0.5 * grid]), rtol=1e-6)
    flipped = proc(spectra[:, ::-1], wavelengths=axis[::-1])["input_values"]
    assert np.allclose(flipped, out)


def test_snv_and_autoscale():
    rng = np.random.default_rng(0)
    spectra = rng.random((20, 50)) * 5 + 3
    proc = SpectraProcessor(wavelengths=list(range(50)), scaling="none")
    snv = proc(spectra)["input_values"]
    assert np.allclose(snv.mean(1), 0, atol=1e-5) and np.allclose(snv.std(1), 1, atol=1e-5)
    scaled = SpectraProcessor(wavelengths=list(range(50)), scaling="autoscale").fit(spectra)
    values = scaled(spectra)["input_values"]
    assert np.allclose(values.mean(0), 0, atol=1e-5) and np.allclose(values.std(0), 1, atol=1e-4)
    assert np.allclose(scaled.inverse_scale(values), snv, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"spectra": np.ones((2, 30)) + np.arange(30), "wavelengths": np.linspace(1200, 1900, 30)}, "extrapolate"),
    ({"spectra": np.full((2, 30), np.nan), "wavelengths": np.linspace(900, 2100, 30)}, "NaN"),
    ({"spectra": np.ones((2, 30)) + np.arange(30), "wavelengths": np.linspace(900, 2100, 29)}, "29 values"),
    ({"spectra": np.ones((2, 30)) + np.arange(30)}, "pass the spectra's own `wavelengths`"),
    ({"spectra": np.ones((2, 3, 4))}, "shape"),
    ({"spectra": [["a", "b"]]}, "numbers"),
    ({"spectra": np.ones((2, 30)), "wavelengths": np.linspace(900, 2100, 30)}, "constant"),
])
def test_processor_bad_input(kwargs, match):
    proc = SpectraProcessor.for_range(1000, 2000, 16)
    with pytest.raises(ValueError, match=match):
        proc(**kwargs)


def test_scaling_without_fit_is_refused():
    proc = SpectraProcessor.for_range(0, 1, 8, scaling="center")
    with pytest.raises(ValueError, match="fit"):
        proc(np.random.rand(2, 8))


def test_processor_saves_with_the_model_and_reloads_with_auto_classes(tmp_path):
    proc = SpectraProcessor.for_range(1100, 2498, 64, scaling="autoscale").fit(np.random.rand(10, 700) + 1,
                                                                             np.linspace(1100, 2498, 700))
    model = ChemoMAEForPreTraining(seq_len=64, d_model=16, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    raw = np.random.rand(3, 700) + 1
    for loader in (AutoFeatureExtractor, AutoProcessor, SpectraProcessor):
        again = loader.from_pretrained(tmp_path)
        assert isinstance(again, SpectraProcessor)
        assert again.wavelengths == proc.wavelengths and again.mean == proc.mean and again.scaling == "autoscale"
        assert np.array_equal(again(raw, wavelengths=np.linspace(1100, 2498, 700))["input_values"],
                              proc(raw, wavelengths=np.linspace(1100, 2498, 700))["input_values"])


# -- real data ----------------------------------------------------------------------------------------------
def test_tablet_loader_gives_real_nir_spectra_with_wavelengths():
    data = load_nir_tablet()
    assert {k: len(v) for k, v in data.items()} == {"train": 800, "test": 424, "transfer": 60}
    meta = spectral_metadata(data["train"])
    assert len(meta["wavelengths"]) == 597 and meta["wavelengths"][0] == 600 and meta["wavelengths"][-1] == 1792
    assert meta["unit"] == "nm"
    first = np.asarray(data["train"][0]["spectrum"])
    assert first.shape == (597,) and np.isfinite(first).all() and first.std() > 0
    # the same physical sample on two instruments shares its sample id and target
    rows = data["train"].filter(lambda r: r["sample"] == 5)
    assert sorted(rows["instrument"]) == [0, 1] and len(set(rows["target"])) == 1
    # metadata survives transformations
    assert spectral_metadata(data["train"].shuffle(seed=0).select(range(3)))["wavelengths"] == meta["wavelengths"]


def test_corn_loader():
    data = load_nir_corn()
    assert {k: len(v) for k, v in data.items()} == {"train": 90, "test": 60, "transfer": 90}
    assert len(spectral_metadata(data["test"])["wavelengths"]) == 700


def test_user_spectra_dataset_and_missing_metadata():
    ds = spectra_dataset(np.random.rand(3, 10), np.arange(10) + 900.0, target=[1, 2, 3], name="mine")
    assert spectral_metadata(ds)["name"] == "mine" and ds["target"] == [1.0, 2.0, 3.0]
    import datasets

    with pytest.raises(ValueError, match="wavelength metadata"):
        spectral_metadata(datasets.Dataset.from_dict({"spectrum": [[1.0, 2.0]]}))
    with pytest.raises(ValueError, match="wavelengths"):
        spectra_dataset(np.random.rand(3, 10), np.arange(9))


def test_collator_stacks_and_validates():
    collate = DataCollatorForSpectra()
    batch = collate([{"input_values": [0.0, 1.0]}, {"input_values": [2.0, 3.0]}])
    assert batch["input_values"].dtype == torch.float32 and batch["input_values"].shape == (2, 2)
    with pytest.raises(ValueError, match="different lengths"):
        collate([{"input_values": [0.0]}, {"input_values": [1.0, 2.0]}])
    with pytest.raises(ValueError, match="NaN"):
        collate([{"input_values": [float("nan"), 1.0]}])


def test_package_exports():
    for name in ("ChemoMAE", "WaveMAE", "ChemoMAEForPreTraining", "SpectraProcessor", "make_block_mask"):
        assert hasattr(hf_mae, name)
