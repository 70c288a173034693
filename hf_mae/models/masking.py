"""Masking for every masked autoencoder in hf_mae: one implementation, batched, no host syncs.

The recipe is the MAE one (He et al. 2022): draw uniform noise per token, ``argsort`` it, keep the first
``n_keep`` tokens. Every sample gets exactly the same number of masked tokens, so the visible tokens pack
into a dense ``(B, n_keep, D)`` tensor with no padding. Passing ``noise`` (or a ``torch.Generator``) makes
the mask reproducible; the same noise always gives the same mask.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validation import check_float


def draw_noise(batch_size: int, n_tokens: int, *, device=None, generator: torch.Generator | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform noise ``(B, N)`` that decides which tokens are masked; ``noise`` is validated and returned as is."""
    if noise is not None:
        if noise.shape != (batch_size, n_tokens):
            raise ValueError(f"`noise` must have shape {(batch_size, n_tokens)}, got {tuple(noise.shape)}.")
        return noise.to(device) if device is not None else noise
    if generator is not None:
        # Draw on the generator's device, then move: a CPU generator reproduces the same mask everywhere.
        return torch.rand(batch_size, n_tokens, generator=generator, device=generator.device).to(device)
    return torch.rand(batch_size, n_tokens, device=device)


def split_by_noise(noise: torch.Tensor, n_keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle tokens by noise: ``(ids_keep, mask, ids_restore)``.

    noise: (B, N). ids_keep: (B, n_keep) kept token indices in ascending order (ascending keeps the
    packed sequence in spectral/spatial order, which makes outputs independent of the shuffle).
    mask: (B, N) bool, True = masked. ids_restore: (B, N), un-shuffles ``cat([kept, masked])`` back to
    token order, for decoders that put mask tokens in place.
    """
    ids_shuffle = torch.argsort(noise, dim=1)                       # ascending: small noise is kept
    ids_keep = ids_shuffle[:, :n_keep].sort(dim=1).values           # (B, n_keep)
    # A token is masked when its noise rank is n_keep or more (a comparison, not an in-place scatter: the
    # function stays traceable by torch.jit.trace).
    mask = torch.argsort(ids_shuffle, dim=1) >= n_keep              # (B, N) True = masked
    # Order tokens as [kept ascending, masked ascending]; ids_restore inverts that order.
    ids_order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_order, dim=1)
    return ids_keep, mask, ids_restore


def make_block_mask(batch_size: int, seq_len: int, n_blocks: int, n_mask: int, *, device=None,
                    generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Block-wise mask over a 1D sequence: ``(B, L)`` bool, ``True`` = masked.

    The sequence is cut into ``n_blocks`` contiguous blocks of ``seq_len // n_blocks`` points and exactly
    ``n_mask`` blocks are hidden in every sample.

    Example:
        >>> m = make_block_mask(4, 128, n_blocks=8, n_mask=6, generator=torch.Generator().manual_seed(0))
        >>> m.shape, int(m[0].sum())
        (torch.Size([4, 128]), 96)
    """
    check_block_layout(seq_len, n_blocks)
    block_mask = make_token_mask(batch_size, n_blocks, n_mask, device=device, generator=generator, noise=noise)
    return block_mask.repeat_interleave(seq_len // n_blocks, dim=1)


def make_token_mask(batch_size: int, n_tokens: int, n_mask: int, *, device=None,
                    generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, N)`` bool mask with exactly ``n_mask`` True (masked) tokens per row."""
    if isinstance(n_mask, bool) or not isinstance(n_mask, int) or not 0 <= n_mask <= n_tokens:
        raise ValueError(f"`n_mask` must be an integer in [0, {n_tokens}], got {n_mask!r}.")
    noise = draw_noise(batch_size, n_tokens, device=device, generator=generator, noise=noise)
    return split_by_noise(noise, n_tokens - n_mask)[1]


def check_block_layout(seq_len: int, n_blocks: int) -> None:
    """Blocks must tile the sequence exactly: a ragged last block would be silently dropped otherwise."""
    if seq_len % n_blocks != 0:
        raise ValueError(
            f"`seq_len`={seq_len} must be divisible by `n_blocks`={n_blocks}: blocks are equal and contiguous. "
            f"Resample the spectra to a multiple of n_blocks (the spectra processor does this)."
        )


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Pick tokens along dim 1: tokens (B, N, D), ids (B, K) -> (B, K, D)."""
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def visible_block_ids(visible_mask: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn a caller's ``(B, L)`` visible mask (True = visible) into visible block indices.

    Returns ``ids_keep`` (B, K), K the largest visible-block count in the batch, and a ``(B, K)`` key-padding
    mask (True = padding) when samples see different numbers of blocks, else ``None``. Reading K back is a
    host sync: masks drawn by the model itself never come this way.
    """
    batch, length = visible_mask.shape
    blocks = visible_mask.view(batch, n_blocks, length // n_blocks)
    block_visible = blocks.all(dim=-1)                               # (B, N)
    if not torch.equal(block_visible, blocks.any(dim=-1)):
        raise ValueError(
            "`visible_mask` must be block-aligned: every block of seq_len / n_blocks points must be entirely "
            "visible or entirely masked (one block is one token)."
        )
    counts = block_visible.sum(dim=1)                                # (B,)
    n_keep = int(counts.max())
    ids_keep = torch.argsort((~block_visible).to(torch.int8), dim=1, stable=True)[:, :n_keep]
    if bool((counts == n_keep).all()):
        return ids_keep, None
    key_padding = torch.arange(n_keep, device=visible_mask.device)[None, :] >= counts[:, None]
    return ids_keep, key_padding


def n_keep_for(n_tokens, mask_ratio: float):
    """Tokens kept visible out of ``n_tokens`` at ``mask_ratio``: ``max(1, floor(n * (1 - ratio)))``, capped at n.

    Works on a Python int (the static number of visible slots) and on a (B,) tensor of per-sample counts, with
    the same float64 arithmetic so both agree exactly.
    """
    if isinstance(n_tokens, torch.Tensor):
        kept = torch.floor(n_tokens.to(torch.float64) * (1.0 - mask_ratio)).long().clamp_min(1)
        return torch.minimum(kept, n_tokens.long())
    return min(n_tokens, max(1, int(n_tokens * (1.0 - mask_ratio))))


def split_valid_by_noise(noise: torch.Tensor, valid: torch.Tensor, mask_ratio: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padding-aware masking: padded tokens are never masked and never kept.

    noise: (B, N) uniform; valid: (B, N) bool, True = a real token (e.g. a residue, not padding).
    Each sample keeps ``n_keep_for(n_valid, mask_ratio)`` of its own valid tokens (those with the smallest
    noise) and masks the rest of them. Padded tokens get infinite noise, so the choice among a sample's real
    tokens depends only on their noise: a protein gets the same mask alone as inside a padded batch.

    Returns ``ids_keep`` (B, K) with K = ``n_keep_for(N, mask_ratio)`` (static, no host sync): kept token ids
    in ascending order, then filler ids; ``keep_padding`` (B, K) True where a slot is filler (the sample keeps
    fewer than K tokens) and must be ignored; ``masked`` (B, N) bool, True = a real token that is hidden.

    Example:
        >>> valid = torch.tensor([[True] * 8, [True] * 4 + [False] * 4])
        >>> ids_keep, pad, masked = split_valid_by_noise(torch.rand(2, 8), valid, 0.5)
        >>> masked.sum(1).tolist(), pad.sum(1).tolist()
        ([4, 2], [0, 2])
    """
    if noise.shape != valid.shape:
        raise ValueError(f"`noise` {tuple(noise.shape)} and `valid` {tuple(valid.shape)} must have the same shape.")
    n_valid = valid.sum(dim=1)                                       # (B,)
    n_keep = n_keep_for(n_valid, mask_ratio)                         # (B,)
    ranks = torch.argsort(torch.argsort(noise.masked_fill(~valid, float("inf")), dim=1), dim=1)  # (B, N)
    keep = ranks < n_keep[:, None]                                   # subset of the valid tokens
    masked = valid & ~keep
    n_slots = n_keep_for(noise.shape[1], mask_ratio)
    ids_keep = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :n_slots]   # kept first, ascending
    keep_padding = torch.arange(n_slots, device=noise.device)[None, :] >= n_keep[:, None]
    return ids_keep, keep_padding, masked


def masked_reconstruction_loss(x_recon: torch.Tensor, x: torch.Tensor, masked: torch.Tensor,
                               loss_type: str = "mse", huber_delta: float = 1.0) -> torch.Tensor:
    """Reconstruction error on masked points only. x_recon, x: (B, L, ...); masked: bool, True = hidden, of
    the same shape or broadcastable to it (a per-token mask ``masked[..., None]`` covers each token's values).

    ``mse``/``huber``: mean over masked points; ``sse``: sum over masked points, mean over samples.
    Computed in float32 (also under bf16 autocast), with a multiply instead of boolean indexing so that
    nothing waits for the accelerator.
    """
    x_recon, x = x_recon.float(), x.float()
    if loss_type == "huber":
        err = F.huber_loss(x_recon, x, reduction="none", delta=huber_delta)
    else:
        err = F.mse_loss(x_recon, x, reduction="none")     # one fused kernel forward and backward
    weight = masked.to(err.dtype)
    weight = weight.reshape((1,) * (err.ndim - weight.ndim) + weight.shape)
    # A mask broadcast over some axes (per token): sum the errors over those axes first, then weigh the sums,
    # rather than expanding the mask to every value (each full-size pass costs as much as a small matmul).
    shared = tuple(d for d in range(err.ndim) if weight.shape[d] == 1 and err.shape[d] != 1)
    per_weight = 1
    if shared:
        err = err.sum(dim=shared, keepdim=True)
        per_weight = math.prod(x.shape[d] for d in shared)
    total = (err * weight).sum()
    if loss_type == "sse":
        return total / x.shape[0]
    return total / (weight.sum() * per_weight).clamp_min(1.0)


def eval_mask_generator(model: torch.nn.Module, *given) -> torch.Generator | None:
    """The generator of a pretraining model's masks: seeded from ``config.eval_mask_seed`` in eval mode,
    unless the caller fixed the mask (any of ``given`` is not None); None (the global stream) in training.

    Fixed masks make ``eval_loss`` comparable between checkpoints, and evaluating then consumes nothing of
    the training random stream, so a resumed run draws the same training masks.

    Example:
        >>> from hf_mae.models import ChemoMAEForPreTraining
        >>> model = ChemoMAEForPreTraining(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
        >>> eval_mask_generator(model.eval()).initial_seed(), eval_mask_generator(model.train())
        (0, None)
    """
    if model.training or any(value is not None for value in given):
        return None
    return torch.Generator().manual_seed(model.config.eval_mask_seed)


def check_mask_ratio(mask_ratio: float | None, default: float) -> float:
    """``mask_ratio`` (or ``default`` when None) as a float in [0, 1)."""
    mask_ratio = default if mask_ratio is None else mask_ratio
    check_float("mask_ratio", mask_ratio, minimum=0.0, maximum=1.0, maximum_exclusive=True)
    return float(mask_ratio)
