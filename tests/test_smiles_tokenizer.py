"""The bundled SMILES tokenizer: atom-level rules, exact round trips on real corpora, loading without
hf_mae, shipping in the wheel, and agreement with the pure-Python reference."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from isolated_env import child_venv, pip_freeze

from hf_mae.data.smiles import load_smiles
from hf_mae.processing.smiles import (
    SPECIAL_TOKEN_IDS, RegexSmilesTokenizer, bundled_tokenizer_dir, find_smiles_problems, load_smiles_tokenizer,
    tokenize_smiles,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer():
    return load_smiles_tokenizer()


@pytest.mark.parametrize("smiles, tokens", [
    ("Clc1ccc(Br)cc1", ["Cl", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1"]),
    ("C[C@@H](N)C(=O)[O-]", ["C", "[C@@H]", "(", "N", ")", "C", "(", "=", "O", ")", "[O-]"]),
    ("c1cc[nH]c1", ["c", "1", "c", "c", "[nH]", "c", "1"]),
    ("C%10CC%99.C/C=C\\C#N", ["C", "%10", "C", "C", "%99", ".", "C", "/", "C", "=", "C", "\\", "C", "#", "N"]),
    ("[11CH3]OB(O)c1ccsc1", ["[11CH3]", "O", "B", "(", "O", ")", "c", "1", "c", "c", "s", "c", "1"]),
])
def test_atom_level_rules(tokenizer, smiles, tokens):
    assert tokenize_smiles(smiles) == tokens
    ids = tokenizer(smiles)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", *tokens, "[SEP]"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == smiles


def test_special_tokens_at_bert_ids(tokenizer):
    for token, token_id in SPECIAL_TOKEN_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (0, 103)
    assert tokenizer.convert_ids_to_tokens(tokenizer("C[MASK]O")["input_ids"]) == ["[CLS]", "C", "[MASK]", "O", "[SEP]"]
    # every ring closure %10-%99 is in the vocabulary, whether or not the corpus used it
    vocab = tokenizer.get_vocab()
    assert all(f"%{n}" in vocab for n in range(10, 100))


def test_round_trip_on_real_corpus_sample(tokenizer):
    # every ChEMBL SMILES the tokenizer was built from (salts, stereo, isotopes) + a MOSES sample
    smiles = (load_smiles("chembl_drugs") + load_smiles("chembl_samples") + load_smiles("chembl_approved_drugs")
              + load_smiles("moses_train", limit=2000))
    encoded = tokenizer(smiles)["input_ids"]
    assert all(tokenizer.unk_token_id not in ids for ids in encoded)
    decoded = tokenizer.batch_decode(encoded, skip_special_tokens=True)
    mismatches = [(s, d) for s, d in zip(smiles, decoded) if s != d]
    assert not mismatches, mismatches[:3]
    # the Rust tokenizer gives exactly the ids of the pure-Python regex tokenizer of the same rules
    slow = RegexSmilesTokenizer(tokenizer.get_vocab())
    assert [slow.encode(s) for s in smiles] == encoded


def test_held_out_unknown_rate_matches_build_report(tokenizer):
    info = json.loads((bundled_tokenizer_dir() / "build_info.json").read_text())
    assert info["vocab_size"] == len(tokenizer)
    held_out = load_smiles("moses_test_scaffolds", limit=3000) + load_smiles("freesolv")
    ids = [i for row in tokenizer(held_out, add_special_tokens=False)["input_ids"] for i in row]
    rate = ids.count(tokenizer.unk_token_id) / len(ids)
    assert rate < 0.001   # MOSES scaffolds: 0; FreeSolv: 3 of 8773 tokens ([S+2], [N@], [N@@])
    assert info["held_out"]["moses_test_scaffolds"]["unknown_token_rate"] == 0.0


def test_unknown_characters_are_reported_not_dropped(tokenizer):
    # decode(skip_special_tokens=True) would silently drop [UNK]: the boundary check names the characters
    problems = find_smiles_problems(["CCO", "[Zn++].CC X", "", 5], tokenizer, max_length=64, check_validity=False)
    assert [p.index for p in problems] == [1, 2, 3]
    assert "'X'" in problems[0].reason and "' '" in problems[0].reason
    assert problems[1].reason == "empty SMILES" and "not a string" in problems[2].reason
    too_long = find_smiles_problems(["C" * 70], tokenizer, max_length=64, check_validity=False)
    assert too_long[0].too_long and "72 tokens" in too_long[0].reason


def test_loads_without_hf_mae(tmp_path):
    # A fresh interpreter in which `import hf_mae` fails: AutoTokenizer reads the bundled files by itself.
    code = (
        "import sys; sys.modules['hf_mae'] = None\n"
        "from transformers import AutoTokenizer\n"
        f"tok = AutoTokenizer.from_pretrained({str(bundled_tokenizer_dir())!r})\n"
        "ids = tok('Cl[C@@H]1CC%10CC1')['input_ids']\n"
        "print(tok.decode(ids, skip_special_tokens=True), tok.mask_token_id, len(tok))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Cl[C@@H]1CC%10CC1", "103", str(len(load_smiles_tokenizer()))]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("wheel")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(out_dir), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return next(out_dir.glob("hf_mae-*.whl"))


def test_tokenizer_files_ship_in_the_wheel(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("tokenizer.json", "tokenizer_config.json", "build_info.json"):
        assert any(n.endswith(f".data/data/share/hf_mae/tokenizers/smiles/{name}") for n in names), names
    # and no top-level package named `tokenizers` that would shadow the real library
    assert not any(n.startswith("tokenizers/") for n in names)
    # the model-card templates (hf_mae.hub.cards) ship the same way: one per architecture
    from hf_mae.hub.cards import CARD_SPECS

    for spec in CARD_SPECS.values():
        assert any(n.endswith(f".data/data/share/hf_mae/model_cards/{spec.template}") for n in names), spec.template


def test_installed_wheel_finds_its_tokenizer_and_card_templates(wheel, tmp_path):
    """A non-editable install (a throwaway venv, outside the source tree) loads both from its own data files,
    and installing it leaves the environment running the tests untouched."""
    before = pip_freeze()
    python = child_venv(tmp_path / "venv")
    prefix = tmp_path / "venv"
    # without PYTHONPATH: a source tree on it (with its egg-info) would make pip skip the install as done
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert pip_freeze() == before
    site = next(prefix.glob("lib/python*/site-packages"))
    script = (
        "import json, hf_mae\n"
        "from hf_mae import ChemoMAE\n"
        "from hf_mae.hub.cards import CARD_SPECS, render_model_card, template_path\n"
        "from hf_mae.processing.smiles import bundled_tokenizer_dir, load_smiles_tokenizer\n"
        "card = render_model_card(ChemoMAE(seq_len=16, d_model=8, nhead=2, num_layers=1, n_blocks=4, n_mask=2), 'lab/x')\n"
        "print(json.dumps({'package': hf_mae.__file__, 'tokenizer': str(bundled_tokenizer_dir().resolve()),\n"
        "    'templates': [str(template_path(spec).resolve()) for spec in CARD_SPECS.values()],\n"
        "    'card': 'lab/x' in str(card), 'cls': load_smiles_tokenizer().cls_token_id}))\n"
    )
    out = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site)), found  # the installed copy, not the source tree
    share = (prefix / "share" / "hf_mae").resolve()
    assert found["tokenizer"] == str(share / "tokenizers" / "smiles"), found
    assert all(path.startswith(str(share / "model_cards") + "/") for path in found["templates"]), found
    assert found["card"] and found["cls"] == SPECIAL_TOKEN_IDS["[CLS]"], found
