"""The front door: ``import hf_mae`` and ``hf-mae --help`` load no torch, and importing hf_mae still
registers every architecture with transformers' Auto classes, whichever of the two is imported first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_hf_mae_loads_no_torch_and_keeps_public_names():
    out = _run("import sys, hf_mae\n"
               "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
               "print(len(hf_mae.__all__), all(n in dir(hf_mae) for n in hf_mae.__all__))\n"
               "print(hf_mae.load_smiles_tokenizer.__name__, 'torch' in sys.modules)\n"
               "print(hf_mae.ChemoMAE.__name__, 'torch' in sys.modules)")
    assert out.split("\n")[:4] == ["False False", f"{out.split()[2]} True", "load_smiles_tokenizer False",
                                   "ChemoMAE True"]
    assert int(out.split()[2]) >= 40


def test_cli_help_loads_no_torch_and_is_quick():
    start = time.perf_counter()
    out = _run("import sys\nfrom hf_mae.cli import main\nmain(['--help'])\nprint('torch' in sys.modules)")
    elapsed = time.perf_counter() - start
    print(f"hf-mae --help in a fresh interpreter: {elapsed:.2f} s")
    assert "pretrain MODEL" in out and out.split()[-1] == "False"


REGISTRATION = """
import sys, tempfile
order = sys.argv[1]
if order == "hf_mae_first":
    import hf_mae
    from transformers import AutoConfig, AutoModel
elif order == "transformers_first":
    from transformers import AutoConfig, AutoModel
    import hf_mae
elif order == "models_module":
    import hf_mae.models
    from transformers import AutoConfig, AutoModel
elif order == "pipeline":
    import hf_mae
    from transformers import pipeline, AutoConfig, AutoModel
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining
config = AutoConfig.for_model("hf_mae_chemomae", seq_len=64, d_model=32, nhead=2, num_layers=1, n_blocks=8, n_mask=4)
import hf_mae.models as m
print(type(config).__name__, AutoModelForPreTraining._model_mapping[type(config)].__name__,
      AutoModelForMaskedLM._model_mapping[m.SMILESBERTMLMConfig].__name__)
path = tempfile.mkdtemp()
AutoModel.from_config(config).save_pretrained(path)
print(type(AutoModel.from_pretrained(path)).__name__)
"""


@pytest.mark.parametrize("order", ["hf_mae_first", "transformers_first", "models_module", "pipeline"])
def test_import_registers_auto_classes_in_any_order(order):
    lines = _run(REGISTRATION, order).split("\n")
    assert lines[0] == "ChemoMAEConfig ChemoMAEForPreTraining SMILESBERTForMaskedLM"
    assert lines[1] == "ChemoMAE"
