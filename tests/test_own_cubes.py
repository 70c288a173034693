"""Hyperspectral cubes from .npy/.mat/ENVI files (band axis explicit) and the labelled pixel-window dataset."""

import doctest
import importlib.util

import numpy as np
import pytest
import torch

from hf_mae.data import cube_files, pixels
from hf_mae.data.cube_files import parse_envi_header, read_cube, read_envi, read_spectral_library
from hf_mae.data.pixels import (DataCollatorForPixelWindows, LabelledPixels, PixelWindowDataset, band_statistics,
                                pixel_spectra, predictions_to_map, split_pixels)

BANDS, LINES, SAMPLES = 3, 4, 5
CUBE = np.arange(BANDS * LINES * SAMPLES, dtype=np.float64).reshape(BANDS, LINES, SAMPLES) * 1.5  # (bands, H, W)


def test_docstring_examples_run():
    assert doctest.testmod(cube_files).failed == 0 and doctest.testmod(pixels).failed == 0


def write_envi(tmp_path, interleave="bsq", code=4, byte_order=0, offset=0, suffix=".img", name="scene"):
    """A real ENVI pair: header text + binary in the given interleave, data type and byte order."""
    dtype = np.dtype(("<" if byte_order == 0 else ">") + cube_files.ENVI_DTYPES[code])
    array = {"bsq": CUBE, "bil": CUBE.transpose(1, 0, 2), "bip": CUBE.transpose(1, 2, 0)}[interleave]
    (tmp_path / f"{name}{suffix}").write_bytes(b"\0" * offset + np.ascontiguousarray(array).astype(dtype).tobytes())
    header = (f"ENVI\ndescription = {{test scene}}\nsamples = {SAMPLES}\nlines   = {LINES}\nbands = {BANDS}\n"
              f"header offset = {offset}\nfile type = ENVI Standard\ndata type = {code}\ninterleave = {interleave}\n"
              f"byte order = {byte_order}\nwavelength units = Nanometers\nwavelength = {{\n 450.0, 550.5,\n 650.0}}\n")
    (tmp_path / f"{name}.hdr").write_text(header)
    return tmp_path / f"{name}.hdr"


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("code,byte_order", [(4, 0), (4, 1), (2, 1), (12, 0), (5, 0)])
def test_envi_interleaves_types_and_byte_orders(tmp_path, interleave, code, byte_order):
    header = write_envi(tmp_path, interleave, code, byte_order, offset=16)
    cube, meta = read_cube(header)
    assert cube.dtype == np.float32 and cube.shape == (BANDS, LINES, SAMPLES)
    np.testing.assert_array_equal(cube, CUBE.astype(cube_files.ENVI_DTYPES[code]).astype(np.float32))
    assert meta["wavelengths"] == [450.0, 550.5, 650.0] and meta["wavelength_unit"] == "Nanometers"
    assert meta["band_axis"] == {"bsq": 0, "bil": 1, "bip": 2}[interleave] and meta["interleave"] == interleave


def test_envi_errors(tmp_path):
    header = write_envi(tmp_path, "bip", suffix="")     # data file without a suffix is found too
    assert read_envi(header)[0].shape == (BANDS, LINES, SAMPLES)
    with pytest.raises(ValueError, match="contradicts the header's interleave 'bip'"):
        read_cube(header, band_axis=0)
    assert read_cube(header, band_axis=-1)[1]["band_axis"] == 2
    text = header.read_text()
    for old, new, message in [("data type = 4", "data type = 6", "`data type` 6 is not supported"),
                              ("interleave = bip", "interleave = bsx", "`interleave` must be one of"),
                              ("lines   = 4", "lines = 40", "bytes, but the header"),
                              ("samples = 5\n", "", "no `samples`"),
                              ("650.0}", "650.0, 700}", "`wavelength` lists 4 values for 3 bands")]:
        header.write_text(text.replace(old, new))
        with pytest.raises(ValueError, match=message):
            read_envi(header)
    (tmp_path / "other.hdr").write_text(text)
    with pytest.raises(ValueError, match="no binary file next to it"):
        read_envi(tmp_path / "other.hdr")
    (tmp_path / "text.hdr").write_text("not a header")
    with pytest.raises(ValueError, match="not an ENVI header"):
        parse_envi_header(tmp_path / "text.hdr")


def test_npy_and_mat_need_band_axis(tmp_path):
    np.save(tmp_path / "c.npy", CUBE.transpose(1, 2, 0))          # (H, W, bands)
    cube, meta = read_cube(tmp_path / "c.npy", band_axis=2)
    np.testing.assert_array_equal(cube, CUBE.astype(np.float32))
    with pytest.raises(ValueError, match="pass `band_axis`.*never guessed"):
        read_cube(tmp_path / "c.npy")
    with pytest.raises(ValueError, match="`band_axis` must be"):
        read_cube(tmp_path / "c.npy", band_axis=3)
    bad = CUBE.copy()
    bad[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        read_cube(tmp_path / "nan.npy", band_axis=0)
    if importlib.util.find_spec("scipy") is not None:
        from scipy.io import savemat

        savemat(tmp_path / "c.mat", {"scene": CUBE.transpose(1, 0, 2), "gt": np.ones((4, 5))})
        cube, _ = read_cube(tmp_path / "c.mat", band_axis=1, mat_key="scene")
        np.testing.assert_array_equal(cube, CUBE.astype(np.float32))


@pytest.mark.skipif(importlib.util.find_spec("earthlib") is None, reason="pip install --no-deps earthlib==1.1.0")
def test_real_envi_spectral_library_from_earthlib():
    from hf_mae.data.spectra import package_file

    spectra, meta = read_spectral_library(package_file("earthlib", "data/spectra.sli.hdr"))
    assert spectra.shape == (7261, 180) and meta["spectral_library"]
    assert meta["wavelengths"][0] == 0.4 and meta["wavelengths"][-1] == pytest.approx(2.45)
    assert meta["spectra_names"][0] == "FS15R_FS4275" and 0 <= spectra.min() and spectra.max() < 1.1


def scene():
    rng = np.random.default_rng(0)
    cube = rng.random((4, 9, 10)).astype(np.float32)
    labels = np.zeros((9, 10), dtype=np.int64)
    labels[0:3, 0:4] = 5         # class values need not be 1..K
    labels[5:9, 6:10] = 7
    labels[4, 4] = 9
    labels[8, 0] = 9
    return cube, labels


def test_windows_reflect_and_zero_padding():
    cube, labels = scene()
    data = LabelledPixels(cube.transpose(1, 2, 0), labels, band_axis=-1)       # (H, W, bands) in
    assert data.classes.tolist() == [5, 7, 9] and len(data) == 12 + 16 + 2 and data.num_bands == 4
    corner = np.flatnonzero((data.rows == 0) & (data.cols == 0))[0]
    window = PixelWindowDataset(data, [corner], window=3)[0]
    assert window["labels"] == 0 and window["pixel_values"].shape == (4, 3, 3)
    np.testing.assert_array_equal(window["pixel_values"][:, 1, 1], cube[:, 0, 0])       # centre is the pixel
    np.testing.assert_array_equal(window["pixel_values"][:, 0, 0], cube[:, 1, 1])       # mirrored without edge repeat
    zero = PixelWindowDataset(data, [corner], window=3, padding="zero")[0]["pixel_values"]
    assert float(zero[:, 0].abs().sum()) == 0 and torch.equal(zero[:, 1:, 1:], torch.from_numpy(cube[:, :2, :2]))
    inner = np.flatnonzero((data.rows == 6) & (data.cols == 7))[0]
    even = PixelWindowDataset(data, [inner], window=4)[0]["pixel_values"]              # pixel at (w//2, w//2)
    np.testing.assert_array_equal(even.numpy(), cube[:, 4:8, 5:9])
    with pytest.raises(ValueError, match="padding='zero'"):
        PixelWindowDataset(data, window=20)
    assert PixelWindowDataset(data, window=20, padding="zero")[0]["pixel_values"].shape == (4, 20, 20)
    mean, std = band_statistics(data, np.arange(len(data)))
    scaled = PixelWindowDataset(data, [inner], window=1, band_mean=mean, band_std=std)[0]["pixel_values"]
    np.testing.assert_allclose(scaled[:, 0, 0].numpy(), (cube[:, 6, 7] - mean) / std, rtol=1e-5)
    x, y = pixel_spectra(data, [inner, corner])
    np.testing.assert_array_equal(x, np.stack([cube[:, 6, 7], cube[:, 0, 0]])) and y.tolist() == [1, 0]
    batch = DataCollatorForPixelWindows()([PixelWindowDataset(data, window=2)[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 4, 2, 2) and batch["labels"].dtype == torch.long


def test_split_is_stratified_seeded_and_complete():
    data = LabelledPixels(*scene(), band_axis=0)
    splits = split_pixels(data, (0.5, 0.25, 0.25), seed=3)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(data)))
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [6 + 8 + 1, 3 + 4 + 1, 3 + 4 + 0]
    assert all(np.array_equal(a, b) for a, b in zip(splits.values(), split_pixels(data, (0.5, 0.25, 0.25), 3).values()))
    assert not np.array_equal(splits["train"], split_pixels(data, (0.5, 0.25, 0.25), seed=4)["train"])
    with pytest.raises(ValueError, match="summing to 1"):
        split_pixels(data, (0.5, 0.2))


def test_predictions_written_back_as_class_map():
    cube, labels = scene()
    data = LabelledPixels(cube, labels, band_axis=0)
    test = split_pixels(data, (0.5, 0.5), seed=0)["validation"]
    class_map = predictions_to_map(data, test, data.targets[test])          # perfect predictions
    mask = np.zeros_like(labels, dtype=bool)
    mask[data.rows[test], data.cols[test]] = True
    np.testing.assert_array_equal(class_map[mask], labels[mask])
    assert (class_map[~mask] == 0).all()
    assert (predictions_to_map(data, test, data.targets[test], fill=-1)[~mask] == -1).all()
    with pytest.raises(ValueError, match="one class index per pixel"):
        predictions_to_map(data, test, [0])
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        predictions_to_map(data, test[:1], [3])


def test_labelled_pixels_errors():
    cube, labels = scene()
    with pytest.raises(ValueError, match=r"`label_map` has shape \(9, 10\) but the cube's scene is \(4, 9\)"):
        LabelledPixels(cube, labels, band_axis=2)
    with pytest.raises(ValueError, match="no labelled pixel"):
        LabelledPixels(cube, np.zeros_like(labels), band_axis=0)
    with pytest.raises(ValueError, match="single class 5"):
        LabelledPixels(cube, np.where(labels == 5, 5, 0), band_axis=0)
    with pytest.raises(ValueError, match="integer label values"):
        LabelledPixels(cube, labels + 0.5, band_axis=0)
    with pytest.raises(ValueError, match="ignore value -1"):
        LabelledPixels(cube, np.full_like(labels, -1), band_axis=0, ignore_value=-1)


def test_spectralgpt_trains_on_pixel_windows_and_writes_a_class_map(tmp_path):
    """Per-pixel classification end to end: windows -> SpectralGPTForImageClassification + Trainer -> map."""
    from transformers import Trainer, TrainingArguments

    from hf_mae import SpectralGPTConfig, SpectralGPTForImageClassification

    rng = np.random.default_rng(0)
    labels = np.zeros((12, 12), dtype=np.int64)
    labels[:, :6], labels[:, 6:] = 1, 2
    labels[5:7] = 0                                             # an unlabelled strip
    spectra = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]], dtype=np.float32)
    cube = spectra[np.clip(labels - 1, 0, 1)].transpose(2, 0, 1) + 0.1 * rng.standard_normal((6, 12, 12))
    data = LabelledPixels(cube.astype(np.float32), labels, band_axis=0)
    splits = split_pixels(data, (0.5, 0.5), seed=0)
    mean, std = band_statistics(data, splits["train"])
    train, test = (PixelWindowDataset(data, splits[k], window=4, band_mean=mean, band_std=std) for k in ("train", "validation"))
    config = SpectralGPTConfig(image_size=4, patch_size=2, num_bands=6, band_patch_size=2, hidden_size=16,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                               # no auxiliary images; aux_patch_size only satisfies today's size check on them
                               aux_modalities=[], aux_patch_size=2, num_labels=2, id2label=data.id2label())
    model = SpectralGPTForImageClassification(config)
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=16, max_steps=30, learning_rate=3e-3,
                             use_cpu=True, report_to="none", logging_steps=10, save_strategy="no", seed=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorForPixelWindows())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    predicted = trainer.predict(test).predictions.argmax(-1)
    class_map = predictions_to_map(data, splits["validation"], predicted)
    pixels_tested = (data.rows[splits["validation"]], data.cols[splits["validation"]])
    assert np.mean(class_map[pixels_tested] == labels[pixels_tested]) > 0.9
    assert set(np.unique(class_map)) <= {0, 1, 2}


def test_window_mean_spectra_for_the_svm_baseline():
    from hf_mae.data.pixels import window_mean_spectra

    cube, labels = scene()
    data = LabelledPixels(cube, labels, band_axis=0)
    inner = np.flatnonzero((data.rows == 6) & (data.cols == 7))[0]
    means = window_mean_spectra(data, [inner, 0], size=3)
    np.testing.assert_allclose(means[0], cube[:, 5:8, 6:9].mean(axis=(1, 2)), rtol=1e-6)
    assert means.shape == (2, 4) and np.allclose(window_mean_spectra(data, [inner], size=1)[0], cube[:, 6, 7])
