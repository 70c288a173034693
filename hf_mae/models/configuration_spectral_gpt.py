"""Configuration of the multimodal guided SpectralGPT: a 3D spatial-spectral masked autoencoder for
hyperspectral cubes, conditioned on auxiliary images (IR, autofluorescence, thickness maps ...) and aligned
with them by a contrastive loss.
"""

import re

from transformers import PreTrainedConfig

from .validation import (REFERENCE_SIZE_NAMES, TRANSFORMERS_SIZE_NAMES, check_choice, check_float, check_heads,
                         check_int, size_names_map)

AUX_ENCODER_TYPES = ("vit", "cnn")
DEFAULT_AUX_MODALITIES = ("ir", "af", "thickness")
_MODALITY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpectralGPTConfig(PreTrainedConfig):
    r"""Configuration of ``SpectralGPTModel``, ``SpectralGPTForPreTraining`` and ``SpectralGPTForImageClassification``.

    HSI tokenisation: a cube (``num_bands``, ``image_size``, ``image_size``) is cut into 3D patches of
    ``band_patch_size`` bands x ``patch_size`` x ``patch_size`` pixels. The defaults (224 x 224 x 12 cube,
    16 x 16 x 3 patches) give 4 x 14 x 14 = 784 tokens of ``hidden_size`` 768. Spatial and spectral position
    embeddings are separate tables added together, so ``num_bands`` is a free choice (100+ band cubes: pick
    a ``band_patch_size`` that divides it).

    Args:
        image_size: ``analysis_dim``, the common height and width of every modality after registration.
        patch_size: spatial patch side (divides ``image_size``). num_bands: HSI bands.
        band_patch_size: bands per 3D patch (divides ``num_bands``).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: the main HSI transformer
            (16 blocks of 768 by default).
        num_conditioning_layers: cross-attention layers in which visible HSI tokens attend to themselves and
            to the auxiliary global vectors before the main blocks (pretraining model only).
        dropout: dropout in every transformer block.
        mask_ratio: fraction of HSI tokens hidden during pretraining (0.75).
        norm_pix_loss: reconstruct each patch normalised by its own mean and variance (as in MAE).
        decoder_*: the MAE decoder (narrower, shallower).
        aux_modalities: names of the auxiliary modalities (identifiers); ``[]`` for a pure HSI MAE.
        aux_num_channels: channels of each auxiliary image, one per modality (default 1 each).
        aux_encoder_type: ``"vit"`` or ``"cnn"``, for all modalities, or a list with one per modality.
        aux_hidden_size: width of each auxiliary encoder and of its global vector (256).
        aux_patch_size, aux_num_hidden_layers, aux_num_attention_heads, aux_intermediate_size: the ViT-style
            auxiliary encoder (the CNN-style one uses four stride-2 convolutions of widths
            ``aux_hidden_size`` / 8, / 4, / 2, / 1).
        projection_dim: the shared space of the contrastive loss.
        contrastive_temperature: InfoNCE temperature (0.07).
        contrastive_symmetric: also score aux -> HSI matches (CLIP-style); the reference design scores HSI -> aux only.
        contrastive_loss_weight: weight of the contrastive term in ``loss``.
        eval_mask_seed: seed of the masks the pretraining model draws in eval mode (comparable eval losses).

    Example:
        >>> from hf_mae import SpectralGPTConfig
        >>> config = SpectralGPTConfig()
        >>> config.num_patches, config.patch_dim, config.aux_modalities
        (784, 768, ['ir', 'af', 'thickness'])
    """

    # the reference packages' size names read and write transformers' ones
    attribute_map = size_names_map(TRANSFORMERS_SIZE_NAMES, REFERENCE_SIZE_NAMES)

    model_type = "hf_mae_spectral_gpt"

    image_size: int = 224
    patch_size: int = 16
    num_bands: int = 12
    band_patch_size: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 16
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    num_conditioning_layers: int = 1
    dropout: float | int = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 4
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    aux_modalities: list[str] | None = None
    aux_num_channels: list[int] | None = None
    aux_encoder_type: str | list[str] = "vit"
    aux_hidden_size: int = 256
    aux_patch_size: int = 16
    aux_num_hidden_layers: int = 4
    aux_num_attention_heads: int = 4
    aux_intermediate_size: int = 1024
    projection_dim: int = 256
    contrastive_temperature: float = 0.07
    contrastive_symmetric: bool = False
    contrastive_loss_weight: float | int = 1.0
    eval_mask_seed: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("image_size", "patch_size", "num_bands", "band_patch_size", "hidden_size", "num_hidden_layers",
                     "num_attention_heads", "intermediate_size", "decoder_hidden_size", "decoder_num_hidden_layers",
                     "decoder_num_attention_heads", "decoder_intermediate_size", "aux_hidden_size", "aux_patch_size",
                     "aux_num_hidden_layers", "aux_num_attention_heads", "aux_intermediate_size", "projection_dim"):
            check_int(name, getattr(self, name))
        check_int("num_conditioning_layers", self.num_conditioning_layers, minimum=0)
        for whole, part in (("image_size", "patch_size"), ("num_bands", "band_patch_size")):
            if getattr(self, whole) % getattr(self, part) != 0:
                divisors = [d for d in range(1, getattr(self, whole) + 1) if getattr(self, whole) % d == 0]
                raise ValueError(
                    f"`{whole}`={getattr(self, whole)} must be divisible by `{part}`={getattr(self, part)}: the cube "
                    f"is cut into whole patches. Divisors of {getattr(self, whole)}: {divisors}."
                )
        check_heads("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        check_heads("decoder_hidden_size", self.decoder_hidden_size, "decoder_num_attention_heads",
                    self.decoder_num_attention_heads)
        check_heads("aux_hidden_size", self.aux_hidden_size, "aux_num_attention_heads", self.aux_num_attention_heads)
        for name in ("hidden_size", "decoder_hidden_size", "aux_hidden_size"):
            if getattr(self, name) % 2:  # sin-cos position tables pair a sine with a cosine
                raise ValueError(f"`{name}` must be even, got {getattr(self, name)}.")
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, maximum_exclusive=True)
        check_float("mask_ratio", self.mask_ratio, minimum=0.0, maximum=1.0, minimum_exclusive=True,
                    maximum_exclusive=True)
        n_mask = self.num_masked
        if not 1 <= n_mask <= self.num_patches - 1:
            raise ValueError(
                f"`mask_ratio`={self.mask_ratio} hides {n_mask} of {self.num_patches} tokens; at least one token must "
                f"be hidden and one visible."
            )
        check_float("contrastive_temperature", self.contrastive_temperature, minimum=0.0, minimum_exclusive=True)
        check_float("contrastive_loss_weight", self.contrastive_loss_weight, minimum=0.0)
        check_int("eval_mask_seed", self.eval_mask_seed, minimum=0)
        for name in ("norm_pix_loss", "contrastive_symmetric"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}.")
        self._check_modalities()

    def _check_modalities(self) -> None:
        if self.aux_modalities is None:
            self.aux_modalities = list(DEFAULT_AUX_MODALITIES)
        if isinstance(self.aux_modalities, str) or not isinstance(self.aux_modalities, (list, tuple)):
            raise ValueError(f"`aux_modalities` must be a list of names, got {self.aux_modalities!r}.")
        self.aux_modalities = list(self.aux_modalities)
        for name in self.aux_modalities:
            if not isinstance(name, str) or not _MODALITY_NAME.match(name):
                raise ValueError(f"`aux_modalities` entries must be identifiers (letters, digits, _), got {name!r}.")
        if len(set(self.aux_modalities)) != len(self.aux_modalities):
            raise ValueError(f"`aux_modalities` must not repeat a name, got {self.aux_modalities}.")
        count = len(self.aux_modalities)
        if self.aux_num_channels is None:
            self.aux_num_channels = [1] * count
        if not isinstance(self.aux_num_channels, (list, tuple)) or len(self.aux_num_channels) != count:
            raise ValueError(
                f"`aux_num_channels` must list one channel count per modality ({count}: {self.aux_modalities}), "
                f"got {self.aux_num_channels!r}."
            )
        self.aux_num_channels = list(self.aux_num_channels)
        for channels in self.aux_num_channels:
            check_int("aux_num_channels", channels)
        types = self.aux_encoder_type
        types = [types] * count if isinstance(types, str) else types
        if not isinstance(types, (list, tuple)) or len(types) != count:
            raise ValueError(
                f"`aux_encoder_type` must be 'vit', 'cnn' or a list with one of them per modality ({count}), "
                f"got {self.aux_encoder_type!r}."
            )
        for kind in types:
            check_choice("aux_encoder_type", kind, AUX_ENCODER_TYPES)
        if "vit" in types and self.image_size % self.aux_patch_size != 0:
            raise ValueError(
                f"`image_size`={self.image_size} must be divisible by `aux_patch_size`={self.aux_patch_size} "
                f"for the ViT-style auxiliary encoders."
            )
        if "cnn" in types and self.aux_hidden_size % 8 != 0:
            raise ValueError(
                f"`aux_hidden_size`={self.aux_hidden_size} must be divisible by 8 for the CNN-style auxiliary "
                f"encoders (widths aux_hidden_size / 8, / 4, / 2, / 1)."
            )

    # -- derived sizes ----------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patches along each spatial side (14 by default)."""
        return self.image_size // self.patch_size

    @property
    def num_band_groups(self) -> int:
        """Patches along the spectral axis (4 by default)."""
        return self.num_bands // self.band_patch_size

    @property
    def num_patches(self) -> int:
        """HSI tokens per cube: band groups x grid x grid (784 by default)."""
        return self.num_band_groups * self.grid_size ** 2

    @property
    def num_masked(self) -> int:
        """HSI tokens hidden per cube during pretraining."""
        return int(round(self.mask_ratio * self.num_patches))

    @property
    def patch_dim(self) -> int:
        """Values in one 3D patch: band_patch_size x patch_size x patch_size (768 by default)."""
        return self.band_patch_size * self.patch_size ** 2

    @property
    def aux_encoder_types(self) -> dict[str, str]:
        """Modality name -> ``"vit"`` or ``"cnn"``."""
        types = self.aux_encoder_type
        types = [types] * len(self.aux_modalities) if isinstance(types, str) else types
        return dict(zip(self.aux_modalities, types))

    @property
    def aux_channels(self) -> dict[str, int]:
        """Modality name -> number of channels of its image."""
        return dict(zip(self.aux_modalities, self.aux_num_channels))
