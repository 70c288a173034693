"""Configurations of the protein MAEs over per-residue language-model embeddings (ESM C 300M: 960-d).

* ``ProteinMAEV2Config``: V2 (``TransformerMAE``), a 4-layer 512-d encoder that sees every residue
  (masked ones replaced by a mask token) and an MLP decoder back to the 960-d embeddings.
* ``ProteinMAEV5Config``: V5 (``MAEEncoder``), a ViT-B-sized encoder over 47 residue patches + CLS that
  sees only the visible patches, with a light decoder for pretraining.
* ``ProteinInteractionConfig``: a pair-interaction classifier on top of either encoder.

Field names follow the reference package (``embed_dim``, ``num_layers``, ``nhead``, ``mask_ratio``,
``scale_factor``); ``hidden_size``/``num_attention_heads``/``num_hidden_layers``/``intermediate_size`` are
aliases for transformers' tools.
"""

import math

from transformers import AutoConfig, PreTrainedConfig

from .validation import TRANSFORMERS_SIZE_NAMES, check_choice, check_float, check_heads, check_int, size_names_map

# transformers' size names for the ones the reference package stores
_ALIASES = size_names_map(("embed_dim", "nhead", "num_layers", "dim_feedforward"), TRANSFORMERS_SIZE_NAMES)


def _check_patches(name: str, num_patches: int, max_length: int) -> None:
    """Every patch must be reachable by a protein of max_length residues; else the last ones are always empty."""
    check_int(name, num_patches, maximum=max_length)
    patch_size = math.ceil(max_length / num_patches)
    if (num_patches - 1) * patch_size >= max_length:
        raise ValueError(
            f"`{name}`={num_patches} does not fit `max_length`={max_length}: with patch_size {patch_size} "
            f"(= ceil(max_length / {name})) the last patch would never hold a residue. Use fewer patches."
        )


class ProteinMAEConfig(PreTrainedConfig):
    """Fields shared by V2 and V5 (with V2's defaults); use ``ProteinMAEV2Config`` or ``ProteinMAEV5Config``."""

    attribute_map = _ALIASES

    input_dim: int = 960
    max_length: int = 1502
    embed_dim: int = 512
    num_layers: int = 4
    nhead: int = 16
    dim_feedforward: int = 2048
    dropout: float | int = 0.1
    mask_ratio: float | int = 0.5
    eval_mask_seed: int = 0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("input_dim", "max_length", "embed_dim", "num_layers", "nhead", "dim_feedforward"):
            check_int(name, getattr(self, name))
        check_heads("embed_dim", self.embed_dim, "nhead", self.nhead)
        check_float("mask_ratio", self.mask_ratio, minimum=0.0, maximum=1.0, maximum_exclusive=True)
        check_float("dropout", self.dropout, minimum=0.0, maximum=1.0, maximum_exclusive=True)
        check_float("initializer_range", self.initializer_range, minimum=0.0, minimum_exclusive=True)
        check_int("eval_mask_seed", self.eval_mask_seed, minimum=0)


class ProteinMAEV2Config(ProteinMAEConfig):
    r"""V2 protein MAE (``TransformerMAE``).

    Args:
        input_dim: width of the per-residue embeddings (960 for ESM C 300M).
        max_length: most residues per protein (learned position embeddings cover this many).
        embed_dim, num_layers, nhead, dim_feedforward, dropout: the encoder (512, 4, 16, 2048, 0.1).
        decoder_hidden_dim: hidden width of the MLP decoder embed_dim -> decoder_hidden_dim -> input_dim.
        mask_ratio: fraction of each protein's residues hidden during pretraining (0.5).
        huber_delta, scale_factor: the loss is ``huber(recon * scale_factor, target * scale_factor, delta)``
            over masked residues (0.5 and 5, as in the reference package).
        eval_mask_seed: seed of the masks the pretraining model draws in eval mode (comparable eval losses).

    Example:
        >>> from hf_mae import ProteinMAEV2Config
        >>> ProteinMAEV2Config().embed_dim, ProteinMAEV2Config(embed_dim=64, nhead=4).hidden_size
        (512, 64)
    """

    model_type = "hf_mae_protein_mae_v2"

    decoder_hidden_dim: int = 2048
    huber_delta: float | int = 0.5
    scale_factor: float | int = 5.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        check_int("decoder_hidden_dim", self.decoder_hidden_dim)
        check_float("huber_delta", self.huber_delta, minimum=0.0, minimum_exclusive=True)
        check_float("scale_factor", self.scale_factor, minimum=0.0, minimum_exclusive=True)


class ProteinMAEV5Config(ProteinMAEConfig):
    r"""V5 protein MAE (``MAEEncoder`` + light decoder).

    Residues map to patches by position: with ``patch_size = ceil(max_length / num_patches)`` (32 for 1502
    residues and 47 patches, 47 x 32 = 1504 >= 1502), residue ``i`` (0-based) belongs to patch
    ``i // patch_size``. A patch token is the mean over the real residues of its patch (padding excluded); a
    patch with no real residue (past the end of a shorter protein) is padding. The encoder sees CLS + 47
    patch tokens: (B, 48, embed_dim).

    Args:
        input_dim, max_length: as in V2 (960, 1502).
        num_patches: fixed number of residue patches (47).
        embed_dim, num_layers, nhead, dim_feedforward, dropout: the encoder (768, 12, 12, 3072, 0.0).
        decoder_embed_dim, decoder_num_layers, decoder_nhead, decoder_dim_feedforward: the pretraining decoder
            (512, 4, 16, 2048): a light transformer over all patches with mask tokens in the hidden places.
        mask_ratio: fraction of each protein's real patches hidden during pretraining (0.75).
        eval_mask_seed: seed of the masks the pretraining model draws in eval mode (comparable eval losses).

    Example:
        >>> from hf_mae import ProteinMAEV5Config
        >>> c = ProteinMAEV5Config()
        >>> c.num_patches, c.patch_size
        (47, 32)
    """

    model_type = "hf_mae_protein_mae_v5"

    embed_dim: int = 768
    num_layers: int = 12
    nhead: int = 12
    dim_feedforward: int = 3072
    dropout: float | int = 0.0
    mask_ratio: float | int = 0.75
    num_patches: int = 47
    decoder_embed_dim: int = 512
    decoder_num_layers: int = 4
    decoder_nhead: int = 16
    decoder_dim_feedforward: int = 2048

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("decoder_embed_dim", "decoder_num_layers", "decoder_nhead", "decoder_dim_feedforward"):
            check_int(name, getattr(self, name))
        check_heads("decoder_embed_dim", self.decoder_embed_dim, "decoder_nhead", self.decoder_nhead)
        _check_patches("num_patches", self.num_patches, self.max_length)

    @property
    def patch_size(self) -> int:
        """Residues per patch: ``ceil(max_length / num_patches)``."""
        return math.ceil(self.max_length / self.num_patches)


ENCODER_CONFIGS = {c.model_type: c for c in (ProteinMAEV2Config, ProteinMAEV5Config)}


class ProteinInteractionConfig(PreTrainedConfig):
    r"""Pair-interaction classifier over two proteins, on a V5 encoder or on a V2 encoder + ``V2ToV5Adapter``.

    Args:
        encoder_config: a ``ProteinMAEV5Config`` or ``ProteinMAEV2Config`` (or its dict); V5 by default.
        adapter_dim, adapter_num_patches, adapter_patch_size: the V5 format the V2 adapter maps to: 768-d tokens,
            CLS + 47 patches of 32 residues (residue i -> patch i // 32, as in V5); unused for a V5 encoder.
        cross_attention_layers, cross_attention_heads, cross_attention_dim_feedforward: the cross-attention
            blocks in which each protein's tokens attend to the other's.
        classifier_dropout: dropout before the classifier.
        freeze_encoder: train only the adapter, cross-attention and classifier (the reference design's quick V5.2 path).
        num_labels: 2 (interacting or not).

    Example:
        >>> from hf_mae import ProteinInteractionConfig, ProteinMAEV2Config
        >>> ProteinInteractionConfig().hidden_size
        768
        >>> ProteinInteractionConfig(encoder_config=ProteinMAEV2Config(), adapter_dim=384).hidden_size
        384
    """

    model_type = "hf_mae_protein_interaction"
    # transformers' size names for the cross-attention blocks (hidden_size is the property below)
    attribute_map = {"num_attention_heads": "cross_attention_heads", "num_hidden_layers": "cross_attention_layers",
                     "intermediate_size": "cross_attention_dim_feedforward"}
    # The encoder's config is a nested config: from_pretrained(attn_implementation=...) and the output flags
    # reach the encoder's layers through it.
    sub_configs = {"encoder_config": AutoConfig}

    encoder_config: PreTrainedConfig | dict | None = None
    adapter_dim: int = 768
    adapter_num_patches: int = 47
    adapter_patch_size: int = 32
    cross_attention_layers: int = 1
    cross_attention_heads: int = 12
    cross_attention_dim_feedforward: int = 3072
    classifier_dropout: float | int = 0.1
    freeze_encoder: bool = False
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.encoder_config is None:
            self.encoder_config = ProteinMAEV5Config()
        elif isinstance(self.encoder_config, dict):
            model_type = self.encoder_config.get("model_type", ProteinMAEV5Config.model_type)
            check_choice("encoder_config['model_type']", model_type, list(ENCODER_CONFIGS))
            fields = {k: v for k, v in self.encoder_config.items() if k != "model_type"}
            self.encoder_config = ENCODER_CONFIGS[model_type](**fields)
        elif not isinstance(self.encoder_config, (ProteinMAEV2Config, ProteinMAEV5Config)):
            raise ValueError(
                "`encoder_config` must be a ProteinMAEV5Config or ProteinMAEV2Config (or its dict), "
                f"got {type(self.encoder_config).__name__}."
            )
        super().__post_init__(**kwargs)
        for name in ("adapter_dim", "adapter_num_patches", "adapter_patch_size", "cross_attention_layers",
                     "cross_attention_heads", "cross_attention_dim_feedforward"):
            check_int(name, getattr(self, name))
        check_heads("hidden_size", self.hidden_size, "cross_attention_heads", self.cross_attention_heads)
        covered = self.adapter_num_patches * self.adapter_patch_size
        if self.uses_adapter and covered < self.encoder_config.max_length:
            raise ValueError(
                f"`adapter_num_patches` x `adapter_patch_size` = {covered} residues, fewer than the V2 encoder's "
                f"max_length={self.encoder_config.max_length}: the adapter's patches must cover every residue."
            )
        check_float("classifier_dropout", self.classifier_dropout, minimum=0.0, maximum=1.0, maximum_exclusive=True)
        if not isinstance(self.freeze_encoder, bool):
            raise ValueError(f"`freeze_encoder` must be a bool, got {self.freeze_encoder!r}.")

    @property
    def uses_adapter(self) -> bool:
        """True when the encoder is V2 and its states go through ``V2ToV5Adapter``."""
        return isinstance(self.encoder_config, ProteinMAEV2Config)

    @property
    def hidden_size(self) -> int:
        """Width of the token sets and of the interaction vector."""
        return self.adapter_dim if self.uses_adapter else self.encoder_config.embed_dim

    def to_dict(self) -> dict:
        out = super().to_dict()
        if isinstance(self.encoder_config, PreTrainedConfig):
            out["encoder_config"] = self.encoder_config.to_dict()
        return out
