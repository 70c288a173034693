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
    AutoModelForMaskedLM,
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
    SMILESBERTForMaskedLM,
    SMILESBERTMLMConfig,
    SMILESBERTModel,
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
    # the tokenizer is a plain tokenizer.json that AutoTokenizer loads by itself: no processor to register
    (SMILESBERTMLMConfig, {AutoModel: SMILESBERTModel, AutoModelForMaskedLM: SMILESBERTForMaskedLM}, None),
]


def _code_name(cls: type) -> str:
    """How ``auto_map`` names a class whose file is copied next to the weights: ``modeling_x.ClassName``."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def register_all() -> None:
    """Register every hf_mae config, model and processor (idempotent).

    Also registers them "for auto class": ``save_pretrained`` then copies each class's file (and its
    single-dot imports) next to the weights and writes ``auto_map``, so a checkpoint pushed to the Hub loads
    with ``trust_remote_code=True`` where hf_mae is not installed. Where it is installed, the classes
    registered here win over ``auto_map`` and no ``trust_remote_code`` is needed.
    """
    for config_class, models, processor_class in REGISTRY:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        config_class.register_for_auto_class("AutoConfig")
        auto_map = {"AutoConfig": _code_name(config_class)}
        auto_map.update({auto_class.__name__: _code_name(model_class) for auto_class, model_class in models.items()})
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
            model_class.register_for_auto_class(auto_class.__name__)
            model_class.hub_auto_map = auto_map  # see models/serialization.py
        if processor_class is not None:
            AutoFeatureExtractor.register(config_class, processor_class, exist_ok=True)
            if processor_class.__module__.startswith("hf_mae."):
                processor_class.register_for_auto_class("AutoFeatureExtractor")

    from .features import register_feature_pipeline  # pipeline("latent-feature-extraction")

    register_feature_pipeline()
