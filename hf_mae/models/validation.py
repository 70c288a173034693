"""Boundary checks shared by every config and model.

Each check raises ``ValueError`` naming the parameter, the value it got and what was expected, before any
computation runs. This file imports only torch and transformers so that it can travel to the Hub next to the
modeling code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch


# Size names: transformers' (what its tools and users read) and the reference packages' (ChemoMAE, WaveMAE and
# the protein MAEs write d_model/nhead/num_layers/dim_feedforward). Each config stores one set and maps the
# other onto it with ``attribute_map``, so both read, write and construct.
TRANSFORMERS_SIZE_NAMES = ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size")
REFERENCE_SIZE_NAMES = ("d_model", "nhead", "num_layers", "dim_feedforward")


def size_names_map(stored: Sequence[str], aliases: Sequence[str]) -> dict[str, str]:
    """``attribute_map`` for a config that stores sizes under ``stored`` and also answers to ``aliases``.

    Example:
        >>> size_names_map(REFERENCE_SIZE_NAMES, TRANSFORMERS_SIZE_NAMES)["hidden_size"]
        'd_model'
    """
    return {alias: name for alias, name in zip(aliases, stored) if alias != name}


def check_int(name: str, value, *, minimum: int | None = 1, maximum: int | None = None) -> None:
    """Require an integer (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")


def check_float(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
                maximum_exclusive: bool = False, minimum_exclusive: bool = False) -> None:
    """Require a finite real number within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}.")
    if minimum is not None and (value <= minimum if minimum_exclusive else value < minimum):
        raise ValueError(f"`{name}` must be {'>' if minimum_exclusive else '>='} {minimum}, got {value}.")
    if maximum is not None and (value >= maximum if maximum_exclusive else value > maximum):
        raise ValueError(f"`{name}` must be {'<' if maximum_exclusive else '<='} {maximum}, got {value}.")


def check_choice(name: str, value, choices: Sequence) -> None:
    """Require one of a fixed set of values."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")


def check_heads(hidden_name: str, hidden: int, heads_name: str, heads: int) -> None:
    """Attention splits the hidden width evenly across heads."""
    if hidden % heads != 0:
        raise ValueError(
            f"`{hidden_name}`={hidden} must be divisible by `{heads_name}`={heads} "
            f"(each head gets {hidden_name} / {heads_name} channels)."
        )


def check_tensor(name: str, tensor, *, ndim: int, shape: Sequence[int | None] | None = None,
                 floating: bool = True, finite: bool = True) -> None:
    """Validate a model input: type, rank, fixed sizes, dtype and (on CPU) finiteness.

    ``shape`` lists the expected size of each dimension, ``None`` for free ones. The finiteness check runs only where
    ``value_checks_apply``.
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim != ndim:
        raise ValueError(f"`{name}` must have {ndim} dimensions, got shape {tuple(tensor.shape)}.")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(tensor.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"`{name}` must have size {want} in dimension {axis}, got shape {tuple(tensor.shape)}."
                )
    if floating and not tensor.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {tensor.dtype}.")
    if finite and floating and value_checks_apply(tensor) and not _all_finite(tensor):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s); clean or impute them first.")


def check_finite_through(name: str, tensor: torch.Tensor, reduced: torch.Tensor) -> None:
    """``check_tensor``'s finiteness check of ``tensor``, read from ``reduced``: a sum or mean of it in which
    every value takes part with a finite weight (a NaN or inf anywhere makes ``reduced`` non-finite; a zero weight
    too, 0 * inf being NaN). A model that reduces its input anyway (V5's patch pooling) so saves a pass over it;
    only a non-finite ``reduced``, which overflow can also cause, makes ``tensor`` itself checked and named."""
    if value_checks_apply(tensor) and not _all_finite(reduced):
        check_tensor(name, tensor, ndim=tensor.ndim)


def value_checks_apply(tensor: torch.Tensor) -> bool:
    """Whether checks that read tensor values (NaN, padding layout) run: on CPU tensors, outside
    ``torch.compile``/``torch.export`` and ``torch.jit.trace``. On an accelerator they would force a host-device
    sync every step; a compiled, exported or traced graph must not branch on values (the branch would split the
    graph or be frozen into it). Data reaching those paths has been checked on the host by the processors and
    collators."""
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether every value is finite. A finite sum proves it in one pass without temporaries (a NaN or inf
    anywhere makes the sum NaN or inf); only a non-finite sum, which overflow can also cause, needs the
    element-wise check (``torch.isfinite`` makes several passes over large inputs such as residue embeddings)."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def config_from_arguments(config_class: type, config=None, kwargs: dict | None = None):
    """A model's config from ``Model(config)`` or ``Model(**fields)`` (the reference packages build models
    from keyword arguments: ``ChemoMAE(seq_len=256, ...)``, ``TransformerMAE(embed_dim=512)``).

    Refuses both at once, a config of another class, and a keyword that is neither a field of
    ``config_class`` nor one of its ``attribute_map`` aliases (a misspelt size would otherwise be ignored).

    Example:
        >>> from hf_mae.models import ChemoMAEConfig
        >>> config_from_arguments(ChemoMAEConfig, None, {"seq_len": 64, "n_blocks": 8, "n_mask": 4}).block_size
        8
        >>> config_from_arguments(ChemoMAEConfig, None, {"seq_lenn": 64})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: unknown keyword argument `seq_lenn` ...
    """
    kwargs = kwargs or {}
    if config is not None:
        if kwargs:
            raise ValueError(f"Pass either `config` or keyword arguments, not both (got {sorted(kwargs)}).")
        if not isinstance(config, config_class):
            raise ValueError(f"`config` must be a {config_class.__name__}, got {type(config).__name__}.")
        return config
    # num_labels: a keyword every PreTrainedConfig takes (it sets id2label), though not a dataclass field
    known = {field.name for field in dataclasses.fields(config_class)} | set(config_class.attribute_map) | {"num_labels"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown keyword argument `{unknown[0]}` for {config_class.__name__} (all unknown: "
                         f"{unknown}); expected fields of the config, e.g. {sorted(known - _BASE_FIELDS)[:8]}.")
    return config_class(**kwargs)


def _base_fields() -> set[str]:
    from transformers import PreTrainedConfig

    return {field.name for field in dataclasses.fields(PreTrainedConfig)}


_BASE_FIELDS = _base_fields()
