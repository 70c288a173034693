"""Registration with transformers' Auto classes, run once when ``hf_mae`` is imported.

One row per architecture: its config, the model class for each Auto class, and the processor saved with
it (if any). ``model_type`` names all start with ``hf_mae_`` so they never collide with transformers' own.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

from .models import (
    ChemoMAE,
    ChemoMAEConfig,
    ChemoMAEForPreTraining,
    SpectralGPTConfig,
    SpectralGPTForImageClassification,
    SpectralGPTForPreTraining,
    SpectralGPTModel,
    WaveMAE,
    WaveMAEConfig,
    WaveMAEForPreTraining,
)
from .processing.hyperspectral import HyperspectralProcessor
from .processing.spectra import SpectraProcessor

# Protein MAEs V2/V5 and the pair-interaction classifier.
from transformers import AutoModelForSequenceClassification  # noqa: E402
from .models import (  # noqa: E402
    MAEEncoder, ProteinInteractionConfig, ProteinInteractionForSequenceClassification, ProteinInteractionModel,
    ProteinMAEV2Config, ProteinMAEV2ForPreTraining, ProteinMAEV5Config, ProteinMAEV5ForPreTraining, TransformerMAE,
)

# (config class, {auto class: model class}, feature extractor / processor class or None)
REGISTRY = [
    (ChemoMAEConfig, {AutoModel: ChemoMAE, AutoModelForPreTraining: ChemoMAEForPreTraining}, SpectraProcessor),
    (WaveMAEConfig, {AutoModel: WaveMAE, AutoModelForPreTraining: WaveMAEForPreTraining}, SpectraProcessor),
    (ProteinMAEV2Config, {AutoModel: TransformerMAE, AutoModelForPreTraining: ProteinMAEV2ForPreTraining}, None),
    (ProteinMAEV5Config, {AutoModel: MAEEncoder, AutoModelForPreTraining: ProteinMAEV5ForPreTraining}, None),
    (ProteinInteractionConfig, {AutoModel: ProteinInteractionModel,
                                AutoModelForSequenceClassification: ProteinInteractionForSequenceClassification}, None),
    (SpectralGPTConfig, {AutoModel: SpectralGPTModel, AutoModelForPreTraining: SpectralGPTForPreTraining,
                         AutoModelForImageClassification: SpectralGPTForImageClassification}, HyperspectralProcessor),
]


def register_all() -> None:
    """Register every hf_mae config, model and processor (idempotent)."""
    for config_class, models, processor_class in REGISTRY:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
        if processor_class is not None:
            AutoFeatureExtractor.register(config_class, processor_class, exist_ok=True)
    from .features import register_feature_pipeline  # pipeline("latent-feature-extraction")

    register_feature_pipeline()
