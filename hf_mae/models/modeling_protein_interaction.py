"""Protein pair interaction on top of a pretrained protein MAE: a symmetric cross-attention head.

One pair from input to logits (default sizes):

    residue_embeddings_a, residue_embeddings_b (B, L, 960), with their attention masks
      -> each protein's token set (B, 48, 768): the V5 encoder's output, or the V2 encoder's states
         (B, L, 512) through ``V2ToV5Adapter`` (pooled into V5's patches, projected, CLS in front)
      -> A attends to B and B to A with the same cross-attention blocks, each side mean-pooled  (B, 768) x 2
      -> interaction (B, 768) = GELU(Linear([p_ab + p_ba, p_ab * p_ba])): the same for (A, B) and (B, A)
      -> logits (B, 2)                                    (ProteinInteractionForSequenceClassification)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from .configuration_protein_mae import ProteinInteractionConfig
from .layers import CrossAttentionLayer, padding_to_attention_mask
from .modeling_protein_base import ProteinMAEPreTrainedModel
from .modeling_protein_mae_v2 import ProteinMAEV2ForPreTraining, ProteinMAEV2Model
from .modeling_protein_mae_v5 import ProteinMAEV5ForPreTraining, ProteinMAEV5Model
from .pooling import masked_mean, pool_patches, with_cls

__all__ = ["V2ToV5Adapter", "ProteinInteractionModel", "ProteinInteractionForSequenceClassification",
           "ProteinInteractionOutput"]


@dataclass
class ProteinInteractionOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None              # (B, num_labels)
    interaction: torch.Tensor | None = None         # (B, hidden_size)


class V2ToV5Adapter(nn.Module):
    """Map V2 encoder states (B, L, 512) to the V5 token format (B, 48, 768) with a CLS token.

    Residues are pooled into the V5 patches (``pool_patches``, the same mapping as ``ProteinMAEV5Model``), projected
    512 -> 768, and a learned CLS token is put in front. Returns the tokens and their (B, 48) bool mask.

    Example:
        >>> import torch
        >>> from hf_mae import V2ToV5Adapter
        >>> tokens, mask = V2ToV5Adapter()(torch.randn(2, 300, 512), torch.ones(2, 300, dtype=torch.bool))
        >>> tokens.shape, mask.shape
        (torch.Size([2, 48, 768]), torch.Size([2, 48]))
    """

    def __init__(self, v2_dim: int = 512, v5_dim: int = 768, *, num_patches: int = 47, patch_size: int = 32):
        super().__init__()
        self.num_patches, self.patch_size = num_patches, patch_size
        self.dim_adapter = nn.Linear(v2_dim, v5_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, v5_dim))

    def forward(self, v2_output: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches, patch_valid = pool_patches(v2_output, valid, self.patch_size, self.num_patches)   # (B, P, 512)
        adapted = self.dim_adapter(patches) * patch_valid[..., None]                              # (B, P, 768)
        batch = adapted.shape[0]
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1).to(adapted.dtype), adapted], dim=1)  # (B, 1+P, 768)
        return tokens, with_cls(patch_valid)


class ProteinInteractionModel(ProteinMAEPreTrainedModel):
    """Two proteins -> symmetric interaction vector (B, hidden_size) through cross-attention.

    Each protein becomes a token set (B, 48, H): the V5 encoder's output, or the V2 encoder's per-residue
    states through ``V2ToV5Adapter``. Tokens of A attend to B's and B's to A's with the same blocks; each side is
    mean-pooled over its real tokens; ``[p_ab + p_ba, p_ab * p_ba]`` -> Linear -> GELU gives the interaction
    vector, which is the same for (A, B) and (B, A).
    """

    config_class = ProteinInteractionConfig
    base_model_prefix = "protein_interaction"

    def __init__(self, config: ProteinInteractionConfig):
        super().__init__(config)
        encoder_config = config.encoder_config
        if config.uses_adapter:
            self.encoder = ProteinMAEV2Model(encoder_config)
            self.adapter = V2ToV5Adapter(encoder_config.embed_dim, config.hidden_size,
                                         num_patches=config.adapter_num_patches, patch_size=config.adapter_patch_size)
        else:
            self.encoder = ProteinMAEV5Model(encoder_config)
            self.adapter = None
        self.cross_attention = nn.ModuleList(
            CrossAttentionLayer(config, config.hidden_size, config.cross_attention_heads,
                                config.cross_attention_dim_feedforward, 0.0, config.layer_norm_eps)
            for _ in range(config.cross_attention_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.combine = nn.Sequential(nn.Linear(2 * config.hidden_size, config.hidden_size), nn.GELU())
        if config.freeze_encoder:
            self.encoder.requires_grad_(False)
        self.post_init()

    @classmethod
    def from_encoder(cls, encoder: ProteinMAEV2Model | ProteinMAEV5Model | ProteinMAEV2ForPreTraining | ProteinMAEV5ForPreTraining,
                     **config_kwargs):
        """Build the model around a (pretrained) V2 or V5 encoder, copying its weights.

        Example:
            >>> from hf_mae import ProteinMAEV5Model, ProteinInteractionForSequenceClassification
            >>> enc = ProteinMAEV5Model(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32)
            >>> model = ProteinInteractionForSequenceClassification.from_encoder(
            ...     enc, cross_attention_heads=2, cross_attention_dim_feedforward=32)
            >>> model.config.hidden_size
            16
        """
        encoder = getattr(encoder, "mae", encoder)
        if not isinstance(encoder, (ProteinMAEV2Model, ProteinMAEV5Model)):
            raise ValueError(f"`encoder` must be a V2 or V5 protein MAE, got {type(encoder).__name__}.")
        model = cls(ProteinInteractionConfig(encoder_config=encoder.config, **config_kwargs))
        model.get_encoder().load_state_dict(encoder.state_dict())
        return model

    def get_encoder(self) -> ProteinMAEV2Model | ProteinMAEV5Model:
        return self.encoder

    def tokens(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """One protein's token set (B, 48, H) and its (B, 48) bool mask."""
        if self.adapter is None:
            out = self.encoder(residue_embeddings, attention_mask)
            return out.last_hidden_state, out.attention_mask
        out = self.encoder.encode(residue_embeddings, attention_mask)
        return self.adapter(out.last_hidden_state, out.attention_mask)

    def _attend(self, query: torch.Tensor, query_valid: torch.Tensor, context: torch.Tensor,
                context_valid: torch.Tensor) -> torch.Tensor:
        mask = padding_to_attention_mask(~context_valid, query.dtype)
        for layer in self.cross_attention:
            query = layer(query, context, mask)
        return masked_mean(self.norm(query), query_valid)                                   # (B, H)

    def forward(self, residue_embeddings_a: torch.Tensor, residue_embeddings_b: torch.Tensor,
                attention_mask_a: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None
                ) -> ProteinInteractionOutput:
        tokens_a, valid_a = self.tokens(residue_embeddings_a, attention_mask_a)             # (B, 48, H)
        tokens_b, valid_b = self.tokens(residue_embeddings_b, attention_mask_b)
        if tokens_a.shape[0] != tokens_b.shape[0]:
            raise ValueError(f"Proteins A and B must come in equal batches, got {tokens_a.shape[0]} and "
                             f"{tokens_b.shape[0]}.")
        a_to_b = self._attend(tokens_a, valid_a, tokens_b, valid_b)
        b_to_a = self._attend(tokens_b, valid_b, tokens_a, valid_a)
        interaction = self.combine(torch.cat([a_to_b + b_to_a, a_to_b * b_to_a], dim=-1))  # (B, H)
        return ProteinInteractionOutput(interaction=interaction)


class ProteinInteractionForSequenceClassification(ProteinMAEPreTrainedModel):
    """Binary pair classifier (interacting or not) for ``Trainer``: labels (B,) in {0, 1}, cross-entropy loss.

    Build it on a pretrained encoder with ``from_encoder``; ``softmax(logits)[:, 1]`` is the score for ROC-AUC.
    """

    config_class = ProteinInteractionConfig
    base_model_prefix = "protein_interaction"
    main_input_name = "residue_embeddings_a"
    accepts_loss_kwargs = False

    def __init__(self, config: ProteinInteractionConfig):
        super().__init__(config)
        self.protein_interaction = ProteinInteractionModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    from_encoder = classmethod(ProteinInteractionModel.from_encoder.__func__)

    def get_encoder(self) -> ProteinMAEV2Model | ProteinMAEV5Model:
        return self.protein_interaction.encoder

    def forward(self, residue_embeddings_a: torch.Tensor, residue_embeddings_b: torch.Tensor,
                attention_mask_a: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> ProteinInteractionOutput:
        interaction = self.protein_interaction(residue_embeddings_a, residue_embeddings_b,
                                               attention_mask_a, attention_mask_b).interaction
        logits = self.classifier(self.dropout(interaction))                                  # (B, num_labels)
        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1]:
                raise ValueError(f"`labels` must have shape ({logits.shape[0]},), got {tuple(labels.shape)}.")
            loss = nn.functional.cross_entropy(logits.float(), labels.long())
        return ProteinInteractionOutput(loss=loss, logits=logits, interaction=interaction)
