"""The benchmark's bookkeeping, with made-up figures (nothing is timed here): resuming an interrupted run,
merging a CPU run with a GPU run from another machine, and what the report then says."""

import importlib.util
import json
import sys
from pathlib import Path

import torch

from hf_mae.models.validation import check_tensor


def _load_script(name: str):
    """benchmarks/NAME.py is a script of the checkout, not a module of the package: load it by path."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"hf_mae_{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module            # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


benchmark = _load_script("benchmark")


def _run(samples, step_s, **extra):
    return {"samples": samples, "step_s": [step_s] * 3, "flops": 1e9, "load_before": 0.5, "load_after": 0.5,
            "rss_before_mib": 100.0, "peak_rss_mib": 150.0, **extra}


def _raw(tables, machine):
    return benchmark._raw(tables, (0.1, 0.1, 0.1), (0.2, 0.2, 0.2), machine)


def _measured(sections: set[str], peer_step_s: float = 0.2) -> dict:
    """CPU rows of ``sections`` with one made-up run each: the matmul rows at 100 GFLOP/s (1 GFLOP in 10 ms), the
    ChemoMAE rows at 0.1 s a step for ours and ``peer_step_s`` for the peer's."""
    tables = benchmark.build_rows(sections, cuda=False)
    for row in tables.get("matmul", []):
        row.runs = [_run(1, 0.01)]
    for row in tables.get("chemomae", []):
        row.runs = [_run(64, peer_step_s if row.key.startswith("peer") else 0.1)]
    return tables


def _report_from(tmp_path, runs: list[tuple[dict, str]], only: str) -> str:
    """Write each (tables, machine line) as a --json file, then the report ``--from-json`` all of them, in order."""
    paths = []
    for index, (tables, machine) in enumerate(runs):
        paths.append(tmp_path / f"run{index}.json")
        paths[-1].write_text(json.dumps(_raw(tables, [machine])))
    out = tmp_path / "B.md"
    assert benchmark.main(["--from-json", ",".join(map(str, paths)), "--only", only, "--output", str(out)]) == 0
    return out.read_text()


def test_resume_measures_only_rows_without_runs(monkeypatch):
    tables = benchmark.build_rows({"matmul"}, cuda=False)
    rows = tables["matmul"]
    rows[0].runs = [_run(1, 0.1)]                       # measured before the interruption
    measured, checkpoints = [], []
    monkeypatch.setattr(benchmark, "_run_spec", lambda spec, timeout: measured.append(spec) or _run(1, 0.2))
    benchmark.measure(tables, repeats=1, threads=1, quick=False, tmp="/tmp", timeout=1,
                      checkpoint=lambda: checkpoints.append(1))
    assert [s["shape"] for s in measured] == [r.spec["shape"] for r in rows[1:]]
    assert len(checkpoints) == len(rows) - 1           # saved after every measurement
    assert all(len(r.runs) == 1 for r in rows)


def test_report_merges_a_cpu_run_and_a_gpu_run(tmp_path):
    cpu = _measured({"matmul", "chemomae"})
    gpu = {"gpu": benchmark.build_rows({"gpu"}, cuda=True)["gpu"]}
    for row in gpu["gpu"]:
        if row.spec["case"] == "matmul":
            row.runs = [_run(1, 1e-4, peak_cuda_mib=10.0, syncs_per_step=0)]      # 10 TFLOP/s
        else:
            peer = "peer" in row.key or "vitmae" in row.key
            row.runs = [_run(row.spec["batch"], 0.02 if peer else 0.01, peak_cuda_mib=500.0,
                             syncs_per_step=4 if "chemomae-peer" in row.key else 0)]
    report = _report_from(tmp_path, [(cpu, "- CPU: test cpu"), (gpu, "- GPU: test gpu")], "matmul,chemomae,gpu")
    assert "- CPU: test cpu" in report and "Measured on another machine, in another run:" in report
    assert "- GPU: test gpu" in report and "Not run: no CUDA device" not in report
    assert "- fp32 training vs chemomae fp32: 2.00x (target >= 1.1x): met" in report
    gpu_lines = [line for line in report.splitlines() if "ChemoMAE, train, batch 64, fp32 |" in line
                 or line.startswith("| ChemoMAE, train, batch 64, fp32 ")]
    assert gpu_lines and "2.00x vs chemomae 0.2.4" in gpu_lines[0]
    cells = [c.strip() for c in gpu_lines[0].split("|")]
    assert cells[5] == "0"                              # syncs/step column of our row
    peer_line = next(line for line in report.splitlines() if line.startswith("| chemomae 0.2.4, train, batch 64, fp32 |"))
    assert [c.strip() for c in peer_line.split("|")][5] == "4"
    assert "| fp32 8192x8192 @ 8192x8192 (TF32 off) | 10.0 |" in report   # TFLOP/s from 2mkn / time


def test_a_row_measured_in_two_runs_is_taken_from_the_later_one_with_its_machine_lines(tmp_path):
    """``--from-json old.json,new.json``: rows of the new run replace the old run's, the old run's other rows stay,
    and the machine lines name the new run."""
    old = _measured({"matmul", "chemomae"}, peer_step_s=0.2)           # 2.00x
    new = _measured({"chemomae"}, peer_step_s=0.3)                     # 3.00x
    report = _report_from(tmp_path, [(old, "- CPU: old run"), (new, "- CPU: new run")], "matmul,chemomae")
    assert "- fp32 training vs chemomae fp32: 3.00x" in report and "2.00x" not in report
    assert "| fp32 2048x2048 @ 2048x2048 |" in report                            # the old run's matmul rows
    assert "- CPU: new run" in report and "- CPU: old run" not in report


def test_finiteness_check_stays_on_in_eager_mode_and_is_skipped_when_compiling(monkeypatch):
    bad = torch.tensor([[1.0, float("nan")]])
    try:
        check_tensor("x", bad, ndim=2)
    except ValueError as error:
        assert "NaN" in str(error)
    else:
        raise AssertionError("a NaN passed the eager check")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    check_tensor("x", bad, ndim=2)                     # shape checks only: compiled graphs stay whole


def test_host_kind_comes_from_the_isa_line():
    isa = "- CPU: x, 2 logical cores; ISA: "
    assert benchmark.host_kind([isa + "avx2, avx512f, avx512_bf16, amx_bf16"]) == "amx"
    assert benchmark.host_kind([isa + "avx2, avx512f, avx512_bf16"]) == "avx512_bf16"
    assert benchmark.host_kind([isa + "avx2"]) == "avx2"
    assert benchmark.host_kind(["- CPU: unknown"]) == "other"


def test_a_run_replaces_only_its_own_host_kinds_section(tmp_path):
    def report(isa, step_s):     # each run rewrites the same B.md
        return _report_from(tmp_path, [(_measured({"chemomae"}, step_s), f"- CPU: test; ISA: {isa}")], "chemomae")

    report("avx2, avx512f, avx512_bf16", 0.2)                     # an AMD-like host: 2.00x
    text = report("avx2, avx512f, avx512_bf16, amx_bf16", 0.3)   # then an AMX host: 3.00x
    assert text.count("# Benchmarks") == 1
    assert "## Host kind: avx512_bf16" in text and "## Host kind: amx" in text
    amd, amx = text.split("<!-- host: amx -->")
    assert "- fp32 training vs chemomae fp32: 2.00x" in amd and "- fp32 training vs chemomae fp32: 3.00x" in amx
    text = report("avx2, avx512f, avx512_bf16, amx_bf16", 0.4)   # a new AMX run replaces the AMX section only
    assert "- fp32 training vs chemomae fp32: 2.00x" in text and "4.00x" in text and "3.00x" not in text


def test_the_installed_command_says_where_the_benchmark_is(capsys):
    from hf_mae.cli import main

    assert main(["benchmark", "--only", "chemomae"]) == 2          # nothing measured: not a success
    assert "python benchmarks/benchmark.py" in capsys.readouterr().err
    assert main(["benchmark", "--help"]) == 0
    assert "python benchmarks/benchmark.py" in capsys.readouterr().out


def test_interleaved_refuses_a_trainer_and_bad_arguments_in_one_line(capsys):
    import pytest

    interleaved = _load_script("interleaved")
    peer = {"case": "chemomae-peer", "mode": "train", "precision": "fp32"}
    trainer = {"case": "chemomae-trainer", "mode": "train", "precision": "bf16"}
    assert interleaved.own_loop_problem([peer, {**peer, "precision": "bf16"}]) is None
    assert "chemomae-trainer" in interleaved.own_loop_problem([peer, trainer])
    assert "chemomae-trainer" in interleaved.own_loop_problem([trainer])      # a Trainer is never stepped in turns
    for argv, expected in (
            (["--threads", "1", json.dumps(peer), json.dumps(trainer)], "benchmarks/benchmark.py"),
            (["{not json"], "is not JSON"),
            ([json.dumps({"case": "nope", "mode": "train", "precision": "fp32"})], '"case" is one of'),
            ([json.dumps({**peer, "precision": "fp16"})], '"precision" fp32 or bf16'),
            (["--threads", "0", json.dumps(peer)], "--threads 0: expected at least 1")):
        with pytest.raises(SystemExit) as exit_info:
            interleaved.main(argv)          # refused before anything is built or timed
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err


def test_a_trainer_case_runs_in_the_calling_thread_and_times_its_own_steps(tmp_path):
    """The Trainer rows run ``Trainer.train()`` in the worker's main thread, as users run it, and stop right after
    the last timed step (no save, no evaluation); the job's module gets its own Trainer back."""
    import threading

    import transformers

    from hf_mae.training import common

    for extra in ({}, {"job": True}):
        spec = {"case": "chemomae-trainer", "mode": "train", "precision": "fp32", "batch": 8, "device": "cpu",
                "tmp": str(tmp_path), **extra}
        case = benchmark.BUILDERS["chemomae-trainer"](spec)
        assert case.step is None
        wall, cpu = case.timed(2, 3)
        assert len(wall) == len(cpu) == 3 and all(t > 0 for t in wall) and all(t >= 0 for t in cpu)
        assert [t for t in threading.enumerate() if not t.daemon] == [threading.main_thread()]   # (tqdm's monitor is a daemon)
        assert not list(tmp_path.rglob("model.safetensors"))                  # stopped before saving
        assert common.Trainer is transformers.Trainer


def test_chemomaes_own_trainer_is_timed_the_same_way(tmp_path):
    """The peer's full training loop (clipping, EMA, scheduler) as a row of its own, for a loop-to-loop ratio."""
    spec = {"case": "chemomae-peer-trainer", "mode": "train", "precision": "fp32", "batch": 8, "device": "cpu",
            "tmp": str(tmp_path)}
    case = benchmark.BUILDERS["chemomae-peer-trainer"](spec)
    wall, cpu = case.timed(1, 4)
    assert case.step is None and len(wall) == len(cpu) == 4 and all(t > 0 for t in wall)
    assert not list(tmp_path.rglob("*.pt"))                                    # no checkpoints, no weights
    assert "chemomae-peer-trainer" in benchmark.OWN_LOOP_CASES


def test_a_step_clock_stops_its_loop_and_times_the_gaps_between_step_ends():
    import pytest

    ticks = []
    clock = benchmark._StepClock(warmup=2, steps=3)

    def loop():
        for _ in range(100):
            ticks.append(1)
            clock.tick()

    wall, cpu = clock.run(loop)
    assert len(ticks) == 5 and len(wall) == len(cpu) == 3      # ends 2..5 bound the 3 timed steps
    assert all(t >= 0 for t in wall)
    short = benchmark._StepClock(warmup=2, steps=3)
    with pytest.raises(RuntimeError, match="stopped after 2 of 5 steps"):
        short.run(lambda: [short.tick() for _ in range(2)])


def test_a_worker_imports_both_packages_models_before_its_rss_baseline():
    """hf_mae's top level is lazy: unless its models (and transformers.modeling_utils) are imported before the
    baseline, their 100 MiB of imports count as our rows' training memory and not as chemomae's."""
    import subprocess

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "benchmark.py"
    code = (f"import importlib.util, sys; spec = importlib.util.spec_from_file_location('b', {str(script)!r}); "
            "b = importlib.util.module_from_spec(spec); sys.modules['b'] = b; spec.loader.exec_module(b); "
            "before = {'transformers.modeling_utils', 'hf_mae.models.modeling_spectral_mae'} & set(sys.modules); "
            "b.import_models(); "
            "print(sorted(before), all(m in sys.modules for m in ('transformers.modeling_utils', "
            "'hf_mae.models.modeling_spectral_mae', 'hf_mae.models.modeling_protein_mae_v5', "
            "'torch.utils.flop_counter')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"
    assert out.stdout.startswith("[]")          # the script alone does not import them: the call does


def test_the_vitmae_and_bert_sections_keep_freed_memory_on_both_sides():
    tables = benchmark.build_rows({"vitmae", "smiles"}, cuda=False)
    vitmae, smiles = tables["vitmae"], tables["smiles"]
    assert len(vitmae) == 28                   # 196 and 784 tokens: 8 each; 49 patches: 12 (with 1,568 residues)
    assert len(smiles) == 8
    assert all(row.spec.get("keep_freed_memory") is True for row in vitmae + smiles)
    assert len([row for row in vitmae if row.spec["case"].startswith("vitmae")]) == 12
    assert len([row for row in smiles if row.spec["case"] == "bert"]) == 4
    chemomae = benchmark.build_rows({"chemomae"}, cuda=False)["chemomae"]   # as users run it, plus "keep" rows
    assert "keep_freed_memory" not in next(row.spec for row in chemomae if row.key == "ours-train-bf16")
