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
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


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


def padding_to_attention_mask(key_padding: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) bool with True = padding -> additive (B, 1, 1, T) mask, or None when nothing is padded."""
    if key_padding is None:
        return None
    mask = torch.zeros(key_padding.shape, dtype=dtype, device=key_padding.device)
    mask = mask.masked_fill(key_padding, torch.finfo(dtype).min)
    return mask[:, None, None, :]


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
               attention_mask: torch.Tensor | None) -> torch.Tensor:
        """q: (B, h, T, d), k/v: (B, h, S, d) -> (B, T, D), with the kernel the config asks for (eager, sdpa ...)."""
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, _ = attention(self, query, key, value, attention_mask,
                           dropout=self.attention_dropout if self.training else 0.0, scaling=self.scaling)
        return self.proj(out.reshape(query.shape[0], query.shape[2], -1))   # (B, T, h, d) -> (B, T, D)


class SelfAttention(_MultiHeadAttention):
    """Multi-head self-attention with one fused q/k/v projection (one large matmul instead of three)."""

    def __init__(self, config, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__(config, hidden_size, num_heads, dropout)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        # (B, T, 3D) -> 3 x (B, heads, T, d)
        q, k, v = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.attend(q, k, v, attention_mask)                  # (B, T, D)


class CrossAttention(_MultiHeadAttention):
    """Multi-head attention of ``hidden_states`` (queries) over ``context`` (keys and values).

    hidden_states: (B, T, D), context: (B, S, D), attention_mask: additive (B, 1, 1, S) or None -> (B, T, D).
    """

    def __init__(self, config, hidden_size: int, num_heads: int, dropout: float = 0.0):
        super().__init__(config, hidden_size, num_heads, dropout)
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        q = self.q(hidden_states).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, T, d)
        k, v = self.kv(context).view(batch, context.shape[1], 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.attend(q, k, v, attention_mask)                  # (B, T, D)


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
    """Pre-norm transformer block. Activation checkpointing wraps the whole block when enabled."""

    def __init__(self, config, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float = 0.0, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attn = SelfAttention(config, hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.attn(self.norm1(hidden_states), attention_mask))
        return hidden_states + self.dropout(self.mlp(self.norm2(hidden_states)))


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
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attended = self.attn(self.norm_query(hidden_states), self.norm_context(context), attention_mask)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.norm2(hidden_states)))


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

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return self.norm(hidden_states)


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
