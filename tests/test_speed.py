"""What the fast paths change and what they must not: which attention kernel runs, and that it agrees."""

import pytest
import torch
from transformers import PreTrainedConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from hf_mae.models.layers import CPU_EAGER_MAX_KEYS, SelfAttention, attention_kernel, eager_attention_forward


def _qk(length, dtype=torch.float32):
    q = torch.zeros(2, 2, length, 8, dtype=dtype)
    return q, q


def test_sdpa_on_cpu_runs_the_eager_kernel_for_short_sequences_only():
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    for dtype, limit in CPU_EAGER_MAX_KEYS.items():
        assert attention_kernel("sdpa", *_qk(limit, dtype)) is eager_attention_forward
        assert attention_kernel("sdpa", *_qk(limit + 1, dtype)) is sdpa
    assert attention_kernel("eager", *_qk(1000)) is eager_attention_forward
    assert attention_kernel("sdpa", *_qk(8, torch.float64)) is sdpa          # no measured limit: leave SDPA alone


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("length", [17, CPU_EAGER_MAX_KEYS[torch.float32] + 13])
def test_self_attention_agrees_between_eager_and_sdpa_on_both_sides_of_the_limit(length):
    config = PreTrainedConfig()
    module = SelfAttention(config, hidden_size=32, num_heads=4)
    x = torch.randn(3, length, 32, requires_grad=True)
    outputs = []
    for implementation in ("eager", "sdpa"):
        config._attn_implementation = implementation
        out = module(x)
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        outputs.append((out, grad))
    (out_e, grad_e), (out_s, grad_s) = outputs
    assert torch.allclose(out_e, out_s, atol=1e-5) and torch.allclose(grad_e, grad_s, atol=1e-4)
