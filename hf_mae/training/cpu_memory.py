"""Keep freed memory in the process, so a CPU training step reuses it instead of paging it in again.

glibc's malloc serves large blocks with ``mmap`` and returns them to the kernel when freed; it also trims the
top of its heap. A training step allocates and frees the same activations, gradients and weight casts every
step, so every step then pays a page fault for each 4 KiB it touches first (the kernel zeroes each page). Two
``mallopt`` settings make freed blocks stay for the next step: serve blocks up to ``max_block_bytes`` from the
heap, and never trim it. This is what launchers do with ``LD_PRELOAD`` of jemalloc or tcmalloc, done in the
running process. The cost: memory freed during a run stays with the process until it exits (its peak is
unchanged; see BENCHMARKS.md for the figures).

``hf-mae pretrain`` and ``hf-mae finetune`` call it when they train on the CPU; ``HF_MAE_KEEP_FREED_MEMORY=0``
turns that off. A script of your own calls it before training.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1     # mallopt parameters from glibc's malloc.h
M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT_THRESHOLD = 128 * 1024
INT_MAX = 2**31 - 1       # mallopt takes a C int
ENV_SWITCH = "HF_MAE_KEEP_FREED_MEMORY"


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory(enable: bool = True, *, max_block_bytes: int = 256 * 2**20) -> bool:
    """Make glibc's malloc keep freed memory for reuse (``enable=False``: glibc's default thresholds again).

    ``max_block_bytes``: blocks up to this size come from the heap and are kept once freed (larger ones are still
    mapped and unmapped). Returns True when the setting took effect, False where the C library is not glibc
    (macOS, Windows, musl) or refused the value.

    Example:
        >>> from hf_mae.training.cpu_memory import keep_freed_memory
        >>> applied = keep_freed_memory()      # before trainer.train() in a CPU training script
        >>> isinstance(applied, bool)
        True
    """
    if (not isinstance(max_block_bytes, int) or isinstance(max_block_bytes, bool)
            or not GLIBC_DEFAULT_THRESHOLD <= max_block_bytes <= INT_MAX):
        raise ValueError(f"`max_block_bytes`={max_block_bytes!r}: expected an int from {GLIBC_DEFAULT_THRESHOLD} "
                         f"(glibc's default) to {INT_MAX}")
    libc = _glibc()
    if libc is None:
        return False
    mmap_threshold = max_block_bytes if enable else GLIBC_DEFAULT_THRESHOLD
    trim_threshold = INT_MAX if enable else GLIBC_DEFAULT_THRESHOLD
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                         trim_threshold))
    if applied and not enable:
        libc.malloc_trim(0)     # hand back what was kept
    return applied


def keep_freed_memory_for_cpu_training(device_type: str) -> bool:
    """What the training jobs call: ``keep_freed_memory()`` when training on the CPU, unless
    ``HF_MAE_KEEP_FREED_MEMORY=0``. Returns whether it was applied."""
    switch = os.environ.get(ENV_SWITCH, "1").strip().lower()
    if switch not in ("0", "1", "false", "true", "no", "yes", "off", "on", ""):
        raise ValueError(f"{ENV_SWITCH}={switch!r}: expected 0 or 1")
    if device_type != "cpu" or switch in ("0", "false", "no", "off"):
        return False
    return keep_freed_memory()
