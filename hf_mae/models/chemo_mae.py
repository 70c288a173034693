"""The ChemoMAE reference package's module path (``chemomae.models.chemo_mae``): ChemoMAE and its parts.

Example:
    >>> from hf_mae.models.chemo_mae import ChemoMAE
    >>> ChemoMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6).config.block_size
    16
"""

from .configuration_spectral_mae import ChemoMAEConfig
from .masking import make_block_mask
from .modeling_spectral_mae import ChemoDecoderMLP, ChemoEncoder, ChemoMAE, ChemoMAEForPreTraining

__all__ = ["ChemoMAE", "ChemoMAEConfig", "ChemoMAEForPreTraining", "ChemoEncoder", "ChemoDecoderMLP", "make_block_mask"]
