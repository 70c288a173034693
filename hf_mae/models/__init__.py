"""Model classes and configs, one configuration/modeling pair per architecture:

- ``configuration_spectral_mae`` / ``modeling_spectral_mae``: ChemoMAE and WaveMAE (1D spectra); the reference
  packages' module paths ``chemo_mae`` and ``wave_mae`` re-export them.
- ``configuration_spectral_gpt`` / ``modeling_spectral_gpt``: SpectralGPT (hyperspectral cubes).
- ``configuration_protein_mae`` / ``modeling_protein_mae_v2``, ``modeling_protein_mae_v5``,
  ``modeling_protein_interaction`` (shared: ``modeling_protein_base``, ``pooling``).
- ``configuration_smiles_bert`` / ``modeling_smiles_bert``: SMILES BERT.
- Shared by all: ``masking`` (noise -> argsort -> gather, the masked loss, eval-mask seeding), ``layers``,
  ``validation`` (boundary checks, config-or-keywords construction, the size vocabulary), ``serialization``.

Files here import only torch, transformers and single-dot siblings, so each architecture travels to the Hub as
self-contained remote code (``tests/test_import_graph.py`` checks it)."""

from .configuration_spectral_gpt import SpectralGPTConfig
from .configuration_spectral_mae import ChemoMAEConfig, SpectralMAEConfig, WaveMAEConfig
from .configuration_protein_mae import ProteinInteractionConfig, ProteinMAEV2Config, ProteinMAEV5Config
from .modeling_protein_interaction import (
    ProteinInteractionForSequenceClassification,
    ProteinInteractionModel,
    V2ToV5Adapter,
)
from .modeling_protein_mae_v2 import ProteinMAEV2ForPreTraining, ProteinMAEV2Model, TransformerMAE
from .modeling_protein_mae_v5 import (
    MAEEncoder,
    PatchEmbedding,
    ProteinMAEV5Decoder,
    ProteinMAEV5ForPreTraining,
    ProteinMAEV5Model,
)
from .configuration_smiles_bert import SMILESBERTMLMConfig
from .masking import make_block_mask
from .modeling_smiles_bert import SMILESBERTForMaskedLM, SMILESBERTModel, SMILESBERTPreTrainedModel, masked_lm_loss
from .modeling_spectral_mae import (
    ChemoDecoderMLP,
    ChemoEncoder,
    ChemoMAE,
    ChemoMAEForPreTraining,
    SpectralEncoder,
    SpectralMAEForPreTrainingOutput,
    SpectralMAEOutput,
    WaveDecoderMLP,
    WaveEncoder,
    WaveMAE,
    WaveMAEForPreTraining,
    masked_reconstruction_loss,
)
from .modeling_spectral_gpt import (
    SpectralGPTForImageClassification,
    SpectralGPTForPreTraining,
    SpectralGPTForPreTrainingOutput,
    SpectralGPTModel,
)

__all__ = [
    "ChemoMAEConfig", "WaveMAEConfig", "SpectralMAEConfig", "make_block_mask",
    "ChemoMAE", "WaveMAE", "ChemoMAEForPreTraining", "WaveMAEForPreTraining",
    "ChemoEncoder", "WaveEncoder", "SpectralEncoder", "ChemoDecoderMLP", "WaveDecoderMLP",
    "SpectralMAEOutput", "SpectralMAEForPreTrainingOutput", "masked_reconstruction_loss",
    "ProteinMAEV2Config", "ProteinMAEV5Config", "ProteinInteractionConfig", "ProteinMAEV2Model", "TransformerMAE",
    "ProteinMAEV2ForPreTraining", "ProteinMAEV5Model", "MAEEncoder", "PatchEmbedding", "ProteinMAEV5Decoder", "ProteinMAEV5ForPreTraining",
    "V2ToV5Adapter", "ProteinInteractionModel", "ProteinInteractionForSequenceClassification",
    "SpectralGPTConfig", "SpectralGPTModel", "SpectralGPTForPreTraining", "SpectralGPTForImageClassification",
    "SpectralGPTForPreTrainingOutput",
    "SMILESBERTMLMConfig", "SMILESBERTModel", "SMILESBERTForMaskedLM", "SMILESBERTPreTrainedModel", "masked_lm_loss",
]
