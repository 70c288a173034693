"""What the estimators on the unit hypersphere share: input handling (rows L2-normalised on the data's own
device, NumPy in -> NumPy out), seeding, chunking, and the scikit-learn-style base class with save/load.

Example:
    >>> import numpy as np
    >>> X, was_numpy = unit_rows(np.array([[3.0, 4.0]]))
    >>> [round(v, 4) for v in X[0].tolist()], was_numpy
    ([0.6, 0.8], True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
import torch

from ..models.validation import check_int

__all__ = ["NotFittedError", "unit_rows", "SphericalEstimator"]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (a ValueError, like scikit-learn's)."""


# ----------------------------------------------------------------------------------------------------------
# Input handling shared by the estimators
# ----------------------------------------------------------------------------------------------------------
def unit_rows(X, name: str = "X") -> tuple[torch.Tensor, bool]:
    """X (N, D), tensor or array-like -> L2-normalised float tensor on X's device, and whether X was NumPy."""
    was_numpy = not isinstance(X, torch.Tensor)
    if was_numpy:
        array = np.asarray(X)
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise ValueError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
        X = torch.from_numpy(np.ascontiguousarray(array))
    if X.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n_samples, n_features), got {tuple(X.shape)}.")
    if X.shape[0] == 0 or X.shape[1] < 2:
        raise ValueError(f"`{name}` needs at least 1 sample and 2 features, got shape {tuple(X.shape)}.")
    if X.dtype not in (torch.float32, torch.float64):
        X = X.float()  # half precision would make the cosine too coarse; integers are promoted
    bad = ~torch.isfinite(X).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).flatten()[:10].tolist()
        raise ValueError(f"`{name}` contains NaN or infinite values in rows {rows}; clean or impute them first.")
    norms = torch.linalg.vector_norm(X, dim=1)
    zero = norms <= torch.finfo(X.dtype).tiny
    if bool(zero.any()):
        rows = torch.nonzero(zero).flatten()[:10].tolist()
        raise ValueError(f"`{name}` has zero vectors in rows {rows}: a zero vector has no direction on the sphere.")
    return X / norms[:, None], was_numpy


def as_output(values: torch.Tensor, as_numpy: bool):
    return values.cpu().numpy() if as_numpy else values


def make_generator(random_state: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None:
        if generator.device.type != "cpu":
            raise ValueError(f"`generator` must be a CPU torch.Generator (draws are made on the CPU so that a "
                             f"seed gives the same start on every device), got one on {generator.device}.")
        return generator
    if random_state is not None:
        check_int("random_state", random_state, minimum=0)
        return torch.Generator().manual_seed(random_state)
    return None  # torch's global RNG: torch.manual_seed fixes it


def wide_dtype(device: torch.device) -> torch.dtype:
    """The accumulation dtype: float64, except where a device has none (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def row_chunks(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class SphericalEstimator:
    """save/load, parameter bookkeeping and fitted checks shared by the two estimators."""

    _params: tuple[str, ...] = ()
    _fitted_tensors: tuple[str, ...] = ()
    _fitted_scalars: tuple[str, ...] = ()

    def get_params(self) -> dict:
        """The constructor arguments (as in scikit-learn), without the generator."""
        return {name: getattr(self, name) for name in self._params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _check_fitted(self) -> None:
        if not all(hasattr(self, name) for name in self._fitted_tensors):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet: call `fit` first.")

    def _check_dim(self, X: torch.Tensor) -> None:
        expected = getattr(self, self._fitted_tensors[0]).shape[1]
        if X.shape[1] != expected:
            raise ValueError(f"`X` has {X.shape[1]} features but this model was fitted on {expected}.")

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to one safetensors file (parameters and scalars in its metadata).

        >>> import torch
        >>> from hf_mae.analysis.kmeans import CosineKMeans
        >>> km = CosineKMeans(n_clusters=2, random_state=0).fit(torch.eye(4))
        >>> km.save("km.safetensors"); CosineKMeans.load("km.safetensors").n_clusters  # doctest: +SKIP
        2
        """
        from safetensors.torch import save_file

        self._check_fitted()
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in self._fitted_tensors}
        metadata = {"class": type(self).__name__, "params": json.dumps(self.get_params()),
                    "scalars": json.dumps({name: getattr(self, name) for name in self._fitted_scalars})}
        save_file(tensors, str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu"):
        """Read a model written by ``save``; its tensors are placed on ``device`` (CPU by default)."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("class") != cls.__name__:
                raise ValueError(f"{str(path)!r} holds a {metadata.get('class')!r}, not a {cls.__name__}.")
            model = cls(**json.loads(metadata["params"]))
            for name in cls._fitted_tensors:
                setattr(model, name, handle.get_tensor(name).to(device))
        for name, value in json.loads(metadata["scalars"]).items():
            setattr(model, name, value)
        return model
