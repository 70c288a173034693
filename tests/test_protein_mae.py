"""Protein MAEs V2/V5, the adapter and the pair model: shapes, padding invariance, losses, round trips, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification

import hf_mae
from hf_mae import (
    MAEEncoder,
    PatchEmbedding,
    ProteinInteractionConfig,
    ProteinInteractionForSequenceClassification,
    ProteinMAEV2Config,
    ProteinMAEV2ForPreTraining,
    ProteinMAEV5Config,
    ProteinMAEV5ForPreTraining,
    TransformerMAE,
    V2ToV5Adapter,
)
from hf_mae.models.masking import split_valid_by_noise
from hf_mae.models.pooling import pool_patches

DIM = 24
V2_TINY = dict(input_dim=DIM, max_length=96, embed_dim=16, num_layers=2, nhead=2, dim_feedforward=32,
               decoder_hidden_dim=32, dropout=0.0)
V5_TINY = dict(input_dim=DIM, max_length=96, num_patches=12, embed_dim=16, num_layers=2, nhead=2, dim_feedforward=32,
               decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2, decoder_dim_feedforward=32)
LENGTHS = [96, 37, 5, 64]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def mixed_batch(lengths=LENGTHS, dim=DIM, seed=0):
    """Right-padded batch with garbage (not zeros) in the padding, so leaks would show."""
    g = torch.Generator().manual_seed(seed)
    length = max(lengths)
    x = torch.randn(len(lengths), length, dim, generator=g)
    mask = torch.zeros(len(lengths), length, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        x[i, n:] = 1e3 * torch.randn(length - n, dim, generator=g)
    return x, mask


# -- sizes ---------------------------------------------------------------------------------------------------

def test_default_parameter_counts_on_meta_device():
    with torch.device("meta"):
        v5 = MAEEncoder(ProteinMAEV5Config())
        v5_pre = ProteinMAEV5ForPreTraining(ProteinMAEV5Config())
        v2 = TransformerMAE(embed_dim=512, num_layers=4, nhead=16)  # the seed's constructor
        pair = ProteinInteractionForSequenceClassification(ProteinInteractionConfig())
    # Seed: V5 encoder ~86.9M. 12 ViT-B layers (85.05M) + 1502x768 residue positions + 960->768 patch projection.
    assert n_params(v5) == 86_948_352
    assert abs(n_params(v5) / 1e6 - 86.9) < 0.1
    assert n_params(v5_pre) - n_params(v5_pre.mae) == 13_521_856          # the light decoder
    assert (v2.config.embed_dim, v2.config.num_layers, v2.config.nhead, v2.config.dim_feedforward) == (512, 4, 16, 2048)
    assert n_params(v2.encoder) == 12_610_560 and n_params(v2.decoder) == 3_017_664
    assert n_params(v2) == 16_889_792
    assert pair.config.hidden_size == 768 and n_params(pair.protein_interaction.encoder) == 86_948_352


def test_v5_patch_layout_defaults():
    cfg = ProteinMAEV5Config()
    assert (cfg.input_dim, cfg.max_length, cfg.num_patches, cfg.patch_size) == (960, 1502, 47, 32)
    assert cfg.num_patches * cfg.patch_size >= cfg.max_length > (cfg.num_patches - 1) * cfg.patch_size
    assert (cfg.embed_dim, cfg.num_layers, cfg.nhead, cfg.dim_feedforward, cfg.mask_ratio) == (768, 12, 12, 3072, 0.75)
    v2 = ProteinMAEV2Config()
    assert (v2.mask_ratio, v2.huber_delta, v2.scale_factor, v2.input_dim, v2.max_length) == (0.5, 0.5, 5.0, 960, 1502)


def test_adapter_default_maps_v2_states_to_v5_format():
    adapter = V2ToV5Adapter()
    states = torch.randn(2, 300, 512)
    valid = torch.ones(2, 300, dtype=torch.bool)
    valid[1, 40:] = False
    tokens, mask = adapter(states, valid), adapter.token_mask(valid)
    assert tokens.shape == (2, 48, 768) and mask.shape == (2, 48)
    assert mask[0].sum() == 1 + math.ceil(300 / 32) and mask[1].sum() == 1 + math.ceil(40 / 32)
    assert torch.equal(tokens[:, 0], adapter.cls_token.expand(2, -1, -1)[:, 0])
    assert torch.all(tokens[1, 3:] == 0)  # patches past the protein's end are zeros
    # Patch 1 of protein 0 is the projection of the mean of residues 32..63.
    assert torch.allclose(tokens[0, 2], adapter.dim_adapter(states[0, 32:64].mean(0)), atol=1e-5)


# -- masking ---------------------------------------------------------------------------------------------------

def test_split_valid_by_noise_never_touches_padding_and_matches_alone():
    valid = torch.tensor([[True] * 10, [True] * 7 + [False] * 3, [True] + [False] * 9])
    noise = torch.rand(3, 10)
    ids_keep, keep_padding, masked = split_valid_by_noise(noise, valid, 0.75)
    assert not (masked & ~valid).any()
    assert masked.sum(1).tolist() == [8, 6, 0]                  # keep max(1, floor(n * 0.25))
    assert ids_keep.shape == (3, 2) and keep_padding.tolist() == [[False, False], [False, True], [False, True]]
    kept = torch.zeros_like(valid).scatter(1, ids_keep[:, :1], True)
    assert not (kept & ~valid).any()
    # Same mask for a row alone, with its padding cut off.
    _, _, alone = split_valid_by_noise(noise[1:2, :7], valid[1:2, :7], 0.75)
    assert torch.equal(alone[0], masked[1, :7])


def test_pool_patches_maps_residue_i_to_patch_i_div_patch_size():
    x = torch.arange(10.0).view(1, 10, 1)
    valid = torch.tensor([[True] * 7 + [False] * 3])
    patches, patch_valid = pool_patches(x, valid, patch_size=3, num_patches=4)
    assert patches.flatten().tolist() == [1.0, 4.0, 6.0, 0.0]   # (0+1+2)/3, (3+4+5)/3, 6, empty
    assert patch_valid.tolist() == [[True, True, True, False]]


# -- padding end to end: each protein of a mixed batch gets the outputs it gets alone ----------------------------

def test_v2_mixed_length_batch_equals_each_protein_alone():
    model = ProteinMAEV2ForPreTraining(ProteinMAEV2Config(**V2_TINY)).eval()
    x, mask = mixed_batch()
    noise = torch.rand(x.shape[:2])
    batch = model(x, mask, noise=noise)
    assert not (batch.mask & ~mask.bool()).any()
    assert batch.mask.sum(1).tolist() == [n - max(1, n // 2) for n in LENGTHS]  # keep floor(n / 2)
    for i, n in enumerate(LENGTHS):
        alone = model(x[i:i + 1, :n], noise=noise[i:i + 1, :n])
        assert torch.equal(alone.mask[0], batch.mask[i, :n])
        assert torch.allclose(alone.reconstruction[0], batch.reconstruction[i, :n], atol=1e-5)
        assert torch.allclose(alone.last_hidden_state[0], batch.last_hidden_state[i, :n], atol=1e-5)
        assert torch.allclose(alone.compressed[0], batch.compressed[i], atol=1e-5)
        assert torch.allclose(alone.loss, model(x[i:i + 1, :n], noise=noise[i:i + 1, :n]).loss)
    assert torch.all(batch.reconstruction[1, 37:] == 0) and torch.all(batch.last_hidden_state[2, 5:] == 0)


def test_v5_mixed_length_batch_equals_each_protein_alone():
    model = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(**V5_TINY)).eval()
    x, mask = mixed_batch()
    noise = torch.rand(len(LENGTHS), 12)
    batch = model(x, mask, noise=noise)
    encoded = model.mae(x, mask)
    assert encoded.last_hidden_state.shape == (4, 13, 16)
    assert encoded.attention_mask.sum(1).tolist() == [1 + math.ceil(n / 8) for n in LENGTHS]
    for i, n in enumerate(LENGTHS):
        alone = model(x[i:i + 1, :n], noise=noise[i:i + 1])
        assert torch.equal(alone.mask[0], batch.mask[i])
        assert torch.allclose(alone.reconstruction[0], batch.reconstruction[i], atol=1e-5)
        assert torch.allclose(alone.target[0], batch.target[i], atol=1e-6)
        assert torch.allclose(model.mae(x[i:i + 1, :n]).last_hidden_state[0], encoded.last_hidden_state[i], atol=1e-5)
    n_real = torch.tensor([math.ceil(n / 8) for n in LENGTHS])
    n_keep = torch.clamp((n_real * 0.25).floor().long(), min=1)
    assert batch.mask.sum(1).tolist() == (n_real - n_keep).tolist()


@pytest.mark.parametrize("encoder", ["v5", "v2"])
def test_pair_model_mixed_lengths_and_symmetry(encoder):
    if encoder == "v5":
        base = MAEEncoder(ProteinMAEV5Config(**V5_TINY))
        kwargs = {}
    else:
        base = TransformerMAE(ProteinMAEV2Config(**V2_TINY))
        kwargs = dict(adapter_dim=20, adapter_num_patches=12, adapter_patch_size=8)
    model = ProteinInteractionForSequenceClassification.from_encoder(
        base, cross_attention_heads=2, cross_attention_dim_feedforward=32, **kwargs).eval()
    held, source = model.get_encoder().state_dict(), base.state_dict()
    left_behind = {k for k in source if k.startswith("decoder.") or (encoder == "v2" and k == "mask_token")}
    assert set(held) == set(source) - left_behind and (encoder == "v5" or "mask_token" in left_behind)
    assert all(torch.equal(held[k], source[k]) for k in held)
    xa, ma = mixed_batch(seed=1)
    xb, mb = mixed_batch([20, 96, 50, 3], seed=2)
    out = model(xa, xb, ma, mb)
    assert out.logits.shape == (4, 2) and out.interaction.shape == (4, model.config.hidden_size)
    swapped = model(xb, xa, mb, ma)
    assert torch.allclose(out.logits, swapped.logits, atol=1e-5)
    for i, (na, nb) in enumerate(zip(LENGTHS, [20, 96, 50, 3])):
        alone = model(xa[i:i + 1, :na], xb[i:i + 1, :nb])
        assert torch.allclose(alone.logits[0], out.logits[i], atol=1e-5)


# -- losses --------------------------------------------------------------------------------------------------

def test_v2_loss_is_scaled_huber_on_masked_residues():
    model = ProteinMAEV2ForPreTraining(ProteinMAEV2Config(**V2_TINY))
    x, mask = mixed_batch()
    out = model(x, mask, noise=torch.rand(x.shape[:2]))
    m = out.mask
    expected = F.huber_loss(out.reconstruction[m] * 5, x[m] * 5, delta=0.5)
    assert torch.allclose(out.loss, expected, rtol=1e-5)
    out.loss.backward()
    assert model.mae.mask_token.grad is not None and model.mae.mask_token.grad.abs().sum() > 0


def test_v5_loss_is_mse_on_masked_patch_means():
    model = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(**V5_TINY))
    x, mask = mixed_batch()
    out = model(x, mask, noise=torch.rand(4, 12))
    # Target of protein 1 (37 residues), patch 4 = residues 32..36.
    assert torch.allclose(out.target[1, 4], x[1, 32:37].mean(0), atol=1e-6)
    assert torch.all(out.target[1, 5:] == 0)
    m = out.mask
    assert torch.allclose(out.loss, F.mse_loss(out.reconstruction[m], out.target[m]), rtol=1e-5)


def test_mask_is_reproducible_from_noise_and_random_without():
    model = ProteinMAEV2ForPreTraining(ProteinMAEV2Config(**V2_TINY))
    x, mask = mixed_batch()
    noise = torch.rand(x.shape[:2])
    assert torch.equal(model(x, mask, noise=noise).mask, model(x, mask, noise=noise).mask)
    assert not torch.equal(model(x, mask).mask, model(x, mask).mask)
    model.eval()   # eval mode: masks from config.eval_mask_seed, the same on every call
    assert torch.equal(model(x, mask).mask, model(x, mask).mask)
    v5 = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(**V5_TINY)).eval()
    assert torch.equal(v5(x, mask).mask, v5(x, mask).mask) and v5(x, mask).loss == v5(x, mask).loss


# -- save / load ------------------------------------------------------------------------------------------------

def test_round_trips_through_auto_classes(tmp_path):
    x, mask = mixed_batch()
    v5 = ProteinMAEV5ForPreTraining(ProteinMAEV5Config(**V5_TINY)).eval()
    v5.save_pretrained(tmp_path / "v5")
    assert (tmp_path / "v5" / "model.safetensors").exists()
    noise = torch.rand(4, 12)
    assert torch.allclose(AutoModelForPreTraining.from_pretrained(tmp_path / "v5")(x, mask, noise=noise).loss,
                          v5(x, mask, noise=noise).loss)
    encoder = AutoModel.from_pretrained(tmp_path / "v5")
    assert type(encoder) is MAEEncoder
    assert torch.allclose(encoder(x, mask).last_hidden_state, v5.mae(x, mask).last_hidden_state)

    v2 = ProteinMAEV2ForPreTraining(ProteinMAEV2Config(**V2_TINY)).eval()
    v2.save_pretrained(tmp_path / "v2")
    base = AutoModel.from_pretrained(tmp_path / "v2")
    assert type(base) is TransformerMAE
    assert torch.allclose(base.encode(x, mask).compressed, v2.mae.encode(x, mask).compressed)

    pair = ProteinInteractionForSequenceClassification.from_encoder(
        v2, adapter_dim=20, adapter_num_patches=12, adapter_patch_size=8, cross_attention_heads=2, cross_attention_dim_feedforward=32).eval()
    pair.save_pretrained(tmp_path / "pair")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pair")
    assert loaded.config.uses_adapter and loaded.config.encoder_config.embed_dim == 16
    assert torch.allclose(loaded(x, x, mask, mask).logits, pair(x, x, mask, mask).logits)


# -- bad input ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda x, m: (x[..., :-1], m), "size 24 in dimension 2"),
    (lambda x, m: (torch.randn(1, 97, DIM), None), "more than `max_length`=96"),
    (lambda x, m: (x.index_put((torch.tensor([0]), torch.tensor([3]), torch.tensor([0])), torch.tensor(float("nan"))), m),
     "NaN"),
    (lambda x, m: (x, m.index_fill(0, torch.tensor([2]), 0)), "no residue"),
    (lambda x, m: (x, m.flip(1)), "right-padded"),
    (lambda x, m: (x, m[:, :10]), "attention_mask"),
])
def test_bad_inputs_raise_clear_errors(make, message):
    x, mask = mixed_batch()
    args = make(x, mask)
    for model in (TransformerMAE(ProteinMAEV2Config(**V2_TINY)), MAEEncoder(ProteinMAEV5Config(**V5_TINY))):
        with pytest.raises(ValueError, match=message):
            model(*args)


def test_bad_configs_and_arguments():
    with pytest.raises(ValueError, match="embed_dim"):
        ProteinMAEV2Config(embed_dim=30, nhead=4)
    with pytest.raises(ValueError, match="mask_ratio"):
        ProteinMAEV5Config(mask_ratio=1.0)
    with pytest.raises(ValueError, match="num_patches"):
        ProteinMAEV5Config(max_length=10, num_patches=6)
    with pytest.raises(ValueError, match="encoder_config"):
        ProteinInteractionConfig(encoder_config={"model_type": "bert"})
    with pytest.raises(ValueError, match="must cover every residue"):
        ProteinInteractionConfig(encoder_config=ProteinMAEV2Config(max_length=2000))
    with pytest.raises(ValueError, match="do not fit 4 patches"):
        pool_patches(torch.randn(1, 10, 3), torch.ones(1, 10, dtype=torch.bool), patch_size=2, num_patches=4)
    with pytest.raises(ValueError, match="mask_ratio"):
        ProteinMAEV5ForPreTraining(ProteinMAEV5Config(**V5_TINY))(torch.randn(1, 10, DIM), mask_ratio=0.0)
    with pytest.raises(ValueError, match="labels"):
        model = ProteinInteractionForSequenceClassification.from_encoder(
            MAEEncoder(ProteinMAEV5Config(**V5_TINY)), cross_attention_heads=2, cross_attention_dim_feedforward=32)
        x = torch.randn(2, 10, DIM)
        model(x, x, labels=torch.tensor([[1, 0]]))


def test_seed_names_are_importable_from_hf_mae():
    for name in ("TransformerMAE", "MAEEncoder", "PatchEmbedding", "V2ToV5Adapter"):
        assert getattr(hf_mae, name) is not None
    patch = PatchEmbedding(960, 768)
    assert patch.proj.in_features == 960 and patch.proj.out_features == 768 and patch.patch_size == 32


def test_docstring_examples_run():
    import doctest

    from hf_mae.models import (configuration_protein_mae, modeling_protein_interaction, modeling_protein_mae_v2,
                               modeling_protein_mae_v5, pooling)
    from hf_mae.processing import protein
    from hf_mae.training import finetune_protein_interaction

    for module in (modeling_protein_mae_v2, modeling_protein_mae_v5, modeling_protein_interaction, pooling,
                   configuration_protein_mae, protein, finetune_protein_interaction):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_eager_and_sdpa_attention_agree_with_padding():
    x, mask = mixed_batch()
    pair = ProteinInteractionForSequenceClassification.from_encoder(
        MAEEncoder(ProteinMAEV5Config(**V5_TINY)), cross_attention_heads=2, cross_attention_dim_feedforward=32).eval()
    v2 = TransformerMAE(ProteinMAEV2Config(**V2_TINY)).eval()
    results = {}
    for implementation in ("eager", "sdpa"):
        pair.set_attn_implementation(implementation)
        v2.set_attn_implementation(implementation)
        results[implementation] = (pair(x, x.flip(0), mask, mask.flip(0)).logits, v2.encode(x, mask).last_hidden_state)
    for eager, sdpa in zip(results["eager"], results["sdpa"]):
        assert torch.allclose(eager, sdpa, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_joint_cross_attention_equals_two_separate_cross_attentions(layers):
    """The pair model runs A -> B and B -> A as one masked attention over [A, B]; each side must get what a
    cross-attention of its tokens over the other protein's alone gives."""
    from hf_mae.models import ProteinInteractionModel, ProteinMAEV5Config
    from hf_mae.models.layers import padding_to_attention_mask

    encoder = ProteinMAEV5Config(input_dim=12, max_length=40, num_patches=5, embed_dim=16, num_layers=1, nhead=2,
                                 dim_feedforward=32)
    model = ProteinInteractionModel(ProteinInteractionConfig(
        encoder_config=encoder, cross_attention_layers=layers, cross_attention_heads=2,
        cross_attention_dim_feedforward=32)).eval()
    mask_a, mask_b = torch.ones(2, 30, dtype=torch.long), torch.ones(2, 17, dtype=torch.long)
    mask_a[1, 9:] = 0
    mask_b[0, 5:] = 0
    with torch.no_grad():
        tokens_a, valid_a = model.tokens(torch.randn(2, 30, 12), mask_a)
        tokens_b, valid_b = model.tokens(torch.randn(2, 17, 12), mask_b)
        joint = model.cross_attend(tokens_a, valid_a, tokens_b, valid_b).last_hidden_state

        def one_side(query, context, context_valid):
            mask = padding_to_attention_mask(~context_valid, query.dtype)
            for layer in model.cross_attention:
                query, _ = layer(query, context, mask)
            return model.norm(query)

        separate = torch.cat([one_side(tokens_a, tokens_b, valid_b), one_side(tokens_b, tokens_a, valid_a)], dim=1)
    # fp32, the same products summed over keys of other matmul shapes (masked keys add exact zeros): rounding,
    # relative to the LayerNorm outputs' magnitude (a few units)
    torch.testing.assert_close(joint, separate, rtol=1e-5, atol=1e-5 * float(separate.abs().max()))
