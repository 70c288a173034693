"""The README's code runs as printed: every ```python block in order, each in a fresh interpreter, in one empty
folder (as a reader pasting them one after the other; the downstream block uses the model the ChemoMAE block
saves), and every `hf-mae` command it shows names a real command and job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)\n```", README, flags=re.S)


def test_every_python_block_runs(tmp_path):
    assert len(PYTHON_BLOCKS) >= 6
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    for index, block in enumerate(PYTHON_BLOCKS):
        script = tmp_path / f"readme_block_{index}.py"
        script.write_text(block + "\n")
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"README python block {index} failed:\n{block}\n\n{done.stderr[-3000:]}"
    assert (tmp_path / "runs" / "mine" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "hsi-encoder" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "smiles-mini" / "tokenizer.json").is_file()


def test_every_hf_mae_command_shown_exists():
    from hf_mae.cli import COMMANDS, PRETRAIN_JOBS

    shell = [body for language, body in re.findall(r"```(\w*)\n(.*?)\n```", README, flags=re.S)
             if language in ("bash", "")]
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    inline = [span for span in re.findall(r"`([^`\n]+)`", prose) if span.startswith("hf-mae ")]
    lines = [line for block in shell for line in block.splitlines()] + inline
    commands = [line.split("#")[0].split("&&")[-1].split() for line in lines if "hf-mae " in line]
    commands = [words[words.index("hf-mae"):] for words in commands if "hf-mae" in words]
    assert len(commands) >= 10
    for words in commands:
        assert len(words) > 1 and (words[1] in COMMANDS or words[1] == "pretrain"), words
        if words[1] == "pretrain" and len(words) > 2 and not words[2].startswith("-"):
            assert words[2] in PRETRAIN_JOBS or words[2] in ("X", "MODEL"), words


def _job_flags(words: list[str]) -> set[str]:
    """Every flag ``hf-mae pretrain JOB`` / ``hf-mae finetune ARCH`` accepts: the job's options (and the aliases
    its help names) from its ``--help``, plus every TrainingArguments field."""
    import contextlib
    import dataclasses
    import io

    import pytest
    from transformers import TrainingArguments

    from hf_mae.cli import main

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        main([*words[1:3], "--help"])
    return set(re.findall(r"--[A-Za-z_][\w-]*", printed.getvalue())) | {
        f"--{field.name}" for field in dataclasses.fields(TrainingArguments)}


def test_every_pretrain_and_finetune_flag_shown_exists():
    commands = [line.split("#")[0].split() for language, body in re.findall(r"```(\w*)\n(.*?)\n```", README, flags=re.S)
                if language == "bash" for line in body.splitlines() if "hf-mae pretrain " in line
                or "hf-mae finetune " in line]
    commands = [words[words.index("hf-mae"):] for words in commands]
    assert sum(words[1] == "finetune" for words in commands) >= 6
    flags = {}
    for words in commands:
        key = tuple(words[1:3])
        flags.setdefault(key, _job_flags(words))
        unknown = [word for word in words[3:] if word.startswith("--") and word not in flags[key]]
        assert not unknown, (words, unknown)
    assert {words[2] for words in commands if words[1] == "finetune"} == {
        "chemomae", "wavemae", "smiles-bert", "protein-mae-v2", "protein-mae-v5", "spectral-gpt"}
