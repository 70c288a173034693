"""Multimodal guided SpectralGPT: a 3D spatial-spectral masked autoencoder for hyperspectral cubes, guided
by auxiliary images (IR, autofluorescence, thickness ...) through cross-attention and aligned with them by
a contrastive loss. The HSI encoder stays the primary representation and runs alone downstream.

One tensor from input to loss (default sizes):

    pixel_values (B, 12, 224, 224)     HSI cube registered to analysis_dim (HyperspectralProcessor does this)
      -> patches (B, 784, 768)         3D patches of 3 bands x 16 x 16 pixels, order (band group, row, col)
      -> tokens (B, 784, 768)          linear embedding + spatial position + spectral position embedding
      -> visible (B, 196, 768)         75% of tokens hidden; `noise` (B, 784) fixes which
    aux_pixel_values[m] (B, C_m, 224, 224)
      -> aux_embeddings[m] (B, 256)    ViT- or CNN-style encoder per modality, globally averaged
      -> context (B, M, 768)           one conditioning vector per modality present
      -> visible (B, 196, 768)         cross-attention: HSI tokens attend to [HSI tokens, context]; only the
                                       HSI tokens are kept, with a residual (skipped where no modality is present)
      -> hidden (B, 196, 768)          16 main transformer blocks
      -> reconstruction (B, 784, 768)  decoder: mask tokens put back in place, predicts each patch's values
      -> reconstruction_loss           L2 on hidden tokens only
    hidden.mean(1) (B, 768) vs aux_embeddings[m]
      -> contrastive_loss              InfoNCE (temperature 0.07), averaged over the modalities present

The HSI encoder (``SpectralGPTModel``: patch and position embeddings + main blocks, no cross-attention) is a
model of its own: ``SpectralGPTForPreTraining.get_hsi_encoder()`` returns it, ``AutoModel`` loads it from a
pretraining checkpoint, and ``SpectralGPTForImageClassification`` fine-tunes it.

The file runs a little over 500 lines because it carries the whole architecture (3D patches, auxiliary
encoders, conditioning, decoder, both losses and the classification head): it travels to the Hub as one
remote-code file, and a reader follows one cube from input to loss in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_spectral_gpt import SpectralGPTConfig
from .heads import SequenceClassifierMixin, head_options, sequence_classification_loss
from .layers import (
    CrossAttentionLayer,
    TransformerStack,
    output_flag,
    padding_to_attention_mask,
    sinusoidal_positions,
    sinusoidal_positions_2d,
)
from .masking import draw_noise, eval_mask_generator, gather_tokens, masked_reconstruction_loss, split_by_noise
from .validation import check_tensor
from .serialization import HubCheckpointMixin

__all__ = [
    "SpectralGPTModel", "SpectralGPTForPreTraining", "SpectralGPTForImageClassification",
    "SpectralGPTPreTrainedModel", "SpectralGPTForPreTrainingOutput", "patchify_cube", "unpatchify_cube",
    "contrastive_loss",
]


# -- 3D patches -------------------------------------------------------------------------------------------
def patchify_cube(pixel_values: torch.Tensor, band_patch_size: int, patch_size: int) -> torch.Tensor:
    """(B, bands, H, W) -> (B, N, band_patch_size * patch_size**2), tokens ordered (band group, row, col).

    Example:
        >>> patchify_cube(torch.zeros(2, 12, 224, 224), 3, 16).shape
        torch.Size([2, 784, 768])
    """
    batch, bands, height, width = pixel_values.shape
    t, h, w = bands // band_patch_size, height // patch_size, width // patch_size
    x = pixel_values.reshape(batch, t, band_patch_size, h, patch_size, w, patch_size)
    x = x.permute(0, 1, 3, 5, 2, 4, 6)                       # (B, t, h, w, bp, p, p)
    return x.reshape(batch, t * h * w, band_patch_size * patch_size * patch_size)


def unpatchify_cube(patches: torch.Tensor, num_bands: int, image_size: int, band_patch_size: int,
                    patch_size: int) -> torch.Tensor:
    """Inverse of ``patchify_cube``: (B, N, patch_dim) -> (B, num_bands, image_size, image_size)."""
    batch = patches.shape[0]
    t, h = num_bands // band_patch_size, image_size // patch_size
    x = patches.reshape(batch, t, h, h, band_patch_size, patch_size, patch_size)
    x = x.permute(0, 1, 4, 2, 5, 3, 6)                       # (B, t, bp, h, p, w, p)
    return x.reshape(batch, num_bands, image_size, image_size)


class SeparablePositionEmbeddings(nn.Module):
    """Learned position embeddings as a spatial table plus a spectral table, broadcast-added to (1, t*h*w, D).

    The spectral table has one row per band group, so the band count is a configuration choice. Both start
    from fixed sin/cos values (set by ``_init_weights``).
    """

    def __init__(self, num_band_groups: int, grid_size: int, dim: int):
        super().__init__()
        self.num_band_groups, self.grid_size, self.dim = num_band_groups, grid_size, dim
        self.spatial = nn.Parameter(torch.zeros(1, 1, grid_size * grid_size, dim))
        self.spectral = nn.Parameter(torch.zeros(1, num_band_groups, 1, dim))

    def reset_sincos(self) -> None:
        init.copy_(self.spatial, sinusoidal_positions_2d(self.grid_size, self.grid_size, self.dim)[:, None])
        init.copy_(self.spectral, sinusoidal_positions(self.num_band_groups, self.dim)[:, :, None])

    def forward(self) -> torch.Tensor:
        return (self.spectral + self.spatial).flatten(1, 2)      # (1, t * h * w, D)


class SpectralGPTEmbeddings(nn.Module):
    """(B, bands, H, W) -> tokens (B, N, D): 3D patches, a linear embedding, spatial + spectral positions."""

    def __init__(self, config: SpectralGPTConfig):
        super().__init__()
        self.config = config
        self.patch_embeddings = nn.Linear(config.patch_dim, config.hidden_size)
        self.position_embeddings = SeparablePositionEmbeddings(config.num_band_groups, config.grid_size,
                                                               config.hidden_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        patches = patchify_cube(pixel_values, self.config.band_patch_size, self.config.patch_size)  # (B, N, P)
        tokens = self.patch_embeddings(patches.to(self.patch_embeddings.weight.dtype))              # (B, N, D)
        return tokens + self.position_embeddings().to(tokens.dtype)


# -- auxiliary encoders -------------------------------------------------------------------------------------
class AuxViTEncoder(nn.Module):
    """ViT-style encoder of one auxiliary image: (B, C, H, W) -> patches (B, P, A) -> transformer -> mean (B, A)."""

    def __init__(self, config: SpectralGPTConfig, num_channels: int):
        super().__init__()
        size = config.aux_hidden_size
        self.patch_embeddings = nn.Conv2d(num_channels, size, config.aux_patch_size, stride=config.aux_patch_size)
        grid = config.image_size // config.aux_patch_size
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid, size))
        self.transformer = TransformerStack(config, size, config.aux_num_hidden_layers, config.aux_num_attention_heads,
                                            config.aux_intermediate_size, config.dropout, config.layer_norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embeddings(images).flatten(2).transpose(1, 2)   # (B, P, A)
        tokens = self.transformer(tokens + self.position_embeddings.to(tokens.dtype))
        return tokens.mean(dim=1)                                           # global average: (B, A)


class AuxCNNEncoder(nn.Module):
    """CNN-style encoder of one auxiliary image: four stride-2 3x3 convolutions (widths A/8, A/4, A/2, A) with
    GroupNorm and GELU, then a global average: (B, C, H, W) -> (B, A).

    GroupNorm rather than BatchNorm: statistics stay per sample, so samples whose image is absent (zeros in
    the batch) do not leak into the others.
    """

    def __init__(self, config: SpectralGPTConfig, num_channels: int):
        super().__init__()
        widths = [config.aux_hidden_size // d for d in (8, 4, 2, 1)]
        layers, previous = [], num_channels
        for width in widths:
            layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.GELU()]
            previous = width
        self.convs = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(config.aux_hidden_size, eps=config.layer_norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convs(images).mean(dim=(2, 3)))               # (B, A)


AUX_ENCODERS = {"vit": AuxViTEncoder, "cnn": AuxCNNEncoder}


def contrastive_loss(z_hsi: torch.Tensor, z_aux: torch.Tensor, present: torch.Tensor, temperature: float,
                     symmetric: bool = False) -> torch.Tensor:
    """InfoNCE between HSI and auxiliary embeddings of the same samples, over the samples where aux is present.

    z_hsi, z_aux: (B, P) L2-normalised; present: (B,) bool. Row i scores HSI i against every present aux
    embedding; the match is aux i. Absent samples neither ask nor serve as negatives on the aux side. Returns
    the mean over present samples (0 when none is present). ``symmetric`` averages with the aux -> HSI
    direction, whose negatives are all HSI embeddings of the batch.
    """
    targets = torch.arange(z_hsi.shape[0], device=z_hsi.device)
    logits = (z_hsi @ z_aux.T).float() / temperature                    # (B, B) rows: HSI, columns: aux
    weight = present.to(logits.dtype)
    count = weight.sum().clamp_min(1.0)
    hsi_to_aux = F.cross_entropy(logits.masked_fill(~present[None, :], torch.finfo(logits.dtype).min), targets,
                                 reduction="none")
    loss = torch.where(present, hsi_to_aux, 0.0).sum() / count
    if symmetric:
        aux_to_hsi = F.cross_entropy(logits.T, targets, reduction="none")
        loss = 0.5 * (loss + torch.where(present, aux_to_hsi, 0.0).sum() / count)
    return loss


# -- outputs ----------------------------------------------------------------------------------------------
@dataclass
class SpectralGPTForPreTrainingOutput(ModelOutput):
    """Output of ``SpectralGPTForPreTraining``.

    loss: reconstruction_loss + contrastive_loss_weight * contrastive_loss (reconstruction alone without aux).
    reconstruction_loss: L2 on hidden tokens. contrastive_loss: mean of ``contrastive_losses`` over the
    modalities present in at least one sample (None without aux). contrastive_losses: modality -> InfoNCE.
    reconstruction: (B, N, patch_dim) predicted values of every 3D patch (``model.unpatchify`` -> cube).
    mask: (B, N) bool, one entry per HSI token, True = hidden from the encoder.
    ids_restore: (B, N) un-shuffles [visible, hidden] tokens back to token order.
    last_hidden_state: (B, K, D) encoder output for the K visible tokens.
    hsi_embedding: (B, D) average of ``last_hidden_state``, the global HSI representation.
    aux_embeddings: modality -> (B, aux_hidden_size) global vector of each auxiliary image given.
    aux_present: (B, M) bool, which of the given modalities each sample has, in ``aux_embeddings`` order.
    hidden_states, attentions: of the main blocks over the visible tokens, when asked for: the input of every
    block (after conditioning) and the last block's output (B, K, D); the attention probabilities (B, h, K, K).
    """

    loss: torch.Tensor | None = None
    reconstruction_loss: torch.Tensor | None = None
    contrastive_loss: torch.Tensor | None = None
    contrastive_losses: dict[str, torch.Tensor] | None = None
    reconstruction: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    ids_restore: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    hsi_embedding: torch.Tensor | None = None
    aux_embeddings: dict[str, torch.Tensor] | None = None
    aux_present: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# -- models -------------------------------------------------------------------------------------------------
class SpectralGPTPreTrainedModel(HubCheckpointMixin, PreTrainedModel):
    """Weight initialisation, input checks and class attributes shared by the SpectralGPT models."""

    config_class = SpectralGPTConfig
    base_model_prefix = "spectral_gpt"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerLayer", "CrossAttentionLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    # Loading the encoder (or the classifier) from a pretraining checkpoint leaves the pretraining-only parts
    # behind by design; do not report them as unexpected.
    _keys_to_ignore_on_load_unexpected = [r"^aux_", r"^conditioning\.", r"^hsi_projection\.", r"^decoder",
                                          r"^mask_token$"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, SeparablePositionEmbeddings):
            module.reset_sincos()
        elif isinstance(module, AuxViTEncoder):
            init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, SpectralGPTForPreTraining):
            init.trunc_normal_(module.mask_token, std=std)

    def get_features(self, pixel_values: torch.Tensor, **unused) -> torch.Tensor:
        """Deterministic (B, hidden_size) features: the HSI encoder on every token, averaged; no mask, no aux.
        ``hf_mae.analysis.features.extract_features`` and the "latent-feature-extraction" pipeline call this."""
        encoder = self if isinstance(self, SpectralGPTModel) else self.spectral_gpt
        return encoder(pixel_values).pooler_output

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        config = self.config
        check_tensor("pixel_values", pixel_values, ndim=4)
        if pixel_values.shape[1] != config.num_bands:
            raise ValueError(
                f"`pixel_values` has {pixel_values.shape[1]} bands (dimension 1 of shape {tuple(pixel_values.shape)}) "
                f"but the model expects num_bands={config.num_bands}; cubes are (batch, bands, height, width)."
            )
        if tuple(pixel_values.shape[2:]) != (config.image_size, config.image_size):
            raise ValueError(
                f"`pixel_values` is {tuple(pixel_values.shape[2:])} pixels but the model expects "
                f"{config.image_size} x {config.image_size} (image_size, a multiple of patch_size={config.patch_size}); "
                f"register cubes with HyperspectralProcessor(analysis_dim={config.image_size})."
            )


class SpectralGPTModel(SpectralGPTPreTrainedModel):
    """The HSI encoder alone: 3D patch + position embeddings and the main transformer blocks.

    ``forward(pixel_values)`` (B, bands, H, W) returns ``last_hidden_state`` (B, N, D) for every token and
    ``pooler_output`` (B, D), their average. No masking and no auxiliary input: deterministic features.

    Example:
        >>> import torch
        >>> from hf_mae import SpectralGPTConfig, SpectralGPTModel
        >>> config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32,
        ...                            num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
        >>> out = SpectralGPTModel(config)(torch.randn(2, 6, 32, 32))
        >>> tuple(out.last_hidden_state.shape), tuple(out.pooler_output.shape)
        ((2, 48, 32), (2, 32))
    """

    def __init__(self, config: SpectralGPTConfig):
        super().__init__(config)
        self.embeddings = SpectralGPTEmbeddings(config)
        self.encoder = TransformerStack(config, config.hidden_size, config.num_hidden_layers,
                                        config.num_attention_heads, config.intermediate_size, config.dropout,
                                        config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        """The 3D patch embedding (patch_dim -> hidden_size): where adapters and ``enable_input_require_grads``
        hook."""
        return self.embeddings.patch_embeddings

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> BaseModelOutputWithPooling:
        """pixel_values (B, bands, H, W) -> every token (B, N, D) and their average (B, D); ``hidden_states``
        and ``attentions`` of the main blocks when asked for (default: the config's)."""
        self._check_pixel_values(pixel_values)
        out = self.encoder.run(self.embeddings(pixel_values),                   # (B, N, D)
                               output_hidden_states=output_flag(output_hidden_states, self.config.output_hidden_states),
                               output_attentions=output_flag(output_attentions, self.config.output_attentions))
        hidden = out.last_hidden_state
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden.mean(dim=1),
                                          hidden_states=out.hidden_states, attentions=out.attentions)


class SpectralGPTForPreTraining(SpectralGPTPreTrainedModel):
    """The multimodal MAE: HSI encoder + auxiliary encoders + cross-attention conditioning + decoder.

    ``forward(pixel_values, aux_pixel_values={...}, aux_present={...}, noise=...)``:
    ``aux_pixel_values`` maps modality names to (B, C, H, W) images and may leave out any modality (or be
    None); ``aux_present`` maps a modality to a (B,) bool tensor when only some samples have it (their rows in
    ``aux_pixel_values`` are ignored). ``noise`` (B, N) or ``generator`` fixes the mask.

    Example:
        >>> import torch
        >>> from hf_mae import SpectralGPTConfig, SpectralGPTForPreTraining
        >>> config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32,
        ...     num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16,
        ...     decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32,
        ...     aux_hidden_size=16, aux_patch_size=8, aux_num_hidden_layers=1, aux_num_attention_heads=2,
        ...     aux_intermediate_size=32, projection_dim=8)
        >>> model = SpectralGPTForPreTraining(config)
        >>> out = model(torch.randn(4, 6, 32, 32), aux_pixel_values={"ir": torch.randn(4, 1, 32, 32)},
        ...             aux_present={"ir": torch.tensor([True, True, False, True])})
        >>> tuple(out.mask.shape), int(out.mask[0].sum()), sorted(out.contrastive_losses)
        ((4, 48), 36, ['ir'])
    """

    # The loss is a mean over this micro-batch: Trainer must divide by the accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: SpectralGPTConfig):
        super().__init__(config)
        self.spectral_gpt = SpectralGPTModel(config)
        # Auxiliary encoders, their conditioning vectors and the cross-attention that reads them.
        self.aux_encoders = nn.ModuleDict({
            name: AUX_ENCODERS[kind](config, config.aux_channels[name]) for name, kind in config.aux_encoder_types.items()
        })
        self.aux_to_hidden = nn.ModuleDict({name: nn.Linear(config.aux_hidden_size, config.hidden_size)
                                            for name in config.aux_modalities})
        # Without auxiliary modalities (a pure HSI MAE) nothing conditions the tokens and there is no contrastive
        # loss: those parts are not built, so that every parameter gets a gradient.
        has_aux = bool(config.aux_modalities)
        self.conditioning = nn.ModuleList(
            CrossAttentionLayer(config, config.hidden_size, config.num_attention_heads, config.intermediate_size,
                                config.dropout, config.layer_norm_eps)
            for _ in range(config.num_conditioning_layers if has_aux else 0)
        )
        # Contrastive heads into a shared space.
        self.hsi_projection = nn.Linear(config.hidden_size, config.projection_dim) if has_aux else None
        self.aux_projections = nn.ModuleDict({name: nn.Linear(config.aux_hidden_size, config.projection_dim)
                                              for name in config.aux_modalities})
        # MAE decoder.
        self.decoder_embed = nn.Linear(config.hidden_size, config.decoder_hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_hidden_size))
        self.decoder_position_embeddings = SeparablePositionEmbeddings(config.num_band_groups, config.grid_size,
                                                                       config.decoder_hidden_size)
        self.decoder = TransformerStack(config, config.decoder_hidden_size, config.decoder_num_hidden_layers,
                                        config.decoder_num_attention_heads, config.decoder_intermediate_size,
                                        config.dropout, config.layer_norm_eps)
        self.decoder_pred = nn.Linear(config.decoder_hidden_size, config.patch_dim)
        self.post_init()

    def get_hsi_encoder(self) -> SpectralGPTModel:
        """The HSI encoder (shares weights with this model): ``save_pretrained`` it and reload it with
        ``AutoModel``; it runs on HSI alone."""
        return self.spectral_gpt

    def patchify(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, N, patch_dim), the reconstruction target's layout."""
        return patchify_cube(pixel_values, self.config.band_patch_size, self.config.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, patch_dim) -> (B, bands, H, W), e.g. ``model.unpatchify(out.reconstruction)``."""
        c = self.config
        return unpatchify_cube(patches, c.num_bands, c.image_size, c.band_patch_size, c.patch_size)

    # -- input checks ---------------------------------------------------------------------------------------
    def _check_aux(self, batch: int, aux_pixel_values, aux_present) -> tuple[dict, dict]:
        aux_pixel_values = dict(aux_pixel_values or {})
        aux_present = dict(aux_present or {})
        size = self.config.image_size
        for name, images in aux_pixel_values.items():
            if name not in self.config.aux_channels:
                raise ValueError(f"Unknown modality {name!r} in `aux_pixel_values`; this model has "
                                 f"{self.config.aux_modalities}.")
            channels = self.config.aux_channels[name]
            check_tensor(f"aux_pixel_values[{name!r}]", images, ndim=4)
            if images.shape[1] != channels:
                raise ValueError(f"`aux_pixel_values[{name!r}]` has {images.shape[1]} channels (shape "
                                 f"{tuple(images.shape)}) but modality {name!r} has {channels}.")
            if images.shape[0] != batch or tuple(images.shape[2:]) != (size, size):
                raise ValueError(f"`aux_pixel_values[{name!r}]` must have shape ({batch}, {channels}, {size}, {size}) "
                                 f"like the cube batch, got {tuple(images.shape)}; register images with "
                                 f"HyperspectralProcessor.")
        for name, present in aux_present.items():
            if name not in aux_pixel_values:
                raise ValueError(f"`aux_present` names {name!r}, which is not in `aux_pixel_values` "
                                 f"({sorted(aux_pixel_values)}); leave a modality out of both when no sample has it.")
            check_tensor(f"aux_present[{name!r}]", present, ndim=1, shape=(batch,), floating=False)
            if present.dtype != torch.bool:
                raise ValueError(f"`aux_present[{name!r}]` must be a bool tensor, got dtype {present.dtype}.")
        return aux_pixel_values, aux_present

    # -- the steps, in the order the data flows ---------------------------------------------------------------
    def encode_aux(self, aux_pixel_values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Global vector (B, aux_hidden_size) of each given auxiliary image, in the config's modality order."""
        return {name: self.aux_encoders[name](aux_pixel_values[name].to(self.dtype))
                for name in self.config.aux_modalities if name in aux_pixel_values}

    def condition(self, visible: torch.Tensor, aux_embeddings: dict[str, torch.Tensor],
                  present: torch.Tensor) -> torch.Tensor:
        """Cross-attention conditioning: visible (B, K, D) HSI tokens attend to [HSI tokens, aux vectors].

        present: (B, M) bool over ``aux_embeddings``. Absent vectors are masked out of the attention; a sample
        with no modality at all keeps its tokens unchanged (its conditioning is skipped).
        """
        if not aux_embeddings or len(self.conditioning) == 0:
            return visible
        context = torch.stack([self.aux_to_hidden[name](vector) for name, vector in aux_embeddings.items()],
                              dim=1).to(visible.dtype)                              # (B, M, D)
        key_padding = torch.cat([torch.zeros_like(visible[..., 0], dtype=torch.bool), ~present], dim=1)  # (B, K+M)
        attention_mask = padding_to_attention_mask(key_padding, visible.dtype)      # (B, 1, 1, K+M)
        hidden = visible
        for layer in self.conditioning:
            hidden, _ = layer(hidden, torch.cat([hidden, context], dim=1), attention_mask)   # (B, K, D)
        has_any = present.any(dim=1)[:, None, None]                                 # (B, 1, 1)
        return torch.where(has_any, hidden, visible)

    def decode(self, hidden: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """hidden (B, K, D) visible tokens -> (B, N, patch_dim) predicted values of every patch."""
        x = self.decoder_embed(hidden)                                              # (B, K, Dd)
        batch, n_visible, width = x.shape
        mask_tokens = self.mask_token.to(x.dtype).expand(batch, ids_restore.shape[1] - n_visible, width)
        x = gather_tokens(torch.cat([x, mask_tokens], dim=1), ids_restore)          # (B, N, Dd) token order
        x = self.decoder(x + self.decoder_position_embeddings().to(x.dtype))
        return self.decoder_pred(x)                                                 # (B, N, patch_dim)

    def reconstruction_target(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """What the decoder predicts: (B, N, patch_dim) patch values, each patch standardised when
        ``config.norm_pix_loss``."""
        target = self.patchify(pixel_values)                                        # (B, N, patch_dim)
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def reconstruction_loss(self, pixel_values: torch.Tensor, reconstruction: torch.Tensor,
                            mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the values of hidden patches only."""
        target = self.reconstruction_target(pixel_values)
        return masked_reconstruction_loss(reconstruction, target, mask[..., None])      # (B, N, patch_dim)

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, aux_pixel_values: dict[str, torch.Tensor] | None = None,
                aux_present: dict[str, torch.Tensor] | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None, return_loss: bool = True,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None
                ) -> SpectralGPTForPreTrainingOutput:
        """Mask, condition, encode, decode; return the losses, reconstruction, mask and embeddings.

        In eval mode, masks come from ``config.eval_mask_seed`` unless ``noise`` or ``generator`` is given, so
        eval losses compare between checkpoints and evaluation leaves the training random stream alone.
        """
        self._check_pixel_values(pixel_values)
        batch, config = pixel_values.shape[0], self.config
        aux_pixel_values, aux_present = self._check_aux(batch, aux_pixel_values, aux_present)

        # Embed and mask the HSI tokens: the encoder sees the visible quarter only.
        tokens = self.spectral_gpt.embeddings(pixel_values)                         # (B, N, D)
        generator = generator or eval_mask_generator(self, noise)
        noise = draw_noise(batch, config.num_patches, device=tokens.device, generator=generator, noise=noise)
        ids_keep, mask, ids_restore = split_by_noise(noise, config.num_patches - config.num_masked)
        visible = gather_tokens(tokens, ids_keep)                                   # (B, K, D)

        # Auxiliary global vectors condition the visible tokens, then the main blocks run.
        aux_embeddings = self.encode_aux(aux_pixel_values)                          # name -> (B, A)
        all_present = torch.ones(batch, dtype=torch.bool, device=tokens.device)
        present = torch.stack([aux_present.get(name, all_present).to(tokens.device) for name in aux_embeddings],
                              dim=1) if aux_embeddings else all_present[:, None][:, :0]   # (B, M)
        encoded = self.spectral_gpt.encoder.run(
            self.condition(visible, aux_embeddings, present),
            output_hidden_states=output_flag(output_hidden_states, config.output_hidden_states),
            output_attentions=output_flag(output_attentions, config.output_attentions))
        hidden = encoded.last_hidden_state                                          # (B, K, D)
        hsi_embedding = hidden.mean(dim=1)                                          # (B, D)

        reconstruction = self.decode(hidden, ids_restore)                           # (B, N, patch_dim)
        loss = recon_loss = contrast = per_modality = None
        if return_loss:
            recon_loss = self.reconstruction_loss(pixel_values, reconstruction, mask)
            loss = recon_loss
            if aux_embeddings:
                z_hsi = F.normalize(self.hsi_projection(hsi_embedding), dim=-1)     # (B, P)
                per_modality = {}
                for column, (name, vector) in enumerate(aux_embeddings.items()):
                    z_aux = F.normalize(self.aux_projections[name](vector), dim=-1)
                    per_modality[name] = contrastive_loss(z_hsi, z_aux, present[:, column],
                                                          config.contrastive_temperature, config.contrastive_symmetric)
                # Average over the modalities that at least one sample has (no host sync).
                weight = present.any(dim=0).float()                                 # (M,)
                contrast = (torch.stack(list(per_modality.values())) * weight).sum() / weight.sum().clamp_min(1.0)
                loss = recon_loss + config.contrastive_loss_weight * contrast
        return SpectralGPTForPreTrainingOutput(
            loss=loss, reconstruction_loss=recon_loss, contrastive_loss=contrast, contrastive_losses=per_modality,
            reconstruction=reconstruction, mask=mask, ids_restore=ids_restore, last_hidden_state=hidden,
            hsi_embedding=hsi_embedding, aux_embeddings=aux_embeddings or None, aux_present=present,
            hidden_states=encoded.hidden_states, attentions=encoded.attentions,
        )


    @torch.no_grad()
    def masked_reconstruction(self, pixel_values: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a model card's reconstruction figure draws: the cubes, their reconstruction in the input's scale
        and the visible pixels, each (N, bands, H, W), with ``mask_ratio`` of the 3D tokens hidden."""
        out = self.forward(pixel_values, generator=generator, return_loss=False, return_dict=True)
        reconstruction = out.reconstruction                                         # (N, tokens, patch_dim)
        if self.config.norm_pix_loss:  # predicted in each patch's own scale: back to the input's
            target = self.patchify(pixel_values)
            scale = (target.var(-1, keepdim=True) + 1e-6).sqrt()
            reconstruction = reconstruction * scale + target.mean(-1, keepdim=True)
        # the token mask spread over the pixels and bands of each token's 3D patch
        visible = self.unpatchify((~out.mask)[..., None].expand_as(reconstruction).to(pixel_values.dtype)) > 0.5
        return pixel_values, self.unpatchify(reconstruction), visible


class SpectralGPTForImageClassification(SequenceClassifierMixin, SpectralGPTPreTrainedModel):
    """The HSI encoder with a linear head on its averaged tokens, for fine-tuning with ``Trainer``.

    ``labels``: class indices (B,) for single-label, floats (B, num_labels) for multi-label, or (B,) floats
    with ``num_labels=1`` for regression (``config.problem_type`` as in transformers). Loads the encoder of a
    ``SpectralGPTForPreTraining`` checkpoint: ``SpectralGPTForImageClassification.from_pretrained(path, num_labels=5)``.
    Config fields ``classifier_dropout``, ``freeze_encoder`` (linear probe) and ``layerwise_lr_decay``
    (``model.layerwise_lr_optimizer(lr)``) as for every head (``hf_mae.models.heads.SequenceClassifierMixin``).

    Example:
        >>> import torch
        >>> from hf_mae import SpectralGPTConfig, SpectralGPTForImageClassification
        >>> config = SpectralGPTConfig(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32,
        ...     num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=3)
        >>> out = SpectralGPTForImageClassification(config)(torch.randn(2, 6, 32, 32), labels=torch.tensor([0, 2]))
        >>> tuple(out.logits.shape), out.loss.ndim
        ((2, 3), 0)
    """

    # The loss is a mean over this micro-batch: Trainer must divide by the accumulation steps itself.
    accepts_loss_kwargs = False
    lr_top_prefixes = ("spectral_gpt.encoder.norm",)

    def __init__(self, config: SpectralGPTConfig):
        super().__init__(config)
        self.spectral_gpt = SpectralGPTModel(config)
        # named classifier_*: part of the head for freeze_encoder (parameterless, so no weight changes name)
        self.classifier_dropout = nn.Dropout(head_options(config).dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None
                ) -> ImageClassifierOutput:
        encoded = self.spectral_gpt(pixel_values, output_hidden_states=output_hidden_states,
                                    output_attentions=output_attentions, return_dict=True)
        pooled = encoded.pooler_output                                              # (B, D)
        logits = self.classifier(self.classifier_dropout(pooled))                   # (B, num_labels)
        loss = None
        if labels is not None:   # transformers' problem_type semantics, labels checked (hf_mae.models.heads)
            loss = sequence_classification_loss(logits, labels, self.config)
        return ImageClassifierOutput(loss=loss, logits=logits, hidden_states=encoded.hidden_states,
                                     attentions=encoded.attentions)
