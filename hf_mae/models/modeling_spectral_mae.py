"""ChemoMAE and WaveMAE: masked autoencoders for 1D spectra (NIR, IR, Raman, hyperspectral pixels).

One tensor from input to loss:

    x (B, L) spectrum on the model's wavelength grid
      -> blocks (B, N, S)           N = n_blocks contiguous blocks of S = L / N points
      -> tokens (B, N, D)           each block linearly embedded, plus its position embedding
      -> visible tokens (B, K, D)   K = N - n_mask blocks kept (same K for every sample: no padding)
      -> [CLS] + visible (B, 1+K, D) -> transformer -> CLS (B, D)   (the last layer computes the CLS row only)
      -> z (B, latent_dim)          projected and L2-normalised: a point on the unit hypersphere
      -> x_recon (B, L)             decoder (linear for ChemoMAE, 3-layer MLP for WaveMAE)
      -> loss                       on masked points only (ForPreTraining models)

Each block is one token (a 1D patch), as in the published chemomae package: masking is block-wise, so a
token per point inside a block would add cost but no information about what is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_spectral_mae import ChemoMAEConfig, SpectralMAEConfig, WaveMAEConfig
from .heads import SequenceClassifierMixin, classification_output
from .layers import TransformerStack, output_flag, padding_to_attention_mask, sinusoidal_positions
from .masking import (draw_noise, eval_mask_generator, gather_tokens, make_block_mask, masked_reconstruction_loss,
                      split_by_noise, visible_block_ids)
from .serialization import HubCheckpointMixin
from .validation import check_int, check_tensor, config_from_arguments

__all__ = [
    "ChemoMAE", "WaveMAE", "ChemoMAEForPreTraining", "WaveMAEForPreTraining", "ChemoEncoder", "WaveEncoder",
    "ChemoDecoderMLP", "WaveDecoderMLP", "SpectralEncoder", "SpectralMAEOutput", "SpectralMAEForPreTrainingOutput",
    "SpectralMAEPreTrainedModel", "make_block_mask", "masked_reconstruction_loss",
    "ChemoMAEForSequenceClassification", "WaveMAEForSequenceClassification",
]


@dataclass
class SpectralMAEOutput(ModelOutput):
    """What ``ChemoMAE``/``WaveMAE`` return: a ``ModelOutput`` that unpacks as the seeds' triple.

    ``x_recon, z, visible = mae(x)`` works as in the seeds: iterating this output yields exactly
    ``(x_recon, z, visible_mask)``, also when ``hidden_states``/``attentions`` were asked for. Everything else is
    transformers' ``ModelOutput``: fields by name (``out.z``), by key (``out["z"]``), by position (``out[0]``),
    ``keys()``/``items()``, and ``return_dict=False`` gives the plain tuple ``out.to_tuple()``. The one
    difference from other ``ModelOutput``s is iteration, which yields these three values instead of field names
    (use ``keys()`` for the names).

    Example:
        >>> import torch
        >>> from hf_mae.models import ChemoMAE
        >>> mae = ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=2, latent_dim=8, n_blocks=8, n_mask=4)
        >>> out = mae(torch.randn(2, 64), output_hidden_states=True)
        >>> x_recon, z, visible = out
        >>> x_recon.shape, len(out.hidden_states), list(out.keys())
        (torch.Size([2, 64]), 3, ['x_recon', 'z', 'visible_mask', 'hidden_states'])
    """

    x_recon: torch.Tensor | None = None        # (B, L) reconstruction of the whole spectrum
    z: torch.Tensor | None = None              # (B, latent_dim) L2-normalised latent
    visible_mask: torch.Tensor | None = None   # (B, L) bool, True = visible to the encoder
    hidden_states: tuple[torch.Tensor, ...] | None = None   # num_layers + 1 x (B, 1 + K, D): CLS + visible blocks
    attentions: tuple[torch.Tensor, ...] | None = None      # num_layers x (B, heads, 1 + K, 1 + K)

    def __iter__(self):
        return iter((self.x_recon, self.z, self.visible_mask))


@dataclass
class SpectralMAEForPreTrainingOutput(ModelOutput):
    """Output of the pretraining models: ``loss`` on masked points, plus what the MAE returned."""

    loss: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    visible_mask: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class SpectralEncoder(nn.Module):
    """Encoder shared by ChemoMAE and WaveMAE: visible blocks + [CLS] -> transformer -> unit-norm latent.

    ``forward(x, visible_mask)`` takes spectra (B, L) and a (B, L) bool mask (True = visible, block-aligned;
    None = everything visible) and returns ``z`` (B, latent_dim) with ``z.norm(dim=1) == 1``.
    """

    def __init__(self, config: SpectralMAEConfig):
        super().__init__()
        self.config = config
        self.n_blocks, self.block_size = config.n_blocks, config.block_size
        self.patch_embed = nn.Linear(config.block_size, config.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.n_blocks, config.d_model)) if config.use_learnable_pos else None
        self.transformer = TransformerStack(config, config.d_model, config.num_layers, config.nhead,
                                            config.dim_feedforward, config.dropout, config.layer_norm_eps)
        self.to_latent = nn.Linear(config.d_model, config.latent_dim)

    def position_embeddings(self, dtype: torch.dtype, device) -> torch.Tensor:
        if self.pos_embed is not None:
            return self.pos_embed
        return sinusoidal_positions(self.n_blocks, self.config.d_model, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, visible_mask: torch.Tensor | None = None, *,
                ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode. ``ids_keep`` (B, K) visible block indices is the fast path used by the MAE's own masks."""
        return self.run(x, visible_mask, ids_keep=ids_keep)[0]

    def run(self, x: torch.Tensor, visible_mask: torch.Tensor | None = None, *, ids_keep: torch.Tensor | None = None,
            output_hidden_states: bool = False, output_attentions: bool = False
            ) -> tuple[torch.Tensor, BaseModelOutput]:
        """``forward`` plus the transformer's output (hidden states and attentions when asked for)."""
        batch = x.shape[0]
        tokens = self.patch_embed(x.view(batch, self.n_blocks, self.block_size))     # (B, N, D)
        tokens = tokens + self.position_embeddings(tokens.dtype, tokens.device)
        key_padding = None
        if ids_keep is None and visible_mask is not None:
            ids_keep, key_padding = visible_block_ids(visible_mask, self.n_blocks)
        if ids_keep is not None:
            tokens = gather_tokens(tokens, ids_keep)                                  # (B, K, D)
        hidden = torch.cat([self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens], dim=1)  # (B, 1+K, D)
        attention_mask = None
        if key_padding is not None:  # only when samples see different numbers of blocks
            cls_pad = torch.zeros(batch, 1, dtype=torch.bool, device=key_padding.device)
            attention_mask = padding_to_attention_mask(torch.cat([cls_pad, key_padding], dim=1), hidden.dtype)
        out = self.transformer.run(hidden, attention_mask, n_outputs=1, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions)             # only CLS is read
        z = F.normalize(self.to_latent(out.last_hidden_state[:, 0]), dim=-1)         # (B, latent_dim)
        return z, out

    def token_states(self, x: torch.Tensor, *, output_hidden_states: bool = False,
                     output_attentions: bool = False) -> BaseModelOutput:
        """Every token's final state, all blocks visible: (B, L) -> ``last_hidden_state`` (B, 1 + n_blocks, D),
        [CLS] first (+ the transformer's hidden states and attentions when asked for).

        ``forward`` computes only the [CLS] row in the last layer; mean pooling needs every row, so this runs
        the full last layer.
        """
        batch = x.shape[0]
        tokens = self.patch_embed(x.view(batch, self.n_blocks, self.block_size))     # (B, N, D)
        tokens = tokens + self.position_embeddings(tokens.dtype, tokens.device)
        hidden = torch.cat([self.cls_token.expand(batch, -1, -1).to(tokens.dtype), tokens], dim=1)  # (B, 1+N, D)
        return self.transformer.run(hidden, output_hidden_states=output_hidden_states,
                                    output_attentions=output_attentions)


class ChemoEncoder(SpectralEncoder):
    """ChemoMAE's encoder (``SpectralEncoder``; the name the reference package gives it)."""


class WaveEncoder(SpectralEncoder):
    """WaveMAE's encoder (``SpectralEncoder``; the name the reference package gives it)."""


class ChemoDecoderMLP(nn.Module):
    """ChemoMAE's decoder: a single linear layer latent (B, latent_dim) -> spectrum (B, L), not an MLP
    (the class keeps the reference package's name).

    Deliberately weak, so the encoder carries the learning burden.
    """

    def __init__(self, config: SpectralMAEConfig):
        super().__init__()
        self.proj = nn.Linear(config.latent_dim, config.seq_len)
        self.proj.reads_unit_sphere = True  # see SpectralMAEPreTrainedModel._init_weights

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.proj(z)


class WaveDecoderMLP(nn.Module):
    """WaveMAE's decoder: latent -> dec_hidden -> dec_hidden -> L, GELU and dropout between layers."""

    def __init__(self, config: SpectralMAEConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.latent_dim, config.dec_hidden), nn.GELU(), nn.Dropout(config.dec_dropout),
            nn.Linear(config.dec_hidden, config.dec_hidden), nn.GELU(), nn.Dropout(config.dec_dropout),
            nn.Linear(config.dec_hidden, config.seq_len),
        )
        self.net[0].reads_unit_sphere = True  # see SpectralMAEPreTrainedModel._init_weights

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SpectralMAEPreTrainedModel(HubCheckpointMixin, PreTrainedModel):
    """Weight initialisation and class attributes shared by the spectral MAEs."""

    config_class = SpectralMAEConfig
    base_model_prefix = "mae"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if getattr(module, "reads_unit_sphere", False):
            # The decoder reads z from the unit sphere, whose entries are ~1/sqrt(latent_dim), not ~1. With the
            # usual std 0.02 its output, and the gradient the encoder gets through it, start tiny and training
            # sits on a plateau; std 1 gives the first decoder layer unit-variance outputs.
            init.normal_(module.weight, mean=0.0, std=1.0)
        if isinstance(module, SpectralEncoder):
            init.trunc_normal_(module.cls_token, std=self.config.initializer_range)
            if module.pos_embed is not None:
                init.trunc_normal_(module.pos_embed, std=self.config.initializer_range)

    def get_features(self, input_values: torch.Tensor, **unused) -> torch.Tensor:
        """The feature rule of the spectral MAEs: the all-visible latent ``z`` (B, latent_dim), L2-normalised
        (``encode(input_values)``; deterministic in eval mode). ``hf_mae.extract_features`` and the
        "latent-feature-extraction" pipeline call this."""
        return self.encode(input_values, visible_mask=None)


class _SpectralMAE(SpectralMAEPreTrainedModel):
    """The MAE itself. Subclasses choose the config and the decoder."""

    encoder_class: type[SpectralEncoder]
    decoder_class: type[nn.Module]

    def __init__(self, config: SpectralMAEConfig | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.encoder = self.encoder_class(config)
        self.decoder = self.decoder_class(config)
        self.post_init()

    # -- masks ---------------------------------------------------------------------------------------
    def _n_mask(self, n_mask: int | None) -> int:
        n_mask = self.config.n_mask if n_mask is None else n_mask
        check_int("n_mask", n_mask, minimum=0, maximum=self.config.n_blocks - 1)
        return n_mask

    def _draw_blocks(self, batch_size: int, n_mask: int, device, generator, noise):
        """ids_keep (B, K) visible blocks and visible_mask (B, L), with K known without a host sync."""
        noise = draw_noise(batch_size, self.config.n_blocks, device=device, generator=generator, noise=noise)
        ids_keep, block_masked, _ = split_by_noise(noise, self.config.n_blocks - n_mask)
        visible_mask = (~block_masked).repeat_interleave(self.config.block_size, dim=1)   # (B, L)
        return ids_keep, visible_mask

    def make_visible(self, batch_size: int, *, n_mask: int | None = None, device=None,
                     generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """A (B, L) bool visible mask (True = visible) with ``n_mask`` hidden blocks per sample."""
        check_int("batch_size", batch_size)
        device = device if device is not None else self.device
        return self._draw_blocks(batch_size, self._n_mask(n_mask), device, generator, noise)[1]

    def _check_inputs(self, x: torch.Tensor, visible_mask: torch.Tensor | None) -> None:
        check_tensor("x", x, ndim=2, shape=(None, self.config.seq_len))
        if visible_mask is not None:
            check_tensor("visible_mask", visible_mask, ndim=2, shape=tuple(x.shape), floating=False)
            if visible_mask.dtype != torch.bool:
                raise ValueError(f"`visible_mask` must be a bool tensor (True = visible), got dtype {visible_mask.dtype}.")

    # -- forward ---------------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Linear:
        """The block embedding (block_size -> d_model): where adapters and ``enable_input_require_grads`` hook."""
        return self.encoder.patch_embed

    @can_return_tuple
    def forward(self, input_values: torch.Tensor, visible_mask: torch.Tensor | None = None, *,
                n_mask: int | None = None, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None
                ) -> SpectralMAEOutput:
        """Mask, encode and reconstruct: returns ``(x_recon, z, visible_mask)`` (a ``SpectralMAEOutput``).

        ``input_values`` (B, L) are the spectra, the seeds' ``x`` (they pass it by position, ``mae(x)``): the
        name is transformers' for spectra, so ``mae(**processor(spectra))``, pipelines and ``extract_features``
        find it (``main_input_name``).

        Without ``visible_mask`` a fresh block mask with ``n_mask`` hidden blocks is drawn; ``noise``
        (B, n_blocks) or ``generator`` makes it reproducible. ``output_hidden_states``/``output_attentions``
        (default: the config's) add the encoder's states and attention probabilities; ``return_dict=False``
        returns a plain tuple.

        Example:
            >>> import torch
            >>> from hf_mae.models import ChemoMAE
            >>> mae = ChemoMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6)
            >>> x_recon, z, visible = mae(torch.randn(4, 128))
            >>> x_recon.shape, z.shape, int(visible[0].sum())
            (torch.Size([4, 128]), torch.Size([4, 32]), 32)
        """
        x = input_values
        self._check_inputs(x, visible_mask)
        extras = dict(output_hidden_states=output_flag(output_hidden_states, self.config.output_hidden_states),
                      output_attentions=output_flag(output_attentions, self.config.output_attentions))
        if visible_mask is None:
            ids_keep, visible_mask = self._draw_blocks(x.shape[0], self._n_mask(n_mask), x.device, generator, noise)
            z, encoded = self.encoder.run(x, ids_keep=ids_keep, **extras)
        else:
            z, encoded = self.encoder.run(x, visible_mask, **extras)
        return SpectralMAEOutput(x_recon=self.decoder(z), z=z, visible_mask=visible_mask,
                                 hidden_states=encoded.hidden_states, attentions=encoded.attentions)

    def encode(self, x: torch.Tensor, visible_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Latent ``z`` (B, latent_dim), L2-normalised. ``visible_mask=None`` means all visible: deterministic
        features for clustering and probes (call ``model.eval()`` first so dropout is off)."""
        self._check_inputs(x, visible_mask)
        return self.encoder(x, visible_mask)

    def reconstruct(self, x: torch.Tensor, visible_mask: torch.Tensor | None = None, *, n_mask: int | None = None,
                    noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Only the reconstruction (B, L) of ``forward``."""
        return self.forward(x, visible_mask, n_mask=n_mask, noise=noise, generator=generator, return_dict=True).x_recon

    @torch.no_grad()
    def masked_reconstruction(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a model card's reconstruction figure draws: ``(x, x_recon, visible_mask)``, each (N, L), with
        ``n_mask`` blocks hidden (``generator`` fixes which)."""
        x_recon, _, visible = self.forward(x, generator=generator)
        return x, x_recon, visible


class ChemoMAE(_SpectralMAE):
    """ChemoMAE (linear decoder). ``ChemoMAE(seq_len=..., ...)`` or ``ChemoMAE(ChemoMAEConfig(...))``."""

    config_class = ChemoMAEConfig
    encoder_class = ChemoEncoder
    decoder_class = ChemoDecoderMLP


class WaveMAE(_SpectralMAE):
    """WaveMAE (3-layer MLP decoder). ``WaveMAE(seq_len=..., ...)`` or ``WaveMAE(WaveMAEConfig(...))``."""

    config_class = WaveMAEConfig
    encoder_class = WaveEncoder
    decoder_class = WaveDecoderMLP


class _SpectralMAEForPreTraining(SpectralMAEPreTrainedModel):
    """The MAE with its loss, for ``Trainer``: ``forward(input_values)`` returns a loss on masked points."""

    mae_class: type[_SpectralMAE]
    # The loss is a mean over this micro-batch: Trainer must divide by the accumulation steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: SpectralMAEConfig | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = self.mae_class(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        return self.mae.get_input_embeddings()

    @can_return_tuple
    def forward(self, input_values: torch.Tensor, visible_mask: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, n_mask: int | None = None,
                return_loss: bool = True, output_hidden_states: bool | None = None,
                output_attentions: bool | None = None) -> SpectralMAEForPreTrainingOutput:
        """input_values (B, L) -> loss on the masked points, reconstruction, latent and visible mask.

        In eval mode, masks come from a fixed seed (``config.eval_mask_seed``) unless ``noise`` or
        ``visible_mask`` is given: eval_loss is then comparable between checkpoints, and evaluation does not
        consume the training random stream (so a resumed run draws the same training masks).
        """
        generator = eval_mask_generator(self, noise, visible_mask)
        out = self.mae(input_values, visible_mask, n_mask=n_mask, noise=noise, generator=generator,
                       output_hidden_states=output_hidden_states, output_attentions=output_attentions, return_dict=True)
        loss = None
        if return_loss:
            loss = masked_reconstruction_loss(out.x_recon, input_values, ~out.visible_mask,
                                              self.config.loss_type, self.config.huber_delta)
        return SpectralMAEForPreTrainingOutput(loss=loss, reconstruction=out.x_recon, latent=out.z,
                                               visible_mask=out.visible_mask, hidden_states=out.hidden_states,
                                               attentions=out.attentions)

    def encode(self, x: torch.Tensor, visible_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The latent of the wrapped MAE (all visible by default)."""
        return self.mae.encode(x, visible_mask)


    def masked_reconstruction(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The wrapped MAE's ``masked_reconstruction``."""
        return self.mae.masked_reconstruction(x, generator=generator)


class ChemoMAEForPreTraining(_SpectralMAEForPreTraining):
    """ChemoMAE with its masked reconstruction loss.

    Example:
        >>> import torch
        >>> from hf_mae import ChemoMAEForPreTraining
        >>> model = ChemoMAEForPreTraining(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
        >>> model(torch.randn(2, 64)).loss.ndim
        0
    """

    config_class = ChemoMAEConfig
    mae_class = ChemoMAE


class WaveMAEForPreTraining(_SpectralMAEForPreTraining):
    """WaveMAE with its masked reconstruction loss (see ``ChemoMAEForPreTraining``)."""

    config_class = WaveMAEConfig
    mae_class = WaveMAE


class _SpectralMAEForSequenceClassification(SequenceClassifierMixin, SpectralMAEPreTrainedModel):
    """The MAE's encoder (all blocks visible, no masking, no decoder) and a regression/classification head.

    Features the head reads (``config.classifier_pooling``):

    - ``"cls"`` (default): the latent ``z`` (B, latent_dim), the projected, L2-normalised [CLS] state: the
      representation the MAE is trained to make (what ``get_features`` returns, what probes and clustering
      use), so a frozen-encoder probe (``freeze_encoder=True``) is the classic probe on ``z``. The head reads
      ``z * sqrt(latent_dim)``: entries of a unit vector are ~1/sqrt(latent_dim), and at that scale a linear
      head initialised and stepped as usual would need many steps to reach useful weights;
    - ``"mean"``: the mean over the spectrum's block tokens of their final hidden states (B, d_model); the last
      layer then computes every row (``SpectralEncoder.token_states``), not only [CLS].

    Weights: ``mae.encoder.*`` as in ``...ForPreTraining`` (``base_model_prefix = "mae"``), so
    ``from_pretrained`` of a pretraining run, or of a base ``ChemoMAE``/``WaveMAE`` (prefix added), loads the
    encoder and initialises only ``classifier.*``; the decoder's weights are not used.
    """

    lr_top_prefixes = ("mae.encoder.transformer.norm", "mae.encoder.to_latent")
    _keys_to_ignore_on_load_unexpected = [r"decoder\."]   # the pretraining decoder has no use here
    encoder_class: type[SpectralEncoder]

    def __init__(self, config: SpectralMAEConfig | None = None, **kwargs):
        config = config_from_arguments(self.config_class, config, kwargs)
        super().__init__(config)
        self.mae = nn.ModuleDict({"encoder": self.encoder_class(config)})   # keys line up with ForPreTraining
        self.build_head(config.latent_dim if config.classifier_pooling == "cls" else config.d_model)
        self.post_init()

    def get_input_embeddings(self) -> nn.Linear:
        """The encoder's block embedding (block_size -> d_model), as on the MAE."""
        return self.mae["encoder"].patch_embed

    @can_return_tuple
    def forward(self, input_values: torch.Tensor, labels: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, output_attentions: bool | None = None):
        """input_values (B, L) -> ``SequenceClassifierOutput``: ``logits`` (B, num_labels) and, with ``labels``,
        the mean ``loss`` of ``config.problem_type`` (transformers' semantics, see ``hf_mae.models.heads``).
        ``output_hidden_states``/``output_attentions`` (default: the config's) add the encoder's; ``return_dict=False``
        returns a tuple."""
        check_tensor("input_values", input_values, ndim=2, shape=(None, self.config.seq_len))
        flags = dict(output_hidden_states=output_flag(output_hidden_states, self.config.output_hidden_states),
                     output_attentions=output_flag(output_attentions, self.config.output_attentions))
        encoder = self.mae["encoder"]
        if self.classifier.pooling == "cls":
            z, encoded = encoder.run(input_values, **flags)
            features = z[:, None] * self.config.latent_dim ** 0.5                     # (B, 1, latent_dim): z
        else:
            encoded = encoder.token_states(input_values, **flags)
            features = encoded.last_hidden_state[:, 1:]                               # (B, N, D): block tokens
        return classification_output(self.classifier(features), labels, self.config, encoded.hidden_states,
                                     encoded.attentions)

    def encode(self, x: torch.Tensor, visible_mask: None = None) -> torch.Tensor:
        """The fine-tuned encoder's latent ``z`` (B, latent_dim), all blocks visible: what ``get_features`` and
        ``hf_mae.extract_features`` return for this model too."""
        if visible_mask is not None:
            raise ValueError("`visible_mask` must be None: the classifier's encoder sees every block.")
        check_tensor("x", x, ndim=2, shape=(None, self.config.seq_len))
        return self.mae["encoder"](x)


class ChemoMAEForSequenceClassification(_SpectralMAEForSequenceClassification):
    """ChemoMAE's encoder with a regression/classification head (see ``_SpectralMAEForSequenceClassification``).

    Example:
        >>> import torch
        >>> from hf_mae import ChemoMAEForSequenceClassification
        >>> model = ChemoMAEForSequenceClassification(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8,
        ...                                           n_mask=4, num_labels=1)
        >>> out = model(torch.randn(3, 64), labels=torch.tensor([0.5, 1.0, -1.0]))
        >>> tuple(out.logits.shape), model.config.problem_type
        ((3, 1), 'regression')
    """

    config_class = ChemoMAEConfig
    encoder_class = ChemoEncoder


class WaveMAEForSequenceClassification(_SpectralMAEForSequenceClassification):
    """WaveMAE's encoder with a regression/classification head (see ``ChemoMAEForSequenceClassification``)."""

    config_class = WaveMAEConfig
    encoder_class = WaveEncoder
