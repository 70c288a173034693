"""``hf-mae benchmark``: the benchmark is a script in the source checkout, not part of the installed package."""

from __future__ import annotations

import sys
from collections.abc import Sequence

MESSAGE = """The benchmark lives in the source checkout, not in the installed package:

    git clone <hf_mae repository> && cd hf_mae
    pip install -e . chemomae==0.2.4      # chemomae: the peer ChemoMAE is compared with
    python benchmarks/benchmark.py --help
    python benchmarks/benchmark.py --only matmul,chemomae   # writes BENCHMARKS.md
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Say where the benchmark is; exit status 2 when asked to run it (nothing was measured)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    print(MESSAGE, file=sys.stdout if argv in ([], ["-h"], ["--help"]) else sys.stderr)
    return 0 if argv in ([], ["-h"], ["--help"]) else 2
