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
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_protein_mae import ProteinInteractionConfig
from .layers import CrossAttentionLayer, output_flag, padding_to_attention_mask
from .modeling_protein_base import ProteinMAEPreTrainedModel
from .modeling_protein_mae_v2 import ProteinMAEV2ForPreTraining, ProteinMAEV2Model
from .modeling_protein_mae_v5 import ProteinMAEV5ForPreTraining, ProteinMAEV5Model
from .pooling import masked_mean, pool_patches, with_cls
from .validation import check_tensor

__all__ = ["V2ToV5Adapter", "ProteinInteractionModel", "ProteinInteractionForSequenceClassification",
           "ProteinInteractionOutput"]


@dataclass
class ProteinInteractionOutput(ModelOutput):
    """Outputs of the pair models.

    ``hidden_states`` (when asked for): the token sets of A and B side by side, (B, T_a + T_b, H), before the
    first cross-attention layer and after each. ``attentions``: per layer, the probabilities over that joint token
    set, (B, heads, T_a + T_b, T_a + T_b): A's tokens attend only to B's and B's only to A's, so the two diagonal
    blocks are zero.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None              # (B, num_labels)
    interaction: torch.Tensor | None = None         # (B, hidden_size)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class V2ToV5Adapter(nn.Module):
    """Map V2 encoder states (B, L, 512) to the V5 token format (B, 48, 768) with a CLS token, as in the seed:
    ``V2ToV5Adapter()(v2_output)``.

    Residues are pooled into the V5 patches (``pool_patches``, the same mapping as ``ProteinMAEV5Model``), projected
    512 -> 768, and a learned CLS token is put in front. ``valid`` (B, L) marks the residues of right-padded
    proteins (default: every position is a residue); patches past a protein's end are zeros, and
    ``token_mask(valid)`` gives the (B, 48) bool mask of the tokens that hold residues (CLS included).

    Example:
        >>> import torch
        >>> from hf_mae import V2ToV5Adapter
        >>> adapter = V2ToV5Adapter()
        >>> adapter(torch.randn(2, 300, 512)).shape
        torch.Size([2, 48, 768])
        >>> valid = torch.arange(300) < torch.tensor([[300], [40]])       # the second protein has 40 residues
        >>> adapter.token_mask(valid).sum(dim=1).tolist()                 # CLS + ceil(L / 32) patches
        [11, 3]
    """

    def __init__(self, v2_dim: int = 512, v5_dim: int = 768, *, num_patches: int = 47, patch_size: int = 32):
        super().__init__()
        self.num_patches, self.patch_size = num_patches, patch_size
        self.dim_adapter = nn.Linear(v2_dim, v5_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, v5_dim))

    def forward(self, v2_output: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """v2_output (B, L, v2_dim), valid (B, L) bool or None (all residues) -> tokens (B, 1 + P, v5_dim)."""
        if v2_output.ndim != 3 or v2_output.shape[-1] != self.dim_adapter.in_features:
            raise ValueError(f"V2ToV5Adapter expects `v2_output` of shape (batch, length, {self.dim_adapter.in_features}) "
                             f"(v2_dim={self.dim_adapter.in_features}), got {tuple(v2_output.shape)}.")
        if valid is None:
            valid = torch.ones(v2_output.shape[:2], dtype=torch.bool, device=v2_output.device)
        check_tensor("valid", valid, ndim=2, shape=tuple(v2_output.shape[:2]), floating=False)
        patches, patch_valid = pool_patches(v2_output, valid.bool(), self.patch_size, self.num_patches)  # (B, P, 512)
        adapted = self.dim_adapter(patches) * patch_valid[..., None]                              # (B, P, 768)
        batch = adapted.shape[0]
        return torch.cat([self.cls_token.expand(batch, -1, -1).to(adapted.dtype), adapted], dim=1)  # (B, 1+P, 768)

    def token_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, L) residue mask -> (B, 1 + P) bool: CLS and the patches that hold at least one residue."""
        _, patch_valid = pool_patches(valid[..., None].float(), valid.bool(), self.patch_size, self.num_patches)
        return with_cls(patch_valid)


class ProteinInteractionModel(ProteinMAEPreTrainedModel):
    """Two proteins -> symmetric interaction vector (B, hidden_size) through cross-attention.

    Each protein becomes a token set (B, 48, H): the V5 encoder's output, or the V2 encoder's per-residue
    states through ``V2ToV5Adapter``. Tokens of A attend to B's and B's to A's with the same blocks; each side is
    mean-pooled over its real tokens; ``[p_ab + p_ba, p_ab * p_ba]`` -> Linear -> GELU gives the interaction
    vector, which is the same for (A, B) and (B, A).
    """

    config_class = ProteinInteractionConfig
    base_model_prefix = "protein_interaction"
    main_input_name = "residue_embeddings_a"
    # checkpoints saved when the pair model still held the V2 reconstruction decoder and mask token
    _keys_to_ignore_on_load_unexpected = [r"encoder\.decoder\.", r"encoder\.mask_token"]

    def __init__(self, config: ProteinInteractionConfig):
        super().__init__(config)
        encoder_config = config.encoder_config
        if config.uses_adapter:
            # only its all-visible states are read: no decoder, no mask token
            self.encoder = ProteinMAEV2Model(encoder_config, add_decoder=False, add_mask_token=False)
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
        # a V2 model's reconstruction decoder and mask token stay behind: the pair model reads all-visible states
        left_behind = ("decoder.", "mask_token") if isinstance(encoder, ProteinMAEV2Model) else ("decoder.",)
        model.get_encoder().load_state_dict({name: tensor for name, tensor in encoder.state_dict().items()
                                             if not name.startswith(left_behind)})
        return model

    def get_encoder(self) -> ProteinMAEV2Model | ProteinMAEV5Model:
        return self.encoder

    def get_input_embeddings(self) -> nn.Linear:
        """The encoder's residue (V2) or patch (V5) projection."""
        return self.encoder.get_input_embeddings()

    def tokens(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """One protein's token set (B, 48, H) and its (B, 48) bool mask."""
        if self.adapter is None:
            out = self.encoder(residue_embeddings, attention_mask, output_hidden_states=False,
                               output_attentions=False, return_dict=True)
            return out.last_hidden_state, out.attention_mask
        states, valid = self.encoder.encode_residues(residue_embeddings, attention_mask)  # no V2 decoder
        return self.adapter(states, valid), self.adapter.token_mask(valid)

    def cross_attend(self, tokens_a: torch.Tensor, valid_a: torch.Tensor, tokens_b: torch.Tensor,
                     valid_b: torch.Tensor, output_attentions: bool = False) -> BaseModelOutput:
        """A's tokens read B's and B's read A's, as one attention over the joint token set [A, B] whose mask lets
        each token see only the other protein's real tokens (the same values as two separate cross-attentions).
        Queries are the updated states, keys and values the encoders' tokens (the context is read, never written).

        Returns ``last_hidden_state`` (B, Ta + Tb, H) after the final LayerNorm, ``hidden_states`` (the joint
        states before and after each layer) and ``attentions`` (B, heads, Ta + Tb, Ta + Tb) when asked for.
        """
        context = torch.cat([tokens_a, tokens_b], dim=1)                                    # (B, Ta + Tb, H)
        valid = torch.cat([valid_a, valid_b], dim=1)                                        # (B, Ta + Tb)
        side_b = torch.arange(context.shape[1], device=context.device) >= tokens_a.shape[1]  # (Ta + Tb,)
        blocked = (side_b[:, None] == side_b[None, :])[None] | ~valid[:, None, :]             # (B, T, T) same side
        mask = torch.zeros(blocked.shape, dtype=context.dtype, device=context.device)
        mask = mask.masked_fill(blocked, torch.finfo(context.dtype).min)[:, None]             # (B, 1, T, T)
        hidden, states, attentions = context, [context], []
        for layer in self.cross_attention:
            hidden, weights = layer(hidden, context, mask, output_attentions=output_attentions)
            states.append(hidden)
            attentions.append(weights)
        return BaseModelOutput(last_hidden_state=self.norm(hidden), hidden_states=tuple(states),
                               attentions=tuple(attentions) if output_attentions else None)

    @can_return_tuple
    def forward(self, residue_embeddings_a: torch.Tensor, residue_embeddings_b: torch.Tensor,
                attention_mask_a: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None
                ) -> ProteinInteractionOutput:
        """The interaction vector (B, hidden_size); ``hidden_states``/``attentions`` of the cross-attention
        layers when asked for (see ``ProteinInteractionOutput``)."""
        output_hidden_states = output_flag(output_hidden_states, self.config.output_hidden_states)
        output_attentions = output_flag(output_attentions, self.config.output_attentions)
        tokens_a, valid_a = self.tokens(residue_embeddings_a, attention_mask_a)             # (B, 48, H)
        tokens_b, valid_b = self.tokens(residue_embeddings_b, attention_mask_b)
        if tokens_a.shape[0] != tokens_b.shape[0]:
            raise ValueError(f"Proteins A and B must come in equal batches, got {tokens_a.shape[0]} and "
                             f"{tokens_b.shape[0]}.")
        joint = self.cross_attend(tokens_a, valid_a, tokens_b, valid_b, output_attentions)
        len_a = tokens_a.shape[1]
        a_to_b = masked_mean(joint.last_hidden_state[:, :len_a], valid_a)                 # (B, H): A having read B
        b_to_a = masked_mean(joint.last_hidden_state[:, len_a:], valid_b)
        interaction = self.combine(torch.cat([a_to_b + b_to_a, a_to_b * b_to_a], dim=-1))  # (B, H)
        return ProteinInteractionOutput(interaction=interaction,
                                        hidden_states=joint.hidden_states if output_hidden_states else None,
                                        attentions=joint.attentions)


class ProteinInteractionForSequenceClassification(ProteinMAEPreTrainedModel):
    """Pair classifier (interacting or not, by default) for ``Trainer``.

    The loss follows ``config.problem_type`` as in transformers' sequence classifiers: single-label
    cross-entropy on labels (B,) (the default with ``num_labels=2``: ``softmax(logits)[:, 1]`` is the score for
    ROC-AUC), MSE for ``"regression"`` (e.g. an affinity with ``num_labels=1``), BCE with logits for
    ``"multi_label_classification"`` (labels (B, num_labels)). Build it on a pretrained encoder with
    ``from_encoder``.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV5Model, ProteinInteractionForSequenceClassification
        >>> enc = ProteinMAEV5Model(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32)
        >>> model = ProteinInteractionForSequenceClassification.from_encoder(
        ...     enc, cross_attention_heads=2, cross_attention_dim_feedforward=32, num_labels=1,
        ...     problem_type="regression")
        >>> out = model(torch.randn(2, 50, 32), torch.randn(2, 70, 32), labels=torch.tensor([0.5, 2.0]))
        >>> out.logits.shape, bool(out.loss > 0)
        (torch.Size([2, 1]), True)
    """

    config_class = ProteinInteractionConfig
    base_model_prefix = "protein_interaction"
    main_input_name = "residue_embeddings_a"
    accepts_loss_kwargs = False
    _keys_to_ignore_on_load_unexpected = [r"encoder\.decoder\.", r"encoder\.mask_token"]

    def __init__(self, config: ProteinInteractionConfig):
        super().__init__(config)
        self.protein_interaction = ProteinInteractionModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    from_encoder = classmethod(ProteinInteractionModel.from_encoder.__func__)

    def get_encoder(self) -> ProteinMAEV2Model | ProteinMAEV5Model:
        return self.protein_interaction.encoder

    @can_return_tuple
    def forward(self, residue_embeddings_a: torch.Tensor, residue_embeddings_b: torch.Tensor,
                attention_mask_a: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> ProteinInteractionOutput:
        pair = self.protein_interaction(residue_embeddings_a, residue_embeddings_b, attention_mask_a,
                                        attention_mask_b, output_hidden_states=output_hidden_states,
                                        output_attentions=output_attentions, return_dict=True)
        logits = self.classifier(self.dropout(pair.interaction))                             # (B, num_labels)
        loss = None
        if labels is not None:
            if labels.shape[0] != logits.shape[0]:
                raise ValueError(f"`labels` must have one row per pair ({logits.shape[0]}), got shape "
                                 f"{tuple(labels.shape)}.")
            # transformers' sequence-classification loss: config.problem_type, or inferred from num_labels and
            # the labels' dtype; in float32, also under autocast
            loss = self.loss_function(labels, logits.float(), self.config)
        return ProteinInteractionOutput(loss=loss, logits=logits, interaction=pair.interaction,
                                        hidden_states=pair.hidden_states, attentions=pair.attentions)
