"""Model classes and configs. Files here import only torch, transformers and each other, so each
architecture can travel to the Hub as self-contained remote code."""

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
