"""A fresh clone installs with the README's set-up command and runs: the path a new user takes."""

import os
import re
import subprocess
import sys
from pathlib import Path

from isolated_env import child_venv, pip_freeze

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, cwd, env=None, timeout=600):
    # without PYTHONPATH: the test is about what the clone's own install makes importable
    env = {key: value for key, value in (env or os.environ).items() if key != "PYTHONPATH"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert "bash scripts/setup.sh && hf-mae pretrain chemomae" in commands
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_fresh_clone_installs_and_runs(tmp_path):
    clone = tmp_path / "clone"
    _run(["git", "clone", "--quiet", str(ROOT), str(clone)], cwd=tmp_path)
    # A venv that sees this interpreter's packages (under a system Python or inside a venv alike): setup.sh
    # must keep the torch it finds, not install one, and must not touch the environment running the tests.
    before = pip_freeze()
    venv = tmp_path / "venv"
    python = child_venv(venv)
    env = {**os.environ, "PYTHON": str(python)}
    torch_before = _run([str(python), "-c", "import torch; print(torch.__file__, torch.__version__)"], cwd=clone)
    _run(["bash", "scripts/setup.sh"], cwd=clone, env=env)
    assert _run([str(python), "-c", "import torch; print(torch.__file__, torch.__version__)"], cwd=clone) == torch_before
    located = _run([str(python), "-c", "import hf_mae; print(hf_mae.__file__)"], cwd=tmp_path)
    assert located.strip() == str(clone / "hf_mae" / "__init__.py")
    usage = _run([str(venv / "bin" / "hf-mae"), "--help"], cwd=tmp_path)
    assert "chemomae" in usage and "wavemae" in usage
    _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_seed_examples.py"], cwd=clone)
    assert pip_freeze() == before
