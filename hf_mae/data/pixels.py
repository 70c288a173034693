"""Per-pixel classification of a hyperspectral scene: labelled windows, a seeded split, predictions as a map.

- ``LabelledPixels(cube, label_map, band_axis=..., ignore_value=0)`` finds the labelled pixels of a scene and
  maps their label values onto class indices 0..K-1 (``classes[k]`` is the value in the map).
- ``split_pixels(pixels, fractions=(0.6, 0.2, 0.2), seed=0)`` splits them into train/val/test, stratified by
  class, fixed by ``seed``.
- ``PixelWindowDataset(pixels, indices, window=8, padding="reflect")`` yields, for each labelled pixel, the
  window around it as ``pixel_values`` (bands, window, window) float32 and ``labels`` (class index), ready for
  ``SpectralGPTForImageClassification`` and ``Trainer`` (``DataCollatorForPixelWindows`` stacks them).
- ``predictions_to_map(pixels, indices, predicted)`` writes class indices back into a (H, W) map of label
  values, ``ignore_value`` where nothing was predicted.

Windows: for an odd window w the pixel is the centre; for an even one it sits at row/column w // 2 of the
window (the first of the two central positions is w // 2 - 1). Near the border the cube is padded by
``w // 2`` on every side, either by mirror reflection without repeating the edge (``"reflect"``, numpy's
``reflect``: the default, no artificial edges) or with zeros (``"zero"``). Windows larger than twice the scene
need ``"zero"`` (reflection cannot extend that far).

Example:
    >>> import numpy as np
    >>> cube = np.random.default_rng(0).random((5, 10, 12)).astype(np.float32)   # (bands, H, W)
    >>> labels = np.zeros((10, 12), int); labels[2:5, 3:6] = 1; labels[6:9, 7:10] = 2
    >>> pixels = LabelledPixels(cube, labels, band_axis=0)
    >>> splits = split_pixels(pixels, (0.5, 0.5), seed=0)
    >>> data = PixelWindowDataset(pixels, splits["train"], window=4)
    >>> item = data[0]
    >>> tuple(item["pixel_values"].shape), pixels.classes.tolist(), len(splits["train"])
    ((5, 4, 4), [1, 2], 8)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .spectra import collate_labels

PADDINGS = ("reflect", "zero")


class LabelledPixels:
    """A scene's cube (bands first, float32) and its labelled pixels: ``rows``, ``cols``, class ``targets``.

    ``label_map`` (H, W) holds integer label values; ``ignore_value`` (default 0) marks unlabelled pixels.
    ``band_axis`` says which axis of ``cube`` holds the bands (never guessed).
    """

    def __init__(self, cube: np.ndarray, label_map: np.ndarray, *, band_axis: int, ignore_value: int = 0):
        cube = np.asarray(cube)
        if cube.ndim != 3:
            raise ValueError(f"`cube` must be 3D, got shape {cube.shape}.")
        if isinstance(band_axis, bool) or not isinstance(band_axis, int) or not -3 <= band_axis <= 2:
            raise ValueError(f"`band_axis` must be 0, 1, 2 or -1, got {band_axis!r}.")
        self.cube = np.ascontiguousarray(np.moveaxis(cube, band_axis, 0), dtype=np.float32)
        label_map = np.asarray(label_map)
        if label_map.shape != self.cube.shape[1:]:
            raise ValueError(f"`label_map` has shape {label_map.shape} but the cube's scene is "
                             f"{self.cube.shape[1:]} (bands on axis {band_axis}).")
        if not np.issubdtype(label_map.dtype, np.integer):
            if not np.issubdtype(label_map.dtype, np.floating) or not np.all(np.mod(label_map, 1) == 0):
                raise ValueError(f"`label_map` must hold integer label values, got dtype {label_map.dtype}.")
            label_map = label_map.astype(np.int64)
        if not np.isfinite(self.cube).all():
            raise ValueError("`cube` holds NaN or infinite values; clean or mask them first.")
        self.label_map, self.ignore_value = label_map, int(ignore_value)
        self.rows, self.cols = np.nonzero(label_map != self.ignore_value)
        if self.rows.size == 0:
            raise ValueError(f"`label_map` has no labelled pixel (every value is the ignore value {ignore_value}).")
        self.classes, self.targets = np.unique(label_map[self.rows, self.cols], return_inverse=True)
        if self.classes.size < 2:
            raise ValueError(f"`label_map` has a single class {self.classes[0]} besides {ignore_value}; "
                             f"expected at least two.")

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def num_bands(self) -> int:
        return int(self.cube.shape[0])

    def id2label(self) -> dict[int, str]:
        """Class index -> label value (as text), for a model config."""
        return {i: str(v) for i, v in enumerate(self.classes.tolist())}


def split_pixels(pixels: LabelledPixels, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                 names: Sequence[str] = ("train", "validation", "test")) -> dict[str, np.ndarray]:
    """Indices into ``pixels`` for each split, stratified by class and fixed by ``seed``.

    Within each class the pixels are shuffled and cut by ``fractions`` (which must sum to 1), rounding so every
    split of a class with enough pixels gets at least one. Indices are sorted within each split.
    """
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or fractions.size < 2 or (fractions <= 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"`fractions` must be 2 or more positive numbers summing to 1, got {fractions.tolist()}.")
    if len(names) < fractions.size:
        raise ValueError(f"`names` must name each of the {fractions.size} splits, got {list(names)}.")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for k in range(pixels.classes.size):
        members = rng.permutation(np.flatnonzero(pixels.targets == k))
        bounds = np.round(np.cumsum(fractions) * members.size).astype(int)
        bounds[-1] = members.size
        for i, chunk in enumerate(np.split(members, bounds[:-1])):
            parts[i].append(chunk)
    return {names[i]: np.sort(np.concatenate(chunks)) for i, chunks in enumerate(parts)}


class PixelWindowDataset(torch.utils.data.Dataset):
    """Item i: the window around labelled pixel ``indices[i]`` -> ``{"pixel_values": (bands, w, w), "labels"}``.

    ``band_mean``/``band_std`` (one value per band, e.g. from ``band_statistics`` on the training pixels)
    standardise the windows when given.
    """

    def __init__(self, pixels: LabelledPixels, indices: Sequence[int] | None = None, *, window: int = 8,
                 padding: str = "reflect", band_mean: Sequence[float] | None = None,
                 band_std: Sequence[float] | None = None):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"`window` must be a positive integer, got {window!r}.")
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {list(PADDINGS)}, got {padding!r}.")
        height, width = pixels.cube.shape[1:]
        half = window // 2
        if padding == "reflect" and half >= min(height, width):
            raise ValueError(f"`window`={window} needs {half} pixels of reflection, but the scene is {height}x{width}; "
                             f"use padding='zero' or a smaller window.")
        self.pixels, self.window, self.padding = pixels, window, padding
        self.indices = np.arange(len(pixels)) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(pixels)):
            raise ValueError(f"`indices` must lie in [0, {len(pixels) - 1}].")
        cube = pixels.cube
        if band_mean is not None or band_std is not None:
            mean = np.zeros(pixels.num_bands) if band_mean is None else np.asarray(band_mean, float)
            std = np.ones(pixels.num_bands) if band_std is None else np.asarray(band_std, float)
            if mean.shape != (pixels.num_bands,) or std.shape != (pixels.num_bands,) or (std <= 0).any():
                raise ValueError(f"`band_mean`/`band_std` need {pixels.num_bands} values (std > 0).")
            cube = ((cube - mean[:, None, None]) / std[:, None, None]).astype(np.float32)
        widths = ((0, 0), (half, window - 1 - half), (half, window - 1 - half))
        self.padded = np.pad(cube, widths, mode="reflect" if padding == "reflect" else "constant")

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict:
        index = self.indices[i]
        row, col = self.pixels.rows[index], self.pixels.cols[index]
        window = self.padded[:, row: row + self.window, col: col + self.window]
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(window)),
                "labels": int(self.pixels.targets[index])}


def band_statistics(pixels: LabelledPixels, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation (> 0) of the spectra of the labelled pixels ``indices``."""
    indices = np.asarray(indices, dtype=np.int64)
    spectra = pixels.cube[:, pixels.rows[indices], pixels.cols[indices]]          # (bands, n)
    std = spectra.std(axis=1)
    return spectra.mean(axis=1), np.where(std > 0, std, 1.0)


def pixel_spectra(pixels: LabelledPixels, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(spectra (n, bands), class indices (n,))`` of the labelled pixels ``indices``: the SVM baseline's input."""
    indices = np.asarray(indices, dtype=np.int64)
    return pixels.cube[:, pixels.rows[indices], pixels.cols[indices]].T.copy(), pixels.targets[indices].copy()


def window_mean_spectra(pixels: LabelledPixels, indices: Sequence[int], size: int = 3) -> np.ndarray:
    """(n, bands): the mean spectrum of the ``size`` x ``size`` window around each labelled pixel ``indices``
    (reflect padding at borders): the second classic SVM input, next to the pixel's own spectrum."""
    windows = PixelWindowDataset(pixels, indices, window=size)
    return np.stack([windows.padded[:, r: r + size, c: c + size].mean(axis=(1, 2))
                     for r, c in zip(pixels.rows[windows.indices], pixels.cols[windows.indices])]) \
        if len(windows) else np.zeros((0, pixels.num_bands), np.float32)


@dataclass
class DataCollatorForPixelWindows:
    """Stack ``PixelWindowDataset`` items: ``pixel_values`` (B, bands, w, w) and ``labels`` (B,) long."""

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("`features` is empty: nothing to collate.")
        return {"pixel_values": torch.stack([f["pixel_values"] for f in features]), **collate_labels(features)}


def predictions_to_map(pixels: LabelledPixels, indices: Sequence[int], predicted: Sequence[int],
                       fill: int | None = None) -> np.ndarray:
    """A (H, W) map with the label value of each predicted class at its pixel, ``fill`` (default: the ignore
    value) elsewhere. ``predicted`` are class indices (argmax of the logits) in the order of ``indices``."""
    indices, predicted = np.asarray(indices, dtype=np.int64), np.asarray(predicted)
    if predicted.shape != indices.shape:
        raise ValueError(f"`predicted` has {predicted.shape[0] if predicted.ndim else 0} values for "
                         f"{indices.size} pixels; expected one class index per pixel.")
    if predicted.size and (predicted.min() < 0 or predicted.max() >= pixels.classes.size):
        raise ValueError(f"`predicted` must be class indices in [0, {pixels.classes.size - 1}].")
    result = np.full(pixels.label_map.shape, pixels.ignore_value if fill is None else fill,
                     dtype=pixels.label_map.dtype)
    result[pixels.rows[indices], pixels.cols[indices]] = pixels.classes[predicted]
    return result
