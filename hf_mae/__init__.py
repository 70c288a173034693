"""hf_mae: masked pretraining for scientific data as Hugging Face transformers models.

Importing the package registers every architecture with ``AutoConfig``/``AutoModel`` and the task Auto
classes, so a saved checkpoint loads with ``AutoModel.from_pretrained(path)``.

Example:
    >>> import torch, hf_mae
    >>> from transformers import AutoModel
    >>> mae = hf_mae.ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
    >>> x_recon, z, visible = mae(torch.randn(2, 64))
"""

from .models import (
    ChemoDecoderMLP,
    ChemoEncoder,
    ChemoMAE,
    ChemoMAEConfig,
    ChemoMAEForPreTraining,
    SpectralGPTConfig,
    SpectralGPTForImageClassification,
    SpectralGPTForPreTraining,
    SpectralGPTModel,
    SpectralMAEConfig,
    WaveDecoderMLP,
    WaveEncoder,
    WaveMAE,
    WaveMAEConfig,
    WaveMAEForPreTraining,
    SMILESBERTForMaskedLM,
    SMILESBERTMLMConfig,
    SMILESBERTModel,
    make_block_mask,
)
from .models import (
    MAEEncoder,
    PatchEmbedding,
    ProteinInteractionConfig,
    ProteinInteractionForSequenceClassification,
    ProteinInteractionModel,
    ProteinMAEV2Config,
    ProteinMAEV2ForPreTraining,
    ProteinMAEV5Config,
    ProteinMAEV5ForPreTraining,
    TransformerMAE,
    V2ToV5Adapter,
)
from .processing.hyperspectral import HyperspectralProcessor
from .processing.spectra import SpectraProcessor
from .clustering import CosineKMeans, VMFMixture, sample_vmf, sample_vmf_mixture, select_n_clusters
from .features import extract_features, register_feature_rule
from .processing.smiles import load_smiles_tokenizer
from ._auto import register_all

__version__ = "0.1.0"

register_all()

__all__ = [
    "ChemoMAE", "ChemoMAEConfig", "ChemoMAEForPreTraining", "WaveMAE", "WaveMAEConfig", "WaveMAEForPreTraining",
    "SpectralMAEConfig", "ChemoEncoder", "WaveEncoder", "ChemoDecoderMLP", "WaveDecoderMLP", "make_block_mask",
    "SpectraProcessor",
    "ProteinMAEV2Config", "TransformerMAE", "ProteinMAEV2ForPreTraining", "ProteinMAEV5Config", "MAEEncoder",
    "PatchEmbedding", "ProteinMAEV5ForPreTraining", "V2ToV5Adapter", "ProteinInteractionConfig",
    "ProteinInteractionModel", "ProteinInteractionForSequenceClassification",
    "CosineKMeans", "VMFMixture", "select_n_clusters", "sample_vmf", "sample_vmf_mixture",
    "extract_features", "register_feature_rule",
    "SpectralGPTConfig", "SpectralGPTModel", "SpectralGPTForPreTraining", "SpectralGPTForImageClassification",
    "HyperspectralProcessor",
    "SMILESBERTMLMConfig", "SMILESBERTModel", "SMILESBERTForMaskedLM", "ChemBERTaMLM", "SmilesMLMFeaturizer",
    "CHEMBERTA_MODELS", "load_smiles_tokenizer",
]

# The SMILES fine-tuning/featurizing API needs Trainer, a slow import: load it on first use.
_LAZY = {"ChemBERTaMLM": ".smiles", "SmilesMLMFeaturizer": ".smiles", "CHEMBERTA_MODELS": ".smiles"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'hf_mae' has no attribute {name!r}")
