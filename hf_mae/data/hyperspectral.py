"""Hyperspectral cubes with auxiliary images: generated data, a folder of your own cubes, a dataset that
registers them on the fly, and the collator that batches samples with different modalities.

A raw sample is a dict ``{"name": str, "cube": array (bands, H, W) or (H, W, bands), "aux": {modality: image}}``
where ``aux`` lists only the modalities that sample has, each image of any size.

Folder layout for ``load_cube_folder``: one file per cube, ``<name>.npy`` or ``<name>.mat``, and optionally
one file per auxiliary image, ``<name>.<modality>.npy`` or ``.mat`` (e.g. ``eye07.npy``, ``eye07.ir.npy``,
``eye07.thickness.mat``). A ``.mat`` file must hold one array of the right rank, or name it with ``mat_key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..processing.hyperspectral import HyperspectralProcessor

CUBE_SUFFIXES = (".npy", ".mat")


def synthetic_cubes(n: int, *, num_bands: int = 12, size: int = 64,
                    aux_modalities: Sequence[str] = ("ir", "af", "thickness"), missing_fraction: float = 0.25,
                    n_endmembers: int = 4, seed: int = 0) -> list[dict]:
    """Generated cubes with auxiliary images that depend on them, so both objectives have signal.

    Each cube mixes ``n_endmembers`` smooth reflectance spectra with smooth spatial abundance maps, plus noise:
    cube (bands, size, size). Auxiliary image k is a noisy view of abundance map k mod n_endmembers, at its
    own resolution (size * (k + 2) / 2), so it must be registered. Each auxiliary image is left out with
    probability ``missing_fraction`` (per sample and modality).

    Example:
        >>> samples = synthetic_cubes(3, num_bands=6, size=16, seed=0)
        >>> samples[0]["cube"].shape, sorted(samples[0]["aux"])
        ((6, 16, 16), ['af', 'ir', 'thickness'])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}.")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"`missing_fraction` must be in [0, 1), got {missing_fraction!r}.")
    rng = np.random.default_rng(seed)
    bands = np.linspace(0.0, 1.0, num_bands)

    def smooth_field(side: int, coarse: int = 4) -> np.ndarray:
        """Random low-frequency map (side, side) from a coarse grid, bilinearly upsampled."""
        grid = torch.from_numpy(rng.random((1, 1, coarse, coarse), dtype=np.float32))
        return torch.nn.functional.interpolate(grid, size=(side, side), mode="bilinear", align_corners=True)[0, 0].numpy()

    samples = []
    for index in range(n):
        # Endmember spectra: smooth bumps at random centres (reflectance-like, positive).
        centres, widths = rng.uniform(0, 1, n_endmembers), rng.uniform(0.15, 0.4, n_endmembers)
        endmembers = 0.2 + np.exp(-((bands[None] - centres[:, None]) / widths[:, None]) ** 2)   # (E, bands)
        abundance = np.stack([smooth_field(size) for _ in range(n_endmembers)])                 # (E, H, W)
        abundance /= abundance.sum(axis=0, keepdims=True)
        cube = np.einsum("eb,ehw->bhw", endmembers, abundance) + 0.01 * rng.standard_normal((num_bands, size, size))
        aux = {}
        for k, modality in enumerate(aux_modalities):
            if rng.random() < missing_fraction:
                continue
            side = max(4, size * (k + 2) // 2)
            view = torch.from_numpy(abundance[k % n_endmembers][None, None].astype(np.float32))
            view = torch.nn.functional.interpolate(view, size=(side, side), mode="bilinear", align_corners=False)[0, 0]
            aux[modality] = view.numpy() + 0.02 * rng.standard_normal((side, side)).astype(np.float32)
        samples.append({"name": f"synthetic_{index:05d}", "cube": cube.astype(np.float32), "aux": aux})
    return samples


def load_array(path: str | Path, mat_key: str | None = None, ndims: tuple[int, ...] = (3,)) -> np.ndarray:
    """One array from a ``.npy`` or ``.mat`` file; a ``.mat`` file must hold exactly one array whose rank is in
    ``ndims`` unless ``mat_key`` names it."""
    path = Path(path)
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif path.suffix == ".mat":
        from scipy.io import loadmat  # optional dependency (hf-mae[data])

        variables = {k: v for k, v in loadmat(path).items() if not k.startswith("__") and isinstance(v, np.ndarray)}
        if mat_key is not None and mat_key in variables:
            array = variables[mat_key]
        else:
            candidates = [k for k, v in variables.items() if v.ndim in ndims and np.issubdtype(v.dtype, np.number)]
            if len(candidates) != 1:
                raise ValueError(f"{path}: expected exactly one {' or '.join(map(str, ndims))}D numeric array, found "
                                 f"{candidates or 'none'} among {sorted(variables)}; name it with `mat_key`.")
            array = variables[candidates[0]]
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {list(CUBE_SUFFIXES)}.")
    if array.ndim not in ndims:
        raise ValueError(f"{path}: expected a {' or '.join(map(str, ndims))}D array, got shape {array.shape}.")
    return array


def load_cube_folder(folder: str | Path, aux_modalities: Sequence[str] = (), mat_key: str | None = None) -> list[dict]:
    """Raw samples from a folder of ``.npy``/``.mat`` cubes and ``<name>.<modality>`` auxiliary images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`data_dir`={str(folder)!r} is not a directory.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CUBE_SUFFIXES)
    cubes, aux_files = {}, []
    for path in files:
        base, _, modality = path.stem.rpartition(".")
        if base and modality in aux_modalities:
            aux_files.append((base, modality, path))
        elif path.stem in cubes:
            raise ValueError(f"Two cube files named {path.stem!r} in {folder} (.npy and .mat); keep one.")
        else:
            cubes[path.stem] = {"name": path.stem, "cube": load_array(path, mat_key), "aux": {}}
    if not cubes:
        raise ValueError(f"No cube files ({', '.join(CUBE_SUFFIXES)}) in {folder}.")
    for base, modality, path in aux_files:
        if base not in cubes:
            raise ValueError(f"{path.name} is a {modality!r} image for cube {base!r}, but {folder} has no such cube.")
        cubes[base]["aux"][modality] = load_array(path, mat_key, ndims=(2, 3))
    return list(cubes.values())


class HyperspectralDataset(torch.utils.data.Dataset):
    """Raw samples registered and scaled by ``processor`` when read: item ``i`` is
    ``{"pixel_values": (bands, A, A), "aux_pixel_values": {modality: (C, A, A)}}`` with present modalities only."""

    def __init__(self, samples: Sequence[dict], processor: HyperspectralProcessor):
        self.samples, self.processor = list(samples), processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        try:
            batch = self.processor(sample["cube"], aux_images={m: [img] for m, img in sample["aux"].items()})
        except ValueError as err:
            raise ValueError(f"sample {sample.get('name', index)!r}: {err}") from None
        aux = {m: values[0] for m, values in batch.get("aux_pixel_values", {}).items()}
        return {"pixel_values": batch["pixel_values"][0], "aux_pixel_values": aux}


@dataclass
class DataCollatorForHyperspectral:
    """Batch dataset items whose auxiliary modalities differ from sample to sample.

    A modality that some samples in the batch have becomes a (B, C, A, A) tensor (zeros where absent) with a
    (B,) ``aux_present`` mask; a modality that no sample has is left out, so the model skips it entirely.
    """

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise ValueError("`features` is empty: nothing to collate.")
        pixel_values = torch.stack([f["pixel_values"] for f in features])
        modalities = list(dict.fromkeys(m for f in features for m in f.get("aux_pixel_values", {})))
        batch = {"pixel_values": pixel_values}
        if modalities:
            aux_values, aux_present = {}, {}
            for modality in modalities:
                example = next(f["aux_pixel_values"][modality] for f in features if modality in f["aux_pixel_values"])
                rows = [f.get("aux_pixel_values", {}).get(modality) for f in features]
                aux_present[modality] = torch.tensor([row is not None for row in rows])
                aux_values[modality] = torch.stack([torch.zeros_like(example) if row is None else row for row in rows])
            batch["aux_pixel_values"], batch["aux_present"] = aux_values, aux_present
        return batch
