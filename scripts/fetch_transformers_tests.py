"""Fetch transformers' own common model tests for the installed transformers version.

`ModelTesterMixin` (tests/test_modeling_common.py) and `ConfigTester` (tests/test_configuration_common.py)
are not part of the transformers wheel, but its source distribution in the package registry ships them. This
script downloads that sdist (never installs it), extracts the top-level ``tests/*.py`` files into
``.cache/transformers_tests/<version>/transformers_common_tests/`` at the repository root, and adds the three
small modules those files import from sub-folders the sdist leaves out:

- ``exporters/test_export.py``: ``ExportTesterMixin``, the torch.export tests (hf_mae tests export itself);
- ``generation/test_utils.py``: ``GenerationTesterMixin``, for generative models (none here);
- ``utils/test_configuration_utils.py``: ``config_common_kwargs``, the common config attributes set to
  non-default values, which ``ConfigTester.check_config_arguments_init`` checks are kept.

tests/test_transformers_common.py imports from that folder. scripts/setup.sh runs this script.

Usage:
    python scripts/fetch_transformers_tests.py          # prints the folder; a no-op when already there
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "transformers_common_tests"

SHIMS = {
    "exporters/test_export.py": '''"""Stand-in for transformers' tests/exporters/test_export.py (not in the sdist): no export tests here."""


class ExportTesterMixin:
    pass
''',
    "generation/test_utils.py": '''"""Stand-in for transformers' tests/generation/test_utils.py (not in the sdist): hf_mae has no generative
models, and ModelTesterMixin only checks that generative models inherit this class."""


class GenerationTesterMixin:
    pass
''',
    "utils/test_configuration_utils.py": '''"""Stand-in for transformers' tests/utils/test_configuration_utils.py (not in the sdist): common
PreTrainedConfig attributes, each set to a value other than its default."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "finetuning_task": "translation",
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
    "tokenizer_class": "BertTokenizerFast",
}
''',
}


def tests_dir(version: str | None = None) -> Path:
    """Where the tests of ``version`` (default: the installed transformers) are extracted."""
    if version is None:
        import transformers

        version = transformers.__version__
    return ROOT / ".cache" / "transformers_tests" / version


def fetch(version: str | None = None) -> Path:
    """Download and extract the common tests once; returns the folder to put on ``sys.path``."""
    target = tests_dir(version)
    version = target.name
    package = target / PACKAGE
    if (package / "test_modeling_common.py").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "--disable-pip-version-check", "-q", "-d", tmp, f"transformers=={version}"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"could not download the transformers {version} source distribution: "
                             f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'pip failed'}")
        sdist = next(Path(tmp).glob("transformers-*.tar.gz"))
        staging = target.with_name(f".{version}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                parts = Path(member.name).parts
                # only the top-level tests/*.py files: the mixins and what they import
                if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                    destination = staging / PACKAGE / parts[2]
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(archive.extractfile(member).read())
    (staging / PACKAGE / "__init__.py").write_text('"""transformers\' common tests, extracted by scripts/fetch_transformers_tests.py."""\n')
    for relative, text in SHIMS.items():
        path = staging / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return target


if __name__ == "__main__":
    print(fetch(sys.argv[1] if len(sys.argv) > 1 else None))
