"""Eager attention against torch's SDPA on this CPU: the measurements behind ``CPU_EAGER_MAX_KEYS`` and
``CPU_EAGER_MAX_KEYS_AMX`` in ``hf_mae/models/layers.py``.

    python benchmarks/attention_kernels.py --threads 2 --json scripts/results/attention-kernels-amx-2threads.json

q, k and v are views of one fused projection's output (B, T, 3 * h * d), as ``SelfAttention`` makes them, so
both kernels see the strides they see in the models. "train" is forward + backward (a backward follows),
"infer" is forward under ``inference_mode``. Each figure is the median of 7 rounds of 20 calls, in ms per call.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_mae.models.layers import CPU_HAS_AMX, eager_attention_forward  # noqa: E402

# (batch, tokens, heads, head_dim): V5 and ViTMAE-49 encoding (50) and training (13), ChemoMAE (17), the
# SpectralGPT and ViTMAE 196- and 784-token models, and the key counts around the bf16 limit
SHAPES = [(32, 50, 3, 64), (32, 13, 3, 64), (64, 17, 4, 64), (16, 197, 3, 64), (8, 257, 3, 64), (4, 385, 3, 64),
          (4, 513, 3, 64), (4, 785, 3, 64)]


class _Module(torch.nn.Module):
    """What the eager kernel reads from its module: only ``training``."""


_EVAL_MODULE = _Module().eval()   # built once: not inside the timed calls


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)


def _eager(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return eager_attention_forward(_EVAL_MODULE, q, k, v, None, q.shape[-1] ** -0.5)[0]


def time_kernel(kernel, shape: tuple[int, int, int, int], dtype: torch.dtype, train: bool) -> float:
    """Median ms per call of ``kernel`` on q/k/v of ``shape``, forward (+ backward when ``train``)."""
    batch, tokens, heads, head_dim = shape
    generator = torch.Generator().manual_seed(0)
    qkv = torch.randn(batch, tokens, 3 * heads * head_dim, generator=generator).to(dtype).requires_grad_(train)

    def call():
        q, k, v = qkv.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)   # 3 x (B, h, T, d)
        out = kernel(q, k, v)
        if train:
            out.float().sum().backward()

    with torch.enable_grad() if train else torch.inference_mode():
        for _ in range(5):
            call()
        rounds = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(20):
                call()
            rounds.append((time.perf_counter() - start) / 20 * 1e3)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    rows = []
    print(f"CPU {platform.processor() or platform.machine()}, AMX: {CPU_HAS_AMX}, threads {args.threads}")
    print("| dtype | pass | (B, T, heads, d) | eager ms | SDPA ms | eager / SDPA |\n|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.bfloat16):
        for train in (False, True):
            for shape in SHAPES:
                eager, sdpa = (time_kernel(k, shape, dtype, train) for k in (_eager, _sdpa))
                rows.append({"dtype": str(dtype).removeprefix("torch."), "pass": "train" if train else "infer",
                             "shape": list(shape), "eager_ms": eager, "sdpa_ms": sdpa})
                print(f"| {rows[-1]['dtype']} | {rows[-1]['pass']} | {shape} | {eager:.3f} | {sdpa:.3f} | "
                      f"{eager / sdpa:.2f} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"amx": CPU_HAS_AMX, "threads": args.threads, "torch": torch.__version__,
                                         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
