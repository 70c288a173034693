"""Multimodal guided SpectralGPT: tokenisation, conditioning, losses, missing modalities, save/load, fine-tuning."""

import math

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
    Trainer,
    TrainingArguments,
)

import hf_mae
from hf_mae import (
    SpectralGPTConfig,
    SpectralGPTForImageClassification,
    SpectralGPTForPreTraining,
    SpectralGPTModel,
)
from hf_mae.models.masking import gather_tokens, split_by_noise
from hf_mae.models.modeling_spectral_gpt import contrastive_loss, patchify_cube, unpatchify_cube

TINY = dict(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=32, aux_hidden_size=16, aux_patch_size=8,
            aux_num_hidden_layers=1, aux_num_attention_heads=2, aux_intermediate_size=32, projection_dim=8)
N_TOKENS = 3 * 4 * 4  # band groups x grid x grid


def tiny_config(**overrides) -> SpectralGPTConfig:
    return SpectralGPTConfig(**{**TINY, **overrides})


def batch(n=4, seed=0, modalities=("ir", "af", "thickness")):
    g = torch.Generator().manual_seed(seed)
    cube = torch.randn(n, 6, 32, 32, generator=g)
    aux = {m: torch.randn(n, 1, 32, 32, generator=g) for m in modalities}
    return cube, aux


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SpectralGPTForPreTraining(tiny_config(aux_encoder_type=["vit", "cnn", "vit"])).eval()


# -- configuration and tokenisation ------------------------------------------------------------------------
def test_default_config_matches_the_seed():
    config = SpectralGPTConfig()
    assert (config.image_size, config.patch_size, config.band_patch_size, config.num_bands) == (224, 16, 3, 12)
    assert (config.num_band_groups, config.grid_size, config.num_patches) == (4, 14, 784)
    assert config.hidden_size == 768 and config.num_hidden_layers == 16 and config.aux_hidden_size == 256
    assert config.num_masked == 588 and config.mask_ratio == 0.75 and config.contrastive_temperature == 0.07
    assert config.aux_modalities == ["ir", "af", "thickness"] and config.aux_channels == {"ir": 1, "af": 1, "thickness": 1}
    assert AutoConfig.for_model("hf_mae_spectral_gpt").num_patches == 784


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_bands=100, band_patch_size=3), "`num_bands`=100 must be divisible by `band_patch_size`=3"),
    (dict(image_size=30), "`image_size`=30 must be divisible by `patch_size`=8"),
    (dict(aux_modalities=["ir", "ir"]), "must not repeat"),
    (dict(aux_modalities=["ir.x"]), "identifiers"),
    (dict(aux_num_channels=[1, 2]), "one channel count per modality"),
    (dict(aux_encoder_type="resnet"), "`aux_encoder_type` must be one of"),
    (dict(mask_ratio=1.0), "`mask_ratio` must be <"),
    (dict(hidden_size=30, num_attention_heads=4), "divisible by `num_attention_heads`"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        tiny_config(**kwargs)


def test_many_bands_are_a_config_choice():
    # 120 bands in groups of 4: only the spectral position table grows, the spatial one is unchanged.
    config = tiny_config(num_bands=120, band_patch_size=4, aux_modalities=[])
    encoder = SpectralGPTModel(config)
    positions = encoder.embeddings.position_embeddings
    assert positions.spectral.shape == (1, 30, 1, 32) and positions.spatial.shape == (1, 1, 16, 32)
    out = encoder(torch.randn(2, 120, 32, 32))
    assert out.last_hidden_state.shape == (2, 30 * 16, 32)


def test_patchify_is_3d_and_invertible():
    cube = torch.arange(2 * 6 * 32 * 32, dtype=torch.float32).view(2, 6, 32, 32)
    patches = patchify_cube(cube, 2, 8)
    assert patches.shape == (2, N_TOKENS, 2 * 8 * 8)
    # token 0 = bands 0-1, rows 0-7, cols 0-7; token 16 = the next band group at the same place
    assert torch.equal(patches[0, 0], cube[0, 0:2, 0:8, 0:8].reshape(-1))
    assert torch.equal(patches[1, 16 + 5], cube[1, 2:4, 8:16, 8:16].reshape(-1))
    assert torch.equal(unpatchify_cube(patches, 6, 32, 2, 8), cube)


def test_position_embeddings_are_separable_and_start_from_sincos():
    encoder = SpectralGPTModel(tiny_config())
    positions = encoder.embeddings.position_embeddings
    table = positions()                                          # (1, N, D)
    assert table.shape == (1, N_TOKENS, 32)
    # same spatial place, different band group: the difference is the spectral difference only
    assert torch.allclose(table[0, 16 + 3] - table[0, 3], positions.spectral[0, 1, 0] - positions.spectral[0, 0, 0],
                          atol=1e-6)
    assert torch.allclose(positions.spectral[0, :, 0], hf_mae.models.layers.sinusoidal_positions(3, 32)[0])


# -- the multimodal MAE ----------------------------------------------------------------------------------------
def test_pretraining_forward_shapes_and_losses(model):
    cube, aux = batch()
    out = model(cube, aux_pixel_values=aux, noise=torch.rand(4, N_TOKENS, generator=torch.Generator().manual_seed(1)))
    assert out.reconstruction.shape == (4, N_TOKENS, 2 * 8 * 8)
    assert out.mask.shape == (4, N_TOKENS) and out.mask.dtype == torch.bool
    assert out.mask.sum(1).tolist() == [36] * 4                  # 75% of 48
    assert out.last_hidden_state.shape == (4, 12, 32) and out.hsi_embedding.shape == (4, 32)
    assert {m: tuple(v.shape) for m, v in out.aux_embeddings.items()} == {m: (4, 16) for m in ("ir", "af", "thickness")}
    assert sorted(out.contrastive_losses) == ["af", "ir", "thickness"]
    mean_contrast = torch.stack(list(out.contrastive_losses.values())).mean()
    assert torch.allclose(out.contrastive_loss, mean_contrast)
    assert torch.allclose(out.loss, out.reconstruction_loss + out.contrastive_loss)
    assert torch.allclose(out.hsi_embedding, out.last_hidden_state.mean(1))
    # L2 on masked tokens only, per token then averaged
    target = patchify_cube(cube, 2, 8)
    per_token = ((out.reconstruction - target) ** 2).mean(-1)
    manual = (per_token * out.mask).sum() / out.mask.sum()
    assert torch.allclose(out.reconstruction_loss, manual, rtol=1e-5)


def test_noise_fixes_the_mask_and_everything_else(model):
    cube, aux = batch()
    noise = torch.rand(4, N_TOKENS, generator=torch.Generator().manual_seed(3))
    a, b = model(cube, aux_pixel_values=aux, noise=noise), model(cube, aux_pixel_values=aux, noise=noise)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.loss, b.loss)
    _, expected_mask, _ = split_by_noise(noise, 12)
    assert torch.equal(a.mask, expected_mask)
    other = model(cube, aux_pixel_values=aux, noise=torch.rand(4, N_TOKENS))
    assert not torch.equal(other.mask, a.mask)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(model(cube, generator=g1).mask, model(cube, generator=g2).mask)


def test_gradients_reach_every_part(model):
    model.train()
    try:
        cube, aux = batch()
        model.zero_grad()
        model(cube, aux_pixel_values=aux).loss.backward()
        for name in ("spectral_gpt.embeddings.patch_embeddings.weight", "spectral_gpt.encoder.layers.0.attn.qkv.weight",
                     "conditioning.0.attn.kv.weight", "aux_encoders.ir.patch_embeddings.weight",
                     "aux_encoders.af.convs.0.weight", "aux_projections.thickness.weight", "hsi_projection.weight",
                     "decoder_pred.weight", "mask_token"):
            grad = model.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    finally:
        model.zero_grad()
        model.eval()


def test_conditioning_changes_hsi_tokens_only_through_aux(model):
    cube, aux = batch()
    noise = torch.rand(4, N_TOKENS)
    with_aux = model(cube, aux_pixel_values=aux, noise=noise)
    without = model(cube, noise=noise)
    assert not torch.allclose(with_aux.last_hidden_state, without.last_hidden_state)
    # Without aux, conditioning is skipped: the encoder is exactly the standalone HSI path on visible tokens.
    ids_keep = split_by_noise(noise, 12)[0]
    encoder = model.get_hsi_encoder()
    expected = encoder.encoder(gather_tokens(encoder.embeddings(cube), ids_keep))
    assert torch.allclose(without.last_hidden_state, expected, atol=1e-6)
    assert without.contrastive_loss is None and without.contrastive_losses is None
    assert torch.equal(without.loss, without.reconstruction_loss)
    assert without.aux_present.shape == (4, 0)


@pytest.mark.parametrize("subset", [(), ("ir",), ("af", "thickness"), ("ir", "af", "thickness")])
def test_any_subset_of_modalities(model, subset):
    cube, aux = batch(modalities=subset)
    out = model(cube, aux_pixel_values=aux)
    assert torch.isfinite(out.loss)
    assert sorted(out.contrastive_losses or {}) == sorted(subset)
    if subset:
        expected = out.reconstruction_loss + torch.stack([out.contrastive_losses[m] for m in subset]).mean()
        assert torch.allclose(out.loss, expected)


def test_per_sample_presence_matches_running_each_sample_alone(model):
    cube, aux = batch(n=3)
    noise = torch.rand(3, N_TOKENS, generator=torch.Generator().manual_seed(5))
    present = {"ir": torch.tensor([True, False, False]), "af": torch.tensor([True, True, False])}
    out = model(cube, aux_pixel_values={"ir": aux["ir"], "af": aux["af"]}, aux_present=present, noise=noise)
    assert out.aux_present.tolist() == [[True, True], [False, True], [False, False]]
    for i, own in enumerate([("ir", "af"), ("af",), ()]):
        alone = model(cube[i:i + 1], aux_pixel_values={m: aux[m][i:i + 1] for m in own}, noise=noise[i:i + 1])
        assert torch.allclose(out.last_hidden_state[i], alone.last_hidden_state[0], atol=1e-5), i
        assert torch.allclose(out.reconstruction[i], alone.reconstruction[0], atol=1e-5), i
    # the absent rows' images are ignored: garbage there changes nothing
    scrambled = {"ir": aux["ir"].clone(), "af": aux["af"].clone()}
    scrambled["ir"][1:] = 1e3
    scrambled["af"][2] = -1e3
    again = model(cube, aux_pixel_values=scrambled, aux_present=present, noise=noise)
    assert torch.allclose(again.loss, out.loss) and torch.allclose(again.last_hidden_state, out.last_hidden_state)


def test_modality_absent_from_every_sample_leaves_the_average(model):
    cube, aux = batch()
    present = {"af": torch.zeros(4, dtype=torch.bool)}
    out = model(cube, aux_pixel_values={"ir": aux["ir"], "af": aux["af"]}, aux_present=present)
    assert out.contrastive_losses["af"].item() == 0.0
    assert torch.allclose(out.contrastive_loss, out.contrastive_losses["ir"])


def test_contrastive_loss_is_infonce_over_present_samples():
    g = torch.Generator().manual_seed(0)
    z_hsi = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    z_aux = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    full = contrastive_loss(z_hsi, z_aux, torch.ones(5, dtype=torch.bool), 0.07)
    expected = torch.nn.functional.cross_entropy(z_hsi @ z_aux.T / 0.07, torch.arange(5))
    assert torch.allclose(full, expected, atol=1e-6)
    symmetric = contrastive_loss(z_hsi, z_aux, torch.ones(5, dtype=torch.bool), 0.07, symmetric=True)
    other_way = torch.nn.functional.cross_entropy(z_aux @ z_hsi.T / 0.07, torch.arange(5))
    assert torch.allclose(symmetric, 0.5 * (expected + other_way), atol=1e-6)
    # samples 1 and 3 lack the modality: same as dropping them (on the aux side) from the batch
    present = torch.tensor([True, False, True, False, True])
    keep = present.nonzero().squeeze(1)
    partial = contrastive_loss(z_hsi, z_aux, present, 0.07)
    subset = torch.nn.functional.cross_entropy(z_hsi[keep] @ z_aux[keep].T / 0.07, torch.arange(3))
    assert torch.allclose(partial, subset, atol=1e-6)
    # aligned embeddings score far better than chance
    assert contrastive_loss(z_hsi, z_hsi, torch.ones(5, dtype=torch.bool), 0.07) < 0.01 < math.log(5)


def test_eval_mode_masks_are_fixed_by_the_config_seed(model):
    cube, _ = batch()
    assert torch.equal(model(cube).mask, model(cube).mask)
    model.train()
    try:
        assert not torch.equal(model(cube).mask, model(cube).mask)
    finally:
        model.eval()


def test_eager_and_sdpa_attention_agree():
    torch.manual_seed(0)
    config = tiny_config()
    eager = SpectralGPTForPreTraining(config).eval()
    eager.set_attn_implementation("eager")
    sdpa = SpectralGPTForPreTraining(config).eval()
    sdpa.load_state_dict(eager.state_dict())
    sdpa.set_attn_implementation("sdpa")
    cube, aux = batch(n=3)
    present = {"ir": torch.tensor([True, False, True])}
    a = eager(cube, aux_pixel_values=aux, aux_present=present)
    b = sdpa(cube, aux_pixel_values=aux, aux_present=present)
    assert torch.allclose(a.loss, b.loss, atol=1e-5) and torch.allclose(a.reconstruction, b.reconstruction, atol=1e-5)


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, message", [
    (lambda c, a: dict(pixel_values=c[:, :5]), "has 5 bands"),
    (lambda c, a: dict(pixel_values=c[..., :24, :24]), "expects 32 x 32"),
    (lambda c, a: dict(pixel_values=c.masked_fill(torch.zeros_like(c, dtype=torch.bool).index_fill_(3, torch.tensor([0]), True), float("nan"))),
     "NaN"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"ir": a["ir"].repeat(1, 3, 1, 1)}), "has 3 channels"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"oct": a["ir"]}), "Unknown modality 'oct'"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"ir": a["ir"][..., :16, :16]}), "must have shape"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"ir": a["ir"] * float("nan")}), "NaN"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"ir": a["ir"]}, aux_present={"af": torch.ones(4, dtype=torch.bool)}),
     "not in `aux_pixel_values`"),
    (lambda c, a: dict(pixel_values=c, aux_pixel_values={"ir": a["ir"]}, aux_present={"ir": torch.ones(4)}), "bool"),
    (lambda c, a: dict(pixel_values=c, noise=torch.rand(4, 10)), "`noise` must have shape"),
])
def test_bad_model_input_is_refused(model, make, message):
    cube, aux = batch()
    with pytest.raises(ValueError, match=message):
        model(**make(cube, aux))


# -- the HSI encoder alone, Auto classes, fine-tuning ------------------------------------------------------------
def test_hsi_encoder_saves_and_loads_alone(model, tmp_path):
    cube, aux = batch()
    encoder = model.get_hsi_encoder()
    assert isinstance(encoder, SpectralGPTModel)
    encoder.save_pretrained(tmp_path / "encoder")
    loaded = AutoModel.from_pretrained(tmp_path / "encoder").eval()
    assert type(loaded) is SpectralGPTModel
    with torch.no_grad():
        expected = encoder(cube)
        got = loaded(cube)
    assert got.last_hidden_state.shape == (4, N_TOKENS, 32)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert torch.allclose(got.pooler_output, expected.last_hidden_state.mean(1))
    # the whole pretraining model, and its encoder through AutoModel
    model.save_pretrained(tmp_path / "pretrain")
    full = AutoModelForPreTraining.from_pretrained(tmp_path / "pretrain").eval()
    noise = torch.rand(4, N_TOKENS)
    assert torch.equal(full(cube, aux_pixel_values=aux, noise=noise).loss, model(cube, aux_pixel_values=aux, noise=noise).loss)
    base = AutoModel.from_pretrained(tmp_path / "pretrain").eval()
    assert type(base) is SpectralGPTModel and torch.equal(base(cube).last_hidden_state, expected.last_hidden_state)
    classifier = AutoModelForImageClassification.from_pretrained(tmp_path / "pretrain", num_labels=3)
    assert type(classifier) is SpectralGPTForImageClassification
    assert torch.equal(classifier.spectral_gpt.encoder.layers[1].mlp.fc2.weight, encoder.encoder.layers[1].mlp.fc2.weight)


def test_classifier_fine_tunes_with_trainer(tmp_path):
    # Label = which half of the spectrum is brighter: learnable from HSI alone.
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 2
    cubes = torch.randn(32, 6, 32, 32, generator=g) * 0.3
    cubes[labels == 0, :3] += 1.0
    cubes[labels == 1, 3:] += 1.0
    dataset = [{"pixel_values": c, "labels": y} for c, y in zip(cubes, labels)]
    torch.manual_seed(0)
    model = SpectralGPTForImageClassification(tiny_config(num_labels=2, aux_modalities=[]))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=8, learning_rate=3e-3,
                             logging_steps=4, report_to="none", save_strategy="no", use_cpu=True, seed=0)
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    model.eval()
    with torch.no_grad():
        accuracy = (model(cubes).logits.argmax(-1) == labels).float().mean().item()
    assert accuracy > 0.9
    trainer.save_model(str(tmp_path / "clf"))
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "clf").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(cubes[:4]).logits, model(cubes[:4]).logits)


def test_extract_features_uses_the_hsi_encoder(model):
    from hf_mae.analysis.features import extract_features

    cubes = torch.randn(5, 6, 32, 32)
    features = extract_features(model, cubes.numpy(), batch_size=2, progress=False)
    with torch.no_grad():
        expected = model.get_hsi_encoder()(cubes).pooler_output.numpy()
    assert features.shape == (5, 32) and np.allclose(features, expected, atol=1e-5)
