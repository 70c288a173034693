"""A throwaway virtualenv for tests that install something, so the suite never changes the environment it
runs in.

``child_venv`` makes a venv with no pip and no packages of its own, and appends the running interpreter's
site-packages to its ``sys.path`` through a ``.pth`` file, so torch, transformers and pip itself are found
there without being installed again. This works the same whether the suite runs under a system Python or
inside a virtualenv (``venv --system-site-packages`` would see the *base* interpreter's packages, not an
enclosing venv's). pip run by the child's interpreter installs into the child only: a package of the same
name in the parent's site-packages lies outside the child's prefix, which pip never uninstalls.
"""

from __future__ import annotations

import site
import subprocess
import sys
from pathlib import Path


def _site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    return dirs


def child_venv(path: Path) -> Path:
    """Create a venv at ``path`` that sees this interpreter's packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    child_site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # .pth lines that are directories are appended to sys.path after the child's own site-packages; the
    # parent's own .pth files (an editable hf-mae's finder among them) are not run, so the child's install wins.
    (Path(child_site) / "_parent_site.pth").write_text("\n".join(_site_dirs()) + "\n")
    return python


def pip_freeze() -> str:
    """``pip list`` of the running interpreter, to check that a test left it unchanged."""
    return subprocess.run([sys.executable, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                          check=True, capture_output=True, text=True, timeout=120).stdout
