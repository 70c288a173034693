"""V2 protein MAE (``ProteinMAEV2Model``, the reference package's ``TransformerMAE``): a mask-token encoder
over every residue of per-residue protein-language-model embeddings, an MLP decoder, a per-protein vector.

One tensor from input to loss (default sizes):

    residue_embeddings (B, L, 960)      right-padded, attention_mask (B, L) 1 = residue
      -> embed (B, L, 512); masked residues (50% of each protein's real ones) replaced by ``mask_token``
      -> + position embeddings (added after the replacement, so a mask token still knows where it is)
      -> 4-layer transformer over every position, padding excluded       -> last_hidden_state (B, L, 512)
      -> MLP decoder 512 -> 2048 -> 960                                    -> reconstruction (B, L, 960)
      -> compressed (B, 960): mean of the reconstruction over the protein's residues
      -> loss: huber(recon * 5, target * 5, delta 0.5) on masked residues (ProteinMAEV2ForPreTraining)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_protein_mae import ProteinMAEV2Config
from .heads import SequenceClassifierMixin, classification_output
from .layers import TransformerStack, output_flag, padding_to_attention_mask
from .masking import (check_mask_ratio, draw_noise, eval_mask_generator, masked_reconstruction_loss,
                      split_valid_by_noise)
from .modeling_protein_base import ProteinMAEPreTrainedModel, check_residue_inputs
from .pooling import masked_mean
from .validation import config_from_arguments

__all__ = ["ProteinMAEV2Model", "TransformerMAE", "ProteinMAEV2ForPreTraining", "ProteinMAEV2ModelOutput",
           "ProteinMAEV2ForPreTrainingOutput", "ProteinMAEV2ForSequenceClassification"]


@dataclass
class ProteinMAEV2ModelOutput(ModelOutput):
    """V2 outputs. ``mask``: (B, L) bool, True = residue hidden from the encoder. Zeros at padding."""

    reconstruction: torch.Tensor | None = None      # (B, L, input_dim)
    last_hidden_state: torch.Tensor | None = None   # (B, L, embed_dim) per-residue encoder states
    compressed: torch.Tensor | None = None          # (B, input_dim) per-protein vector
    mask: torch.Tensor | None = None                # (B, L)
    attention_mask: torch.Tensor | None = None      # (B, L) bool, True = residue
    hidden_states: tuple[torch.Tensor, ...] | None = None   # num_layers + 1 x (B, L, embed_dim), when asked for
    attentions: tuple[torch.Tensor, ...] | None = None      # num_layers x (B, nhead, L, L), when asked for


@dataclass
class ProteinMAEV2ForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    compressed: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class ProteinMAEV2Model(ProteinMAEPreTrainedModel):
    """V2 protein MAE: mask-token encoder over every residue, MLP decoder, per-protein compressed vector.

    ``ProteinMAEV2Model(embed_dim=512, num_layers=4, nhead=16)`` or ``ProteinMAEV2Model(ProteinMAEV2Config(...))``.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV2Model
        >>> mae = ProteinMAEV2Model(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        ...                         decoder_hidden_dim=32, max_length=64)
        >>> out = mae(torch.randn(2, 20, 32), torch.ones(2, 20, dtype=torch.long))
        >>> out.reconstruction.shape, out.last_hidden_state.shape, out.compressed.shape, int(out.mask[0].sum())
        (torch.Size([2, 20, 32]), torch.Size([2, 20, 16]), torch.Size([2, 32]), 10)
    """

    config_class = ProteinMAEV2Config

    def __init__(self, config: ProteinMAEV2Config | None = None, add_decoder: bool = True,
                 add_mask_token: bool = True, **kwargs):
        """``add_decoder=False`` builds the encoder alone (``reconstruction`` and ``compressed`` are then None):
        what the pair classifier holds, which reads the encoder's states only. ``add_mask_token=False`` also
        leaves out the mask token, for a model that never masks (the sequence classifier); it then refuses a
        ``mask_ratio`` above 0."""
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.embed = nn.Linear(config.input_dim, config.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim)) if add_mask_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, config.max_length, config.embed_dim))
        self.encoder = TransformerStack(config, config.embed_dim, config.num_layers, config.nhead,
                                        config.dim_feedforward, config.dropout, config.layer_norm_eps)
        self.decoder = None
        if add_decoder:
            self.decoder = nn.Sequential(nn.Linear(config.embed_dim, config.decoder_hidden_dim), nn.GELU(),
                                         nn.Linear(config.decoder_hidden_dim, config.input_dim))
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        """The residue embedding (input_dim -> embed_dim): where adapters and ``enable_input_require_grads`` hook."""
        return self.embed

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                generator: torch.Generator | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> ProteinMAEV2ModelOutput:
        """Mask ``mask_ratio`` (config: 0.5) of each protein's residues, encode, reconstruct.

        ``noise`` (B, L) or ``generator`` fixes the mask; ``mask_ratio=0`` encodes everything (see ``encode``).
        ``output_hidden_states``/``output_attentions`` (default: the config's) add the encoder's states and
        attention probabilities; ``return_dict=False`` returns a tuple.
        """
        encoded, valid, mask = self._encode(residue_embeddings, attention_mask, noise, mask_ratio, generator,
                                            output_hidden_states, output_attentions)
        hidden = encoded.last_hidden_state                                                  # (B, L, D)
        reconstruction = compressed = None
        if self.decoder is not None:
            reconstruction = self.decoder(hidden) * valid[..., None]                        # (B, L, input_dim)
            compressed = masked_mean(reconstruction, valid)                                 # (B, input_dim)
        return ProteinMAEV2ModelOutput(reconstruction=reconstruction, last_hidden_state=hidden,
                                       compressed=compressed, mask=mask,
                                       attention_mask=valid, hidden_states=encoded.hidden_states,
                                       attentions=encoded.attentions)

    def _encode(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None,
                noise: torch.Tensor | None, mask_ratio: float | None, generator: torch.Generator | None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None
                ) -> tuple[BaseModelOutput, torch.Tensor, torch.Tensor]:
        """Mask and encode: the encoder's output (last_hidden_state zero at padding), valid (B, L), mask (B, L)."""
        valid = check_residue_inputs(residue_embeddings, attention_mask, input_dim=self.config.input_dim,
                                     max_length=self.config.max_length)
        batch, length, _ = residue_embeddings.shape
        ratio = check_mask_ratio(mask_ratio, self.config.mask_ratio)
        if ratio > 0 and self.mask_token is None:
            raise ValueError(f"`mask_ratio` is {ratio}, but this ProteinMAEV2Model was built without a mask token "
                             "(add_mask_token=False) and encodes every residue; expected mask_ratio=0.")
        noise = draw_noise(batch, length, device=residue_embeddings.device, generator=generator, noise=noise)
        mask = split_valid_by_noise(noise, valid, ratio)[2] if ratio > 0 else torch.zeros_like(valid)  # (B, L)

        tokens = self.embed(residue_embeddings)                                             # (B, L, D)
        if ratio > 0:
            tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.pos_embed[:, :length].to(tokens.dtype)
        encoded = self.encoder.run(
            tokens, padding_to_attention_mask(~valid, tokens.dtype),
            output_hidden_states=output_flag(output_hidden_states, self.config.output_hidden_states),
            output_attentions=output_flag(output_attentions, self.config.output_attentions))
        encoded.last_hidden_state = encoded.last_hidden_state * valid[..., None]             # (B, L, D)
        return encoded, valid, mask

    def encode(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> ProteinMAEV2ModelOutput:
        """Everything visible: deterministic per-residue states and compressed vector (call ``eval()`` first)."""
        return self.forward(residue_embeddings, attention_mask, mask_ratio=0.0, return_dict=True)

    def encode_residues(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything visible, encoder only (the decoder does not run): per-residue states (B, L, embed_dim),
        zeros at padding, and the (B, L) bool residue mask. What ``V2ToV5Adapter`` and the pair classifier read.

        Example:
            >>> import torch
            >>> mae = ProteinMAEV2Model(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
            ...                         decoder_hidden_dim=32, max_length=64)
            >>> states, valid = mae.encode_residues(torch.randn(2, 20, 32))
            >>> states.shape, valid.shape
            (torch.Size([2, 20, 16]), torch.Size([2, 20]))
        """
        encoded, valid, _ = self._encode(residue_embeddings, attention_mask, None, 0.0, None, False, False)
        return encoded.last_hidden_state, valid

    def get_features(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **unused) -> torch.Tensor:
        """The feature rule of V2: the per-protein ``compressed`` vector (B, input_dim) of ``encode`` (nothing
        masked; deterministic in eval mode). ``hf_mae.extract_features`` calls this."""
        if self.decoder is None:
            raise ValueError("This ProteinMAEV2Model was built without its decoder (add_decoder=False, as inside the "
                             "pair model): its features, the compressed reconstruction, need the decoder.")
        return self.encode(residue_embeddings, attention_mask).compressed


    @torch.no_grad()
    def masked_reconstruction(self, residue_embeddings: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a model card's reconstruction figure draws, for unpadded proteins (N, L, C): the embeddings, their
        reconstruction (N, L, C) and the (N, L) visible residues, ``mask_ratio`` of them hidden."""
        out = self.forward(residue_embeddings, generator=generator, return_dict=True)
        return residue_embeddings, out.reconstruction, ~out.mask


class ProteinMAEV2ForPreTraining(ProteinMAEPreTrainedModel):
    """V2 with its loss: Huber (delta 0.5) on ``scale_factor``-scaled embeddings, masked residues only.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV2Config, ProteinMAEV2ForPreTraining
        >>> cfg = ProteinMAEV2Config(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        ...                          decoder_hidden_dim=32, max_length=64)
        >>> ProteinMAEV2ForPreTraining(cfg)(torch.randn(2, 20, 32)).loss.ndim
        0
    """

    config_class = ProteinMAEV2Config
    accepts_loss_kwargs = False  # the loss is a mean over this micro-batch

    def __init__(self, config: ProteinMAEV2Config | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = ProteinMAEV2Model(config)
        self.post_init()

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                return_loss: bool = True, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> ProteinMAEV2ForPreTrainingOutput:
        """In eval mode, masks come from ``config.eval_mask_seed`` unless ``noise`` is given."""
        out = self.mae(residue_embeddings, attention_mask, mask_ratio=mask_ratio, noise=noise,
                       generator=eval_mask_generator(self, noise), output_hidden_states=output_hidden_states,
                       output_attentions=output_attentions, return_dict=True)
        loss = None
        if return_loss:
            scale = self.config.scale_factor
            loss = masked_reconstruction_loss(out.reconstruction * scale, residue_embeddings * scale,
                                              out.mask[..., None],
                                              "huber", self.config.huber_delta)
        return ProteinMAEV2ForPreTrainingOutput(loss=loss, reconstruction=out.reconstruction,
                                                last_hidden_state=out.last_hidden_state,
                                                compressed=out.compressed, mask=out.mask,
                                                hidden_states=out.hidden_states, attentions=out.attentions)


    def masked_reconstruction(self, residue_embeddings: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The wrapped model's ``masked_reconstruction``."""
        return self.mae.masked_reconstruction(residue_embeddings, generator=generator)

    def get_features(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **unused) -> torch.Tensor:
        """The wrapped model's ``get_features``."""
        return self.mae.get_features(residue_embeddings, attention_mask)


TransformerMAE = ProteinMAEV2Model   # the reference package's name


class ProteinMAEV2ForSequenceClassification(SequenceClassifierMixin, ProteinMAEPreTrainedModel):
    """V2's encoder (nothing masked) with a per-protein regression/classification head on the mean of its
    residue states (``classifier_pooling="mean"``; V2 has no [CLS] token), ``hf_mae.models.heads``.

    ``from_pretrained`` of a ``ProteinMAEV2ForPreTraining`` run (``mae.*``) or of a ``ProteinMAEV2Model``
    (prefix added) loads the encoder and initialises only ``classifier.*``; the pretraining decoder and mask
    token are not used.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV2ForSequenceClassification
        >>> model = ProteinMAEV2ForSequenceClassification(input_dim=32, embed_dim=16, num_layers=1, nhead=2,
        ...     dim_feedforward=32, decoder_hidden_dim=32, max_length=64, num_labels=1)
        >>> out = model(torch.randn(2, 20, 32), torch.ones(2, 20, dtype=torch.long), labels=torch.tensor([0.3, 1.2]))
        >>> tuple(out.logits.shape), out.loss.ndim
        ((2, 1), 0)
    """

    config_class = ProteinMAEV2Config
    lr_top_prefixes = ("mae.encoder.norm",)
    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"mask_token"]   # pretraining-only weights

    def __init__(self, config: ProteinMAEV2Config | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = ProteinMAEV2Model(config, add_decoder=False, add_mask_token=False)   # nothing is masked
        self.build_head(config.embed_dim)
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        """The encoder's residue embedding (input_dim -> embed_dim), as on ``ProteinMAEV2Model``."""
        return self.mae.embed

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None):
        """residue_embeddings (B, L, input_dim), right-padded, attention_mask (B, L) 1 = residue ->
        ``SequenceClassifierOutput``: ``logits`` (B, num_labels) and, with ``labels``, the mean ``loss``;
        the encoder's hidden states/attentions when asked for (default: the config's); ``return_dict=False``
        returns a tuple."""
        encoded, valid, _ = self.mae._encode(residue_embeddings, attention_mask, None, 0.0, None,
                                             output_hidden_states, output_attentions)
        logits = self.classifier(encoded.last_hidden_state, valid)                          # (B, num_labels)
        return classification_output(logits, labels, self.config, encoded.hidden_states, encoded.attentions)
