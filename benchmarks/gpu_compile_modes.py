"""ChemoMAE training step on a GPU: eager, ``torch.compile`` and ``torch.compile(mode="reduce-overhead")``.

At the benchmark's size (3.2M parameters, batch 64) a GPU step is bound by kernel launches, not arithmetic;
this script shows how much CUDA graphs (``reduce-overhead``) recover. Steps run back to back (one
synchronize per timed block), as in training; bf16 autocast; fused AdamW.

    python benchmarks/gpu_compile_modes.py [--batch 64 1024] [--steps 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmark import _chemo_ours  # benchmarks/benchmark.py, next to this script


def step_time(batch: int, steps: int, mode: str | None) -> float:
    """Seconds per training step; ``mode`` "eager" or a ``torch.compile`` mode (None = the default). The step
    is the benchmark's own (``benchmarks/benchmark.py``: bf16 autocast, masked MSE, backward, fused AdamW)."""
    case = _chemo_ours({"mode": "train", "precision": "bf16", "batch": batch, "device": "cuda",
                        "compile": mode != "eager", "compile_mode": mode})
    for _ in range(5):                      # compiles, records the CUDA graphs, warms the allocator
        case.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        case.step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures GPU steps")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for batch in args.batch:
        for mode in ("eager", None, "reduce-overhead"):
            seconds = step_time(batch, args.steps, mode)
            name = "eager" if mode == "eager" else f"torch.compile(mode={mode!r})"
            print(f"batch {batch}, bf16, {name}: {seconds * 1e3:.2f} ms/step, {batch / seconds:,.0f} samples/s",
                  flush=True)


if __name__ == "__main__":
    main()
