"""Speed and memory of hf_mae models next to their peers -> BENCHMARKS.md (same as `hf-mae benchmark`).

    python scripts/benchmark.py                      # every section
    python scripts/benchmark.py --only chemomae --repeats 5
    python scripts/benchmark.py --quick --output /tmp/BENCHMARKS.md

See hf_mae/benchmark.py for what each row measures and how.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hf_mae, installed or not
from hf_mae.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
