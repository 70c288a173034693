"""Boundary checks shared by every config and model.

Each check raises ``ValueError`` naming the parameter, the value it got and what was expected, before any
computation runs. This file imports only torch so that it can travel to the Hub next to the modeling code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


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
