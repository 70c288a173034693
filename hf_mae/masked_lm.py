"""Masked-language-model checkpoints people already have, loaded with the right tokenizer.

``load_masked_lm`` takes a short name (``CHEMBERTA_MODELS``), a folder or a Hub id of any BERT- or RoBERTa-style
masked LM, and optionally a ``tokenizer`` (a folder, a Hub id or a tokenizer object) when the model's own folder
has none or the wrong one. It handles what older or hand-made folders look like:

- ``config.json`` without ``model_type``: the type is inferred from ``architectures`` (``BertForMaskedLM`` ->
  ``bert``) or else from the weights' names (``roberta.embeddings...`` -> ``roberta``), and a warning says so;
  with neither, a ``ValueError`` names the missing key and how to add it;
- a tokenizer that is only a ``vocab.txt`` (no ``tokenizer_config.json``): read with ``do_lower_case=False``,
  since SMILES are case-sensitive (``C`` aliphatic, ``c`` aromatic);
- the tokenizer must read SMILES (``check_smiles_tokenizer``): a generic English WordPiece, which turns two thirds
  of a SMILES into ``[UNK]``, is refused with an error naming it and saying how to pass the right one;
- pickled weights are refused unless ``use_safetensors=False``; a missing local folder fails at once.

Example:
    >>> import tempfile
    >>> from hf_mae import SMILESBERTForMaskedLM, SMILESBERTMLMConfig
    >>> from hf_mae.processing.smiles import load_smiles_tokenizer
    >>> folder = tempfile.mkdtemp()
    >>> SMILESBERTForMaskedLM(SMILESBERTMLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...                       intermediate_size=32)).save_pretrained(folder)
    >>> model, tokenizer = load_masked_lm(folder, tokenizer=load_smiles_tokenizer())
    >>> type(model).__name__, tokenizer.mask_token
    ('SMILESBERTForMaskedLM', '[MASK]')
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

from .models.serialization import check_pretrained_source, load_safetensors_only
from .processing.smiles import check_smiles_tokenizer

logger = logging.getLogger(__name__)

__all__ = ["CHEMBERTA_MODELS", "infer_model_type", "load_masked_lm", "load_tokenizer"]

# Short names of the seed -> public checkpoints (RoBERTa masked LMs with their own SMILES tokenizers).
CHEMBERTA_MODELS: dict[str, str] = {
    "chemberta-base": "seyonec/ChemBERTa-zinc-base-v1",
    "chemberta-mlm": "DeepChem/ChemBERTa-77M-MLM",
}


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


def _config(name: str):
    """The model's config; a local config.json without ``model_type`` gets one inferred (with a warning)."""
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
    is read case-sensitively (``do_lower_case=False``); ``config`` tells AutoTokenizer the tokenizer class then."""
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if not isinstance(tokenizer, (str, os.PathLike)):
        raise ValueError(f"`tokenizer` must be a folder, a Hub id or a tokenizer object, got {type(tokenizer).__name__}.")
    name = check_pretrained_source(tokenizer, "tokenizer")
    folder = Path(os.path.expanduser(name))
    kwargs = {} if config is None else {"config": config}
    if (folder / "vocab.txt").is_file() and not (folder / "tokenizer_config.json").is_file():
        logger.warning("%s: a vocab.txt without tokenizer_config.json; reading it with do_lower_case=False "
                       "(SMILES are case-sensitive).", name)
        kwargs["do_lower_case"] = False
    return AutoTokenizer.from_pretrained(name, **kwargs)


def load_masked_lm(name_or_path: str | os.PathLike, *, tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
                   use_safetensors: bool | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Masked-LM model and its SMILES tokenizer from a short name (``CHEMBERTA_MODELS``), a folder or a Hub id.

    Args:
        name_or_path: the model.
        tokenizer: a folder, Hub id or tokenizer object; default: the model's own (same folder or id).
        use_safetensors: ``False`` allows pickled weights (``pytorch_model.bin``) of a checkpoint you trust.

    Raises ``ValueError`` for a tokenizer that is not a SMILES tokenizer or has no mask token, a config without
    ``model_type`` that cannot be inferred; ``FileNotFoundError`` for a missing local folder; ``OSError`` for
    pickled weights without the opt-in.
    """
    if isinstance(name_or_path, str) and name_or_path in CHEMBERTA_MODELS:
        name_or_path = CHEMBERTA_MODELS[name_or_path]
    name = check_pretrained_source(name_or_path, "model_name")
    config = _config(name)
    model = load_safetensors_only(AutoModelForMaskedLM.from_pretrained, name, config=config,
                                  use_safetensors=use_safetensors, what="load_masked_lm", parameter="model_name")
    source = name if tokenizer is None else tokenizer
    tokenizer = load_tokenizer(source, config)
    label = str(source) if not isinstance(source, PreTrainedTokenizerBase) else (
        getattr(source, "name_or_path", "") or type(source).__name__)
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer {label!r} has no mask token: it cannot serve a masked language model. "
                         f"Pass the masked LM's own tokenizer with `tokenizer=`.")
    check_smiles_tokenizer(tokenizer, label)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise ValueError(f"the tokenizer {label!r} has {len(tokenizer)} tokens, more than the "
                         f"{model.get_input_embeddings().weight.shape[0]} embedding rows of {name!r}: they do not belong "
                         f"together. Pass the model's own tokenizer with `tokenizer=`.")
    return model, tokenizer
