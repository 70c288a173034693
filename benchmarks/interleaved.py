"""Side-by-side ratios in ONE process, robust to a busy shared machine: the benchmark's cases, stepped in
alternating rounds, with wall time and process CPU time per step and the load average of every round.

    python benchmarks/interleaved.py --threads 1 --rounds 8 --out scripts/results/chemo-amx.json \
        '{"case": "chemomae-peer", "mode": "train", "precision": "fp32"}' \
        '{"case": "chemomae", "mode": "train", "precision": "bf16"}'
    python benchmarks/interleaved.py --markdown scripts/results/amx-*.json     # a table of saved runs

Each argument is a spec of ``benchmark.py`` (``case``, ``mode``, ``precision``, optional ``batch`` and the
case's options); the first is the reference of the printed ratios. Why CPU time: on a 2-core machine shared
with other work, wall time measures the other work as much as this one; with one thread, the CPU time a step
takes barely depends on it (with two, OpenMP threads that wait for a descheduled partner spin and count).
A Trainer runs its own loop and cannot be stepped in turns with other cases: the script refuses it
(``benchmark.py`` times it in a process of its own, in the main thread, as users run it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark  # noqa: E402  (benchmarks/benchmark.py; it puts this checkout's hf_mae on the path)


def own_loop_problem(specs: list[dict]) -> str | None:
    """Why these cases cannot be stepped in turns, or None when they can: cases that run their own loop
    (``benchmark.OWN_LOOP_CASES``, a Trainer) time their own steps."""
    own_loop = sorted({s["case"] for s in specs if s.get("case") in benchmark.OWN_LOOP_CASES})
    if own_loop:
        return (f"{', '.join(own_loop)} run their own training loop and cannot be stepped in turns with other "
                f"cases; time them with benchmarks/benchmark.py, which runs each in a process of its own")
    return None


def run(specs: list[dict], rounds: int, steps: int, threads: int) -> dict:
    """Build every case, warm it up, then ``rounds`` rounds of ``steps`` steps per case, in alternating order."""
    import torch

    torch.set_num_threads(threads)
    cases = []
    for spec in specs:
        full = {**benchmark._spec(spec["case"], spec["mode"], spec["precision"], spec.get("batch", 64)), **spec,
                "threads": threads}
        case = benchmark.BUILDERS[spec["case"]](full)
        for _ in range(3):
            case.step()
        cases.append(case)
    wall: list[list[float]] = [[] for _ in cases]
    cpu: list[list[float]] = [[] for _ in cases]
    loads = []
    for index in range(rounds):
        loads.append(os.getloadavg())
        order = range(len(cases)) if index % 2 == 0 else reversed(range(len(cases)))
        for i in order:
            cases[i].step()
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(steps):
                cases[i].step()
            wall[i].append((time.perf_counter() - start) / steps)
            cpu[i].append((time.process_time() - cpu_start) / steps)
    rows = []
    for spec, case, w, c in zip(specs, cases, wall, cpu):
        rows.append({"spec": spec, "samples": case.samples, "wall_s": w, "cpu_s": c,
                     "samples_per_s": case.samples / statistics.median(w),
                     "cpu_samples_per_s": case.samples / statistics.median(c)})
    return {"rows": rows, "loads": loads, "threads": threads, "rounds": rounds, "steps": steps,
            "machine": benchmark._machine(), "host_kind": benchmark.host_kind(benchmark._machine()),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}


def markdown(results: list[dict], labels: dict[str, str] | None = None) -> list[str]:
    """A table of saved runs: each row's ratio to the first row of its run, by wall and by CPU time."""
    lines = ["| host kind | row | ratio to | threads | CPU-time ratio | wall ratio | samples/s of CPU time | 1-min load |",
             "|---|---|---|---|---|---|---|---|"]
    for result in results:
        first = result["rows"][0]
        loads = [load[0] for load in result["loads"]]
        for row in result["rows"]:
            lines.append(
                f"| {result['host_kind']} | {_label(row['spec'])} | {_label(first['spec'])} | {result['threads']}"
                f"{' (keep_freed_memory)' if result.get('keep_freed_memory') else ''} | "
                f"{row['cpu_samples_per_s'] / first['cpu_samples_per_s']:.2f}x | "
                f"{row['samples_per_s'] / first['samples_per_s']:.2f}x | {row['cpu_samples_per_s']:,.1f} | "
                f"{min(loads):.1f}-{max(loads):.1f} |")
    return lines


def _label(spec: dict) -> str:
    extra = ", ".join(f"{k} {v}" for k, v in spec.items() if k not in ("case", "mode", "precision"))
    return f"{spec['case']} {spec['mode']} {spec['precision']}" + (f" ({extra})" if extra else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="*", help="JSON specs; the first is the reference")
    parser.add_argument("--markdown", nargs="+", default=None, metavar="JSON",
                        help="measure nothing: print a markdown table of saved runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case per round")
    parser.add_argument("--out", default=None, help="write every measurement here (JSON)")
    parser.add_argument("--keep_freed_memory", action="store_true",
                        help="call hf_mae.keep_freed_memory() first: it is process-wide, so it applies to every case "
                             "(without it, the training jobs are stopped from turning it on mid-run)")
    args = parser.parse_args(argv)
    if args.markdown:
        print("\n".join(markdown([json.loads(Path(f).read_text()) for f in args.markdown])))
        return 0
    if not args.specs:
        parser.error("give at least one spec (or --markdown FILES)")
    specs = []
    for text in args.specs:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            parser.error(f"spec {text!r} is not JSON ({error})")
        if not isinstance(spec, dict) or spec.get("case") not in benchmark.BUILDERS:
            parser.error(f"spec {text!r}: expected an object whose \"case\" is one of {sorted(benchmark.BUILDERS)}")
        if spec.get("mode") not in ("train", "encode") or spec.get("precision") not in ("fp32", "bf16"):
            parser.error(f"spec {text!r}: expected \"mode\" train or encode and \"precision\" fp32 or bf16")
        specs.append(spec)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: expected at least 1")
    problem = own_loop_problem(specs)
    if problem:
        parser.error(problem)
    try:   # process-wide, as a benchmark worker does for its one case
        benchmark._allocator({"keep_freed_memory": args.keep_freed_memory})
    except RuntimeError as error:
        parser.error(f"--keep_freed_memory: {error}")
    result = run(specs, args.rounds, args.steps, args.threads)
    result["keep_freed_memory"] = args.keep_freed_memory
    first = result["rows"][0]
    for row in result["rows"]:
        print(f"{json.dumps(row['spec']):100s} wall {row['samples_per_s']:8.1f}/s "
              f"({row['samples_per_s'] / first['samples_per_s']:.2f}x)  CPU time {row['cpu_samples_per_s']:8.1f}/s "
              f"({row['cpu_samples_per_s'] / first['cpu_samples_per_s']:.2f}x)")
    print(f"host kind {result['host_kind']}, {args.threads} thread(s); 1-min load per round: "
          f"{', '.join(f'{load[0]:.1f}' for load in result['loads'])}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
