"""Checkpoints that hf_mae did not write, read the way their folders really look.

- ``load_config``: a local ``config.json`` without ``model_type`` gets the type inferred from its
  ``architectures`` (``BertForMaskedLM`` -> ``bert``) or else from the prefix of its weights' names
  (``roberta.embeddings...`` -> ``roberta``), with a warning that says so; with neither, a ``ValueError`` names
  the missing key and how to add it.
- ``load_tokenizer``: a folder, a Hub id or a tokenizer object; a folder holding only a ``vocab.txt`` (no
  ``tokenizer_config.json``) is read case-sensitively (``do_lower_case=False``): SMILES (``C`` aliphatic, ``c``
  aromatic) and amino-acid letters are case-sensitive, and BERT's default would lower-case them.

Missing local folders fail at once (``check_pretrained_source``). Used by ``ProteinEmbedder`` and the SMILES
masked-LM loader.

Example:
    >>> infer_model_type({"architectures": ["BertForMaskedLM"]}, ".")
    ('bert', "architectures ['BertForMaskedLM']")
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

from ..models.serialization import check_pretrained_source

logger = logging.getLogger(__name__)

__all__ = ["infer_model_type", "load_config", "load_tokenizer"]


def _weight_names(folder: Path) -> list[str]:
    """Tensor names of a folder's safetensors weights (read from the header; pickles are never opened)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    from safetensors import safe_open

    names: list[str] = []
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            names.extend(handle.keys())
    return names


def infer_model_type(config: dict, folder: str | os.PathLike) -> tuple[str, str]:
    """``(model_type, how)`` for a ``config.json`` without ``model_type``: from its ``architectures``, else from the
    prefix of its weights' names (``bert.``, ``roberta.``, ...). Raises ``ValueError`` naming the missing key.

    Example:
        >>> infer_model_type({"architectures": ["RobertaForMaskedLM"]}, ".")
        ('roberta', "architectures ['RobertaForMaskedLM']")
    """
    by_class = {name: model_type for mapping in (MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES)
                for model_type, name in mapping.items() if isinstance(name, str)}
    architectures = config.get("architectures") or []
    for architecture in architectures:
        if architecture in by_class:
            return by_class[architecture], f"architectures {architectures}"
    prefixes = sorted({name.split(".")[0] for name in _weight_names(Path(folder))} & set(CONFIG_MAPPING_NAMES))
    if len(prefixes) == 1:
        return prefixes[0], f"the weights' names ({prefixes[0]}.*)"
    raise ValueError(
        f"{str(folder)!r}: config.json has no `model_type` key, and neither its `architectures` ({architectures}) nor "
        f"its weights' names tell the architecture. Add the key to config.json, e.g. \"model_type\": \"bert\" or "
        f"\"model_type\": \"roberta\".")


def load_config(name_or_path: str | os.PathLike) -> PreTrainedConfig:
    """The model's config (``AutoConfig``); a local config.json without ``model_type`` gets one inferred (with a
    warning, see ``infer_model_type``)."""
    name = str(name_or_path)
    config_file = Path(os.path.expanduser(name)) / "config.json"
    if config_file.is_file():
        values = json.loads(config_file.read_text())
        if "model_type" not in values:
            model_type, how = infer_model_type(values, config_file.parent)
            logger.warning("%s: config.json has no `model_type`; using %r, inferred from %s.", name, model_type, how)
            return AutoConfig.for_model(model_type, **values)
    return AutoConfig.from_pretrained(name)


def load_tokenizer(tokenizer: str | os.PathLike | PreTrainedTokenizerBase, config=None) -> PreTrainedTokenizerBase:
    """A tokenizer from a folder, a Hub id or an object (returned as is). A folder holding only a ``vocab.txt``
    is read case-sensitively (``do_lower_case=False``); ``config`` (default: the folder's config.json, if any)
    tells AutoTokenizer the tokenizer class then, else the vocab.txt is read as BERT's WordPiece."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise ValueError(f"`tokenizer` must be a folder, a Hub id or a tokenizer object, got {type(tokenizer).__name__}.")
    name = check_pretrained_source(tokenizer, "tokenizer")
    folder = Path(os.path.expanduser(name))
    if config is None and (folder / "config.json").is_file():
        config = load_config(folder)
    kwargs = {} if config is None else {"config": config}
    if (folder / "vocab.txt").is_file() and not (folder / "tokenizer_config.json").is_file():
        logger.warning("%s: a vocab.txt without tokenizer_config.json; reading it with do_lower_case=False "
                       "(SMILES and amino-acid letters are case-sensitive)%s.", name,
                       "" if config is not None else " as a BERT WordPiece vocabulary")
        kwargs["do_lower_case"] = False
        if config is None:
            kwargs["tokenizer_type"] = "bert"
    return AutoTokenizer.from_pretrained(name, **kwargs)
