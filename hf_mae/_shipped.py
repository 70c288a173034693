"""Data folders that ship with hf-mae outside the Python package (the SMILES tokenizer, the model-card templates).

In a source checkout they sit at the repository root; a wheel carries them as data files (pyproject.toml,
``[tool.setuptools.data-files]``: folder ``X`` goes to ``share/hf_mae/X``), installed under the environment's
prefix and listed in the distribution's RECORD, which is where ``shipped_dir`` looks them up.

Example:
    >>> from hf_mae._shipped import shipped_dir
    >>> (shipped_dir("model_cards", "chemomae.md") / "chemomae.md").is_file()
    True
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[1]
WHEEL_DATA_PREFIX = "share/hf_mae"   # where pyproject's data-files put a folder in the wheel


def shipped_dir(folder: str, marker: str, *, hint: str = "reinstall hf-mae") -> Path:
    """The shipped ``folder`` (relative to the repository root, e.g. ``"model_cards"``) that holds ``marker``:
    the source tree's, else the installed distribution's copy; a FileNotFoundError naming both places otherwise."""
    source = SOURCE_ROOT / folder
    if (source / marker).is_file():
        return source
    try:
        files = importlib.metadata.distribution("hf-mae").files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    wheel_path = f"{WHEEL_DATA_PREFIX}/{folder}/{marker}"
    for file in files:
        if file.as_posix().endswith(wheel_path):
            return Path(file.locate()).parent
    raise FileNotFoundError(f"{marker} was found neither in {source} nor in the installed hf-mae distribution "
                            f"({wheel_path}); {hint}.")
