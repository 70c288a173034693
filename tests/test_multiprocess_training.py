"""Two-process DDP on CPU (torchrun, gloo) for ChemoMAE and SMILES BERT (and the ChemoMAE regression head): the pretrain command runs, ranks draw
different masks, and 2 processes x batch B give the loss and gradients of 1 process x batch B x gradient
accumulation 2 (the loss-scaling trap of ../shared/notes/transformers-v5.md would give x2 or a wrong mean).

All checks share one torchrun launch (tests/ddp_worker.py) to pay the process start-up once.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from ddp_worker import ONE_STEP  # noqa: E402

WORKER = Path(__file__).with_name("ddp_worker.py")
MODELS = ["chemomae", "smiles-bert"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    root = str(Path(__file__).resolve().parents[1])   # the workers import this checkout's hf_mae
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout


def _read(out, model, what, rank):
    return json.loads((out / f"{model}_{what}_rank{rank}.json").read_text())


@pytest.mark.parametrize("model", MODELS)
def test_torchrun_runs_the_pretrain_command_on_two_processes(ddp_run, model):
    out, stdout = ddp_run
    ranks = [_read(out, model, "masks", r) for r in (0, 1)]
    assert all(r["exit_code"] == 0 and r["world_size"] == 2 for r in ranks)
    assert (out / f"{model}_job" / "model.safetensors").is_file()
    if model == "chemomae":
        assert "AutoModel.from_pretrained -> ChemoMAE, max |z difference| = 0.0e+00" in stdout


@pytest.mark.parametrize("model", MODELS)
def test_each_rank_draws_its_own_masks(ddp_run, model):
    out, _ = ddp_run
    ranks = [_read(out, model, "masks", r) for r in (0, 1)]
    masks = [r["masked"] for r in ranks]
    # Trainer seeds every rank alike; PerRankMaskSeed gives each its own random stream, hence its own masks
    assert ranks[0]["rng"] and ranks[0]["rng"] != ranks[1]["rng"]
    assert len(masks[0]) == len(masks[1]) == 8                       # batch 8 per process
    assert all(any(row) for rank in masks for row in rank)
    if model == "chemomae":
        assert all(len(row) == 32 and sum(row) == 16 for rank in masks for row in rank)   # 16 of 32 blocks
    assert masks[0] != masks[1]


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("model", [*MODELS, "chemomae-head"])   # + a task head: MSE, a per-batch mean
def test_two_processes_equal_one_process_with_gradient_accumulation(ddp_run, model, tmp_path):
    out, _ = ddp_run
    steps = [_read(out, model, "step", r) for r in (0, 1)]
    grads_ddp = [load_file(out / f"{model}_grads_rank{r}.safetensors") for r in (0, 1)]
    assert all(s["world_size"] == 2 for s in steps)

    loss_ga, grads_ga, world_size = ONE_STEP[model](str(tmp_path / "ga"), accumulation=2)
    assert world_size == 1
    for step in steps:   # Trainer's logged loss: the same mean over both micro-batches, not x2
        assert step["loss"] == pytest.approx(loss_ga, rel=1e-4)
    assert set(grads_ga) == set(grads_ddp[0]) and len(grads_ga) > 0
    for name, grad in grads_ga.items():
        assert torch.equal(grads_ddp[0][name], grads_ddp[1][name]), name      # all-reduced: identical on both ranks
        assert torch.allclose(grads_ddp[0][name], grad, rtol=1e-4, atol=1e-6), name


def test_console_entry_tears_the_process_group_down(tmp_path, monkeypatch):
    """``hf-mae`` under torchrun: after a run, the executable destroys the process group itself (left to the
    interpreter's exit, gloo's destructor can abort a rank that has finished its work)."""
    import torch.distributed as dist

    from hf_mae.cli import console

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(sys, "argv", ["hf-mae", "--help"])
        with pytest.raises(SystemExit) as exited:
            console()
        assert exited.value.code == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
