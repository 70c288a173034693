"""Checks of a README's YAML metadata, as the Hub's ``validate-yaml`` call makes them before a commit.

``validate_card(text)`` returns ``(errors, warnings)``, each a list of messages. An error refuses the commit
(the client raises ``ValueError: Invalid metadata in README.md``); a warning is shown to the user.

Example:
    >>> validate_card("---\\nlicense: apache-2.0\\nlibrary_name: transformers\\n---\\n# A model\\n")
    ([], [])
    >>> validate_card("---\\nlicense: apache\\n---\\n")[0]
    ["license: 'apache' is not a known license id; use one of apache-2.0, mit, ... or 'other' with license_name and license_link"]
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# License ids the Hub accepts (SPDX-style, lower case).
LICENSES = frozenset("""
apache-2.0 mit openrail openrail++ bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc
cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0
cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0
cdla-sharing-1.0 cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1
eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl
osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr llama2 llama3 llama3.1 llama3.2 gemma unknown other
""".split())

# Task ids the Hub knows for ``pipeline_tag``.
PIPELINE_TAGS = frozenset("""
feature-extraction fill-mask text-classification token-classification question-answering
table-question-answering zero-shot-classification translation summarization text-generation
text2text-generation sentence-similarity image-classification image-segmentation object-detection
image-feature-extraction image-to-image image-to-text text-to-image depth-estimation zero-shot-image-classification
audio-classification automatic-speech-recognition text-to-speech tabular-classification tabular-regression
time-series-forecasting reinforcement-learning robotics graph-ml mask-generation video-classification
unconditional-image-generation visual-question-answering any-to-any other
""".split())

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def split_front_matter(text: str) -> str | None:
    """The YAML between the leading ``---`` lines, or None if the README has none."""
    match = _FRONT_MATTER.match(text)
    return match.group(1) if match else None


def _str_list(data: dict[str, Any], key: str, errors: list[str], pattern: re.Pattern | None = None,
              what: str = "") -> None:
    if key not in data:
        return
    value = data[key]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        errors.append(f"{key}: must be a string or a list of non-empty strings, got {value!r}")
        return
    if pattern is not None:
        for v in values:
            if not pattern.match(v):
                errors.append(f"{key}: {v!r} is not a valid {what}")


def _check_model_index(value: Any, errors: list[str]) -> None:
    if not isinstance(value, list) or not value:
        errors.append("model-index: must be a non-empty list of {name, results}")
        return
    for model in value:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) \
                or not isinstance(model.get("results"), list):
            errors.append("model-index: every entry needs a string `name` and a list `results`")
            continue
        for result in model["results"]:
            ok = isinstance(result, dict) and isinstance(result.get("task"), dict) \
                and isinstance(result["task"].get("type"), str) and isinstance(result.get("metrics", []), list) \
                and all(isinstance(m, dict) and isinstance(m.get("type"), str) and "value" in m
                        for m in result.get("metrics", []))
            if not ok:
                errors.append(f"model-index: result of {model['name']!r} needs task.type and metrics "
                              "[{type, value}]")


def validate_metadata(data: Any, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """Errors and warnings for parsed metadata (the YAML front matter as a Python object)."""
    errors: list[str] = []
    warnings: list[str] = []
    if data is None or data == {}:
        return errors, ["Empty or missing yaml metadata in repo card"]
    if not isinstance(data, dict):
        return [f"metadata must be a YAML mapping (key: value lines), got {type(data).__name__}"], warnings
    license_id = data.get("license")
    if license_id is not None:
        if not isinstance(license_id, str):
            errors.append(f"license: must be a string, got {license_id!r}")
        elif license_id not in LICENSES:
            errors.append(f"license: {license_id!r} is not a known license id; use one of apache-2.0, mit, ... "
                          "or 'other' with license_name and license_link")
        elif license_id == "other" and not (data.get("license_name") and data.get("license_link")):
            warnings.append("license is 'other': add license_name and license_link")
    for key in ("library_name", "license_name", "license_link", "thumbnail", "model_name"):
        if key in data and not isinstance(data[key], str):
            errors.append(f"{key}: must be a string, got {data[key]!r}")
    pipeline_tag = data.get("pipeline_tag")
    if pipeline_tag is not None and (not isinstance(pipeline_tag, str) or pipeline_tag not in PIPELINE_TAGS):
        errors.append(f"pipeline_tag: {pipeline_tag!r} is not a known task (e.g. feature-extraction, fill-mask)")
    _str_list(data, "tags", errors)
    _str_list(data, "metrics", errors)
    _str_list(data, "datasets", errors, _REPO_ID, "dataset id (namespace/name or name)")
    _str_list(data, "base_model", errors, _REPO_ID, "model id (namespace/name)")
    _str_list(data, "language", errors, _LANGUAGE, "language code (ISO 639, e.g. en)")
    if "model-index" in data:
        _check_model_index(data["model-index"], errors)
    if repo_type == "model" and "library_name" not in data:
        warnings.append("library_name is not set: the Hub cannot show how to load this model")
    return errors, warnings


def validate_card(text: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """Errors and warnings for a whole README (front matter + Markdown)."""
    front_matter = split_front_matter(text)
    if front_matter is None:
        if text.lstrip().startswith("---"):
            return ["metadata: the YAML block opened by '---' is never closed by a '---' line"], []
        return [], ["Empty or missing yaml metadata in repo card"]
    try:
        data = yaml.safe_load(front_matter)
    except yaml.YAMLError as err:
        return [f"Invalid YAML in metadata: {err}"], []
    return validate_metadata(data, repo_type)
