"""Protein MAEs over per-residue protein-language-model embeddings, and a pair-interaction head.

Inputs everywhere: ``residue_embeddings`` (B, L, input_dim), right-padded, and ``attention_mask`` (B, L),
1 = residue, 0 = padding. Padding is never masked, never attended to, never in a loss, never pooled: each
protein of a mixed-length batch gets the outputs it gets alone (outputs at padding are zeros).

V2 (``TransformerMAE``), one tensor from input to loss:

    residue_embeddings (B, L, 960)
      -> embed (B, L, 512); masked residues (50% of each protein's real ones) replaced by ``mask_token``
      -> + position embeddings (added after the replacement, so a mask token still knows where it is)
      -> 4-layer transformer over every position, padding excluded       -> last_hidden_state (B, L, 512)
      -> MLP decoder 512 -> 2048 -> 960                                    -> reconstruction (B, L, 960)
      -> compressed (B, 960): mean of the reconstruction over the protein's residues
      -> loss: huber(recon * 5, target * 5, delta 0.5) on masked residues (ProteinMAEV2ForPreTraining)

V5 (``MAEEncoder`` + decoder):

    residue_embeddings (B, L, 960)
      -> patches (B, 47, 960): mean of the residues of each 32-residue patch (residue i -> patch i // 32)
      -> patch tokens (B, 47, 768) = Linear(patch mean) + mean of the residues' position embeddings
      -> keep 25% of each protein's real patches (B, K, 768), K = 11 slots; CLS in front (B, 12, 768)
      -> 12-layer transformer on visible tokens only
      -> decoder: 512-d, mask tokens in the hidden places, CLS + 47 positions, 4 layers -> (B, 47, 960)
      -> loss: MSE against the patch means on masked patches (ProteinMAEV5ForPreTraining)
    Without masking (``AutoModel``, downstream use) the encoder returns (B, 48, 768): CLS + 47 patches.

Pair interaction: each protein's token set (B, 48, 768) from V5, or from V2 states (B, L, 512) through
``V2ToV5Adapter``; A attends to B and B to A with the same cross-attention blocks; the two pooled vectors
give a symmetric interaction vector (B, 768); a linear classifier gives 2 logits.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_protein_mae import ProteinInteractionConfig, ProteinMAEV2Config, ProteinMAEV5Config
from .layers import CrossAttentionLayer, TransformerStack, padding_to_attention_mask
from .masking import draw_noise, gather_tokens, masked_reconstruction_loss, split_valid_by_noise
from .serialization import HubCheckpointMixin
from .validation import check_float, check_tensor

__all__ = [
    "TransformerMAE", "ProteinMAEV2ForPreTraining", "MAEEncoder", "PatchEmbedding", "ProteinMAEV5Decoder",
    "ProteinMAEV5ForPreTraining", "V2ToV5Adapter", "ProteinInteractionModel",
    "ProteinInteractionForSequenceClassification", "ProteinMAEPreTrainedModel", "pool_patches",
    "check_residue_inputs", "TransformerMAEOutput", "ProteinMAEV2ForPreTrainingOutput", "MAEEncoderOutput",
    "ProteinMAEV5ForPreTrainingOutput", "ProteinInteractionOutput",
]


# ---------------------------------------------------------------------------------------------------------
# Inputs and the residue -> patch mapping
# ---------------------------------------------------------------------------------------------------------

def check_residue_inputs(residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None, *,
                         input_dim: int, max_length: int) -> torch.Tensor:
    """Validate the inputs of every protein model and return the attention mask as bool (B, L).

    Refuses: a wrong embedding width, more than ``max_length`` positions, NaN/inf values (CPU tensors), a mask
    of another shape, a protein with no residue, and left padding (residue positions must start at 0).
    """
    check_tensor("residue_embeddings", residue_embeddings, ndim=3, shape=(None, None, input_dim))
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
    if valid.device.type == "cpu":  # on an accelerator these checks would sync every step; collators check first
        if not bool(valid.any(dim=1).all()):
            raise ValueError("`attention_mask` has a row with no residue: empty proteins cannot be encoded.")
        if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
            raise ValueError("`attention_mask` must be right-padded (1s then 0s in every row): residue i is "
                             "position i.")
    return valid


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
    # V5 pools the same residue embeddings twice per step (patch tokens, then the loss target): at full
    # length that is a memory-bound read of B x 1502 x 960 values each time. The second call reuses the first
    # one's result: same tensor object, unmodified (``_version``), same validity, same grad mode. Inputs that
    # need a gradient are not memoised (the memo would hold their graph), nor inference tensors (no versions).
    memoise = not (values.requires_grad or values.is_inference() or torch.is_inference_mode_enabled())
    key = (values._version, values.dtype, values.shape, patch_size, num_patches, torch.is_grad_enabled()) \
        if memoise else None
    last = _last_pooling.get("entry")
    if (memoise and last is not None and last[0]() is values and last[1] == key and torch.equal(last[2], valid)
            and last[3][0]._version == last[4]):          # nobody wrote into the pooled result since
        return last[3]
    shared = values.shape[0] == 1 and batch > 1
    weight = valid.to(values.dtype)                                                   # (B, L)
    # Weighted sums as batched products: a single read of ``values``, no (B, L, C) temporaries (inputs are
    # 1502 x 960 per protein). A shared table is multiplied per patch for all samples at once,
    # (F, B, S) @ (F, S, C), so neither it nor its gradient is ever B copies (an expanded table was a third
    # of a 1568-residue V5 step). In full precision, also under autocast.
    n_full = length // patch_size                                                     # patches with S positions
    head = n_full * patch_size
    with torch.autocast(values.device.type, enabled=False):
        if patch_size == 1:   # one residue per patch: a product, not B x P one-element matmuls (10x faster)
            sums = [(values[0] if shared else values) * weight[..., None]]                        # (B, L, C)
        elif shared:
            per_patch = weight[:, :head].reshape(batch, n_full, patch_size).transpose(0, 1)   # (F, B, S)
            table = values[0, :head].reshape(n_full, patch_size, channels)                    # (F, S, C)
            sums = [torch.bmm(per_patch, table).transpose(0, 1)]                             # (B, F, C)
        else:
            sums = [torch.matmul(weight[:, None, :head].reshape(batch, n_full, 1, patch_size),
                                 values[:, :head].reshape(batch, n_full, patch_size, channels)).squeeze(2)]
        counts = [weight[:, :head].reshape(batch, n_full, patch_size).sum(dim=2)]                       # (B, F)
        if head < length:       # the last positions start one more, shorter patch
            tail = torch.mm(weight[:, head:], values[0, head:])[:, None] if shared \
                else torch.bmm(weight[:, None, head:], values[:, head:])                                 # (B, 1, C)
            sums.append(tail)
            counts.append(weight[:, head:].sum(dim=1, keepdim=True))
        missing = num_patches - n_full - (head < length)                                  # past the input: empty
        sums.append(values.new_zeros(batch, missing, channels))
        counts.append(weight.new_zeros(batch, missing))
        sums, counts = torch.cat(sums, dim=1), torch.cat(counts, dim=1)                 # (B, P, C), (B, P)
    pooled = sums / counts.clamp_min(1.0)[..., None], counts > 0
    if memoise:   # a weak reference: the memo never keeps the input alive, and is dropped when the input is
        _last_pooling["entry"] = (weakref.ref(values, lambda _: _last_pooling.clear()), key, valid.clone(), pooled,
                                  pooled[0]._version)
    return pooled


_last_pooling: dict[str, tuple] = {}   # pool_patches' one-entry memo (see there)


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens: values (B, T, C), valid (B, T) bool -> (B, C)."""
    weight = valid.to(values.dtype)[..., None]
    return (values * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


def _eval_generator(model: nn.Module, noise: torch.Tensor | None) -> torch.Generator | None:
    """Fixed masks in eval mode: eval_loss is comparable between checkpoints and evaluation does not consume
    the training random stream (a resumed run draws the same training masks)."""
    if model.training or noise is not None:
        return None
    return torch.Generator().manual_seed(model.config.eval_mask_seed)


def _mask_ratio(ratio, default: float) -> float:
    ratio = default if ratio is None else ratio
    check_float("mask_ratio", ratio, minimum=0.0, maximum=1.0, maximum_exclusive=True)
    return float(ratio)


# ---------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------

@dataclass
class TransformerMAEOutput(ModelOutput):
    """V2 outputs. ``mask``: (B, L) bool, True = residue hidden from the encoder. Zeros at padding."""

    reconstruction: torch.Tensor | None = None      # (B, L, input_dim)
    last_hidden_state: torch.Tensor | None = None   # (B, L, embed_dim) per-residue encoder states
    compressed: torch.Tensor | None = None          # (B, input_dim) per-protein vector
    mask: torch.Tensor | None = None                # (B, L)
    attention_mask: torch.Tensor | None = None      # (B, L) bool, True = residue


@dataclass
class ProteinMAEV2ForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    compressed: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass
class MAEEncoderOutput(ModelOutput):
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


@dataclass
class ProteinMAEV5ForPreTrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None      # (B, num_patches, input_dim) predicted patch means
    target: torch.Tensor | None = None              # (B, num_patches, input_dim) actual patch means
    mask: torch.Tensor | None = None                # (B, num_patches) True = hidden patch
    last_hidden_state: torch.Tensor | None = None   # (B, 1 + K, D) encoder states of CLS + visible patches


@dataclass
class ProteinInteractionOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None              # (B, num_labels)
    interaction: torch.Tensor | None = None         # (B, hidden_size)


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------

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

    def forward(self, residue_embeddings: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = residue_embeddings.shape[1]
        patches, patch_valid = pool_patches(residue_embeddings, valid, self.patch_size, self.num_patches)  # (B, P, C)
        positions = self.pos_embed[:, :length].to(patches.dtype)                     # (1, L, D): one shared table
        patch_positions, _ = pool_patches(positions, valid, self.patch_size, self.num_patches)          # (B, P, D)
        return self.proj(patches) + patch_positions, patch_valid


class V2ToV5Adapter(nn.Module):
    """Map V2 encoder states (B, L, 512) to the V5 token format (B, 48, 768) with a CLS token.

    Residues are pooled into the V5 patches (``pool_patches``, the same mapping as ``MAEEncoder``), projected
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
        return tokens, _with_cls(patch_valid)


def _with_cls(valid: torch.Tensor) -> torch.Tensor:
    """Prepend an always-valid CLS column: (B, T) -> (B, 1 + T)."""
    return torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)


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


# ---------------------------------------------------------------------------------------------------------
# V2
# ---------------------------------------------------------------------------------------------------------

class TransformerMAE(ProteinMAEPreTrainedModel):
    """V2 protein MAE: mask-token encoder over every residue, MLP decoder, per-protein compressed vector.

    ``TransformerMAE(embed_dim=512, num_layers=4, nhead=16)`` or ``TransformerMAE(ProteinMAEV2Config(...))``.

    Example:
        >>> import torch
        >>> from hf_mae import TransformerMAE
        >>> mae = TransformerMAE(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
        ...                      decoder_hidden_dim=32, max_length=64)
        >>> out = mae(torch.randn(2, 20, 32), torch.ones(2, 20, dtype=torch.long))
        >>> out.reconstruction.shape, out.last_hidden_state.shape, out.compressed.shape, int(out.mask[0].sum())
        (torch.Size([2, 20, 32]), torch.Size([2, 20, 16]), torch.Size([2, 32]), 10)
    """

    config_class = ProteinMAEV2Config

    def __init__(self, config: ProteinMAEV2Config | None = None, **kwargs):
        config = _config_from(self.config_class, config, kwargs)
        super().__init__(config)
        self.embed = nn.Linear(config.input_dim, config.embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.max_length, config.embed_dim))
        self.encoder = TransformerStack(config, config.embed_dim, config.num_layers, config.nhead,
                                        config.dim_feedforward, config.dropout, config.layer_norm_eps)
        self.decoder = nn.Sequential(nn.Linear(config.embed_dim, config.decoder_hidden_dim), nn.GELU(),
                                     nn.Linear(config.decoder_hidden_dim, config.input_dim))
        self.post_init()

    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                mask_ratio: float | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> TransformerMAEOutput:
        """Mask ``mask_ratio`` (config: 0.5) of each protein's residues, encode, reconstruct.

        ``noise`` (B, L) or ``generator`` fixes the mask; ``mask_ratio=0`` encodes everything (see ``encode``).
        """
        valid = check_residue_inputs(residue_embeddings, attention_mask, input_dim=self.config.input_dim,
                                     max_length=self.config.max_length)
        batch, length, _ = residue_embeddings.shape
        ratio = _mask_ratio(mask_ratio, self.config.mask_ratio)
        noise = draw_noise(batch, length, device=residue_embeddings.device, generator=generator, noise=noise)
        mask = split_valid_by_noise(noise, valid, ratio)[2] if ratio > 0 else torch.zeros_like(valid)  # (B, L)

        tokens = self.embed(residue_embeddings)                                             # (B, L, D)
        tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.pos_embed[:, :length].to(tokens.dtype)
        hidden = self.encoder(tokens, padding_to_attention_mask(~valid, tokens.dtype))     # (B, L, D)
        hidden = hidden * valid[..., None]
        reconstruction = self.decoder(hidden) * valid[..., None]                            # (B, L, input_dim)
        return TransformerMAEOutput(reconstruction=reconstruction, last_hidden_state=hidden,
                                    compressed=masked_mean(reconstruction, valid), mask=mask,
                                    attention_mask=valid)

    def encode(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> TransformerMAEOutput:
        """Everything visible: deterministic per-residue states and compressed vector (call ``eval()`` first)."""
        return self.forward(residue_embeddings, attention_mask, mask_ratio=0.0)


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
        config = _config_from(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = TransformerMAE(config)
        self.post_init()

    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                return_loss: bool = True) -> ProteinMAEV2ForPreTrainingOutput:
        """In eval mode, masks come from ``config.eval_mask_seed`` unless ``noise`` is given."""
        out = self.mae(residue_embeddings, attention_mask, mask_ratio=mask_ratio, noise=noise,
                       generator=_eval_generator(self, noise))
        loss = None
        if return_loss:
            scale = self.config.scale_factor
            loss = masked_reconstruction_loss(out.reconstruction * scale, residue_embeddings * scale,
                                              out.mask[..., None].expand_as(residue_embeddings),
                                              "huber", self.config.huber_delta)
        return ProteinMAEV2ForPreTrainingOutput(loss=loss, reconstruction=out.reconstruction,
                                                last_hidden_state=out.last_hidden_state,
                                                compressed=out.compressed, mask=out.mask)


# ---------------------------------------------------------------------------------------------------------
# V5
# ---------------------------------------------------------------------------------------------------------

class MAEEncoder(ProteinMAEPreTrainedModel):
    """V5 encoder: CLS + 47 residue patches -> 12-layer ViT-B transformer -> (B, 48, 768).

    With ``mask_ratio > 0`` (pretraining) only CLS and the visible patches are encoded (MAE style).

    Example:
        >>> import torch
        >>> from hf_mae import MAEEncoder
        >>> enc = MAEEncoder(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32)
        >>> enc(torch.randn(2, 100, 32)).last_hidden_state.shape
        torch.Size([2, 48, 16])
    """

    config_class = ProteinMAEV5Config
    # Loaded from a pretraining checkpoint, the decoder's weights are expected leftovers, not an error.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]

    def __init__(self, config: ProteinMAEV5Config | None = None, **kwargs):
        config = _config_from(self.config_class, config, kwargs)
        super().__init__(config)
        self.patch_embed = PatchEmbedding(config.input_dim, config.embed_dim, max_length=config.max_length,
                                          num_patches=config.num_patches)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.encoder = TransformerStack(config, config.embed_dim, config.num_layers, config.nhead,
                                        config.dim_feedforward, config.dropout, config.layer_norm_eps)
        self.post_init()

    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                mask_ratio: float = 0.0, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> MAEEncoderOutput:
        """Encode all patches (default) or, with ``mask_ratio`` > 0, only a random subset of each protein's
        real patches; ``noise`` (B, num_patches) or ``generator`` fixes the choice."""
        valid = check_residue_inputs(residue_embeddings, attention_mask, input_dim=self.config.input_dim,
                                     max_length=self.config.max_length)
        ratio = _mask_ratio(mask_ratio, 0.0)
        tokens, patch_valid = self.patch_embed(residue_embeddings, valid)                  # (B, P, D), (B, P)
        batch = tokens.shape[0]
        mask = ids_keep = None
        token_valid = patch_valid
        if ratio > 0:
            noise = draw_noise(batch, self.config.num_patches, device=tokens.device, generator=generator, noise=noise)
            ids_keep, keep_padding, mask = split_valid_by_noise(noise, patch_valid, ratio)
            tokens, token_valid = gather_tokens(tokens, ids_keep), ~keep_padding           # (B, K, D), (B, K)
        hidden = torch.cat([self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens], dim=1)  # (B, 1+T, D)
        token_valid = _with_cls(token_valid)
        hidden = self.encoder(hidden, padding_to_attention_mask(~token_valid, hidden.dtype))
        return MAEEncoderOutput(last_hidden_state=hidden * token_valid[..., None], attention_mask=token_valid,
                                mask=mask, ids_keep=ids_keep, patch_valid=patch_valid)


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

    def forward(self, encoded: MAEEncoderOutput) -> torch.Tensor:
        hidden = self.decoder_embed(encoded.last_hidden_state)                              # (B, 1+K, Dd)
        batch, dim = hidden.shape[0], hidden.shape[-1]
        # Scatter the visible slots into their patches; filler slots go to a spare column that is dropped.
        ids = torch.where(encoded.attention_mask[:, 1:], encoded.ids_keep, self.num_patches)    # (B, K)
        patches = self.mask_token.to(hidden.dtype).expand(batch, self.num_patches + 1, dim).clone()
        patches.scatter_(1, ids[..., None].expand(-1, -1, dim), hidden[:, 1:])
        hidden = torch.cat([hidden[:, :1], patches[:, :-1]], dim=1) + self.pos_embed.to(hidden.dtype)  # (B, 1+P, Dd)
        valid = _with_cls(encoded.patch_valid)
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
        config = _config_from(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = MAEEncoder(config)
        self.decoder = ProteinMAEV5Decoder(config)
        self.post_init()

    def forward(self, residue_embeddings: torch.Tensor, attention_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, mask_ratio: float | None = None,
                return_loss: bool = True) -> ProteinMAEV5ForPreTrainingOutput:
        """In eval mode, masks come from ``config.eval_mask_seed`` unless ``noise`` is given."""
        ratio = _mask_ratio(mask_ratio, self.config.mask_ratio)
        if ratio == 0:
            raise ValueError("`mask_ratio` must be > 0 for pretraining: with nothing hidden there is nothing to "
                             "reconstruct. Use MAEEncoder for features.")
        encoded = self.mae(residue_embeddings, attention_mask, mask_ratio=ratio, noise=noise,
                           generator=_eval_generator(self, noise))
        reconstruction = self.decoder(encoded)                                               # (B, P, input_dim)
        valid = torch.ones_like(residue_embeddings[..., 0], dtype=torch.bool) if attention_mask is None \
            else attention_mask.bool()
        target, _ = pool_patches(residue_embeddings, valid, self.config.patch_size, self.config.num_patches)
        loss = None
        if return_loss:
            loss = masked_reconstruction_loss(reconstruction, target, encoded.mask[..., None].expand_as(target), "mse")
        return ProteinMAEV5ForPreTrainingOutput(loss=loss, reconstruction=reconstruction, target=target,
                                                mask=encoded.mask, last_hidden_state=encoded.last_hidden_state)


# ---------------------------------------------------------------------------------------------------------
# Pair interaction
# ---------------------------------------------------------------------------------------------------------

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
            self.encoder = TransformerMAE(encoder_config)
            self.adapter = V2ToV5Adapter(encoder_config.embed_dim, config.hidden_size,
                                         num_patches=config.adapter_num_patches, patch_size=config.adapter_patch_size)
        else:
            self.encoder = MAEEncoder(encoder_config)
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
    def from_encoder(cls, encoder: TransformerMAE | MAEEncoder | ProteinMAEV2ForPreTraining | ProteinMAEV5ForPreTraining,
                     **config_kwargs):
        """Build the model around a (pretrained) V2 or V5 encoder, copying its weights.

        Example:
            >>> from hf_mae import MAEEncoder, ProteinInteractionForSequenceClassification
            >>> enc = MAEEncoder(input_dim=32, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32)
            >>> model = ProteinInteractionForSequenceClassification.from_encoder(
            ...     enc, cross_attention_heads=2, cross_attention_dim_feedforward=32)
            >>> model.config.hidden_size
            16
        """
        encoder = getattr(encoder, "mae", encoder)
        if not isinstance(encoder, (TransformerMAE, MAEEncoder)):
            raise ValueError(f"`encoder` must be a V2 or V5 protein MAE, got {type(encoder).__name__}.")
        model = cls(ProteinInteractionConfig(encoder_config=encoder.config, **config_kwargs))
        model.get_encoder().load_state_dict(encoder.state_dict())
        return model

    def get_encoder(self) -> TransformerMAE | MAEEncoder:
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

    def get_encoder(self) -> TransformerMAE | MAEEncoder:
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


def _config_from(config_class, config, kwargs):
    """``Model(config)`` or ``Model(**fields)``, the way the seed builds ``TransformerMAE(embed_dim=...)``."""
    if config is None:
        return config_class(**kwargs)
    if kwargs:
        raise ValueError(f"Pass either `config` or keyword arguments, not both (got {sorted(kwargs)}).")
    if not isinstance(config, config_class):
        raise ValueError(f"`config` must be a {config_class.__name__}, got {type(config).__name__}.")
    return config
