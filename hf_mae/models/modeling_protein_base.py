"""What the protein models share: their input check and their ``PreTrainedModel`` base.

Inputs everywhere: ``residue_embeddings`` (B, L, input_dim), right-padded, and ``attention_mask`` (B, L),
1 = residue, 0 = padding. Padding is never masked, never attended to, never in a loss, never pooled: each
protein of a mixed-length batch gets the outputs it gets alone (outputs at padding are zeros).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init

from .configuration_protein_mae import ProteinMAEV5Config
from .serialization import HubCheckpointMixin
from .validation import check_tensor, value_checks_apply

__all__ = ["check_residue_inputs", "ProteinMAEPreTrainedModel"]


def check_residue_inputs(residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None, *,
                         input_dim: int, max_length: int, finite: bool = True) -> torch.Tensor:
    """Validate the inputs of every protein model and return the attention mask as bool (B, L).

    Refuses: a wrong embedding width, more than ``max_length`` positions, NaN/inf values (CPU tensors; with
    ``finite=False`` the caller checks them, e.g. through ``check_finite_through``), a mask of another shape, a
    protein with no residue, and left padding (residue positions must start at 0).
    """
    check_tensor("residue_embeddings", residue_embeddings, ndim=3, shape=(None, None, input_dim), finite=finite)
    batch, length, _ = residue_embeddings.shape
    if length > max_length:
        raise ValueError(
            f"`residue_embeddings` has {length} positions, more than `max_length`={max_length}. Truncate the "
            f"sequences when embedding them (ProteinEmbedder(max_length=..., too_long='truncate'))."
        )
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=residue_embeddings.device)
    check_tensor("attention_mask", attention_mask, ndim=2, shape=(batch, length), floating=False)
    valid = attention_mask.bool()
    if value_checks_apply(valid):  # not on an accelerator (a sync every step), nor in a compiled/exported graph
        if not bool(valid.any(dim=1).all()):
            raise ValueError("`attention_mask` has a row with no residue: empty proteins cannot be encoded.")
        if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
            raise ValueError("`attention_mask` must be right-padded (1s then 0s in every row): residue i is "
                             "position i.")
    return valid


class ProteinMAEPreTrainedModel(HubCheckpointMixin, PreTrainedModel):
    """Weight initialisation and class attributes shared by the protein models; saving and loading as every
    hf_mae model (``HubCheckpointMixin``: full ``auto_map``, pickled weights refused)."""

    config_class = ProteinMAEV5Config
    base_model_prefix = "mae"
    main_input_name = "residue_embeddings"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerLayer", "CrossAttentionLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        for name in ("mask_token", "cls_token", "pos_embed"):
            parameter = getattr(module, name, None)
            if isinstance(parameter, nn.Parameter):
                init.trunc_normal_(parameter, std=std)
