"""hf_mae: masked pretraining for scientific data as Hugging Face transformers models.

``import hf_mae`` registers every architecture with ``AutoConfig``/``AutoModel`` and the task Auto classes,
so a saved checkpoint loads with ``AutoModel.from_pretrained(path)``. The import itself is light (no torch):
public names load on first use, and registration runs when transformers' Auto classes are first imported
(see ``_auto.py``), so ``hf-mae --help`` answers at once.

Example:
    >>> import torch, hf_mae
    >>> from transformers import AutoModel
    >>> mae = hf_mae.ChemoMAE(seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
    >>> x_recon, z, visible = mae(torch.randn(2, 64))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from . import _auto
from ._auto import register_all

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_MODELS = ".models"
_PUBLIC: dict[str, str] = {
    **dict.fromkeys([
        "ChemoMAE", "ChemoMAEConfig", "ChemoMAEForPreTraining", "WaveMAE", "WaveMAEConfig", "WaveMAEForPreTraining",
        "ChemoMAEForSequenceClassification", "WaveMAEForSequenceClassification",
        "SpectralMAEConfig", "ChemoEncoder", "WaveEncoder", "ChemoDecoderMLP", "WaveDecoderMLP", "make_block_mask",
        "ProteinMAEV2Config", "ProteinMAEV2Model", "TransformerMAE", "ProteinMAEV2ForPreTraining", "ProteinMAEV5Config", "ProteinMAEV5Model", "MAEEncoder",
        "PatchEmbedding", "ProteinMAEV5ForPreTraining",
        "ProteinMAEV2ForSequenceClassification", "ProteinMAEV5ForSequenceClassification", "V2ToV5Adapter", "ProteinInteractionConfig",
        "ProteinInteractionModel", "ProteinInteractionForSequenceClassification",
        "SpectralGPTConfig", "SpectralGPTModel", "SpectralGPTForPreTraining", "SpectralGPTForImageClassification",
        "SMILESBERTMLMConfig", "SMILESBERTModel", "SMILESBERTForMaskedLM", "SMILESBERTForSequenceClassification",
    ], _MODELS),
    "SpectraProcessor": ".processing.spectra",
    "HyperspectralProcessor": ".processing.hyperspectral",
    "load_smiles_tokenizer": ".processing.smiles",
    "keep_freed_memory": ".training.cpu_memory",
    **dict.fromkeys(["CosineKMeans", "VMFMixture", "select_n_clusters", "sample_vmf", "sample_vmf_mixture"],
                    ".analysis.clustering"),
    **dict.fromkeys(["extract_features", "register_feature_rule"], ".analysis.features"),
    **dict.fromkeys(["ChemBERTaMLM", "SmilesMLMFeaturizer", "CHEMBERTA_MODELS"], ".training.smiles_mlm"),
}

__all__ = [*_PUBLIC, "register_all"]

if TYPE_CHECKING:  # names for type checkers and IDEs; at run time they load on first use
    from .analysis.clustering import CosineKMeans, VMFMixture, sample_vmf, sample_vmf_mixture, select_n_clusters
    from .analysis.features import extract_features, register_feature_rule
    from .models import *  # noqa: F403
    from .processing.hyperspectral import HyperspectralProcessor
    from .processing.smiles import load_smiles_tokenizer
    from .processing.spectra import SpectraProcessor
    from .training.cpu_memory import keep_freed_memory
    from .training.smiles_mlm import CHEMBERTA_MODELS, ChemBERTaMLM, SmilesMLMFeaturizer


def __getattr__(name: str):
    """Load a public name on first use (PEP 562); a model name also registers the Auto classes."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hf_mae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    if _PUBLIC[name] == _MODELS:
        register_all()
    globals()[name] = value   # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_auto.install()
