import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")  # the `plot` extra; installed in the test environment

from matplotlib.image import imread  # noqa: E402

from hf_mae import ChemoMAE  # noqa: E402
from hf_mae.analysis.plotting import (  # noqa: E402
    load_log_history, masked_spans, plot_image_reconstructions, plot_loss_curve, plot_reconstructions,
)

SHADE = 217 / 255  # the "0.85" grey of the masked bands


def _grey_pixels(path) -> int:
    image = imread(path)[..., :3]
    return int((np.abs(image - SHADE) < 2 / 255).all(axis=-1).sum())


def test_masked_spans():
    assert masked_spans(np.array([True, False, False, True, False])) == [(1, 3), (4, 5)]
    assert masked_spans(np.ones(5, bool)) == []
    assert masked_spans(np.zeros(3, bool)) == [(0, 3)]


def test_plot_reconstructions_shades_masked_blocks(tmp_path):
    mae = ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4).eval()
    x = torch.randn(3, 64)
    with torch.no_grad():
        x_recon, _, visible = mae(x, generator=torch.Generator().manual_seed(0))
    wavelengths = np.linspace(1100, 2498, 64)
    out = plot_reconstructions(x, x_recon, visible, tmp_path / "sub" / "recon.png", wavelengths, n_samples=2)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shaded = _grey_pixels(out)
    # The same spectra with nothing masked: no grey band at all.
    clear = plot_reconstructions(x, x_recon, torch.ones_like(visible), tmp_path / "clear.png", wavelengths, n_samples=2)
    assert _grey_pixels(clear) < shaded / 20
    assert shaded > 1000
    # A wavenumber axis (decreasing) is accepted.
    plot_reconstructions(x[0], x_recon[0], visible[0], tmp_path / "wn.png", wavelengths[::-1], wavelength_unit="cm-1")


def test_plot_reconstructions_bad_input(tmp_path):
    x = np.zeros((2, 16))
    visible = np.ones((2, 16), bool)
    with pytest.raises(ValueError, match="same shape"):
        plot_reconstructions(x, x[:, :8], visible, tmp_path / "a.png")
    with pytest.raises(ValueError, match="boolean"):
        plot_reconstructions(x, x, visible.astype(int), tmp_path / "a.png")
    with pytest.raises(ValueError, match="wavelengths"):
        plot_reconstructions(x, x, visible, tmp_path / "a.png", wavelengths=np.arange(10))
    with pytest.raises(ValueError, match="NaN"):
        plot_reconstructions(np.full((2, 16), np.nan), x, visible, tmp_path / "a.png")
    with pytest.raises(ValueError, match=".png"):
        plot_reconstructions(x, x, visible, tmp_path / "a.jpg")


def test_plot_image_reconstructions_greys_the_hidden_patches(tmp_path):
    # one band of SpectralGPT cubes: the token mask spread over the band's pixels (hf_mae.hub.cards)
    from hf_mae import SpectralGPTConfig, SpectralGPTForPreTraining
    from hf_mae.hub.cards import band_reconstructions

    config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=16,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16,
                               decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                               aux_modalities=[], projection_dim=8)
    model = SpectralGPTForPreTraining(config).eval()
    cubes = torch.randn(2, 6, 32, 32)
    band, recon, visible = band_reconstructions(model, cubes, torch.Generator().manual_seed(0))
    out = model(cubes, generator=torch.Generator().manual_seed(0), return_loss=False)
    token_visible = ~out.mask.reshape(2, 3, 4, 4)[:, 6 // 2 // 2]  # (group, row, column) order; the middle band's group
    assert torch.equal(visible, token_visible.repeat_interleave(8, 1).repeat_interleave(8, 2))
    assert torch.equal(band, cubes[:, 3]) and recon.shape == (2, 32, 32)
    path = plot_image_reconstructions(band, recon, visible, tmp_path / "bands.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    clear = plot_image_reconstructions(band, recon, torch.ones_like(visible), tmp_path / "clear.png")
    assert _grey_pixels(path) > 20 * max(_grey_pixels(clear), 1) and _grey_pixels(path) > 1000
    assert band_reconstructions(model.get_hsi_encoder(), cubes, torch.Generator()) is None  # no decoder: no figure
    with pytest.raises(ValueError, match="same shape"):
        plot_image_reconstructions(band, recon[:, :16], visible, tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        plot_image_reconstructions(cubes, cubes, cubes > 0, tmp_path / "a.png")
    with pytest.raises(ValueError, match="boolean"):
        plot_image_reconstructions(band, recon, visible.int(), tmp_path / "a.png")


def test_plot_loss_curve_from_trainer_run(tmp_path):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from hf_mae import ChemoMAEForPreTraining

    model = ChemoMAEForPreTraining(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                                   latent_dim=8, n_blocks=4, n_mask=2)
    data = Dataset.from_dict({"input_values": torch.randn(16, 32).tolist()})
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=4,
                             logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps",
                             save_steps=4, report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data.select(range(4)))
    trainer.train()
    history = load_log_history(tmp_path / "run")  # found in checkpoint-4/trainer_state.json
    assert [row["step"] for row in history if "eval_loss" in row] == [2, 4]
    assert len([row for row in history if "loss" in row]) == 4
    # The checkpoint was written before Trainer appended its end-of-training summary row.
    assert history == load_log_history(trainer.state)[:-1]
    trainer.save_state()  # now a top-level trainer_state.json wins over the checkpoints
    assert load_log_history(tmp_path / "run") == trainer.state.log_history
    out = plot_loss_curve(trainer.state.log_history, tmp_path / "loss.png", log_scale=True)
    assert imread(out).shape[0] > 100
    plot_loss_curve(tmp_path / "run" / "checkpoint-4" / "trainer_state.json", tmp_path / "loss2.png")


def test_plot_loss_curve_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no 'loss'"):
        plot_loss_curve([{"step": 1, "learning_rate": 1e-3}], tmp_path / "l.png")
    with pytest.raises(ValueError, match="list of dicts"):
        plot_loss_curve([1, 2], tmp_path / "l.png")
    with pytest.raises(ValueError, match="trainer_state.json"):
        plot_loss_curve(tmp_path, tmp_path / "l.png")
    (tmp_path / "state.json").write_text(json.dumps({"global_step": 3}))
    with pytest.raises(ValueError, match="log_history"):
        plot_loss_curve(tmp_path / "state.json", tmp_path / "l.png")


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"hf-mae\[plot\]"):
        plot_loss_curve([{"step": 1, "loss": 1.0}], tmp_path / "l.png")
