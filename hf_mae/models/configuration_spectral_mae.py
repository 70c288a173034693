"""Configurations of ChemoMAE and WaveMAE, the masked autoencoders for 1D spectra.

Both share every field; they differ in the decoder (ChemoMAE: one linear map, WaveMAE: a 3-layer MLP)
and the default number of masked blocks (16 vs 24 of 32).
"""

from transformers import PreTrainedConfig

from .validation import (REFERENCE_SIZE_NAMES, TRANSFORMERS_SIZE_NAMES, check_choice, check_float, check_heads,
                         check_int, size_names_map)

LOSS_TYPES = ("mse", "sse", "huber")


class SpectralMAEConfig(PreTrainedConfig):
    r"""Fields shared by ChemoMAE and WaveMAE; use one of those two configs.

    Args:
        seq_len: number of points of each spectrum (the model's wavelength grid).
        d_model: transformer width. nhead: attention heads (``d_model % nhead == 0``).
        num_layers: encoder depth. dim_feedforward: FFN width. dropout: encoder dropout.
        use_learnable_pos: learned position embeddings, else fixed sin/cos.
        latent_dim: size of the L2-normalised latent ``z``.
        dec_hidden, dec_dropout: decoder hidden width and dropout (the MLP decoder of WaveMAE).
        n_blocks: equal contiguous blocks along the spectrum; each block is one token.
        n_mask: blocks hidden per sample during pretraining.
        loss_type: ``"mse"`` (mean over masked points), ``"sse"`` (sum over masked points, mean over
            samples, as in the reference packages' training loop) or ``"huber"`` with ``huber_delta``.
        eval_mask_seed: seed of the masks the pretraining models draw in eval mode.

    ``hidden_size``, ``num_attention_heads``, ``num_hidden_layers`` and ``intermediate_size`` name ``d_model``,
    ``nhead``, ``num_layers`` and ``dim_feedforward`` too (read, write, keyword arguments).
    """

    attribute_map = size_names_map(REFERENCE_SIZE_NAMES, TRANSFORMERS_SIZE_NAMES)

    seq_len: int = 256
    d_model: int = 384
    nhead: int = 6
    num_layers: int = 6
    dim_feedforward: int = 1536
    dropout: float | int = 0.1
    use_learnable_pos: bool = True
    latent_dim: int = 64
    dec_hidden: int = 256
    dec_dropout: float | int = 0.1
    n_blocks: int = 32
    n_mask: int = 16
    loss_type: str = "mse"
    huber_delta: float | int = 1.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    eval_mask_seed: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("seq_len", "d_model", "nhead", "num_layers", "dim_feedforward", "latent_dim",
                     "dec_hidden", "n_blocks"):
            check_int(name, getattr(self, name))
        check_heads("d_model", self.d_model, "nhead", self.nhead)
        check_int("n_mask", self.n_mask, minimum=1, maximum=self.n_blocks - 1)
        if self.seq_len % self.n_blocks != 0:
            raise ValueError(
                f"`seq_len`={self.seq_len} must be divisible by `n_blocks`={self.n_blocks}: each block is one "
                f"token of seq_len / n_blocks points. Resample the spectra (SpectraProcessor does) or change n_blocks."
            )
        for name in ("dropout", "dec_dropout"):
            check_float(name, getattr(self, name), minimum=0.0, maximum=1.0, maximum_exclusive=True)
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_int("eval_mask_seed", self.eval_mask_seed, minimum=0)
        check_float("huber_delta", self.huber_delta, minimum=0.0, minimum_exclusive=True)
        if not isinstance(self.use_learnable_pos, bool):
            raise ValueError(f"`use_learnable_pos` must be a bool, got {self.use_learnable_pos!r}.")

    @property
    def block_size(self) -> int:
        """Points per block (= per token)."""
        return self.seq_len // self.n_blocks


class ChemoMAEConfig(SpectralMAEConfig):
    """ChemoMAE: linear decoder, 16 of 32 blocks masked by default.

    Example:
        >>> from hf_mae import ChemoMAEConfig
        >>> ChemoMAEConfig(seq_len=128, n_blocks=8, n_mask=6).block_size
        16
    """

    model_type = "hf_mae_chemomae"
    n_mask: int = 16


class WaveMAEConfig(SpectralMAEConfig):
    """WaveMAE: 3-layer MLP decoder with GELU and dropout, 24 of 32 blocks (75%) masked by default.

    Example:
        >>> from hf_mae import WaveMAEConfig
        >>> WaveMAEConfig().n_mask
        24
    """

    model_type = "hf_mae_wavemae"
    n_mask: int = 24
