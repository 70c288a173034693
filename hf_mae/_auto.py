"""Registration with transformers' Auto classes, without importing torch when ``hf_mae`` is imported.

``import hf_mae`` promises that ``AutoConfig``/``AutoModel``/``AutoModelFor...`` know every hf_mae
architecture. Registering needs the model classes, hence torch (about 3 s), which ``hf-mae --help`` and
the Hub server never use. transformers has no hook for lazy registration, so registration happens the
moment it is first needed:

- at once, if transformers' Auto machinery is already imported when ``hf_mae`` is;
- otherwise when ``transformers.models.auto.configuration_auto`` or ``modeling_auto`` finishes executing,
  which every Auto class, ``pipeline`` and ``Trainer`` go through. An import finder (``_AutoImportHook``)
  watches those modules. Registering imports transformers modules itself, so it waits until no
  ``transformers``/``hf_mae`` module is half-executed (``transformers.modeling_layers``, for one, imports
  ``AutoModel`` while it is being executed);
- and when a model name is read from ``hf_mae`` (``hf_mae.ChemoMAE``).

One row of ``_registry()`` per architecture: its config, the model class for each Auto class, and the
processor saved with it (if any). ``model_type`` names all start with ``hf_mae_`` so they never collide
with transformers' own.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
import warnings

# Executing either of these modules means the Auto classes are about to be used.
AUTO_MODULES = ("transformers.models.auto.configuration_auto", "transformers.models.auto.modeling_auto")
# Packages whose half-executed modules registration must not import (it imports from both).
WATCHED_ROOTS = ("transformers", "hf_mae")

_state = {"registered": False, "pending": False, "registering": False}
_local = threading.local()   # per-thread depth of watched modules being executed


def _registry() -> list[tuple[type, dict[type, type], type | None]]:
    """(config class, {auto class: model class}, feature extractor class or None) for every architecture."""
    from transformers import (
        AutoModel,
        AutoModelForImageClassification,
        AutoModelForMaskedLM,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
    )

    from . import models as m
    from .processing.hyperspectral import HyperspectralProcessor
    from .processing.spectra import SpectraProcessor

    return [
        (m.ChemoMAEConfig, {AutoModel: m.ChemoMAE, AutoModelForPreTraining: m.ChemoMAEForPreTraining}, SpectraProcessor),
        (m.WaveMAEConfig, {AutoModel: m.WaveMAE, AutoModelForPreTraining: m.WaveMAEForPreTraining}, SpectraProcessor),
        (m.ProteinMAEV2Config, {AutoModel: m.ProteinMAEV2Model, AutoModelForPreTraining: m.ProteinMAEV2ForPreTraining},
         None),
        (m.ProteinMAEV5Config, {AutoModel: m.ProteinMAEV5Model, AutoModelForPreTraining: m.ProteinMAEV5ForPreTraining},
         None),
        (m.ProteinInteractionConfig, {AutoModel: m.ProteinInteractionModel,
                                      AutoModelForSequenceClassification: m.ProteinInteractionForSequenceClassification},
         None),
        (m.SpectralGPTConfig, {AutoModel: m.SpectralGPTModel, AutoModelForPreTraining: m.SpectralGPTForPreTraining,
                               AutoModelForImageClassification: m.SpectralGPTForImageClassification},
         HyperspectralProcessor),
        # the tokenizer is a plain tokenizer.json that AutoTokenizer loads by itself: no processor to register
        (m.SMILESBERTMLMConfig, {AutoModel: m.SMILESBERTModel, AutoModelForMaskedLM: m.SMILESBERTForMaskedLM}, None),
    ]


def _code_name(cls: type) -> str:
    """How ``auto_map`` names a class whose file is copied next to the weights: ``modeling_x.ClassName``."""
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def register_all() -> None:
    """Register every hf_mae config, model and processor with the Auto classes (idempotent).

    Also registers them "for auto class": ``save_pretrained`` then copies each class's file (and its
    single-dot imports) next to the weights and writes ``auto_map``, so a checkpoint pushed to the Hub loads
    with ``trust_remote_code=True`` where hf_mae is not installed. Where it is installed, the classes
    registered here win over ``auto_map`` and no ``trust_remote_code`` is needed.

    Example:
        >>> from hf_mae._auto import register_all
        >>> register_all()
        >>> from transformers import AutoConfig
        >>> type(AutoConfig.for_model("hf_mae_chemomae")).__name__
        'ChemoMAEConfig'
    """
    if _state["registered"] or _state["registering"]:
        return
    _state["registering"] = True
    try:
        from transformers import AutoConfig, AutoFeatureExtractor

        for config_class, models, processor_class in _registry():
            AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
            config_class.register_for_auto_class("AutoConfig")
            auto_map = {"AutoConfig": _code_name(config_class)}
            auto_map.update({auto.__name__: _code_name(model) for auto, model in models.items()})
            for auto_class, model_class in models.items():
                auto_class.register(config_class, model_class, exist_ok=True)
                model_class.register_for_auto_class(auto_class.__name__)
                model_class.hub_auto_map = auto_map  # see models/serialization.py
            if processor_class is not None:
                AutoFeatureExtractor.register(config_class, processor_class, exist_ok=True)
                if processor_class.__module__.startswith("hf_mae."):
                    processor_class.register_for_auto_class("AutoFeatureExtractor")

        from .analysis.features import register_feature_pipeline  # pipeline("latent-feature-extraction")

        register_feature_pipeline()
        _state["registered"] = True
        _state["pending"] = False
    finally:
        _state["registering"] = False


def _register_when_safe() -> None:
    """Register now unless a watched module of this thread is still executing (then its end retries)."""
    if _state["pending"] and getattr(_local, "depth", 0) == 0 and not _state["registering"]:
        try:
            register_all()
        except Exception as error:  # never break the user's transformers import; say what is missing
            _state["pending"] = False
            warnings.warn(f"hf_mae could not register its architectures with transformers' Auto classes: "
                          f"{type(error).__name__}: {error}", ImportWarning, stacklevel=2)


class _AutoImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of every ``transformers``/``hf_mae`` module so that the end
    of its execution is seen, and registers once the Auto modules are loaded and nothing watched is half-done."""

    def find_spec(self, fullname, path, target=None):
        if _state["registered"] or fullname.partition(".")[0] not in WATCHED_ROOTS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    _watch(spec.loader, fullname)
                return spec
        return None


def _watch(loader, fullname: str) -> None:
    exec_module = loader.exec_module

    def exec_and_check(module):
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            exec_module(module)
        finally:
            _local.depth -= 1
        if fullname in AUTO_MODULES:
            _state["pending"] = True
        _register_when_safe()

    loader.exec_module = exec_and_check   # on this module's own loader instance only


def install() -> None:
    """Register now if transformers' Auto classes are loaded, else when they are (see the module docstring)."""
    if any(name in sys.modules for name in AUTO_MODULES):
        _state["pending"] = True
        _register_when_safe()
    elif not any(isinstance(finder, _AutoImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AutoImportHook())


def __getattr__(name: str):
    """``REGISTRY``: the rows of ``_registry()``, built on first use (it imports the models, hence torch)."""
    if name == "REGISTRY":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
