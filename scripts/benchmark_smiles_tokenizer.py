"""Throughput of the bundled SMILES tokenizer against a pure-Python regex tokenizer of the same rules.

Both turn the same real SMILES into the same padded ``input_ids`` and ``attention_mask`` (checked), from
Python lists of strings to Python lists of ids:
- bundled: ``tokenizer(batch, padding=True)``, the transformers call users make (Rust ``tokenizers`` inside);
- pure Python: ``re.findall`` with the same pattern + dict look-ups + padding (``RegexSmilesTokenizer``).

Two more rows bound what any tokenizer built on the ``tokenizers`` library can reach here:
- Rust only: ``Tokenizer.encode_batch_fast`` on the bundled tokenizer (no Python lists are built);
- floor: a ``WordLevel`` tokenizer with the same vocabulary and no pre-tokenizer, which looks each whole
  SMILES up as one word and splits nothing: the library's own cost per SMILES, with no tokenizing done.

    python scripts/benchmark_smiles_tokenizer.py [--n 100000] [--corpus moses_test] [--repeats 3]

Writes the figures as JSON (``--out``, default runs/benchmark_smiles_tokenizer.json) and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hf_mae.data.smiles import load_smiles  # noqa: E402
from hf_mae.processing.smiles import RegexSmilesTokenizer, load_smiles_tokenizer  # noqa: E402


def best_time(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--corpus", default="moses_test")
    parser.add_argument("--batch_size", type=int, default=1000, help="SMILES per call, as a data pipeline batches")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs" / "benchmark_smiles_tokenizer.json"))
    args = parser.parse_args()

    smiles = load_smiles(args.corpus, limit=args.n)
    if len(smiles) < args.n:
        raise SystemExit(f"{args.corpus} holds only {len(smiles)} SMILES, fewer than --n {args.n}")
    tokenizer = load_smiles_tokenizer()
    slow = RegexSmilesTokenizer(tokenizer.get_vocab())
    batches = [smiles[i:i + args.batch_size] for i in range(0, len(smiles), args.batch_size)]

    def bundled():
        return [tokenizer(batch, padding=True) for batch in batches]

    def pure_python():
        return [slow(batch) for batch in batches]

    from tokenizers import Tokenizer, models

    floor_tokenizer = Tokenizer(models.WordLevel(tokenizer.get_vocab(), unk_token=tokenizer.unk_token))

    def rust_only():
        return [tokenizer.backend_tokenizer.encode_batch_fast(batch) for batch in batches]

    def floor():
        return [floor_tokenizer.encode_batch_fast(batch) for batch in batches]

    fast_s, fast_out = best_time(bundled, args.repeats)
    slow_s, slow_out = best_time(pure_python, args.repeats)
    rust_s, _ = best_time(rust_only, args.repeats)
    floor_s, _ = best_time(floor, args.repeats)
    for fast_batch, slow_batch in zip(fast_out, slow_out):
        if fast_batch["input_ids"] != slow_batch["input_ids"] or fast_batch["attention_mask"] != slow_batch["attention_mask"]:
            raise SystemExit("the two tokenizers disagree: the comparison would be meaningless")

    n_tokens = sum(len(ids) for batch in fast_out for ids in batch["input_ids"])
    result = {
        "corpus": args.corpus, "n_smiles": len(smiles), "batch_size": args.batch_size, "padded_tokens": n_tokens,
        "bundled_seconds": round(fast_s, 4), "pure_python_seconds": round(slow_s, 4),
        "bundled_smiles_per_second": round(len(smiles) / fast_s), "pure_python_smiles_per_second": round(len(smiles) / slow_s),
        "speedup": round(slow_s / fast_s, 2), "identical_output": True, "repeats (best of)": args.repeats,
        "rust_only_smiles_per_second": round(len(smiles) / rust_s),
        "floor_smiles_per_second": round(len(smiles) / floor_s),
        "floor_speedup_over_pure_python": round(slow_s / floor_s, 2),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "default"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(smiles):,} {args.corpus} SMILES in batches of {args.batch_size}, identical ids and masks:")
    print(f"  bundled (tokenizers) {fast_s:8.3f} s  {result['bundled_smiles_per_second']:>10,} SMILES/s")
    print(f"  pure-Python regex    {slow_s:8.3f} s  {result['pure_python_smiles_per_second']:>10,} SMILES/s")
    print(f"  Rust only            {rust_s:8.3f} s  {result['rust_only_smiles_per_second']:>10,} SMILES/s"
          "  (encode_batch_fast, no Python lists)")
    print(f"  floor                {floor_s:8.3f} s  {result['floor_smiles_per_second']:>10,} SMILES/s"
          f"  (no splitting at all: at most {result['floor_speedup_over_pure_python']}x the pure-Python tokenizer)")
    print(f"  speedup {result['speedup']}x  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
