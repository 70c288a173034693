"""What a repository of the local Hub holds besides its files: the metadata file, git LFS pointer files and
the ``.gitattributes`` that marks LFS paths, and removing a repository's folder. Shared by the store
(storage.py) and the conversion of old stores (migrate.py).

Example:
    >>> parse_lfs_pointer(lfs_pointer("ab" * 32, 12))
    ('abababababababababababababababababababababababababababababababab', 12)
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

META_FILE = "hf-mae.json"  # inside each bare repository: id, type, private, creation date
_POINTER = re.compile(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize ([0-9]{1,18})\n")
# A file at least this large is stored as LFS whatever its type (the Hub uses the same 10 MB threshold).
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Files whose names match these patterns are LFS (written to .gitattributes when a repository is created).
LFS_PATTERNS = (
    "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle", "*.joblib", "*.npy", "*.npz",
    "*.h5", "*.onnx", "*.msgpack", "*.arrow", "*.parquet", "*.zip", "*.gz", "*.tar", "*.tgz", "*.xz",
    "*.zst", "*.7z", "*.png", "*.jpg", "*.jpeg", "*.tif", "*.tiff", "*.mat", "*tfevents*",
)


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def gitattributes_text() -> str:
    return "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) of a git LFS pointer file, None for any other content."""
    match = _POINTER.fullmatch(data) if len(data) < 200 else None
    return (match.group(1).decode(), int(match.group(2))) if match else None


def remove_tree(folder: Path) -> None:
    """Delete a folder and everything in it, by absolute paths (what a security audit can follow), bottom up;
    what is already gone is skipped."""
    for current, folders, files in os.walk(folder, topdown=False):
        for name in files:
            Path(current, name).unlink(missing_ok=True)
        for name in folders:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.rmdir(os.path.join(current, name))
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(folder)
