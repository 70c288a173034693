"""The transformer layer every hf_mae encoder and decoder is built from.

Pre-norm blocks (LayerNorm -> attention -> residual, LayerNorm -> MLP -> residual) as in ViT/MAE, with
attention dispatched through transformers' attention interface so ``attn_implementation="eager"`` or
``"sdpa"`` (and the kernels transformers adds later) work without changes here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .validation import value_checks_apply


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                            **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference attention. q/k/v: (B, heads, T, d); mask: additive (B, 1, 1|T, T). Returns (B, T, heads, d)."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling     # (B, h, T, T)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()    # (B, T, h, d)
    return out, probs


def output_flag(value: bool | None, default: bool) -> bool:
    """An ``output_hidden_states``/``output_attentions`` argument, or the config's value when it is None (as in
    transformers' models)."""
    return default if value is None else bool(value)


def padding_to_attention_mask(key_padding: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) bool with True = padding -> additive (B, 1, 1, T) mask, or None when nothing is padded.

    A CPU tensor is looked at: with no padding in it there is no mask, and attention runs its unmasked kernel
    (elsewhere, looking would cost a host-device sync; the all-zero mask is added instead).
    """
    if key_padding is None or (value_checks_apply(key_padding) and not bool(key_padding.any())):
        return None
    mask = torch.zeros(key_padding.shape, dtype=dtype, device=key_padding.device)
    mask = mask.masked_fill(key_padding, torch.finfo(dtype).min)
    return mask[:, None, None, :]


# On CPU, the backward of torch's SDPA kernel is slower than that of the eager path's two batched matmuls for
# short sequences, several times so in bf16; forward only, SDPA is the faster of the two. Which sequences count
# as short depends on the host kind (BENCHMARKS.md, "Attention kernel"): up to these key counts, where a
# backward follows, the "sdpa" implementation runs the eager kernel on CPU. Results agree to rounding. The
# eager path keeps the (T, S) probabilities for backward, which is why the limits are small.
CPU_EAGER_MAX_KEYS = {torch.float32: 64, torch.bfloat16: 256, torch.float16: 256}      # AVX512-BF16 (EPYC Zen 4)
CPU_EAGER_MAX_KEYS_AMX = {torch.bfloat16: 256, torch.float16: 256}                     # AMX (Xeon Sapphire Rapids)


def _cpu_has_amx() -> bool:
    """torch's own probe (private, so looked up: a torch without it is taken for a host without AMX)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


CPU_HAS_AMX = _cpu_has_amx()


def cpu_eager_max_keys(dtype: torch.dtype, backward: bool, *, amx: bool | None = None) -> int:
    """The longest key sequence for which the eager kernel beats SDPA on this CPU (0: never).

    On AMX hosts only a backward makes eager worth it; on the others (measured on AVX512-BF16 only) the limits
    hold forward-only too, since only training steps were measured there.

    Example:
        >>> cpu_eager_max_keys(torch.bfloat16, backward=True, amx=True)
        256
        >>> [cpu_eager_max_keys(torch.float32, backward=False, amx=amx) for amx in (True, False)]
        [0, 64]
    """
    on_amx = CPU_HAS_AMX if amx is None else amx
    if on_amx:
        return CPU_EAGER_MAX_KEYS_AMX.get(dtype, 0) if backward else 0
    return CPU_EAGER_MAX_KEYS.get(dtype, 0)


def attention_kernel(implementation: str, query: torch.Tensor, key: torch.Tensor) -> Callable:
    """The attention function for ``implementation`` (transformers' interface), or the eager kernel where it
    is faster: SDPA on CPU with at most ``cpu_eager_max_keys`` keys."""
    if implementation == "sdpa" and query.device.type == "cpu":
        backward = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad)
        if key.shape[2] <= cpu_eager_max_keys(query.dtype, backward):
            return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


class _MultiHeadAttention(nn.Module):
    """Head bookkeeping, the attention kernel dispatch and the output projection shared by both attentions."""

    def __init__(self, config, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim ** -0.5
        self.attention_dropout = dropout
        self.is_causal = False  # bidirectional: the SDPA path would default to causal otherwise
        self.proj = nn.Linear(hidden_size, hidden_size)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, output_attentions: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q: (B, h, T, d), k/v: (B, h, S, d) -> (B, T, D) and, with ``output_attentions``, the attention
        probabilities (B, h, T, S). The kernel is the one the config asks for (eager, sdpa ...); only the eager
        kernel materialises the probabilities, so asking for them selects it."""
        if output_attentions:
            attention = eager_attention_forward
        else:
            attention = attention_kernel(self.config._attn_implementation, query, key)
        out, weights = attention(self, query, key, value, attention_mask,
                                 dropout=self.attention_dropout if self.training else 0.0, scaling=self.scaling)
        out = self.proj(out.reshape(query.shape[0], query.shape[2], -1))     # (B, T, h, d) -> (B, T, D)
        return out, weights if output_attentions else None


class SelfAttention(_MultiHeadAttention):
    """Multi-head self-attention with one fused q/k/v projection (one large matmul instead of three).

    ``n_queries``: only the first ``n_queries`` tokens ask (every token still answers as key and value);
    returns (B, n_queries, D), exactly those rows of the full output, without computing the attention and output
    projection of the others.
    """

    def __init__(self, config, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__(config, hidden_size, num_heads, dropout)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                n_queries: int | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        # (B, T, 3D) -> 3 x (B, heads, T, d). Always through the qkv module (not its weight), so that adapters
        # wrapping it (LoRA) apply on every path.
        q, k, v = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if n_queries is not None:  # only the asking tokens' queries; every token answers
            q = q[:, :, :n_queries]                                                             # (B, h, Q, d)
        return self.attend(q, k, v, attention_mask, output_attentions)   # (B, T or Q, D), (B, h, T or Q, T)


class CrossAttention(_MultiHeadAttention):
    """Multi-head attention of ``hidden_states`` (queries) over ``context`` (keys and values).

    hidden_states: (B, T, D), context: (B, S, D), attention_mask: additive (B, 1, 1, S) or None -> (B, T, D).
    """

    def __init__(self, config, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__(config, hidden_size, num_heads, dropout)
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor,
                attention_mask: torch.Tensor | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        q = self.q(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, T, d)
        k, v = self.kv(context).view(batch, context.shape[1], 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.attend(q, k, v, attention_mask, output_attentions)   # (B, T, D), (B, h, T, S)


class MLP(nn.Module):
    """Position-wise feed-forward: D -> F -> D with GELU."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class TransformerLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block. Activation checkpointing wraps the whole block when enabled.

    ``n_queries``: update and return only the first ``n_queries`` tokens (B, n_queries, D), attending to all;
    a last layer whose other outputs nobody reads (a [CLS] readout) then skips their attention output,
    projection and MLP.
    """

    def __init__(self, config, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.0, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attn = SelfAttention(config, hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                n_queries: int | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the updated tokens and, with ``output_attentions``, the attention probabilities."""
        attended, weights = self.attn(self.norm1(hidden_states), attention_mask, n_queries=n_queries,
                                      output_attentions=output_attentions)
        if n_queries is not None:
            hidden_states = hidden_states[:, :n_queries]
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.norm2(hidden_states))), weights


class CrossAttentionLayer(GradientCheckpointingLayer):
    """Pre-norm block whose attention reads a separate context: tokens attend to ``context``, then an MLP.

    Only ``hidden_states`` are updated (with residuals); the context is read, never written. Pass
    ``context = cat([hidden_states, extra])`` to let tokens attend to each other and to extra vectors at once.
    """

    def __init__(self, config, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.0, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.norm_query = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.norm_context = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attn = CrossAttention(config, hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor,
                attention_mask: torch.Tensor | None = None, output_attentions: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the updated tokens and, with ``output_attentions``, the attention probabilities (B, h, T, S)."""
        attended, weights = self.attn(self.norm_query(hidden_states), self.norm_context(context), attention_mask,
                                      output_attentions=output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.norm2(hidden_states))), weights


class TransformerStack(nn.Module):
    """``num_layers`` blocks and a final LayerNorm: (B, T, D) -> (B, T, D)."""

    def __init__(self, config, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.0, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(config, hidden_size, num_heads, intermediate_size, dropout, layer_norm_eps)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                n_outputs: int | None = None) -> torch.Tensor:
        """``n_outputs``: return only the first ``n_outputs`` tokens (B, n_outputs, D), e.g. 1 for a [CLS]
        readout; the last layer then computes only those (the same values, about 1/num_layers less work)."""
        return self.run(hidden_states, attention_mask, n_outputs=n_outputs).last_hidden_state

    def run(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
            n_outputs: int | None = None, output_hidden_states: bool = False,
            output_attentions: bool = False) -> BaseModelOutput:
        """``forward`` with transformers' optional outputs, as a ``BaseModelOutput``.

        ``hidden_states``: the input of every layer and the output of the last one (before the final
        LayerNorm, as in ViT), num_layers + 1 tensors (B, T, D). ``attentions``: each layer's probabilities
        (B, heads, T, T). When either is asked for, every row of the last layer is computed (``n_outputs`` still
        cuts ``last_hidden_state``), so that the last hidden state is complete.

        Example:
            >>> from transformers import PreTrainedConfig
            >>> stack = TransformerStack(PreTrainedConfig(), hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16)
            >>> out = stack.run(torch.randn(1, 5, 8), n_outputs=1, output_hidden_states=True, output_attentions=True)
            >>> out.last_hidden_state.shape, len(out.hidden_states), out.attentions[0].shape
            (torch.Size([1, 1, 8]), 3, torch.Size([1, 2, 5, 5]))
        """
        every_row = output_hidden_states or output_attentions
        all_hidden = [] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            n_queries = n_outputs if index == last and not every_row else None
            hidden_states, weights = layer(hidden_states, attention_mask, n_queries=n_queries,
                                           output_attentions=output_attentions)
            if all_attentions is not None:
                all_attentions.append(weights)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
        if every_row and n_outputs is not None:
            hidden_states = hidden_states[:, :n_outputs]
        return BaseModelOutput(last_hidden_state=self.norm(hidden_states),
                               hidden_states=None if all_hidden is None else tuple(all_hidden),
                               attentions=None if all_attentions is None else tuple(all_attentions))


def sinusoidal_positions(n_positions: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed sin/cos position table (1, n_positions, dim) from "Attention is all you need".

    Computed on the fly (it is tiny) rather than stored as a buffer: buffers built in ``__init__`` are
    garbage after ``from_pretrained`` builds the model on the meta device.
    """
    position = torch.arange(n_positions, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table[None].to(dtype)


def sinusoidal_positions_2d(height: int, width: int, dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed 2D sin/cos table (1, height * width, dim), row-major: half the channels encode the row, half the
    column (the MAE recipe)."""
    rows = sinusoidal_positions(height, dim // 2, device=device)[0]                 # (H, dim/2)
    cols = sinusoidal_positions(width, dim - dim // 2, device=device)[0]            # (W, dim/2)
    table = torch.cat([rows[:, None].expand(-1, width, -1), cols[None].expand(height, -1, -1)], dim=-1)
    return table.reshape(1, height * width, dim).to(dtype)
