"""``hf-mae finetune ARCH``: end to end on tiny real data (tiny models, a few steps), and its one-line errors."""

import doctest
import json

import numpy as np
import pytest
import torch

from hf_mae.cli import main
from hf_mae.data.tasks import earthlib_scene
from hf_mae.models import SpectralGPTForImageClassification
from hf_mae.training import finetune as finetune_module

STEPS = ["--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
         "--disable_tqdm", "true", "--report_to", "none", "--per_device_train_batch_size", "16"]


def test_docstring_examples_run():
    assert doctest.testmod(finetune_module).failed == 0


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory):
    """A real-spectra scene (earthlib reflectance, 180 bands, 24 x 24, 5 classes incl. 0 = unlabelled) and a tiny
    SpectralGPT pretrained on it with ``hf-mae pretrain spectral-gpt --data``."""
    folder = tmp_path_factory.mktemp("scene")
    cube, label_map, _ = earthlib_scene(size=24, n_regions=6)
    np.save(folder / "scene.npy", cube.transpose(1, 2, 0))                       # (H, W, bands)
    np.save(folder / "labels.npy", label_map)
    run = folder / "pretrained"
    assert main(["pretrain", "spectral-gpt", "--data", str(folder / "scene.npy"), "--band_axis", "-1",
                 "--tile_size", "8", "--image_size", "8", "--patch_size", "4", "--band_patch_size", "36",
                 "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                 "--intermediate_size", "64", "--decoder_hidden_size", "16", "--decoder_num_hidden_layers", "1",
                 "--decoder_num_attention_heads", "2", "--decoder_intermediate_size", "32",
                 "--eval_fraction", "0.25", "--output_dir", str(run), *STEPS]) == 0
    return folder, run, label_map


def test_spectral_gpt_per_pixel_end_to_end(scene_run, tmp_path, capsys):
    folder, run, label_map = scene_run
    capsys.readouterr()
    out = tmp_path / "ft"
    assert main(["finetune", "spectral-gpt", "--model", str(run), "--data", str(folder / "scene.npy"),
                 "--band_axis", "-1", "--labels", str(folder / "labels.npy"), "--output_dir", str(out), *STEPS]) == 0
    printed = capsys.readouterr().out
    n_labelled = int((label_map != 0).sum())
    assert "classification of label map (4 classes)" in printed
    assert "baseline: RBF-SVM on pixel spectra" in printed and "max |logit difference| = 0.0e+00" in printed
    results = json.loads((out / "finetune_results.json").read_text())
    sizes = results["split_sizes"]
    assert sum(sizes.values()) == n_labelled and sizes["test"] == pytest.approx(0.2 * n_labelled, abs=4)
    assert set(results["test"]) >= {"accuracy", "f1_macro", "roc_auc", "loss"}
    assert 0 <= results["test"]["accuracy"] <= 1 and results["baselines"][0]["name"] == "svm_rbf"
    assert results["baselines"][0]["metrics"]["accuracy"] > 0.5       # real spectra: the classes separate
    assert results["seeds"] == {"training": 42, "split": 0} and results["id2label"] == {"0": "1", "1": "2",
                                                                                        "2": "3", "3": "4"}
    class_map = np.load(out / "class_map.npy")
    assert class_map.shape == label_map.shape and ((class_map != 0) == (label_map != 0)).all()
    assert set(np.unique(class_map[label_map != 0])) <= {1, 2, 3, 4}
    model = SpectralGPTForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 4 and model.config.id2label[0] == "1"


def test_spectral_gpt_frozen_encoder_keeps_the_pretrained_weights(scene_run, tmp_path):
    from safetensors.torch import load_file

    folder, run, _ = scene_run
    out = tmp_path / "probe"
    assert main(["finetune", "spectral-gpt", "--model", str(run), "--data", str(folder / "scene.npy"),
                 "--band_axis", "-1", "--labels", str(folder / "labels.npy"), "--freeze_encoder",
                 "--output_dir", str(out), *STEPS]) == 0
    pretrained = load_file(run / "hsi_encoder" / "model.safetensors")
    tuned = load_file(out / "model.safetensors")
    encoder = {k.removeprefix("spectral_gpt."): v for k, v in tuned.items() if k.startswith("spectral_gpt.")}
    assert encoder.keys() == pretrained.keys()
    assert all(torch.equal(encoder[k], pretrained[k]) for k in pretrained)
    assert json.loads((out / "finetune_results.json").read_text())["freeze_encoder"] is True


def test_early_stopping_on_the_validation_loss(scene_run, tmp_path):
    """With a learning rate of 0 the validation loss never improves: patience 1 stops after the second evaluation."""
    folder, run, _ = scene_run
    out = tmp_path / "stopped"
    assert main(["finetune", "spectral-gpt", "--model", str(run), "--data", str(folder / "scene.npy"),
                 "--band_axis", "-1", "--labels", str(folder / "labels.npy"), "--output_dir", str(out),
                 *STEPS, "--max_steps", "40", "--learning_rate", "0", "--early_stopping_patience", "1",
                 "--baseline", "false"]) == 0
    results = json.loads((out / "finetune_results.json").read_text())
    assert results["steps"] == 4 and results["baselines"] == []


def _train_test_maps(label_map: np.ndarray, folder) -> tuple[np.ndarray, np.ndarray]:
    """The labelled pixels cut into a training map (every third pixel left out) and a test map (those pixels)."""
    labelled = np.flatnonzero(label_map.ravel() != 0)
    test = np.zeros(label_map.size, bool)
    test[labelled[::3]] = True
    test = test.reshape(label_map.shape)
    train_map, test_map = np.where(test, 0, label_map), np.where(test, label_map, 0)
    np.save(folder / "train_labels.npy", train_map)
    np.save(folder / "test_labels.npy", test_map)
    return train_map, test_map


def test_spectral_gpt_scores_exactly_the_given_test_pixels(scene_run, tmp_path):
    """``--test_labels``: the model and the baseline are scored on the pixels of that map, and only on them."""
    from sklearn.svm import SVC  # noqa: F401  (the baseline's dependency)

    folder, run, label_map = scene_run
    train_map, test_map = _train_test_maps(label_map, tmp_path)
    out = tmp_path / "given"
    assert main(["finetune", "spectral-gpt", "--model", str(run), "--data", str(folder / "scene.npy"),
                 "--band_axis", "-1", "--labels", str(tmp_path / "train_labels.npy"), "--test_labels",
                 str(tmp_path / "test_labels.npy"), "--output_dir", str(out), *STEPS]) == 0
    results = json.loads((out / "finetune_results.json").read_text())
    sizes = results["split_sizes"]
    assert sizes["test"] == int((test_map != 0).sum())
    assert sizes["train"] + sizes["validation"] == int((train_map != 0).sum()) and sizes["validation"] > 0
    assert results["test_labels"] == str(tmp_path / "test_labels.npy")
    assert results["baselines"][0]["metrics"]["accuracy"] > 0.5

    # the same pixels as the script's own split: the prepared test windows are those of the test map
    args = finetune_module.FinetuneArguments(model=str(run), data=str(folder / "scene.npy"), band_axis=-1,
                                             labels=str(tmp_path / "train_labels.npy"),
                                             test_labels=str(tmp_path / "test_labels.npy"))
    prepared = finetune_module.prepare_pixels(args, seed=0)
    pixels, parts = prepared.extra["pixels"], prepared.extra["parts"]
    rows, cols = pixels.rows[parts["test"]], pixels.cols[parts["test"]]
    assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(map(tuple, np.argwhere(test_map != 0).tolist()))
    assert (pixels.classes[pixels.targets[parts["test"]]] == test_map[rows, cols]).all()
    for name in ("train", "validation"):
        assert (train_map[pixels.rows[parts[name]], pixels.cols[parts[name]]] != 0).all()
    assert not set(parts["train"]) & set(parts["validation"])


def test_test_labels_errors_are_one_line(scene_run, tmp_path, capsys):
    folder, run, label_map = scene_run
    train_map, test_map = _train_test_maps(label_map, tmp_path)
    np.save(tmp_path / "small.npy", test_map[:10])
    np.save(tmp_path / "overlap.npy", label_map)
    np.save(tmp_path / "empty.npy", np.zeros_like(test_map))
    np.save(tmp_path / "new_class.npy", np.where(test_map != 0, 9, 0))
    np.save(tmp_path / "fractional.npy", np.where(test_map != 0, 1.5, 0.0))
    base = ["finetune", "spectral-gpt", "--model", str(run), "--output_dir", str(tmp_path / "o"), "--data",
            str(folder / "scene.npy"), "--band_axis", "-1", "--labels", str(tmp_path / "train_labels.npy")]
    for name, message in [("small.npy", "has shape (10, 24); expected the shape of `--labels`"),
                          ("overlap.npy", "that `--labels` " + str(tmp_path / "train_labels.npy") + " labels too"),
                          ("empty.npy", "has no labelled pixel"),
                          ("new_class.npy", "has classes [9] that `--labels`"),
                          ("fractional.npy", "`--test_labels` " + str(tmp_path / "fractional.npy") + " holds float64 "
                                             "values that are not whole numbers; expected integer class labels")]:
        assert main([*base, "--test_labels", str(tmp_path / name)]) == 1, name
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (name, err)
    assert main(["finetune", "smiles-bert", "--model", str(run), "--data", "x.csv", "--target", "y",
                 "--test_labels", str(tmp_path / "test_labels.npy")]) == 1
    err = capsys.readouterr().err
    assert "is a label map for spectral-gpt; smiles-bert takes its test rows from `--test_data`" in err


def test_spectral_gpt_errors_are_one_line(scene_run, tmp_path, capsys):
    folder, run, label_map = scene_run
    np.save(tmp_path / "one_class.npy", (label_map != 0).astype(int))
    np.save(tmp_path / "few_bands.npy", np.zeros((24, 24, 12), np.float32))
    base = ["finetune", "spectral-gpt", "--model", str(run), "--output_dir", str(tmp_path / "o")]
    for extra, message in [
            (["--data", str(folder / "scene.npy"), "--labels", str(folder / "labels.npy")],
             "pass `band_axis` (0, 1 or 2/-1; `--band_axis` on the command line)"),
            (["--data", str(folder / "scene.npy"), "--band_axis", "-1"], "pass `--labels`"),
            (["--data", str(folder / "scene.npy"), "--band_axis", "-1", "--labels", str(tmp_path / "one_class.npy")],
             "`label_map` has a single class 1 besides 0; expected at least two"),
            (["--data", str(tmp_path / "few_bands.npy"), "--band_axis", "-1", "--labels", str(folder / "labels.npy")],
             "has 12 bands but"),
            (["--data", str(folder / "scene.npy"), "--band_axis", "-1", "--labels", str(folder / "labels.npy"),
              "--model", "no_such_run"], "`--model` 'no_such_run' is neither a folder nor a Hub id")]:
        assert main([*base, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)


# -- bad input: one line naming the file/column and what was expected ----------------------------------------
@pytest.fixture(scope="module")
def corn_run(tmp_path_factory):
    """Real corn NIR spectra as a labelled CSV (moisture, a text grade) and a tiny ChemoMAE pretrained on them."""
    import pandas as pd

    from hf_mae.data.spectra import load_nir_corn, spectral_metadata

    folder = tmp_path_factory.mktemp("corn")
    data = load_nir_corn()["train"]
    wavelengths = spectral_metadata(data)["wavelengths"]
    frame = pd.DataFrame(np.asarray(data["spectrum"][:40]), columns=[f"{w:g}" for w in wavelengths])
    moisture = np.asarray(data["target"][:40], dtype=float)[:, 0] if np.ndim(data["target"][0]) else \
        np.asarray(data["target"][:40], dtype=float)
    frame.insert(0, "moisture", moisture)
    frame.insert(1, "grade", np.where(moisture > np.median(moisture), "wet", "dry"))
    frame.to_csv(folder / "corn.csv", index=False)
    run = folder / "chemomae"
    assert main(["pretrain", "chemomae", "--data", str(folder / "corn.csv"), "--output_dir", str(run),
                 "--seq_len", "64", "--d_model", "16", "--nhead", "2", "--num_layers", "1", "--dim_feedforward",
                 "32", "--n_blocks", "8", "--n_mask", "4", *STEPS]) == 0
    return folder, run, frame


def test_bad_labelled_files_are_one_line_errors(corn_run, tmp_path, capsys):
    folder, run, frame = corn_run
    nan = frame.copy()
    nan.loc[[3, 7], "moisture"] = np.nan
    nan.to_csv(tmp_path / "nan.csv", index=False)
    frame.assign(grade="wet").to_csv(tmp_path / "one_class.csv", index=False)
    frame.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    narrow = frame[["moisture", "grade", *frame.columns[10:-10]]]
    narrow.to_csv(tmp_path / "narrow.csv", index=False)
    low, high = float(frame.columns[2]), float(frame.columns[-1])
    base = ["finetune", "chemomae", "--model", str(run), "--output_dir", str(tmp_path / "o")]
    for extra, message in [
            (["--data", str(tmp_path / "nan.csv"), "--target", "moisture"],
             "nan.csv: target column 'moisture' has 2 missing/NaN labels of 40; drop or fill those rows first"),
            (["--data", str(folder / "corn.csv"), "--target", "fat"],
             "corn.csv: no target column 'fat'; available columns: ['moisture', 'grade']"),
            (["--data", str(tmp_path / "one_class.csv"), "--target", "grade"],
             "classification target 'grade' has a single class 'wet'; expected at least two"),
            (["--data", str(folder / "corn.csv"), "--target", "grade", "--task", "regression"],
             "regression target 'grade' holds text/boolean values (e.g. 'dry'); expected numbers"),
            (["--data", str(tmp_path / "narrow.csv"), "--target", "moisture"],
             f"narrow.csv: the spectra cover {float(narrow.columns[2]):g}-{float(narrow.columns[-1]):g} nm but the "
             f"model's grid needs {low:g}-{high:g} nm"),
            (["--data", str(tmp_path / "empty.csv"), "--target", "moisture"],
             "empty.csv: the table has a header but zero rows; expected one row per sample"),
            (["--data", str(folder / "corn.csv")], "`--target` is required"),
            (["--data", str(folder / "corn.csv"), "--target", "moisture", "--test_fraction", "1.5"],
             "`test_fraction` must be")]:
        assert main([*base, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (extra, err)


def test_unknown_architecture_is_refused(capsys):
    assert main(["finetune", "bert"]) == 1
    assert "unknown architecture 'bert' for `hf-mae finetune`; expected one of ['chemomae'" in capsys.readouterr().err
    assert main(["finetune"]) == 2


def test_skipped_smiles_are_counted_and_reported(tmp_path, capsys):
    import pandas as pd

    from hf_mae.data.molecules import load_solubility
    from hf_mae.training.finetune import FinetuneArguments, prepare_smiles

    train = load_solubility()["train"]
    frame = pd.DataFrame({"smiles": [*train["smiles"][:30], "C1CC", "xyz"], "logS": [*train["target"][:30], 0.0, 1.0]})
    frame.to_csv(tmp_path / "sol.csv", index=False)
    run = tmp_path / "bert"
    assert main(["pretrain", "smiles-bert", "--data", str(tmp_path / "sol.csv"), "--output_dir", str(run),
                 "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2",
                 "--intermediate_size", "64", "--eval_fraction", "0.2", *STEPS[:-2]]) == 0
    prepared = prepare_smiles(FinetuneArguments(model=str(run), data=str(tmp_path / "sol.csv"), target="logS"), 0)
    assert prepared.notes == [f"{tmp_path / 'sol.csv'}: 2 SMILES skipped (RDKit cannot parse them); see the warning "
                              f"above for the rows"]
    assert sum(len(s) for s in prepared.splits.values()) == 30
    assert [label for label, *_ in prepared.baselines] == [
        "random forest on Morgan fingerprints", "ridge on Morgan fingerprints", "random forest on RDKit descriptors",
        "ridge on RDKit descriptors"]
    assert prepared.baselines[0][2].shape == (len(prepared.splits["train"]), 2048)

    # a file where no SMILES parses: zero usable rows, one line naming the file
    pd.DataFrame({"smiles": ["C1CC", "xyz", ""], "logS": [0.0, 1.0, 2.0]}).to_csv(tmp_path / "bad.csv", index=False)
    capsys.readouterr()
    assert main(["finetune", "smiles-bert", "--model", str(run), "--data", str(tmp_path / "bad.csv"), "--target",
                 "logS", "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: zero usable molecules: none of the 3 SMILES parses (first: 'C1CC')" in err and err.count("\n") == 1


def test_push_publishes_a_finetuned_run_with_metrics_and_baseline_in_the_card(scene_run, tmp_path):
    """Fine-tune, ``hf-mae push`` to the local Hub (a client process with HF_ENDPOINT set), read the card back."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hf_mae.hub.server import start_server

    folder, run, _ = scene_run
    out = tmp_path / "ft"
    assert main(["finetune", "spectral-gpt", "--model", str(run), "--data", str(folder / "scene.npy"),
                 "--band_axis", "-1", "--labels", str(folder / "labels.npy"), "--output_dir", str(out), *STEPS]) == 0
    expected = json.loads((out / "finetune_results.json").read_text())
    server = start_server(str(tmp_path / "hub-root"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(HF_ENDPOINT=server.url, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="0",
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        script = ("import json, sys; from hf_mae.cli import main; assert main(['push', sys.argv[1], 'lab/pixels']) == 0;"
                  "from huggingface_hub import ModelCard; card = ModelCard.load('lab/pixels');"
                  "print('CARD ' + json.dumps({'data': card.data.to_dict(), 'text': card.text}))")
        done = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("CARD "))[5:])
    data = card["data"]
    assert data["pipeline_tag"] == "image-classification"
    results = data["model-index"][0]["results"][0]
    assert data["model-index"][0]["name"] == "pixels" and results["task"]["type"] == "tabular-classification"
    assert results["dataset"]["name"] == "scene.npy"
    metrics = {m["type"]: m["value"] for m in results["metrics"]}
    assert metrics["accuracy"] == pytest.approx(expected["test"]["accuracy"])
    assert metrics["f1_macro"] == pytest.approx(expected["test"]["f1_macro"])
    baseline = data["baselines"][0]
    assert baseline["name"] == "svm_rbf" and baseline["description"] == "RBF-SVM on pixel spectra"
    assert baseline["metrics"]["accuracy"] == pytest.approx(expected["baselines"][0]["metrics"]["accuracy"])
    assert "## Fine-tuning results" in card["text"] and "RBF-SVM on pixel spectra (baseline)" in card["text"]


def test_seed_fixes_the_initial_weights_of_pretraining_and_fine_tuning(corn_run, tmp_path):
    """--seed reaches the weights a job initialises before Trainer exists (the model from scratch, the new head):
    two runs with the global generator in different states end with identical weights."""
    from safetensors.torch import load_file

    folder, _, _ = corn_run
    pretrain = ["pretrain", "chemomae", "--data", str(folder / "corn.csv"), "--seq_len", "64", "--d_model", "16",
                "--nhead", "2", "--num_layers", "1", "--dim_feedforward", "32", "--n_blocks", "8", "--n_mask", "4",
                "--seed", "3", *STEPS]
    runs = []
    for index in range(2):
        torch.rand(100 + index)                     # a different global random state before each run
        run = tmp_path / f"pretrain{index}"
        assert main([*pretrain, "--output_dir", str(run)]) == 0
        torch.rand(7 + index)
        tuned = tmp_path / f"tuned{index}"
        assert main(["finetune", "chemomae", "--model", str(run), "--data", str(folder / "corn.csv"), "--target",
                     "moisture", "--baseline", "false", "--seed", "3", "--output_dir", str(tuned), *STEPS]) == 0
        runs.append((load_file(run / "model.safetensors"), load_file(tuned / "model.safetensors")))
    for first, second in zip(*runs):
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), name
