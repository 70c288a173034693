"""Pooling over padded token sets, shared by the protein models: residues -> patches, tokens -> one vector.

A residue's patch is fixed by its position (residue i -> patch i // patch_size), so ``pool_patches`` is the
one place that mapping is written; V5's patch tokens, its loss target and the V2 -> V5 adapter all use it.

Example:
    >>> import torch
    >>> patches, valid = pool_patches(torch.ones(1, 5, 2), torch.ones(1, 5, dtype=torch.bool), 2, 4)
    >>> patches.shape, valid.tolist()
    (torch.Size([1, 4, 2]), [[True, True, True, False]])
"""

from __future__ import annotations

import torch

__all__ = ["pool_patches", "masked_mean", "with_cls"]


def pool_patches(values: torch.Tensor, valid: torch.Tensor, patch_size: int, num_patches: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the real residues of each patch: values (B, L, C), valid (B, L) -> (B, P, C), (B, P) bool.

    Residue i goes to patch i // patch_size; positions past L are padding. A patch without a real residue
    is zeros and invalid. This is the one residue -> patch mapping used by V5, its loss target and the adapter.
    ``values`` may be one table (1, L, C) shared by every sample (position embeddings): do not expand it.
    """
    batch, length = valid.shape
    channels = values.shape[-1]
    if length > patch_size * num_patches:  # they would be silently dropped
        raise ValueError(f"{length} residue positions do not fit {num_patches} patches of {patch_size} residues.")
    shared = values.shape[0] == 1 and batch > 1
    weight = valid.to(values.dtype)                                                   # (B, L)
    # Weighted sums as batched products: a single read of ``values``, no (B, L, C) temporaries (inputs are
    # 1502 x 960 per protein). A shared table is multiplied per patch for all samples at once,
    # (F, B, S) @ (F, S, C), so neither it nor its gradient is ever B copies (an expanded table was a third
    # of a 1568-residue V5 step). In full precision, also under autocast.
    n_full = length // patch_size                                                     # patches with S positions
    head = n_full * patch_size
    with torch.autocast(values.device.type, enabled=False):
        if patch_size == 1:   # one residue per patch: its value is the mean (a product: no sums, no division)
            pooled = (values[0] if shared else values) * weight[..., None]                      # (B, L, C)
            padding = num_patches - length
            return (torch.nn.functional.pad(pooled, (0, 0, 0, padding)) if padding else pooled,
                    torch.nn.functional.pad(valid, (0, padding)) if padding else valid)
        if shared:
            per_patch = weight[:, :head].reshape(batch, n_full, patch_size).transpose(0, 1)   # (F, B, S)
            table = values[0, :head].reshape(n_full, patch_size, channels)                    # (F, S, C)
            sums = [torch.bmm(per_patch, table).transpose(0, 1)]                             # (B, F, C)
        else:
            per_patch = weight[:, :head].reshape(batch, n_full, 1, patch_size)                   # (B, F, 1, S)
            blocks = values[:, :head].reshape(batch, n_full, patch_size, channels)             # (B, F, S, C) view
            if head == length:   # B x F products of (1, S) @ (S, C) in one batched call
                sums = [torch.matmul(per_patch, blocks).squeeze(2)]
            else:   # a partial last patch: (B, F) no longer fold into one batch axis and matmul would copy the
                # whole input to make them; one batched product per sample reads it in place
                sums = [torch.stack([torch.bmm(w, v) for w, v in zip(per_patch, blocks)]).squeeze(2)]
        counts = [weight[:, :head].reshape(batch, n_full, patch_size).sum(dim=2)]                       # (B, F)
        if head < length:       # the last positions start one more, shorter patch
            tail = torch.mm(weight[:, head:], values[0, head:])[:, None] if shared \
                else torch.bmm(weight[:, None, head:], values[:, head:])                                 # (B, 1, C)
            sums.append(tail)
            counts.append(weight[:, head:].sum(dim=1, keepdim=True))
        missing = num_patches - n_full - int(head < length)                               # past the input: empty
        if missing:
            sums.append(values.new_zeros(batch, missing, channels))
            counts.append(weight.new_zeros(batch, missing))
        sums, counts = torch.cat(sums, dim=1), torch.cat(counts, dim=1)                 # (B, P, C), (B, P)
    return sums / counts.clamp_min(1.0)[..., None], counts > 0


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens: values (B, T, C), valid (B, T) bool -> (B, C)."""
    weight = valid.to(values.dtype)[..., None]
    return (values * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


def with_cls(valid: torch.Tensor) -> torch.Tensor:
    """Prepend an always-valid CLS column: (B, T) -> (B, 1 + T)."""
    return torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
