"""The hyperspectral processor: raw cubes and auxiliary images of any size -> SpectralGPT inputs.

Spatial registration: every modality is resized to a common ``analysis_dim`` x ``analysis_dim`` (bilinear,
antialiased); the spectral axis is never touched, so a cube keeps its bands. Saved next to the model
(``preprocessor_config.json``) and restored with ``AutoFeatureExtractor.from_pretrained`` or
``HyperspectralProcessor.from_pretrained``.

Steps, in order:
1. cubes as (bands, H, W) or (H, W, bands) (``layout``; "auto" finds the band axis from ``num_bands``)
   -> (bands, H, W) float32; auxiliary images as (C, H, W), (H, W, C) or (H, W) for one channel;
2. NaN or infinite values refused, naming the sample;
3. resized to ``analysis_dim`` (which must be a multiple of the model's ``patch_size``);
4. cubes standardised per band with statistics from ``fit`` (``band_mean``/``band_std``; none until fitted),
   auxiliary images per image and channel (``aux_standardize``), since their units (intensity, microns ...)
   differ from modality to modality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

LAYOUTS = ("auto", "bands_first", "bands_last")


def _to_array(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except ValueError as err:
        raise ValueError(f"`{name}` must be a rectangular array of numbers: {err}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"`{name}` must hold numbers, got dtype {array.dtype}.")
    return array


def _channels_first(array: np.ndarray, channels: int, layout: str, name: str, what: str) -> np.ndarray:
    """(C, H, W) or (H, W, C) -> (C, H, W), checking that C is ``channels``."""
    if array.ndim != 3:
        raise ValueError(f"`{name}` must be 3D ({what}, H, W) or (H, W, {what}), got shape {array.shape}.")
    first, last = array.shape[0] == channels, array.shape[-1] == channels
    if layout == "auto":
        if first and last:
            raise ValueError(f"`{name}` has shape {array.shape}: both the first and the last axis could hold the "
                             f"{channels} {what}; pass layout='bands_first' or 'bands_last'.")
        if not (first or last):
            raise ValueError(f"`{name}` has shape {array.shape} but the model expects {channels} {what} on the first "
                             f"or last axis.")
        layout = "bands_first" if first else "bands_last"
    axis = 0 if layout == "bands_first" else -1
    if array.shape[axis] != channels:
        raise ValueError(f"`{name}` has {array.shape[axis]} {what} on its {'first' if axis == 0 else 'last'} axis "
                         f"(shape {array.shape}) but the model expects {channels}.")
    return array if axis == 0 else np.moveaxis(array, -1, 0)


def _check_finite(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"`{name}` contains {bad} NaN or infinite value(s); clean or impute them first.")


class HyperspectralProcessor(FeatureExtractionMixin):
    r"""Registration and scaling of hyperspectral cubes and auxiliary images, stored with a SpectralGPT checkpoint.

    Args:
        analysis_dim: common height and width after registration (the model's ``image_size``).
        num_bands: bands every cube must have. patch_size: the model's spatial patch (divides analysis_dim).
        layout: ``"auto"``, ``"bands_first"`` (bands, H, W) or ``"bands_last"`` (H, W, bands), for cubes and
            auxiliary images alike.
        aux_modalities, aux_num_channels: auxiliary modality names and their channel counts.
        band_mean, band_std: per-band statistics (set by ``fit``); cubes are standardised with them once set.
        aux_standardize: standardise each auxiliary image per channel (zero mean, unit variance).

    Example:
        >>> import numpy as np
        >>> from hf_mae import HyperspectralProcessor
        >>> proc = HyperspectralProcessor(analysis_dim=32, num_bands=6, patch_size=8, aux_modalities=["ir"])
        >>> cubes = [np.random.rand(6, 50, 40), np.random.rand(45, 45, 6)]
        >>> batch = proc(cubes, aux_images={"ir": [np.random.rand(100, 100), None]})
        >>> tuple(batch["pixel_values"].shape), batch["aux_present"]["ir"].tolist()
        ((2, 6, 32, 32), [True, False])
    """

    model_input_names = ["pixel_values", "aux_pixel_values", "aux_present"]

    def __init__(self, analysis_dim: int = 224, num_bands: int = 12, patch_size: int = 16, layout: str = "auto",
                 aux_modalities: Sequence[str] | None = None, aux_num_channels: Sequence[int] | None = None,
                 band_mean: Sequence[float] | None = None, band_std: Sequence[float] | None = None,
                 aux_standardize: bool = True, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("analysis_dim", analysis_dim), ("num_bands", num_bands), ("patch_size", patch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if analysis_dim % patch_size != 0:
            raise ValueError(f"`analysis_dim`={analysis_dim} must be a multiple of the model's `patch_size`="
                             f"{patch_size}: registered images are cut into whole patches.")
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {list(LAYOUTS)}, got {layout!r}.")
        self.analysis_dim, self.num_bands, self.patch_size, self.layout = analysis_dim, num_bands, patch_size, layout
        self.aux_modalities = list(aux_modalities or [])
        self.aux_num_channels = list(aux_num_channels) if aux_num_channels is not None else [1] * len(self.aux_modalities)
        if len(self.aux_num_channels) != len(self.aux_modalities):
            raise ValueError(f"`aux_num_channels` must list one channel count per modality {self.aux_modalities}, "
                             f"got {self.aux_num_channels}.")
        for name, stats in (("band_mean", band_mean), ("band_std", band_std)):
            if stats is not None and len(stats) != num_bands:
                raise ValueError(f"`{name}` must have one value per band ({num_bands}), got {len(stats)}.")
        if band_std is not None and min(band_std) <= 0:
            raise ValueError("`band_std` values must be > 0.")
        self.band_mean = None if band_mean is None else [float(v) for v in band_mean]
        self.band_std = None if band_std is None else [float(v) for v in band_std]
        self.aux_standardize = bool(aux_standardize)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> HyperspectralProcessor:
        """The processor matching a ``SpectralGPTConfig`` (sizes, bands and modalities)."""
        return cls(analysis_dim=config.image_size, num_bands=config.num_bands, patch_size=config.patch_size,
                   aux_modalities=config.aux_modalities, aux_num_channels=config.aux_num_channels, **kwargs)

    # -- the steps ---------------------------------------------------------------------------------------
    def register(self, image: np.ndarray) -> np.ndarray:
        """Resize (C, H, W) spatially to (C, analysis_dim, analysis_dim); channels untouched."""
        if image.shape[1:] == (self.analysis_dim, self.analysis_dim):
            return image.astype(np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
        size = (self.analysis_dim, self.analysis_dim)
        antialias = image.shape[1] > size[0] or image.shape[2] > size[1]  # only needed when shrinking
        return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=antialias)[0].numpy()

    def prepare_cube(self, cube, name: str = "cube") -> np.ndarray:
        """One raw cube -> (num_bands, analysis_dim, analysis_dim) float32, registered (not yet scaled)."""
        array = _channels_first(_to_array(cube, name), self.num_bands, self.layout, name, "bands")
        _check_finite(array, name)
        return self.register(array)

    def prepare_aux(self, modality: str, image, name: str | None = None) -> np.ndarray:
        """One auxiliary image -> (channels, analysis_dim, analysis_dim) float32, registered and standardised."""
        if modality not in self.aux_modalities:
            raise ValueError(f"Unknown modality {modality!r}; this processor has {self.aux_modalities}.")
        name = name or f"aux_images[{modality!r}]"
        channels = self.aux_num_channels[self.aux_modalities.index(modality)]
        array = _to_array(image, name)
        if array.ndim == 2 and channels == 1:
            array = array[None]
        array = _channels_first(array, channels, self.layout, name, "channels")
        _check_finite(array, name)
        array = self.register(array)
        if self.aux_standardize:
            std = array.std(axis=(1, 2), keepdims=True)
            array = (array - array.mean(axis=(1, 2), keepdims=True)) / np.where(std > 0, std, 1.0)
        return array.astype(np.float32)

    def _cube_list(self, cubes) -> list:
        if isinstance(cubes, (list, tuple)):
            if not cubes:
                raise ValueError("`cubes` is empty.")
            return list(cubes)
        array = _to_array(cubes, "cubes")
        if array.ndim == 3:
            return [array]
        if array.ndim == 4:
            return list(array)
        raise ValueError(f"`cubes` must be one 3D cube, a 4D batch or a list of cubes, got shape {array.shape}.")

    def scale(self, pixel_values: np.ndarray) -> np.ndarray:
        """Standardise (N, bands, H, W) per band with ``band_mean``/``band_std`` (no-op before ``fit``)."""
        if self.band_mean is None:
            return pixel_values
        mean = np.asarray(self.band_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.band_std, dtype=np.float32)[:, None, None]
        return (pixel_values - mean) / std

    def fit(self, cubes) -> HyperspectralProcessor:
        """Learn per-band mean and standard deviation over every pixel of the (registered) training cubes."""
        total = total_sq = None
        count = 0
        for index, cube in enumerate(self._cube_list(cubes)):
            values = self.prepare_cube(cube, f"cubes[{index}]").astype(np.float64)
            total = values.sum(axis=(1, 2)) + (0 if total is None else total)
            total_sq = (values ** 2).sum(axis=(1, 2)) + (0 if total_sq is None else total_sq)
            count += values.shape[1] * values.shape[2]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        self.band_mean = mean.tolist()
        self.band_std = np.where(std > 0, std, 1.0).tolist()  # a constant band is centred, not divided by 0
        return self

    def __call__(self, cubes, aux_images: Mapping[str, Sequence] | None = None, return_tensors: str | None = "pt",
                 **kwargs) -> BatchFeature:
        """Cubes (one, a 4D batch or a list of any sizes) and ``aux_images`` {modality: one image per cube, None
        where a cube has none} -> ``pixel_values`` (N, bands, A, A), ``aux_pixel_values`` {modality: (N, C, A, A)}
        (zeros where absent) and ``aux_present`` {modality: (N,) bool}.

        ``return_tensors``: ``"pt"`` (default; the nested dicts hold tensors too) or ``"np"``/None for numpy.
        """
        if kwargs:
            raise ValueError(f"Unknown argument(s) {sorted(kwargs)}; expected `cubes`, `aux_images`, `return_tensors`.")
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"`return_tensors` must be 'pt', 'np' or None, got {return_tensors!r}.")
        cube_list = self._cube_list(cubes)
        pixel_values = self.scale(np.stack([self.prepare_cube(c, f"cubes[{i}]") for i, c in enumerate(cube_list)]))
        aux_values, aux_present = {}, {}
        for modality, images in (aux_images or {}).items():
            if modality not in self.aux_modalities:
                raise ValueError(f"Unknown modality {modality!r} in `aux_images`; this processor has {self.aux_modalities}.")
            if len(cube_list) == 1 and not isinstance(images, (list, tuple)):
                images = [images]
            if not isinstance(images, (list, tuple)) or len(images) != len(cube_list):
                raise ValueError(f"`aux_images[{modality!r}]` must be a list with one image (or None) per cube "
                                 f"({len(cube_list)}), got {type(images).__name__}"
                                 f"{f' of length {len(images)}' if isinstance(images, (list, tuple)) else ''}.")
            channels = self.aux_num_channels[self.aux_modalities.index(modality)]
            stacked = np.zeros((len(cube_list), channels, self.analysis_dim, self.analysis_dim), dtype=np.float32)
            present = np.zeros(len(cube_list), dtype=bool)
            for index, image in enumerate(images):
                if image is not None:
                    stacked[index] = self.prepare_aux(modality, image, f"aux_images[{modality!r}][{index}]")
                    present[index] = True
            aux_values[modality], aux_present[modality] = stacked, present
        convert = torch.from_numpy if return_tensors == "pt" else (lambda array: array)
        data = {"pixel_values": convert(np.ascontiguousarray(pixel_values, dtype=np.float32))}
        if aux_values:
            data["aux_pixel_values"] = {name: convert(array) for name, array in aux_values.items()}
            data["aux_present"] = {name: convert(array) for name, array in aux_present.items()}
        return BatchFeature(data)
