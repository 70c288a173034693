"""The WaveMAE reference package's module path (``wavemae.models.wave_mae``): WaveMAE and its parts.

Example:
    >>> from hf_mae.models.wave_mae import WaveMAE
    >>> WaveMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6).config.n_mask
    6
"""

from .configuration_spectral_mae import WaveMAEConfig
from .masking import make_block_mask
from .modeling_spectral_mae import WaveDecoderMLP, WaveEncoder, WaveMAE, WaveMAEForPreTraining

__all__ = ["WaveMAE", "WaveMAEConfig", "WaveMAEForPreTraining", "WaveEncoder", "WaveDecoderMLP", "make_block_mask"]
