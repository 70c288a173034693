"""The spectra processor: raw spectra on any wavelength grid -> ``input_values`` on the model's grid.

Saved next to the model (``preprocessor_config.json``) like an image processor, and restored with
``AutoFeatureExtractor``/``AutoProcessor.from_pretrained`` or ``SpectraProcessor.from_pretrained``.

Steps, in order:
1. resample each spectrum by linear interpolation from its own wavelength axis onto the model's grid
   (the grid must lie inside the measured range: extrapolation would invent data);
2. SNV, the standard normal variate: each spectrum minus its mean, divided by its standard deviation
   (removes multiplicative scatter and baseline offsets);
3. optional scaling per wavelength with statistics fitted on training spectra: ``"center"`` subtracts the
   mean spectrum, ``"autoscale"`` also divides by the per-wavelength standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

SCALINGS = ("none", "center", "autoscale")


def _as_spectra(spectra, name: str = "spectra") -> np.ndarray:
    """Any array-like or torch tensor of shape (P,) or (N, P) -> float64 (N, P), validated."""
    if hasattr(spectra, "detach"):  # torch tensor
        spectra = spectra.detach().cpu().numpy()
    try:
        array = np.asarray(spectra)
    except ValueError as err:  # ragged lists
        raise ValueError(f"`{name}` must be a rectangular array of numbers: {err}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must have shape (n_points,) or (n_spectra, n_points), got {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] < 2:
        raise ValueError(f"`{name}` must hold at least one spectrum of at least 2 points, got shape {array.shape}.")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        rows = np.unique(np.nonzero(~np.isfinite(array))[0])
        raise ValueError(f"`{name}` contains NaN or infinite values in spectra {rows[:10].tolist()}"
                         f"{' ...' if len(rows) > 10 else ''}; clean or impute them first.")
    return array


def _as_axis(wavelengths, name: str = "wavelengths") -> np.ndarray:
    axis = np.asarray(wavelengths, dtype=np.float64)
    if axis.ndim != 1 or axis.size < 2:
        raise ValueError(f"`{name}` must be a 1D axis of at least 2 values, got shape {axis.shape}.")
    if not np.isfinite(axis).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    steps = np.diff(axis)
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"`{name}` must be strictly increasing or strictly decreasing.")
    return axis


class SpectraProcessor(FeatureExtractionMixin):
    r"""Resampling, SNV and scaling for 1D spectra, stored with a ChemoMAE/WaveMAE checkpoint.

    Args:
        wavelengths: the model's grid, ``seq_len`` values (nm, cm⁻¹ ... as ``wavelength_unit`` says).
        do_snv: apply the standard normal variate to every spectrum.
        scaling: ``"none"``, ``"center"`` or ``"autoscale"``; needs ``fit`` (or ``mean``/``std``) first.
        mean, std: per-wavelength statistics on the model grid, set by ``fit``.

    Example:
        >>> import numpy as np
        >>> from hf_mae import SpectraProcessor
        >>> proc = SpectraProcessor.for_range(1100, 2498, 256, scaling="none")
        >>> raw_axis = np.linspace(1100, 2498, 700)
        >>> out = proc(np.random.rand(3, 700) + 1.0, wavelengths=raw_axis, return_tensors="pt")
        >>> tuple(out["input_values"].shape)
        (3, 256)
    """

    model_input_names = ["input_values"]

    def __init__(self, wavelengths: Sequence[float] | None = None, do_snv: bool = True, scaling: str = "none",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 wavelength_unit: str = "nm", **kwargs):
        super().__init__(**kwargs)
        if wavelengths is None:
            raise ValueError("`wavelengths` (the model's wavelength grid) is required.")
        grid = _as_axis(wavelengths)
        if scaling not in SCALINGS:
            raise ValueError(f"`scaling` must be one of {list(SCALINGS)}, got {scaling!r}.")
        self.wavelengths = grid.tolist()
        self.do_snv = bool(do_snv)
        self.scaling = scaling
        self.wavelength_unit = wavelength_unit
        for name, stats in (("mean", mean), ("std", std)):
            if stats is not None and len(stats) != grid.size:
                raise ValueError(f"`{name}` must have one value per model wavelength ({grid.size}), got {len(stats)}.")
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]

    @classmethod
    def for_range(cls, start: float, stop: float, n_points: int, **kwargs) -> SpectraProcessor:
        """A processor whose grid is ``n_points`` evenly spaced wavelengths from ``start`` to ``stop``."""
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
            raise ValueError(f"`n_points` must be an integer >= 2, got {n_points!r}.")
        return cls(wavelengths=np.linspace(start, stop, n_points).tolist(), **kwargs)

    @property
    def n_points(self) -> int:
        return len(self.wavelengths)

    # -- the steps ---------------------------------------------------------------------------------
    def resample(self, spectra, wavelengths=None) -> np.ndarray:
        """(N, P) spectra on ``wavelengths`` -> (N, n_points) on the model grid, by linear interpolation."""
        spectra = _as_spectra(spectra)
        grid = np.asarray(self.wavelengths)
        if wavelengths is None:
            if spectra.shape[1] != grid.size:
                raise ValueError(
                    f"`spectra` have {spectra.shape[1]} points but the model grid has {grid.size}; pass the "
                    f"spectra's own `wavelengths` so they can be resampled."
                )
            return spectra
        axis = _as_axis(wavelengths)
        if axis.size != spectra.shape[1]:
            raise ValueError(f"`wavelengths` has {axis.size} values but each spectrum has {spectra.shape[1]} points.")
        if axis[0] > axis[-1]:  # descending axes (wavenumbers often are): flip both
            axis, spectra = axis[::-1], spectra[:, ::-1]
        tol = 1e-6 * (axis[-1] - axis[0])
        if grid.min() < axis[0] - tol or grid.max() > axis[-1] + tol:
            raise ValueError(
                f"`wavelengths` cover {axis[0]:g}-{axis[-1]:g} {self.wavelength_unit}, but the model grid needs "
                f"{grid.min():g}-{grid.max():g} {self.wavelength_unit}; resampling would have to extrapolate."
            )
        # Interpolation weights are computed once for the grid and applied to every spectrum at once.
        right = np.clip(np.searchsorted(axis, grid, side="left"), 1, axis.size - 1)
        left = right - 1
        frac = np.clip((grid - axis[left]) / (axis[right] - axis[left]), 0.0, 1.0)
        return spectra[:, left] * (1.0 - frac) + spectra[:, right] * frac

    @staticmethod
    def snv(spectra: np.ndarray) -> np.ndarray:
        """Standard normal variate, row-wise. A flat spectrum (zero variance) has no SNV and is refused."""
        spectra = _as_spectra(spectra)
        std = spectra.std(axis=1, keepdims=True)
        if (std == 0).any():
            rows = np.nonzero(std[:, 0] == 0)[0]
            raise ValueError(f"`spectra` {rows[:10].tolist()} are constant: SNV divides by their standard deviation (0).")
        return (spectra - spectra.mean(axis=1, keepdims=True)) / std

    def _before_scaling(self, spectra, wavelengths) -> np.ndarray:
        values = self.resample(spectra, wavelengths)
        return self.snv(values) if self.do_snv else values

    def fit(self, spectra, wavelengths=None) -> SpectraProcessor:
        """Learn the per-wavelength mean and standard deviation used by ``scaling`` from training spectra."""
        values = self._before_scaling(spectra, wavelengths)
        if values.shape[0] < 2:
            raise ValueError(f"`fit` needs at least 2 spectra, got {values.shape[0]}.")
        std = values.std(axis=0)
        self.mean = values.mean(axis=0).tolist()
        self.std = np.where(std > 0, std, 1.0).tolist()  # a constant wavelength is centred, not divided by 0
        return self

    def scale(self, values: np.ndarray) -> np.ndarray:
        if self.scaling == "none":
            return values
        if self.mean is None or (self.scaling == "autoscale" and self.std is None):
            raise ValueError(f"`scaling`={self.scaling!r} needs statistics: call `processor.fit(train_spectra)` first.")
        values = values - np.asarray(self.mean)
        return values / np.asarray(self.std) if self.scaling == "autoscale" else values

    def inverse_scale(self, values) -> np.ndarray:
        """Undo ``scale`` (model units -> SNV units), e.g. to plot a reconstruction."""
        values = _as_spectra(values, "values")
        if self.scaling == "none":
            return values
        if self.scaling == "autoscale":
            values = values * np.asarray(self.std)
        return values + np.asarray(self.mean)

    def __call__(self, spectra, wavelengths=None, return_tensors: str | None = None, **kwargs) -> BatchFeature:
        """Spectra (N, P) or (P,), optionally with their own ``wavelengths`` axis -> ``{"input_values": (N, L)}``."""
        if kwargs:
            raise ValueError(f"Unknown argument(s) {sorted(kwargs)}; expected `spectra`, `wavelengths`, `return_tensors`.")
        values = self.scale(self._before_scaling(spectra, wavelengths)).astype(np.float32)
        return BatchFeature({"input_values": values}, tensor_type=return_tensors)
