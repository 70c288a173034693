"""ChemoMAE / WaveMAE: masking, encoder, losses, validation, attention backends, save/load."""

import json
import subprocess
import sys

import pytest
import torch

import hf_mae  # noqa: F401  (registers the Auto classes)
from hf_mae.models import (
    ChemoMAE,
    ChemoMAEConfig,
    ChemoMAEForPreTraining,
    WaveMAE,
    WaveMAEConfig,
    WaveMAEForPreTraining,
    make_block_mask,
    masked_reconstruction_loss,
)

TINY = dict(seq_len=64, d_model=32, nhead=2, num_layers=2, dim_feedforward=64, latent_dim=8, dec_hidden=32,
            n_blocks=8, n_mask=4, dropout=0.0, dec_dropout=0.0)
MODELS = [(ChemoMAE, ChemoMAEConfig), (WaveMAE, WaveMAEConfig)]


# -- masking ------------------------------------------------------------------------------------------
def test_block_mask_counts_alignment_and_reproducibility():
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    m = make_block_mask(16, 64, n_blocks=8, n_mask=5, generator=gen())
    assert m.shape == (16, 64) and m.dtype == torch.bool
    blocks = m.view(16, 8, 8)
    assert torch.equal(blocks.all(-1), blocks.any(-1)), "masks must cover whole blocks"
    assert (blocks.all(-1).sum(1) == 5).all(), "exactly n_mask blocks per sample"
    assert torch.equal(m, make_block_mask(16, 64, n_blocks=8, n_mask=5, generator=gen()))
    assert len({tuple(r.tolist()) for r in m}) > 1, "samples get different masks"
    noise = torch.rand(16, 8)
    a = make_block_mask(16, 64, 8, 5, noise=noise)
    # the 3 blocks with the smallest noise stay visible, the 5 largest are masked
    assert torch.equal(a.view(16, 8, 8)[:, :, 0], noise.argsort(1).argsort(1) >= 3)


def test_block_mask_rejects_bad_layout():
    with pytest.raises(ValueError, match="seq_len"):
        make_block_mask(2, 65, n_blocks=8, n_mask=2)
    with pytest.raises(ValueError, match="n_mask"):
        make_block_mask(2, 64, n_blocks=8, n_mask=9)


@pytest.mark.parametrize("model_class,config_class", MODELS)
def test_model_masks_have_exactly_n_mask_blocks(model_class, config_class):
    mae = model_class(**TINY)
    _, z, visible = mae(torch.randn(6, 64), generator=torch.Generator().manual_seed(0))
    assert (visible.view(6, 8, 8).all(-1).sum(1) == 8 - 4).all()
    _, _, visible2 = mae(torch.randn(6, 64), n_mask=7)
    assert (visible2.sum(1) == 8).all()
    assert mae.make_visible(5, n_mask=2).sum(1).tolist() == [48] * 5


def test_noise_and_generator_fix_the_mask_and_output():
    mae = ChemoMAE(**TINY).eval()
    x, noise = torch.randn(3, 64), torch.rand(3, 8)
    a, b = mae(x, noise=noise), mae(x, noise=noise)
    assert torch.equal(a.visible_mask, b.visible_mask) and torch.equal(a.x_recon, b.x_recon)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(mae(x, generator=g1).visible_mask, mae(x, generator=g2).visible_mask)


# -- encoder ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class,config_class", MODELS)
def test_encode_all_visible_is_deterministic_and_unit_norm(model_class, config_class):
    mae = model_class(**{**TINY, "dropout": 0.1, "dec_dropout": 0.1}).eval()
    x = torch.randn(5, 64)
    z1, z2 = mae.encode(x), mae.encode(x)
    assert torch.equal(z1, z2)
    assert torch.allclose(z1.norm(dim=1), torch.ones(5), atol=1e-5)
    full = torch.ones(5, 64, dtype=torch.bool)
    assert torch.allclose(mae.encode(x, full), z1, atol=1e-6)


def test_masked_blocks_do_not_influence_the_latent():
    mae = ChemoMAE(**TINY).eval()
    x = torch.randn(2, 64)
    visible = mae.make_visible(2, generator=torch.Generator().manual_seed(1))
    z = mae.encode(x, visible)
    x_changed = torch.where(visible, x, torch.randn_like(x) * 100)
    assert torch.allclose(mae.encode(x_changed, visible), z, atol=1e-6)
    assert not torch.allclose(mae.encode(x_changed), mae.encode(x), atol=1e-3)


def test_per_sample_masks_with_different_counts_match_single_sample_runs():
    mae = WaveMAE(**TINY).eval()
    x = torch.randn(3, 64)
    blocks = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    visible = blocks.repeat_interleave(8, dim=1)
    together = mae.encode(x, visible)
    alone = torch.cat([mae.encode(x[i:i + 1], visible[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_visible_mask_must_be_block_aligned_and_bool():
    mae = ChemoMAE(**TINY)
    visible = torch.ones(2, 64, dtype=torch.bool)
    visible[:, 3] = False
    with pytest.raises(ValueError, match="block-aligned"):
        mae(torch.randn(2, 64), visible)
    with pytest.raises(ValueError, match="bool"):
        mae(torch.randn(2, 64), torch.ones(2, 64))


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_attention_backends_agree(impl):
    torch.manual_seed(0)
    reference = ChemoMAE(ChemoMAEConfig(**TINY)).eval()
    other = ChemoMAE(ChemoMAEConfig(**TINY), ).eval()
    other.load_state_dict(reference.state_dict())
    other.set_attn_implementation(impl)
    assert other.config._attn_implementation == impl
    x = torch.randn(4, 64)
    blocks = torch.tensor([[1, 1, 0, 0, 1, 1, 0, 0]] * 3 + [[1, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    visible = blocks.repeat_interleave(8, dim=1)
    assert torch.allclose(other.encode(x, visible), reference.encode(x, visible), atol=1e-5)


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(**TINY)
    x, noise = torch.randn(4, 64), torch.rand(4, 8)
    model.train()
    model(x, noise=noise).loss.backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    model(x, noise=noise).loss.backward()
    for p, g in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, g, atol=1e-6)


# -- losses ------------------------------------------------------------------------------------------
def test_loss_is_on_masked_points_only():
    x = torch.randn(3, 16)
    masked = torch.zeros(3, 16, dtype=torch.bool)
    masked[:, :4] = True
    recon = x.clone()
    recon[:, 4:] += 100.0  # errors on visible points must not count
    recon[:, :4] += 2.0
    assert masked_reconstruction_loss(recon, x, masked, "mse").item() == pytest.approx(4.0)
    assert masked_reconstruction_loss(recon, x, masked, "sse").item() == pytest.approx(4 * 4.0)
    assert masked_reconstruction_loss(recon, x, masked, "huber", 1.0).item() == pytest.approx(1.5)


@pytest.mark.parametrize("loss_type", ["mse", "sse", "huber"])
def test_pretraining_loss_matches_the_seed_formula(loss_type):
    model = ChemoMAEForPreTraining(**TINY, loss_type=loss_type).eval()
    x, noise = torch.randn(4, 64), torch.rand(4, 8)
    out = model(x, noise=noise)
    hidden = ~out.visible_mask
    if loss_type == "sse":
        expected = ((out.reconstruction - x) ** 2)[hidden].sum() / x.size(0)
    elif loss_type == "mse":
        expected = ((out.reconstruction - x) ** 2)[hidden].mean()
    else:
        expected = torch.nn.functional.huber_loss(out.reconstruction[hidden], x[hidden], delta=1.0)
    assert torch.allclose(out.loss, expected, rtol=1e-5)


def test_eval_mode_masks_are_fixed():
    model = ChemoMAEForPreTraining(**TINY).eval()
    x = torch.randn(4, 64)
    assert torch.equal(model(x).loss, model(x).loss)


# -- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    ({"d_model": 30, "nhead": 4}, "d_model"),
    ({"n_mask": 8}, "n_mask"),
    ({"n_mask": 0}, "n_mask"),
    ({"seq_len": 60}, "seq_len"),
    ({"dropout": 1.5}, "dropout"),
    ({"loss_type": "l1"}, "loss_type"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"nhead": 2.0}, "nhead"),
])
def test_config_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ChemoMAEConfig(**{**TINY, **kwargs})


@pytest.mark.parametrize("x,match", [
    (torch.randn(2, 63), "size 64"),
    (torch.randn(2, 64, 1), "2 dimensions"),
    (torch.ones(2, 64, dtype=torch.long), "floating"),
    (torch.full((2, 64), float("nan")), "NaN"),
    (torch.tensor([[float("inf")] + [0.0] * 63]), "NaN or infinite"),
])
def test_forward_validates_inputs(x, match):
    mae = ChemoMAE(**TINY)
    with pytest.raises(ValueError, match=match):
        mae(x)
    with pytest.raises(ValueError, match=match):
        mae.encode(x)


def test_forward_rejects_bad_n_mask_and_noise():
    mae = ChemoMAE(**TINY)
    with pytest.raises(ValueError, match="n_mask"):
        mae(torch.randn(2, 64), n_mask=8)
    with pytest.raises(ValueError, match="noise"):
        mae(torch.randn(2, 64), noise=torch.rand(2, 7))


def test_config_and_kwargs_together_are_refused():
    with pytest.raises(ValueError, match="either"):
        ChemoMAE(ChemoMAEConfig(**TINY), seq_len=64)


# -- save / load ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class,config_class", [(ChemoMAEForPreTraining, ChemoMAEConfig),
                                                      (WaveMAEForPreTraining, WaveMAEConfig)])
def test_save_and_reload_in_a_fresh_process(tmp_path, model_class, config_class):
    torch.manual_seed(0)
    model = model_class(**{**TINY, "use_learnable_pos": False}).eval()
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    # weights, config, and the modeling code that lets users without hf_mae load it (trust_remote_code)
    assert [f for f in files if not f.endswith(".py")] == ["config.json", "model.safetensors"], files
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == config_class.model_type
    x, noise = torch.randn(3, 64), torch.rand(3, 8)
    torch.save({"x": x, "noise": noise}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = model.mae(x, noise=noise)
    torch.save(tuple(expected), tmp_path / "expected.pt")
    script = f"""
import torch, hf_mae
from transformers import AutoModel, AutoModelForPreTraining
inp = torch.load({str(tmp_path / 'inputs.pt')!r})
base = AutoModel.from_pretrained({str(tmp_path)!r}).eval()
full = AutoModelForPreTraining.from_pretrained({str(tmp_path)!r}).eval()
exp = torch.load({str(tmp_path / 'expected.pt')!r})
with torch.no_grad():
    got = base(inp["x"], noise=inp["noise"])
    got_full = full(inp["x"], noise=inp["noise"])
assert type(base).__name__ == {model_class.mae_class.__name__!r}, type(base)
assert type(full).__name__ == {model_class.__name__!r}, type(full)
for a, b in zip(got, exp):
    assert torch.equal(a, b)
assert torch.equal(got_full.reconstruction, exp[0])
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
