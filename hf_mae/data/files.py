"""Read the user's own files: spectra tables, SMILES, FASTA, and the checks that turn a column into labels.

Readers (each returns a ``datasets.Dataset`` whose ``info.description`` holds JSON metadata):

- ``read_spectra(path)``: CSV/TSV (``.csv``, ``.tsv``, ``.txt``, optionally ``.gz``) or Parquet, one row per
  sample; every column whose header is a number is a point of the spectrum (its wavelength or wavenumber),
  the other columns (targets, ids) are kept as they are. Or NumPy: ``.npy`` spectra (n_samples, n_points)
  with ``axis=`` (a ``.npy``/``.txt``/``.csv`` file of n_points values, or the values) and optionally
  ``table=`` (a CSV/Parquet with one row per spectrum: targets, ids). Columns: ``spectrum`` (list of float)
  + the others. Metadata (``hf_mae.data.spectra.spectral_metadata``): ``wavelengths``, ``unit``, ``name``,
  ``source``. ``grid=`` checks that the axis covers a model's grid.
- ``read_smiles(path, smiles_column=...)``: ``.smi`` (SMILES, optionally whitespace and a name; no header)
  or a CSV/TSV/Parquet table with a SMILES column. Unparsable SMILES are never dropped silently: they are
  left out, counted, listed in ``SmilesReadReport`` and logged (or ``on_invalid="raise"``).
- ``read_proteins(path)``: a FASTA file -> ``id``, ``sequence`` (+ the columns of ``table=`` joined on ids).

Labels: ``prepare_labels(dataset, target, task=None)`` checks a target column (exists, no NaN, at least two
classes, numeric for regression) and adds ``labels`` (float32 for regression; class indices for
classification) with a ``LabelInfo`` (task, num_labels, id2label) that maps onto a model config.

Every problem raises one ``ValueError`` that names the file or column and what was expected.

Example:
    >>> import numpy as np, pandas as pd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mine.csv")
    >>> pd.DataFrame({"id": ["a", "b", "c"], "protein": [1.0, 2.5, 3.0],
    ...               "1100": [0.1, 0.2, 0.3], "1102": [0.2, 0.3, 0.1], "1104": [0.3, 0.1, 0.2]}).to_csv(path, index=False)
    >>> ds = read_spectra(path)
    >>> ds.column_names, len(ds[0]["spectrum"])
    (['spectrum', 'id', 'protein'], 3)
    >>> labelled, info = prepare_labels(ds, "protein")
    >>> info.task, labelled["labels"][:2]
    ('regression', [1.0, 2.5])
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from .protein import read_fasta
from .tasks import seeded_split

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None, ".parquet": None}
TASKS = ("regression", "classification")


def _suffix(path: Path) -> str:
    """The format suffix, looking through a trailing ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Data file {str(path)!r} does not exist.")
    return path


def read_table(path, sep: str | None = None):
    """A CSV/TSV/whitespace text table or a Parquet file as a pandas DataFrame (header row required).

    ``sep`` overrides the separator the suffix implies (``.csv`` comma, ``.tsv`` tab, ``.txt`` any
    whitespace); a file with no rows is refused.
    """
    import pandas as pd

    path = _existing(path)
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported table type {suffix!r}; expected one of {sorted(TABLE_SUFFIXES)} "
                         f"(optionally .gz), or .npy spectra with `axis`.")
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            sep = sep if sep is not None else TABLE_SUFFIXES[suffix]
            frame = pd.read_csv(path, sep=sep if sep is not None else r"\s+")
    except (ValueError, pd.errors.ParserError, OSError) as err:
        raise ValueError(f"{path}: cannot be read as a {suffix} table: {err}") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has a header but zero rows; expected one row per sample.")
    return frame


def _as_number(header) -> float | None:
    try:
        value = float(str(header).strip())
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _spectra_dataset(spectra: np.ndarray, axis: np.ndarray, others, path: Path, unit: str) -> datasets.Dataset:
    """Columns ``spectrum`` + ``others`` (a DataFrame or None) with the spectral metadata."""
    import pandas as pd

    if others is not None and "spectrum" in map(str, others.columns):
        raise ValueError(f"{path}: a column is named 'spectrum', the name the spectra get; rename it.")
    columns = {"spectrum": spectra.astype(np.float32).tolist()}
    for name in [] if others is None else others.columns:
        column = others[name].reset_index(drop=True)
        text = not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        columns[str(name)] = column.astype(object).where(column.notna(), None).tolist() if text else column.tolist()
    others_features = datasets.Dataset.from_dict({k: v for k, v in columns.items() if k != "spectrum"}).features
    features = datasets.Features({"spectrum": datasets.List(datasets.Value("float32")), **others_features})
    info = datasets.DatasetInfo(features=features, description=json.dumps(
        {"name": path.stem.split(".")[0], "wavelengths": axis.tolist(), "unit": unit, "source": str(path)}))
    return datasets.Dataset.from_dict(columns, features=features, info=info)


def _read_axis(axis, path: Path) -> np.ndarray:
    """The wavelength axis of .npy spectra: a .npy file, a text/CSV file of numbers, or the values."""
    if isinstance(axis, (str, Path)):
        axis_path = _existing(axis)
        if _suffix(axis_path) == ".npy":
            values = np.load(axis_path, allow_pickle=False)
        else:
            values = np.loadtxt(axis_path, delimiter="," if _suffix(axis_path) == ".csv" else None, ndmin=1)
    else:
        values = np.asarray(axis)
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError(f"`axis` for {path.name} must hold at least 2 finite wavelengths, got {values.size} values.")
    return values


def check_axis_covers(axis: Sequence[float], grid: Sequence[float], path: str | Path, unit: str = "nm") -> None:
    """Refuse a spectrum axis that does not cover a model's grid (resampling would have to extrapolate).

    Example:
        >>> check_axis_covers([1000, 2000], [1100, 1900], "mine.csv")
        >>> check_axis_covers([1000, 2000], [900, 1900], "mine.csv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: mine.csv: the spectra cover 1000-2000 nm but the model's grid needs 900-1900 nm; ...
    """
    axis, grid = np.asarray(axis, float), np.asarray(grid, float)
    low, high = float(axis.min()), float(axis.max())
    tol = 1e-6 * (high - low)
    if grid.min() < low - tol or grid.max() > high + tol:
        raise ValueError(f"{Path(path).name}: the spectra cover {low:g}-{high:g} {unit} but the model's grid needs "
                         f"{grid.min():g}-{grid.max():g} {unit}; measure the full range or pretrain a model on this "
                         f"range (resampling would have to extrapolate).")


def read_spectra(path, *, axis=None, table=None, sep: str | None = None, unit: str = "nm",
                 grid: Sequence[float] | None = None) -> datasets.Dataset:
    """Spectra from a table (numeric headers = the axis) or a ``.npy`` array + ``axis``; see the module doc.

    Spectra with NaN or infinite points are refused (naming the first rows); so is an axis that is not
    strictly monotonic, or that does not cover ``grid`` (a model's wavelength grid) when given.
    """
    import pandas as pd

    path = _existing(path)
    if _suffix(path) == ".npy":
        spectra = np.load(path, allow_pickle=False)
        if spectra.ndim == 1:
            spectra = spectra[None]
        if spectra.ndim != 2 or not np.issubdtype(spectra.dtype, np.number):
            raise ValueError(f"{path}: expected a numeric (n_samples, n_points) array, got {spectra.dtype} "
                             f"shape {spectra.shape}.")
        if axis is None:
            raise ValueError(f"{path}: a .npy file has no wavelength axis; pass `axis` (a file or the values).")
        wavelengths = _read_axis(axis, path)
        others = None if table is None else read_table(table)
        if others is not None and len(others) != len(spectra):
            raise ValueError(f"`table` {table} has {len(others)} rows but {path.name} holds {len(spectra)} spectra.")
    else:
        frame = read_table(path, sep)
        numeric = [c for c in frame.columns if _as_number(c) is not None]
        if len(numeric) < 2:
            raise ValueError(f"{path}: expected the spectrum in columns headed by their wavelength or wavenumber, "
                             f"found {len(numeric)} numeric headers among {list(frame.columns)[:10]}.")
        if axis is not None or table is not None:
            raise ValueError(f"{path}: `axis` and `table` are for .npy spectra; a table carries both itself.")
        wavelengths = np.asarray([_as_number(c) for c in numeric])
        spectra = frame[numeric].apply(lambda col: pd.to_numeric(col, errors="coerce")).to_numpy(np.float64)
        others = frame.drop(columns=numeric)
    if spectra.shape[0] == 0:
        raise ValueError(f"{path}: zero spectra; expected one row per sample.")
    if spectra.shape[1] != wavelengths.size:
        raise ValueError(f"`axis` has {wavelengths.size} values but the spectra in {path.name} have "
                         f"{spectra.shape[1]} points.")
    steps = np.diff(wavelengths)
    if not ((steps > 0).all() or (steps < 0).all()):
        raise ValueError(f"{path}: the wavelength axis must be strictly increasing or decreasing.")
    bad = np.flatnonzero(~np.isfinite(spectra).all(axis=1))
    if bad.size:
        raise ValueError(f"{path}: {bad.size} spectra have missing, non-numeric or infinite points (rows "
                         f"{bad[:5].tolist()}{' ...' if bad.size > 5 else ''}); clean them first.")
    if grid is not None:
        check_axis_covers(wavelengths, grid, path, unit)
    return _spectra_dataset(spectra, wavelengths, others, path, unit)


@dataclass
class SmilesReadReport:
    """What ``read_smiles`` read: ``n_read`` rows, ``n_kept`` molecules, and the ``skipped`` ones as
    ``(row, smiles, reason)`` with rows numbered from 0 in file order."""

    path: str
    n_read: int
    n_kept: int
    skipped: list[tuple[int, str, str]] = field(default_factory=list)

    def summary(self) -> str:
        head = "; ".join(f"row {r}: {s!r} ({why})" for r, s, why in self.skipped[:5])
        return (f"{self.path}: {self.n_kept} of {self.n_read} SMILES kept, {len(self.skipped)} skipped"
                + (f" ({head}{' ...' if len(self.skipped) > 5 else ''})" if self.skipped else ""))


def read_smiles(path, smiles_column: str = "smiles", *, sep: str | None = None, canonicalize: bool = True,
                on_invalid: str = "skip") -> tuple[datasets.Dataset, SmilesReadReport]:
    """Molecules from a ``.smi`` file or a table with ``smiles_column``, parsed with RDKit.

    Returns the dataset (``smiles``, RDKit canonical when ``canonicalize``, ``input_smiles`` as written, the
    other columns of a table; ``name`` from a ``.smi`` file) and the report of what was skipped. Empty or
    unparsable SMILES are skipped, counted and logged as a warning (``on_invalid="skip"``) or raise
    (``"raise"``). A file where nothing parses raises.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "mols.smi")
        >>> _ = open(path, "w").write("CCO ethanol\\nC1CC mistake\\nc1ccccc1 benzene\\n")
        >>> ds, report = read_smiles(path)
        >>> ds["smiles"][:], report.n_kept, report.skipped[0][:2]
        (['CCO', 'c1ccccc1'], 2, (1, 'C1CC'))
    """
    import pandas as pd

    if on_invalid not in ("skip", "raise"):
        raise ValueError(f"`on_invalid` must be 'skip' or 'raise', got {on_invalid!r}.")
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError('Reading SMILES needs RDKit: pip install "hf-mae[chem]".') from err
    path = _existing(path)
    if _suffix(path) == ".smi":
        rows = []
        with (gzip.open(path, "rt") if path.suffix == ".gz" else path.open()) as handle:
            for line in handle:
                if line.strip():
                    parts = line.split(maxsplit=1)
                    rows.append((parts[0], parts[1].strip() if len(parts) > 1 else ""))
        frame = pd.DataFrame(rows, columns=["input_smiles", "name"])
        if not len(frame):
            raise ValueError(f"{path}: no SMILES lines; expected one 'SMILES [name]' per line.")
    else:
        frame = read_table(path, sep)
        if smiles_column not in frame.columns:
            raise ValueError(f"{path}: no column {smiles_column!r} for `smiles_column`; available columns: "
                             f"{[str(c) for c in frame.columns]}.")
        frame = frame.rename(columns={smiles_column: "input_smiles"})
    RDLogger.DisableLog("rdApp.*")
    kept, canonical, skipped = [], [], []
    for row, smiles in enumerate(frame["input_smiles"].tolist()):
        text = "" if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)) else str(smiles).strip()
        mol = Chem.MolFromSmiles(text) if text else None
        if mol is None:
            reason = "empty" if not text else "RDKit cannot parse it"
            if on_invalid == "raise":
                raise ValueError(f"{path}: row {row} SMILES {text!r}: {reason}.")
            skipped.append((row, text, reason))
            continue
        kept.append(row)
        canonical.append(Chem.MolToSmiles(mol) if canonicalize else text)
    report = SmilesReadReport(str(path), len(frame), len(kept), skipped)
    if not kept:
        raise ValueError(f"{path}: zero usable molecules: none of the {len(frame)} SMILES parses "
                         f"(first: {skipped[0][1]!r}).")
    if skipped:
        logger.warning(report.summary())
    frame = frame.iloc[kept].reset_index(drop=True)
    frame.insert(0, "smiles", canonical)
    frame["input_smiles"] = frame["input_smiles"].astype(str)
    info = datasets.DatasetInfo(description=json.dumps({"name": path.stem, "source": str(path),
                                                        "skipped": len(skipped)}))
    return datasets.Dataset.from_pandas(frame, preserve_index=False, info=info), report


def read_proteins(path, *, table=None, id_column: str = "id") -> datasets.Dataset:
    """Proteins from a FASTA file: ``id`` (header's first word), ``sequence``, ``length``, and the columns of
    ``table`` (CSV/TSV/Parquet with ``id_column``) joined on the id; every FASTA id must have a table row.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "p.fasta")
        >>> _ = open(path, "w").write(">p1 kinase\\nMKV\\nLL\\n>p2\\nMAA\\n")
        >>> read_proteins(path)[:]
        {'id': ['p1', 'p2'], 'sequence': ['MKVLL', 'MAA'], 'length': [5, 3]}
    """
    ids, sequences = read_fasta(_existing(path))
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path}: FASTA ids must be unique, repeated: {duplicated[:5]}.")
    columns = {"id": ids, "sequence": sequences, "length": [len(s) for s in sequences]}
    if table is not None:
        frame = read_table(table)
        if id_column not in frame.columns:
            raise ValueError(f"{table}: no column {id_column!r} for `id_column`; available columns: "
                             f"{[str(c) for c in frame.columns]}.")
        frame = frame.assign(**{id_column: frame[id_column].astype(str)}).set_index(id_column)
        missing = [i for i in ids if i not in frame.index]
        if missing:
            raise ValueError(f"{table}: no row for {len(missing)} FASTA ids of {Path(path).name} "
                             f"(e.g. {missing[:3]}); expected one row per protein in `{id_column}`.")
        for name in frame.columns:
            columns[str(name)] = frame.loc[ids, name].tolist()
    return datasets.Dataset.from_dict(columns, info=datasets.DatasetInfo(
        description=json.dumps({"name": Path(path).stem, "source": str(path)})))


@dataclass(frozen=True)
class LabelInfo:
    """What a model config needs from the labels: ``task`` ("regression"/"classification"), ``num_labels``,
    ``problem_type`` (transformers' name), ``id2label`` (classification) and the ``target`` column(s)."""

    task: str
    num_labels: int
    problem_type: str
    target: tuple[str, ...]
    id2label: dict[int, str] | None = None

    def config_kwargs(self) -> dict:
        """Keyword arguments for a model's ``from_pretrained``/config: ``num_labels``, ``problem_type``, labels."""
        kwargs = {"num_labels": self.num_labels, "problem_type": self.problem_type}
        if self.id2label is not None:
            kwargs["id2label"] = dict(self.id2label)
            kwargs["label2id"] = {v: k for k, v in self.id2label.items()}
        return kwargs


def _source(dataset: datasets.Dataset) -> str:
    try:
        return json.loads(dataset.info.description or "{}").get("source", "the data")
    except json.JSONDecodeError:
        return "the data"


def prepare_labels(dataset: datasets.Dataset, target: str | Sequence[str], task: str | None = None,
                   classes: Sequence | None = None) -> tuple[datasets.Dataset, LabelInfo]:
    """Check the ``target`` column(s) and add ``labels``; ``task`` is inferred when None: text or boolean
    columns are classification, numeric columns regression (integer class codes need ``task="classification"``).

    Several target columns make a multi-target regression (labels (n, k) float32). Classification labels are
    indices into ``classes`` (sorted distinct values unless given, so train and test share one mapping).
    Errors: a missing column (listing the available ones), NaN/empty labels (counting them), a regression
    target holding text, a classification target with a single class, a value outside ``classes``.
    """
    source = _source(dataset)
    targets = (target,) if isinstance(target, str) else tuple(target)
    if not targets:
        raise ValueError("`target` names no column.")
    for name in targets:
        if name not in dataset.column_names:
            raise ValueError(f"{source}: no target column {name!r}; available columns: "
                             f"{[c for c in dataset.column_names if c != 'spectrum']}.")
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)} or None, got {task!r}.")
    if len(targets) > 1 and task == "classification":
        raise ValueError(f"`target` {list(targets)}: several columns make a multi-target regression; classify one.")
    values = [dataset[name] for name in targets]
    for name, column in zip(targets, values):
        missing = sum(v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())
                      for v in column)
        if missing:
            raise ValueError(f"{source}: target column {name!r} has {missing} missing/NaN labels of {len(column)}; "
                             f"drop or fill those rows first.")
    texty = [any(isinstance(v, (str, bool, np.bool_)) for v in column) for column in values]
    if task is None:
        task = "classification" if len(targets) == 1 and texty[0] else "regression"
    if task == "regression":
        for name, column, is_text in zip(targets, values, texty):
            if is_text:
                texts = [v for v in column if isinstance(v, (str, bool, np.bool_))]
                example = next((v for v in texts if isinstance(v, str) and _as_number(v) is None), texts[0])
                raise ValueError(f"{source}: regression target {name!r} holds text/boolean values (e.g. "
                                 f"{example!r}); expected numbers, or pass task='classification'.")
        array = np.asarray(values, dtype=np.float32).T                     # (n, k)
        labels = array[:, 0].tolist() if len(targets) == 1 else array.tolist()
        info = LabelInfo("regression", len(targets), "regression", targets)
    else:
        column = values[0]
        distinct = sorted(set(column)) if classes is None else list(classes)
        if len(set(column)) < 2 and classes is None:
            raise ValueError(f"{source}: classification target {targets[0]!r} has a single class "
                             f"{distinct[0]!r}; expected at least two.")
        index = {v: i for i, v in enumerate(distinct)}
        unknown = sorted({str(v) for v in column if v not in index})
        if unknown:
            raise ValueError(f"{source}: target {targets[0]!r} has values {unknown[:5]} outside `classes` {distinct}.")
        labels = [index[v] for v in column]
        info = LabelInfo("classification", len(distinct), "single_label_classification", targets,
                         {i: str(v) for i, v in enumerate(distinct)})
    if "labels" in dataset.column_names:
        dataset = dataset.remove_columns("labels")
    feature = (datasets.Value("float32") if info.task == "regression" and info.num_labels == 1 else
               datasets.List(datasets.Value("float32")) if info.task == "regression" else datasets.Value("int64"))
    return dataset.add_column("labels", labels, feature=feature), info


READERS = ("spectra", "smiles", "proteins")


def _read(field: str, path, options: dict) -> datasets.Dataset:
    if field == "spectra":
        return read_spectra(path, **options)
    if field == "smiles":
        return read_smiles(path, **options)[0]
    if field == "proteins":
        return read_proteins(path, **options)
    raise ValueError(f"`field` must be one of {list(READERS)}, got {field!r}.")


def load_labelled(path, field: str, target: str | Sequence[str], *, task: str | None = None, test_file=None,
                  test_fraction: float = 0.2, validation_fraction: float = 0.1, seed: int = 0,
                  **reader_options) -> tuple[datasets.DatasetDict, LabelInfo]:
    """A labelled file -> ``{"train", "validation", "test"}`` with ``labels``, ready for fine-tuning.

    ``field`` picks the reader (``read_spectra``, ``read_smiles``, ``read_proteins``; ``reader_options`` go to
    it, e.g. ``smiles_column`` or ``axis``). The test split is ``test_file`` (read the same way) or a seeded
    ``test_fraction`` of the file; the validation split (early stopping) is a seeded ``validation_fraction``
    of the rest. Splits are stratified for classification, and every split shares the training split's class
    mapping (a test class unseen in training is an error).

    Example:
        >>> import pandas as pd, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "mols.csv")
        >>> pd.DataFrame({"smiles": ["C", "CC", "CCC", "CCCC"] * 5, "y": range(20)}).to_csv(path, index=False)
        >>> data, info = load_labelled(path, "smiles", "y", test_fraction=0.2, validation_fraction=0.25)
        >>> {k: len(v) for k, v in data.items()}, info.task
        ({'train': 12, 'validation': 4, 'test': 4}, 'regression')
    """
    for name, value in (("test_fraction", test_fraction), ("validation_fraction", validation_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"`{name}` must be in (0, 1), got {value!r}.")
    data = _read(field, path, reader_options)
    labelled, info = prepare_labels(data, target, task)
    strata = np.asarray(labelled["labels"][:]) if info.task == "classification" else None
    if test_file is None:
        rest, test_rows = seeded_split(len(labelled), test_fraction, seed, strata)
        test = labelled.select(test_rows)
    else:
        rest = np.arange(len(labelled))
        classes = None if info.task == "regression" else sorted(set(data[info.target[0]]))
        test, _ = prepare_labels(_read(field, test_file, reader_options), target, info.task, classes=classes)
    keep, held = seeded_split(rest.size, validation_fraction, seed + 1, None if strata is None else strata[rest])
    splits = {"train": labelled.select(rest[keep]), "validation": labelled.select(rest[held]), "test": test}
    empty = [name for name, split in splits.items() if len(split) == 0]
    if empty:
        raise ValueError(f"{path}: {len(labelled)} labelled rows leave the {empty} split(s) empty; use more data or "
                         f"larger `test_fraction`/`validation_fraction`.")
    return datasets.DatasetDict(splits), info
