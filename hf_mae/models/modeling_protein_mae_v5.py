"""V5 protein MAE (``ProteinMAEV5Model``, the reference package's ``MAEEncoder``, + a light decoder): a ViT-B
sized encoder over fixed residue patches that sees only the visible patches, MAE style.

One tensor from input to loss (default sizes):

    residue_embeddings (B, L, 960)      right-padded, attention_mask (B, L) 1 = residue
      -> patches (B, 47, 960): mean of the residues of each 32-residue patch (residue i -> patch i // 32)
      -> patch tokens (B, 47, 768) = Linear(patch mean) + mean of the residues' position embeddings
      -> keep 25% of each protein's real patches (B, K, 768), K = 11 slots; CLS in front (B, 12, 768)
      -> 12-layer transformer on visible tokens only
      -> decoder: 512-d, mask tokens in the hidden places, CLS + 47 positions, 4 layers -> (B, 47, 960)
      -> loss: MSE against the patch means on masked patches (ProteinMAEV5ForPreTraining)
    Without masking (``AutoModel``, downstream use) the encoder returns (B, 48, 768): CLS + 47 patches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_protein_mae import ProteinMAEV5Config
from .heads import SequenceClassifierMixin, classification_output
from .layers import TransformerStack, output_flag, padding_to_attention_mask
from .masking import (check_mask_ratio, draw_noise, eval_mask_generator, gather_tokens,
                      masked_reconstruction_loss, split_valid_by_noise)
from .modeling_protein_base import ProteinMAEPreTrainedModel, check_residue_inputs
from .pooling import masked_mean, pool_patches, with_cls
from .validation import check_finite_through, config_from_arguments

__all__ = ["PatchEmbedding", "ProteinMAEV5Model", "MAEEncoder", "ProteinMAEV5Decoder", "ProteinMAEV5ForPreTraining",
           "ProteinMAEV5ModelOutput", "ProteinMAEV5ForPreTrainingOutput", "ProteinMAEV5ForSequenceClassification"]


@dataclass
class ProteinMAEV5ModelOutput(ModelOutput):
    """V5 encoder outputs.

    Without masking: ``last_hidden_state`` (B, 1 + num_patches, D), CLS first, and ``attention_mask``
    (B, 1 + num_patches) bool, True = CLS or a patch holding residues. With masking: (B, 1 + K, D) over CLS and
    the K visible slots, ``ids_keep`` (B, K) their patch ids, ``mask`` (B, num_patches) True = hidden patch.
    """

    last_hidden_state: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_keep: torch.Tensor | None = None
    patch_valid: torch.Tensor | None = None         # (B, num_patches) True = the patch holds residues
    hidden_states: tuple[torch.Tensor, ...] | None = None   # num_layers + 1 x (B, 1 + T, D), when asked for
    attentions: tuple[torch.Tensor, ...] | None = None      # num_layers x (B, nhead, 1 + T, 1 + T), when asked for
    patch_inputs: torch.Tensor | None = None        # (B, num_patches, input_dim) residue embeddings pooled per patch


@dataclass
class ProteinMAEV5ForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None      # (B, num_patches, input_dim) predicted patch means
    target: torch.Tensor | None = None              # (B, num_patches, input_dim) actual patch means
    mask: torch.Tensor | None = None                # (B, num_patches) True = hidden patch
    last_hidden_state: torch.Tensor | None = None   # (B, 1 + K, D) encoder states of CLS + visible patches
    hidden_states: tuple[torch.Tensor, ...] | None = None   # the encoder's, over CLS + visible patches
    attentions: tuple[torch.Tensor, ...] | None = None



class PatchEmbedding(nn.Module):
    """Residues -> fixed patch tokens: (B, L, input_dim) -> (B, num_patches, embed_dim), patch validity (B, P).

    Each patch token is ``Linear(mean of its residues) + mean of its residues' position embeddings``: equal to
    projecting every residue, adding its position embedding and averaging, at 1/patch_size of the cost. The
    position table covers every residue (1502 x 768), so a partly filled last patch knows where it ends.
    """

    def __init__(self, input_dim: int = 960, embed_dim: int = 768, *, max_length: int = 1502, num_patches: int = 47):
        super().__init__()
        self.patch_size = -(-max_length // num_patches)
        self.num_patches = num_patches
        self.proj = nn.Linear(input_dim, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, embed_dim))

    def forward(self, residue_embeddings: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> patch tokens (B, P, D), patch validity (B, P), and the pooled residue embeddings (B, P, C) the
        tokens were projected from (V5's reconstruction target: pooled once, used twice)."""
        patches, positions, patch_valid = self.pool(residue_embeddings, valid)
        return self.embed(patches, positions), patch_valid, patches

    def pool(self, residue_embeddings: torch.Tensor, valid: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> pooled residue embeddings (B, P, C), pooled position embeddings (B, P, D), patch validity (B, P)."""
        length = residue_embeddings.shape[1]
        patches, patch_valid = pool_patches(residue_embeddings, valid, self.patch_size, self.num_patches)  # (B, P, C)
        positions = self.pos_embed[:, :length].to(patches.dtype)                     # (1, L, D): one shared table
        patch_positions, _ = pool_patches(positions, valid, self.patch_size, self.num_patches)          # (B, P, D)
        return patches, patch_positions, patch_valid

    def embed(self, patches: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Pooled patches (B, T, C) and their pooled positions (B, T, D) -> tokens (B, T, D), any subset T of
        the patches (MAE pretraining embeds only the visible ones)."""
        return self.proj(patches) + positions


class ProteinMAEV5Model(ProteinMAEPreTrainedModel):
    """V5 encoder: CLS + 47 residue patches -> 12-layer ViT-B transformer -> (B, 48, 768).

    With ``mask_ratio > 0`` (pretraining) only CLS and the visible patches are encoded (MAE style).

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV5Model
        >>> enc = ProteinMAEV5Model(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32)
        >>> enc(torch.randn(2, 100, 32)).last_hidden_state.shape
        torch.Size([2, 48, 16])
    """

    config_class = ProteinMAEV5Config
    # Loaded from a pretraining checkpoint, the decoder's weights are expected leftovers, not an error.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]

    def __init__(self, config: ProteinMAEV5Config | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.patch_embed = PatchEmbedding(config.input_dim, config.embed_dim, max_length=config.max_length,
                                          num_patches=config.num_patches)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.encoder = TransformerStack(config, config.embed_dim, config.num_layers, config.nhead,
                                        config.dim_feedforward, config.dropout, config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        """The patch projection (input_dim -> embed_dim): where adapters and ``enable_input_require_grads`` hook."""
        return self.patch_embed.proj

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float = 0.0,
                generator: torch.Generator | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> ProteinMAEV5ModelOutput:
        """Encode all patches (default) or, with ``mask_ratio`` > 0, only a random subset of each protein's
        real patches; ``noise`` (B, num_patches) or ``generator`` fixes the choice. ``output_hidden_states``/
        ``output_attentions`` (default: the config's) add the encoder's states and attention probabilities;
        ``return_dict=False`` returns a tuple."""
        # NaN/inf are looked for in the pooled patches, in which every input value takes part: one pass fewer
        # over the (B, L, C) input, the largest tensor of a step at full length
        valid = check_residue_inputs(residue_embeddings, attention_mask, input_dim=self.config.input_dim,
                                     max_length=self.config.max_length, finite=False)
        ratio = check_mask_ratio(mask_ratio, 0.0)
        patch_inputs, positions, patch_valid = self.patch_embed.pool(residue_embeddings, valid)  # (B, P, C|D), (B, P)
        check_finite_through("residue_embeddings", residue_embeddings, patch_inputs)
        batch = patch_inputs.shape[0]
        mask = ids_keep = None
        token_valid, kept_inputs = patch_valid, patch_inputs
        if ratio > 0:   # hidden patches are dropped before the projection: it runs on the visible ones only
            noise = draw_noise(batch, self.config.num_patches, device=patch_inputs.device, generator=generator,
                               noise=noise)
            ids_keep, keep_padding, mask = split_valid_by_noise(noise, patch_valid, ratio)
            kept_inputs, positions = gather_tokens(patch_inputs, ids_keep), gather_tokens(positions, ids_keep)
            token_valid = ~keep_padding                                                        # (B, K)
        tokens = self.patch_embed.embed(kept_inputs, positions)                                # (B, K or P, D)
        hidden = torch.cat([self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens], dim=1)  # (B, 1+T, D)
        token_valid = with_cls(token_valid)
        encoded = self.encoder.run(
            hidden, padding_to_attention_mask(~token_valid, hidden.dtype),
            output_hidden_states=output_flag(output_hidden_states, self.config.output_hidden_states),
            output_attentions=output_flag(output_attentions, self.config.output_attentions))
        return ProteinMAEV5ModelOutput(last_hidden_state=encoded.last_hidden_state * token_valid[..., None],
                                       attention_mask=token_valid, mask=mask, ids_keep=ids_keep,
                                       patch_valid=patch_valid, hidden_states=encoded.hidden_states,
                                       attentions=encoded.attentions, patch_inputs=patch_inputs)

    def get_features(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **unused) -> torch.Tensor:
        """The feature rule of V5: the mean of the encoder's patch tokens over the patches that hold residues
        (B, embed_dim), nothing masked, CLS left out (deterministic in eval mode). ``hf_mae.extract_features``
        calls this."""
        out = self.forward(residue_embeddings, attention_mask, return_dict=True)
        return masked_mean(out.last_hidden_state[:, 1:], out.patch_valid)


class ProteinMAEV5Decoder(nn.Module):
    """Light decoder: encoder states of CLS + visible patches -> predicted patch means (B, P, input_dim).

    Visible tokens go back to their patch positions, every hidden patch gets the shared mask token, and a
    small transformer runs over CLS + all patches (patches past the protein's end are padding).
    """

    def __init__(self, config: ProteinMAEV5Config):
        super().__init__()
        self.num_patches = config.num_patches
        self.decoder_embed = nn.Linear(config.embed_dim, config.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.decoder_embed_dim))
        self.decoder = TransformerStack(config, config.decoder_embed_dim, config.decoder_num_layers,
                                        config.decoder_nhead, config.decoder_dim_feedforward, config.dropout,
                                        config.layer_norm_eps)
        self.pred = nn.Linear(config.decoder_embed_dim, config.input_dim)

    def forward(self, encoded: ProteinMAEV5ModelOutput) -> torch.Tensor:
        hidden = self.decoder_embed(encoded.last_hidden_state)                              # (B, 1+K, Dd)
        batch, dim = hidden.shape[0], hidden.shape[-1]
        # Scatter the visible slots into their patches; filler slots go to a spare column that is dropped.
        ids = torch.where(encoded.attention_mask[:, 1:], encoded.ids_keep, self.num_patches)    # (B, K)
        patches = self.mask_token.to(hidden.dtype).expand(batch, self.num_patches + 1, dim).clone()
        patches.scatter_(1, ids[..., None].expand(-1, -1, dim), hidden[:, 1:])
        hidden = torch.cat([hidden[:, :1], patches[:, :-1]], dim=1) + self.pos_embed.to(hidden.dtype)  # (B, 1+P, Dd)
        valid = with_cls(encoded.patch_valid)
        hidden = self.decoder(hidden, padding_to_attention_mask(~valid, hidden.dtype))
        return self.pred(hidden[:, 1:]) * encoded.patch_valid[..., None]                     # (B, P, input_dim)


class ProteinMAEV5ForPreTraining(ProteinMAEPreTrainedModel):
    """V5 pretraining: 75% of each protein's patches hidden, MSE on the hidden patches' mean embeddings.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV5Config, ProteinMAEV5ForPreTraining
        >>> cfg = ProteinMAEV5Config(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        ...                          decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2,
        ...                          decoder_dim_feedforward=32)
        >>> out = ProteinMAEV5ForPreTraining(cfg)(torch.randn(2, 1502, 32))
        >>> out.loss.ndim, out.last_hidden_state.shape, int(out.mask[0].sum())
        (0, torch.Size([2, 12, 16]), 36)
    """

    config_class = ProteinMAEV5Config
    accepts_loss_kwargs = False

    def __init__(self, config: ProteinMAEV5Config | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = ProteinMAEV5Model(config)
        self.decoder = ProteinMAEV5Decoder(config)
        self.post_init()

    def get_features(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                     **unused) -> torch.Tensor:
        """The wrapped encoder's ``get_features`` (the decoder plays no part)."""
        return self.mae.get_features(residue_embeddings, attention_mask)

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                return_loss: bool = True, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> ProteinMAEV5ForPreTrainingOutput:
        """In eval mode, masks come from ``config.eval_mask_seed`` unless ``noise`` is given."""
        ratio = check_mask_ratio(mask_ratio, self.config.mask_ratio)
        if ratio == 0:
            raise ValueError("`mask_ratio` must be > 0 for pretraining: with nothing hidden there is nothing to "
                             "reconstruct. Use ProteinMAEV5Model for features.")
        encoded = self.mae(residue_embeddings, attention_mask, mask_ratio=ratio, noise=noise,
                           generator=eval_mask_generator(self, noise), output_hidden_states=output_hidden_states,
                           output_attentions=output_attentions, return_dict=True)
        reconstruction = self.decoder(encoded)                                               # (B, P, input_dim)
        target = encoded.patch_inputs                       # (B, P, input_dim): what the patch tokens were made of
        loss = None
        if return_loss:
            loss = masked_reconstruction_loss(reconstruction, target, encoded.mask[..., None], "mse")
        return ProteinMAEV5ForPreTrainingOutput(loss=loss, reconstruction=reconstruction, target=target,
                                                mask=encoded.mask, last_hidden_state=encoded.last_hidden_state,
                                                hidden_states=encoded.hidden_states, attentions=encoded.attentions)


    @torch.no_grad()
    def masked_reconstruction(self, residue_embeddings: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a model card's reconstruction figure draws, for unpadded proteins (N, L, C): patch means, their
        prediction, each (N, P, C), and the (N, P) visible patches, over the P patches that hold residues."""
        noise = torch.rand(residue_embeddings.shape[0], self.config.num_patches, generator=generator)
        out = self.forward(residue_embeddings, noise=noise, return_loss=False, return_dict=True)
        patches = -(-residue_embeddings.shape[1] // self.config.patch_size)
        return out.target[:, :patches], out.reconstruction[:, :patches], ~out.mask[:, :patches]


MAEEncoder = ProteinMAEV5Model   # the reference package's name


class ProteinMAEV5ForSequenceClassification(SequenceClassifierMixin, ProteinMAEPreTrainedModel):
    """V5's encoder (all patches visible) with a per-protein regression/classification head
    (``hf_mae.models.heads``): ``classifier_pooling="cls"`` reads the [CLS] state, ``"mean"`` the mean over the
    patches that hold residues (V5's feature rule, ``get_features``).

    ``from_pretrained`` of a ``ProteinMAEV5ForPreTraining`` run (``mae.*``) or of a ``ProteinMAEV5Model``
    (prefix added) loads the encoder and initialises only ``classifier.*``; the decoder is not used.

    Example:
        >>> import torch
        >>> from hf_mae import ProteinMAEV5ForSequenceClassification
        >>> model = ProteinMAEV5ForSequenceClassification(input_dim=32, embed_dim=16, num_layers=1, nhead=2,
        ...     dim_feedforward=32, num_labels=3, classifier_pooling="mean")
        >>> tuple(model(torch.randn(2, 100, 32), labels=torch.tensor([0, 2])).logits.shape)
        (2, 3)
    """

    config_class = ProteinMAEV5Config
    lr_top_prefixes = ("mae.encoder.norm",)
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]   # the pretraining decoder

    def __init__(self, config: ProteinMAEV5Config | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = ProteinMAEV5Model(config)
        self.build_head(config.embed_dim)
        self.post_init()

    @can_return_tuple
    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None):
        """residue_embeddings (B, L, input_dim), right-padded, attention_mask (B, L) 1 = residue ->
        ``SequenceClassifierOutput``: ``logits`` (B, num_labels) and, with ``labels``, the mean ``loss``;
        the encoder's hidden states/attentions when asked for (default: the config's); ``return_dict=False``
        returns a tuple."""
        out = self.mae(residue_embeddings, attention_mask, output_hidden_states=output_hidden_states,
                       output_attentions=output_attentions, return_dict=True)               # (B, 1 + P, D)
        if self.classifier.pooling == "cls":
            logits = self.classifier(out.last_hidden_state)
        else:
            logits = self.classifier(out.last_hidden_state[:, 1:], out.patch_valid)
        return classification_output(logits, labels, self.config, out.hidden_states, out.attentions)
