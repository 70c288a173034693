"""What the fast paths change and what they must not: which attention kernel runs, and that it agrees."""

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from hf_mae.models import layers
from hf_mae.models.layers import (CPU_EAGER_MAX_KEYS, CPU_EAGER_MAX_KEYS_AMX, SelfAttention, attention_kernel,
                                  eager_attention_forward, padding_to_attention_mask)


def _qk(length, dtype=torch.float32, requires_grad=False):
    q = torch.zeros(2, 2, length, 8, dtype=dtype, requires_grad=requires_grad)
    return q, q


@pytest.mark.parametrize("amx", [False, True])
def test_sdpa_on_cpu_runs_the_eager_kernel_for_short_sequences_only_where_it_is_faster(monkeypatch, amx):
    """Per host kind: without AMX, the measured limits for every pass; with AMX, eager only where a backward
    follows, and only in the dtypes whose SDPA backward is slow there."""
    monkeypatch.setattr(layers, "CPU_HAS_AMX", amx)
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    limits = CPU_EAGER_MAX_KEYS_AMX if amx else CPU_EAGER_MAX_KEYS
    for dtype, limit in limits.items():
        assert attention_kernel("sdpa", *_qk(limit, dtype, requires_grad=True)) is eager_attention_forward
        assert attention_kernel("sdpa", *_qk(limit + 1, dtype, requires_grad=True)) is sdpa
        forward_only = attention_kernel("sdpa", *_qk(limit, dtype))
        assert forward_only is (sdpa if amx else eager_attention_forward)
        with torch.no_grad():   # parameters that require grad, but nothing is recorded: no backward follows
            assert (attention_kernel("sdpa", *_qk(limit, dtype, requires_grad=True))
                    is (sdpa if amx else eager_attention_forward))
    if amx:   # fp32 SDPA is the faster one there, backward included
        assert attention_kernel("sdpa", *_qk(8, torch.float32, requires_grad=True)) is sdpa
    assert attention_kernel("eager", *_qk(1000)) is eager_attention_forward
    assert attention_kernel("sdpa", *_qk(8, torch.float64, requires_grad=True)) is sdpa   # no measured limit


def test_the_host_kind_of_the_attention_limits_is_this_cpus():
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():    # Linux: the kernel's flags say whether AMX tiles are there
        assert layers.CPU_HAS_AMX is (" amx_tile" in cpuinfo.read_text())
    assert layers.cpu_eager_max_keys(torch.bfloat16, True, amx=False) == CPU_EAGER_MAX_KEYS[torch.bfloat16]
    assert layers.cpu_eager_max_keys(torch.bfloat16, False, amx=True) == 0


def test_no_padding_on_cpu_gives_no_mask_and_the_same_attention_as_an_all_zero_mask():
    padding = torch.zeros(3, 7, dtype=torch.bool)
    assert padding_to_attention_mask(padding, torch.float32) is None
    assert padding_to_attention_mask(None, torch.float32) is None
    padding[1, 5:] = True
    mask = padding_to_attention_mask(padding, torch.float32)
    assert mask.shape == (3, 1, 1, 7)
    assert torch.equal(mask[1, 0, 0, 5:], torch.full((2,), torch.finfo(torch.float32).min))
    assert not mask[[0, 2]].any() and not mask[1, 0, 0, :5].any()
    module = SelfAttention(PreTrainedConfig(), hidden_size=16, num_heads=2).eval()
    x = torch.randn(3, 7, 16)
    with torch.inference_mode():
        unmasked, _ = module(x)
        zero_masked, _ = module(x, torch.zeros(3, 1, 1, 7))
    assert torch.allclose(unmasked, zero_masked, rtol=0, atol=16 * torch.finfo(torch.float32).eps)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("amx", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_only_attention_agrees_with_the_eager_kernel_whichever_kernel_runs(monkeypatch, amx, dtype):
    """Encoding (no backward) may take another kernel than training on the same input: the outputs agree to
    the dtype's rounding, with and without padding."""
    monkeypatch.setattr(layers, "CPU_HAS_AMX", amx)
    config = PreTrainedConfig()
    module = SelfAttention(config, hidden_size=32, num_heads=4).to(dtype).eval()
    x = torch.randn(3, 17, 32, dtype=dtype)
    padding = torch.zeros(3, 17, dtype=torch.bool)
    padding[2, 11:] = True
    outputs = []
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        with torch.inference_mode():
            outputs.append(module(x, padding_to_attention_mask(padding, dtype))[0].float())
    eager, sdpa = outputs
    scale = eager.abs().max().item()
    assert torch.allclose(eager, sdpa, rtol=0, atol=8 * torch.finfo(dtype).eps * scale)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("length", [17, CPU_EAGER_MAX_KEYS[torch.float32] + 13])
def test_self_attention_agrees_between_eager_and_sdpa_on_both_sides_of_the_limit(length):
    config = PreTrainedConfig()
    module = SelfAttention(config, hidden_size=32, num_heads=4)
    x = torch.randn(3, length, 32, requires_grad=True)
    outputs = []
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        out, _ = module(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        outputs.append((out, grad))
    (out_e, grad_e), (out_s, grad_s) = outputs
    assert torch.allclose(out_e, out_s, atol=1e-5) and torch.allclose(grad_e, grad_s, atol=1e-4)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("checkpointing", [False, True])
def test_cls_readout_computes_only_cls_in_the_last_layer_with_the_same_values_and_gradients(checkpointing):
    from hf_mae import ChemoMAEForPreTraining

    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(seq_len=64, d_model=32, nhead=2, num_layers=2, dim_feedforward=64, latent_dim=8,
                                   n_blocks=8, n_mask=4, dropout=0.0)
    if checkpointing:
        model.activation_checkpointing_enable()
    encoder = model.mae.encoder
    x, noise = torch.randn(5, 64), torch.rand(5, 8)

    def full_stack_readout():       # every token through every layer, then row 0
        tokens = encoder.patch_embed(x.view(5, 8, 8)) + encoder.pos_embed
        hidden = torch.cat([encoder.cls_token.expand(5, -1, -1), tokens], dim=1)
        return torch.nn.functional.normalize(encoder.to_latent(encoder.transformer(hidden)[:, 0]), dim=-1)

    weights = torch.randn(5, 8)

    def grads(value):           # z is unit-norm: a loss that is not a function of |z| alone
        model.zero_grad()
        (value * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    z_fast = encoder(x)
    z_full = full_stack_readout()
    assert torch.allclose(z_fast, z_full, atol=1e-6)
    fast, full = grads(encoder(x)), grads(full_stack_readout())
    assert fast.keys() == full.keys()
    # The two paths sum the same products in different orders (different matmul shapes pick different
    # kernels, e.g. AMX tiles on Intel), so each gradient agrees to fp32 rounding of its largest entries:
    # a tolerance scaled by the tensor's magnitude, not an absolute one (the entries here reach ~60).
    eps = torch.finfo(torch.float32).eps
    for name in fast:
        scale = full[name].abs().max().item()
        assert torch.allclose(fast[name], full[name], rtol=64 * eps, atol=256 * eps * scale), name
    # the masked path (ids_keep) and a caller's ragged visible mask (padding) also go through the CLS readout
    visible = torch.ones(2, 64, dtype=torch.bool)
    visible[0, :24] = False
    z_ragged = encoder(x[:2], visible)
    z_alone = encoder(x[:1], visible[:1])
    assert torch.allclose(z_ragged[:1], z_alone, atol=1e-6)
    assert model(x, noise=noise).loss.isfinite()


def _pool_reference(values, valid, patch_size, num_patches):
    """The element-wise definition: zero the padding, pad to P x S positions, sum each patch, divide."""
    batch, length, channels = values.shape
    weight = valid.to(values.dtype)[..., None]
    padded = torch.nn.functional.pad(values * weight, (0, 0, 0, patch_size * num_patches - length))
    counts = torch.nn.functional.pad(weight, (0, 0, 0, patch_size * num_patches - length))
    counts = counts.view(batch, num_patches, patch_size).sum(2)
    sums = padded.view(batch, num_patches, patch_size, channels).sum(2)
    return sums / counts.clamp_min(1.0)[..., None], counts > 0


@pytest.mark.parametrize("patch_size", [4, 1])          # 1: one residue per patch takes a path of its own
@pytest.mark.parametrize("length", [40, 37, 24, 3])   # whole patches, a partial last one, empty patches, one patch
def test_patch_pooling_matches_its_elementwise_definition(length, patch_size):
    from hf_mae.models.pooling import pool_patches

    length = min(length, 10 * patch_size)
    values = torch.randn(3, length, 5)
    valid = torch.ones(3, length, dtype=torch.bool)
    valid[1, length // 2:] = False                     # a shorter protein (right padding)
    expected = _pool_reference(values, valid, patch_size, 10)
    got = pool_patches(values, valid, patch_size, 10)
    assert torch.allclose(got[0], expected[0], atol=1e-6) and torch.equal(got[1], expected[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):  # stays in full precision (it is also the loss target)
        assert pool_patches(values, valid, 4, 10)[0].dtype == torch.float32


@pytest.mark.parametrize("patch_size", [4, 1])
@pytest.mark.parametrize("length", [40, 37, 3])
def test_pooling_a_shared_table_equals_pooling_it_expanded_in_values_and_gradient(length, patch_size):
    """Position embeddings: one (1, L, C) table for every sample, pooled without B copies of it."""
    from hf_mae.models.pooling import pool_patches

    length = min(length, 10 * patch_size)
    table = torch.randn(1, length, 5, dtype=torch.float64, requires_grad=True)
    valid = torch.ones(3, length, dtype=torch.bool)
    valid[1, length // 2:] = False
    upstream = torch.randn(3, 10, 5, dtype=torch.float64)
    shared, shared_valid = pool_patches(table, valid, patch_size, 10)
    (grad_shared,) = torch.autograd.grad((shared * upstream).sum(), table)
    expanded, expanded_valid = pool_patches(table.expand(3, -1, -1), valid, patch_size, 10)
    (grad_expanded,) = torch.autograd.grad((expanded * upstream).sum(), table)
    assert torch.equal(shared_valid, expanded_valid)
    assert torch.allclose(shared, expanded, rtol=0, atol=1e-12) and torch.allclose(grad_shared, grad_expanded, rtol=0, atol=1e-12)


def test_finiteness_check_is_exact_also_when_the_sum_overflows():
    from hf_mae.models.validation import check_tensor

    check_tensor("x", torch.full((4,), 3e38), ndim=1)          # finite values whose sum overflows to inf
    for bad in (float("nan"), float("inf")):
        x = torch.zeros(1000)
        x[123] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            check_tensor("x", x, ndim=1)


def test_v5_pools_its_input_once_and_uses_the_pooled_patches_as_its_target(monkeypatch):
    """V5 pretraining reads the pooled residue embeddings of its patch embedding as the loss target instead of
    pooling the (B, 1502, 960) input a second time: the target equals an independent pooling of the input."""
    from hf_mae.models import ProteinMAEV5Config, ProteinMAEV5ForPreTraining, modeling_protein_mae_v5

    config = ProteinMAEV5Config(input_dim=12, max_length=37, num_patches=10, embed_dim=16, num_layers=1, nhead=2,
                                dim_feedforward=32, decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2,
                                decoder_dim_feedforward=32)
    model = ProteinMAEV5ForPreTraining(config).eval()
    values, mask = torch.randn(2, 37, 12), torch.ones(2, 37, dtype=torch.long)
    mask[1, 30:] = 0
    calls = []
    pool = modeling_protein_mae_v5.pool_patches
    monkeypatch.setattr(modeling_protein_mae_v5, "pool_patches", lambda v, *a: calls.append(v) or pool(v, *a))
    out = model(values, mask)
    assert sum(v is values for v in calls) == 1
    expected = _pool_reference(values, mask.bool(), config.patch_size, config.num_patches)[0]
    assert torch.allclose(out.target, expected, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["mse", "sse", "huber"])
def test_a_per_token_mask_gives_the_loss_and_gradient_of_the_mask_expanded_to_every_value(loss_type):
    """``masked[..., None]`` (broadcast over each token's values) is summed per token instead of expanded."""
    from hf_mae.models.masking import masked_reconstruction_loss

    torch.manual_seed(0)
    x = torch.randn(3, 7, 5)                         # the loss is computed in float32
    recon = torch.randn(3, 7, 5, requires_grad=True)
    masked = torch.rand(3, 7) < 0.6
    per_token = masked_reconstruction_loss(recon, x, masked[..., None], loss_type, 0.5)
    (grad_token,) = torch.autograd.grad(per_token, recon)
    expanded = masked_reconstruction_loss(recon, x, masked[..., None].expand_as(x), loss_type, 0.5)
    (grad_expanded,) = torch.autograd.grad(expanded, recon)
    # the reference: the definition, with boolean indexing
    err = (torch.nn.functional.huber_loss(recon, x, reduction="none", delta=0.5) if loss_type == "huber"
           else (recon - x).square())[masked]
    reference = err.sum() / 3 if loss_type == "sse" else err.mean()
    eps = torch.finfo(torch.float32).eps
    assert abs(per_token.item() - reference.item()) <= 64 * eps * abs(reference.item())
    assert abs(expanded.item() - reference.item()) <= 64 * eps * abs(reference.item())
    assert torch.allclose(grad_token, grad_expanded, rtol=64 * eps, atol=0)


def test_v5_pretraining_embeds_only_the_visible_patches_with_the_values_of_embedding_all_then_gathering():
    """The projection runs on the visible patches only; gathering after embedding every patch gives the same
    tokens, so the encoder states agree to fp32 rounding."""
    from hf_mae.models import ProteinMAEV5Config, ProteinMAEV5Model
    from hf_mae.models.layers import padding_to_attention_mask
    from hf_mae.models.masking import gather_tokens

    torch.manual_seed(0)
    config = ProteinMAEV5Config(input_dim=12, max_length=37, num_patches=10, embed_dim=16, num_layers=1, nhead=2,
                                dim_feedforward=32, dropout=0.0)
    model = ProteinMAEV5Model(config).eval()
    values, mask = torch.randn(2, 37, 12), torch.ones(2, 37, dtype=torch.long)
    mask[1, 20:] = 0
    out = model(values, mask, mask_ratio=0.5, noise=torch.rand(2, 10))
    tokens, _, _ = model.patch_embed(values, mask.bool())                              # every patch embedded
    hidden = torch.cat([model.cls_token.expand(2, -1, -1), gather_tokens(tokens, out.ids_keep)], dim=1)
    valid = out.attention_mask
    expected = model.encoder(hidden, padding_to_attention_mask(~valid, hidden.dtype)) * valid[..., None]
    scale = expected.abs().max().item()
    assert torch.allclose(out.last_hidden_state, expected, rtol=0, atol=64 * torch.finfo(torch.float32).eps * scale)


@pytest.mark.parametrize("max_length, num_patches", [(37, 10), (10, 10)])   # 4 residues per patch; one
def test_v5_finds_nan_and_inf_through_its_pooled_patches_and_names_them_as_before(monkeypatch, max_length, num_patches):
    """V5 checks finiteness on the pooled patches instead of reading its full input once more; a NaN or inf
    anywhere, padding included, still raises the input check's error."""
    from hf_mae.models import ProteinMAEV5Config, ProteinMAEV5ForPreTraining, validation

    config = ProteinMAEV5Config(input_dim=12, max_length=max_length, num_patches=num_patches, embed_dim=16,
                                num_layers=1, nhead=2, dim_feedforward=32, decoder_embed_dim=16,
                                decoder_num_layers=1, decoder_nhead=2, decoder_dim_feedforward=32)
    model = ProteinMAEV5ForPreTraining(config)
    mask = torch.ones(2, max_length, dtype=torch.long)
    mask[1, max_length // 2:] = 0
    for position in (0, max_length - 1):                 # a residue of sample 1; a padding position of it
        for bad in (float("nan"), float("inf"), -float("inf")):
            values = torch.randn(2, max_length, 12)
            values[1, position, 3] = bad
            with pytest.raises(ValueError, match=r"`residue_embeddings` contains 1 NaN or infinite"):
                model(values, mask)
    read = []
    checker = validation._all_finite
    monkeypatch.setattr(validation, "_all_finite", lambda t: read.append(t) or checker(t))
    finite = torch.randn(2, max_length, 12)
    assert model(finite, mask).loss.isfinite()
    assert read and not any(t is finite for t in read)    # finite input: only the pooled patches are read
    if config.patch_size > 1:
        huge = torch.full((2, max_length, 12), 3e38)      # finite; patch sums overflow: the input is then read
        model(huge, mask)
        assert any(t is huge for t in read)
