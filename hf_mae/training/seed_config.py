"""The protein seed's training dictionaries (``config_v2``, ``config_v5``) as hf_mae settings.

The seed describes each run with one flat dictionary that mixes model settings (``mask_ratio``,
``scale_factor``, ``delta``), the loss (``loss``) and optimisation (``batch_size``, ``learning_rate``,
``epochs``, ``warmup_epochs``, ``weight_decay``). ``protein_mae_settings`` sorts every key into the model's
config or into ``TrainingArguments`` keywords, and refuses, naming the key, whatever it cannot honour: nothing
is silently dropped.

=================  ===============================================================================
seed key           where it goes
=================  ===============================================================================
mask_ratio         config ``mask_ratio``
delta              config ``huber_delta`` (V2; V5's loss is MSE and has none)
scale_factor       config ``scale_factor`` (V2; V5 has none)
loss               checked: V2 computes the Huber loss (``"huber"``), V5 the MSE (``"mse"``)
batch_size         ``per_device_train_batch_size``
learning_rate      ``learning_rate``
epochs             ``num_train_epochs``
warmup_epochs      ``warmup_steps`` as a fraction of the run, ``warmup_epochs / epochs`` (transformers reads a
                   float below 1 as a ratio), so ``epochs`` must be given too
weight_decay       ``weight_decay``
any config field   that field (``embed_dim``, ``num_layers``, ``hidden_size``, ...)
=================  ===============================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..models import ProteinMAEV2Config, ProteinMAEV5Config

__all__ = ["ProteinMAESettings", "protein_mae_settings", "SEED_TRAINING_KEYS"]

# seed key -> TrainingArguments field, for the keys that mean the same thing
SEED_TRAINING_KEYS = {"batch_size": "per_device_train_batch_size", "learning_rate": "learning_rate",
                      "epochs": "num_train_epochs", "weight_decay": "weight_decay"}
_LOSS = {"v2": "huber", "v5": "mse"}
_CONFIGS = {"v2": ProteinMAEV2Config, "v5": ProteinMAEV5Config}


@dataclasses.dataclass
class ProteinMAESettings:
    """A seed dictionary sorted out: the model's config and the keywords for ``TrainingArguments``."""

    config: ProteinMAEV2Config | ProteinMAEV5Config
    training_arguments: dict[str, Any]


def protein_mae_settings(seed_config: Mapping[str, Any], version: str) -> ProteinMAESettings:
    """Map the seed's ``config_v2``/``config_v5`` dictionary onto a config and ``TrainingArguments`` keywords.

    ``version``: ``"v2"`` or ``"v5"``. Every key is used or refused with a ``ValueError`` that names it.

    Example:
        >>> config_v2 = {'mask_ratio': 0.5, 'batch_size': 32, 'learning_rate': 2e-4, 'epochs': 60,
        ...              'loss': 'huber', 'delta': 0.5, 'scale_factor': 5}
        >>> settings = protein_mae_settings(config_v2, "v2")
        >>> settings.config.mask_ratio, settings.config.huber_delta, settings.config.scale_factor
        (0.5, 0.5, 5)
        >>> settings.training_arguments
        {'per_device_train_batch_size': 32, 'learning_rate': 0.0002, 'num_train_epochs': 60}
        >>> protein_mae_settings({'momentum': 0.9}, "v5")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: seed key 'momentum' ...
    """
    if version not in _CONFIGS:
        raise ValueError(f"`version` must be 'v2' or 'v5', got {version!r}.")
    if not isinstance(seed_config, Mapping):
        raise ValueError(f"`seed_config` must be a dictionary, got {type(seed_config).__name__}.")
    config_class = _CONFIGS[version]
    config_fields = {field.name for field in dataclasses.fields(config_class)} | set(config_class.attribute_map)
    config_kwargs: dict[str, Any] = {}
    training: dict[str, Any] = {}
    for key, value in seed_config.items():
        if key == "loss":
            if value != _LOSS[version]:
                raise ValueError(f"seed key 'loss'={value!r}: the {version.upper()} model computes the "
                                 f"{_LOSS[version]!r} loss (as in the seed); no other loss is available for it.")
        elif key == "delta":
            if version != "v2":
                raise ValueError("seed key 'delta' is the Huber loss's delta, but V5 computes the MSE loss: "
                                 "remove it or use version='v2'.")
            config_kwargs["huber_delta"] = value
        elif key == "warmup_epochs":
            training["warmup_steps"] = _warmup_ratio(value, seed_config.get("epochs"))
        elif key in SEED_TRAINING_KEYS:
            training[SEED_TRAINING_KEYS[key]] = value
        elif key in config_fields:
            config_kwargs[key] = value
        else:
            raise ValueError(
                f"seed key {key!r} is not understood for the {version.upper()} protein MAE: it is neither a "
                f"{config_class.__name__} field nor one of the seed's training keys "
                f"{sorted([*SEED_TRAINING_KEYS, 'loss', 'delta', 'warmup_epochs'])}."
            )
    return ProteinMAESettings(config=config_class(**config_kwargs), training_arguments=training)


def _warmup_ratio(warmup_epochs, epochs) -> float:
    """Warmup as the fraction of the run that transformers' ``warmup_steps`` takes when below 1."""
    if epochs is None:
        raise ValueError("seed key 'warmup_epochs' needs 'epochs' in the same dictionary: the warmup becomes the "
                         "fraction warmup_epochs / epochs of the run.")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, (int, float)) or \
            not 0 <= warmup_epochs < epochs:
        raise ValueError(f"seed key 'warmup_epochs'={warmup_epochs!r} must be a number in [0, epochs={epochs}).")
    return warmup_epochs / epochs
