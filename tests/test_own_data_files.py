"""Readers of the user's own files (spectra, SMILES, FASTA) and the label checks, on tiny generated files."""

import doctest
import json
import logging

import numpy as np
import pandas as pd
import pytest

from hf_mae.data import files
from hf_mae.data.files import check_axis_covers, prepare_labels, read_proteins, read_smiles, read_spectra
from hf_mae.data.spectra import spectral_metadata

AXIS = [1100.0, 1150.5, 1200.0, 1250.0]


def _frame(n=3):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((n, len(AXIS))), columns=[f"{w:g}" for w in AXIS])
    frame.insert(0, "id", [f"s{i}" for i in range(n)])
    frame["moisture"] = np.arange(n, dtype=float) + 0.5
    frame["grade"] = ["a", "b", "a"][:n]
    return frame


def test_docstring_examples_run():
    assert doctest.testmod(files).failed == 0


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".csv.gz"])
def test_spectra_tables_round_trip(tmp_path, suffix):
    frame = _frame()
    path = tmp_path / f"mine{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    ds = read_spectra(path, unit="nm")
    assert ds.column_names == ["spectrum", "id", "moisture", "grade"]
    np.testing.assert_allclose(np.asarray(ds["spectrum"][:]), frame[[f"{w:g}" for w in AXIS]].to_numpy(), rtol=1e-6)
    meta = spectral_metadata(ds)
    assert meta["wavelengths"] == AXIS and meta["unit"] == "nm" and meta["source"] == str(path)
    assert ds["id"][:] == ["s0", "s1", "s2"] and ds["moisture"][:] == [0.5, 1.5, 2.5]


def test_spectra_npy_with_axis_and_table(tmp_path):
    spectra = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", spectra)
    np.save(tmp_path / "axis.npy", np.asarray(AXIS[::-1]))           # a descending wavenumber axis is fine
    pd.DataFrame({"y": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "y.csv", index=False)
    ds = read_spectra(tmp_path / "x.npy", axis=tmp_path / "axis.npy", table=tmp_path / "y.csv", unit="cm-1")
    assert ds.column_names == ["spectrum", "y"] and ds["spectrum"][2] == [8, 9, 10, 11]
    assert spectral_metadata(ds)["wavelengths"] == AXIS[::-1]
    (tmp_path / "axis.txt").write_text("\n".join(map(str, AXIS)))
    assert len(read_spectra(tmp_path / "x.npy", axis=tmp_path / "axis.txt")) == 3
    with pytest.raises(ValueError, match="pass `axis`"):
        read_spectra(tmp_path / "x.npy")
    with pytest.raises(ValueError, match="`axis` has 3 values"):
        read_spectra(tmp_path / "x.npy", axis=AXIS[:3])
    pd.DataFrame({"y": [1.0, 2.0]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="2 rows but x.npy holds 3"):
        read_spectra(tmp_path / "x.npy", axis=AXIS, table=tmp_path / "short.csv")


def test_spectra_bad_input_errors(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "ok.csv", index=False)
    with pytest.raises(ValueError, match=r"ok.csv: the spectra cover 1100-1250 nm but the model's grid needs 1000-1200"):
        read_spectra(tmp_path / "ok.csv", grid=np.linspace(1000, 1200, 8))
    assert len(read_spectra(tmp_path / "ok.csv", grid=np.linspace(1120, 1240, 8))) == 3
    frame.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ValueError, match="zero rows"):
        read_spectra(tmp_path / "empty.csv")
    bad = frame.astype({"1200": object})
    bad.loc[1, "1200"] = "n/a"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: 1 spectra have missing.*rows \[1\]"):
        read_spectra(tmp_path / "bad.csv")
    frame[["id", "moisture"]].to_csv(tmp_path / "nospec.csv", index=False)
    with pytest.raises(ValueError, match="found 0 numeric headers"):
        read_spectra(tmp_path / "nospec.csv")
    with pytest.raises(ValueError, match="does not exist"):
        read_spectra(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(ValueError, match="unsupported table type '.xlsx'"):
        read_spectra(tmp_path / "x.xlsx")
    check_axis_covers(AXIS[::-1], [1100, 1250], "f.csv")


def test_prepare_labels_regression_classification_and_errors(tmp_path):
    path = tmp_path / "mine.csv"
    _frame().to_csv(path, index=False)
    ds = read_spectra(path)
    reg, info = prepare_labels(ds, "moisture")
    assert info.task == "regression" and info.num_labels == 1 and reg["labels"][:] == [0.5, 1.5, 2.5]
    assert info.config_kwargs() == {"num_labels": 1, "problem_type": "regression"}
    cls, info = prepare_labels(ds, "grade")
    assert info.task == "classification" and cls["labels"][:] == [0, 1, 0] and info.id2label == {0: "a", 1: "b"}
    assert info.config_kwargs()["label2id"] == {"a": 0, "b": 1}
    multi, info = prepare_labels(ds.add_column("fat", [1.0, 2.0, 3.0]), ["moisture", "fat"])
    assert info.num_labels == 2 and info.problem_type == "regression" and multi["labels"][1] == [1.5, 2.0]
    ints, info = prepare_labels(ds.add_column("code", [3, 10, 3]), "code", task="classification")
    assert info.id2label == {0: "3", 1: "10"} and ints["labels"][:] == [0, 1, 0]
    _, info = prepare_labels(ds, "grade", classes=["a", "b", "c"])   # test split shares the train mapping
    assert info.num_labels == 3
    with pytest.raises(ValueError, match=r"no target column 'fat'; available columns: \['id', 'moisture', 'grade'\]"):
        prepare_labels(ds, "fat")
    with pytest.raises(ValueError, match="'moisture' has 1 missing/NaN labels of 3"):
        prepare_labels(ds.remove_columns("moisture").add_column("moisture", [1.0, float("nan"), 2.0]), "moisture")
    with pytest.raises(ValueError, match="regression target 'grade' holds text"):
        prepare_labels(ds, "grade", task="regression")
    with pytest.raises(ValueError, match=r"'mixed' holds text/boolean values \(e.g. 'n/a'\)"):
        prepare_labels(ds.add_column("mixed", ["1.5", "n/a", "2"]), "mixed", task="regression")
    with pytest.raises(ValueError, match="'one' has a single class 'x'"):
        prepare_labels(ds.add_column("one", ["x"] * 3), "one")
    with pytest.raises(ValueError, match=r"values \['b'\] outside `classes`"):
        prepare_labels(ds, "grade", classes=["a"])
    with pytest.raises(ValueError, match="task"):
        prepare_labels(ds, "grade", task="ranking")


def test_read_smiles_counts_and_reports_invalid(tmp_path, caplog):
    pytest.importorskip("rdkit")
    (tmp_path / "m.smi").write_text("OCC ethanol\nnot_a_smiles junk\n\nc1ccccc1\n")
    with caplog.at_level(logging.WARNING, logger="hf_mae.data.files"):
        ds, report = read_smiles(tmp_path / "m.smi")
    assert ds["smiles"][:] == ["CCO", "c1ccccc1"] and ds["input_smiles"][:] == ["OCC", "c1ccccc1"]
    assert ds["name"][:] == ["ethanol", ""]
    assert (report.n_read, report.n_kept, report.skipped) == (3, 2, [(1, "not_a_smiles", "RDKit cannot parse it")])
    assert "2 of 3 SMILES kept, 1 skipped" in caplog.text
    assert json.loads(ds.info.description)["skipped"] == 1
    pd.DataFrame({"mol": ["CCN", "C(", None], "logS": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "m.csv", index=False)
    ds, report = read_smiles(tmp_path / "m.csv", smiles_column="mol", canonicalize=False)
    assert ds["smiles"][:] == ["CCN"] and ds["logS"][:] == [1.0]
    assert [s[2] for s in report.skipped] == ["RDKit cannot parse it", "empty"]
    with pytest.raises(ValueError, match=r"no column 'smiles' for `smiles_column`; available columns: \['mol', 'logS'\]"):
        read_smiles(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="row 1 SMILES 'C\\('"):
        read_smiles(tmp_path / "m.csv", smiles_column="mol", on_invalid="raise")
    (tmp_path / "bad.smi").write_text("C(\nxx\n")
    with pytest.raises(ValueError, match="zero usable molecules"):
        read_smiles(tmp_path / "bad.smi")


def test_read_proteins_with_label_table(tmp_path):
    (tmp_path / "p.fasta").write_text(">p1 first\nMKV\nLL\n>p2\nMAA\n")
    pd.DataFrame({"id": ["p2", "p1", "p3"], "stable": [0, 1, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    ds = read_proteins(tmp_path / "p.fasta", table=tmp_path / "labels.csv")
    assert ds[:] == {"id": ["p1", "p2"], "sequence": ["MKVLL", "MAA"], "length": [5, 3], "stable": [1, 0]}
    pd.DataFrame({"id": ["p1"], "stable": [1]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match=r"no row for 1 FASTA ids of p.fasta \(e.g. \['p2'\]\)"):
        read_proteins(tmp_path / "p.fasta", table=tmp_path / "short.csv")
    (tmp_path / "dup.fasta").write_text(">a\nMK\n>a\nMV\n")
    with pytest.raises(ValueError, match="unique"):
        read_proteins(tmp_path / "dup.fasta")


def test_collators_pass_labels_with_the_right_dtype():
    import torch

    from hf_mae.data.protein import DataCollatorForProteinEmbeddings
    from hf_mae.data.spectra import DataCollatorForSpectra, collate_labels

    batch = DataCollatorForSpectra()([{"input_values": [0.0, 1.0], "labels": 2.5}, {"input_values": [1.0, 0.0], "labels": 1}])
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [2.5, 1.0]
    assert "labels" not in DataCollatorForSpectra()([{"input_values": [0.0, 1.0]}])
    multi = collate_labels([{"labels": [1.0, 2.0]}, {"labels": [3.0, 4.0]}])["labels"]
    assert multi.shape == (2, 2) and multi.dtype == torch.float32
    rows = [{"residue_embeddings": np.ones((3, 4)), "labels": 1}, {"residue_embeddings": np.ones((2, 4)), "labels": 0}]
    out = DataCollatorForProteinEmbeddings()(rows)
    assert out["labels"].tolist() == [1, 0] and out["labels"].dtype == torch.long and out["attention_mask"].shape == (2, 3)
    with pytest.raises(ValueError, match="missing in 1 of 2 rows"):
        collate_labels([{"labels": 1}, {}])
    with pytest.raises(ValueError, match="must be numbers"):
        collate_labels([{"labels": "a"}, {"labels": "b"}])


def test_load_labelled_splits_and_shares_the_class_mapping(tmp_path):
    from hf_mae.data.files import load_labelled

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.random((40, 4)), columns=[f"{w:g}" for w in AXIS])
    frame["grade"] = ["hi", "lo"] * 20
    frame.to_csv(tmp_path / "train.csv", index=False)
    data, info = load_labelled(tmp_path / "train.csv", "spectra", "grade", test_fraction=0.25, validation_fraction=0.2,
                               seed=1)
    assert {k: len(v) for k, v in data.items()} == {"train": 24, "validation": 6, "test": 10}
    assert info.id2label == {0: "hi", 1: "lo"} and sorted(data["test"]["labels"][:]) == [0] * 5 + [1] * 5
    ids = [set(map(tuple, d["spectrum"][:])) for d in data.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again, _ = load_labelled(tmp_path / "train.csv", "spectra", "grade", test_fraction=0.25, validation_fraction=0.2,
                             seed=1)
    assert again["validation"]["spectrum"][:] == data["validation"]["spectrum"][:]
    frame.iloc[:3].assign(grade=["lo", "lo", "lo"]).to_csv(tmp_path / "test.csv", index=False)
    data, _ = load_labelled(tmp_path / "train.csv", "spectra", "grade", test_file=tmp_path / "test.csv")
    assert data["test"]["labels"][:] == [1, 1, 1] and len(data["train"]) + len(data["validation"]) == 40
    frame.iloc[:2].assign(grade=["mid", "lo"]).to_csv(tmp_path / "unseen.csv", index=False)
    with pytest.raises(ValueError, match=r"values \['mid'\] outside `classes`"):
        load_labelled(tmp_path / "train.csv", "spectra", "grade", test_file=tmp_path / "unseen.csv")
    with pytest.raises(ValueError, match="`field` must be one of"):
        load_labelled(tmp_path / "train.csv", "images", "grade")
    with pytest.raises(ValueError, match="test_fraction"):
        load_labelled(tmp_path / "train.csv", "spectra", "grade", test_fraction=0)
