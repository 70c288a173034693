"""Masked-language-model checkpoints people already have, loaded with the right tokenizer.

``load_masked_lm`` takes a short name (``CHEMBERTA_MODELS``), a folder or a Hub id of any BERT- or RoBERTa-style
masked LM, and optionally a ``tokenizer`` (a folder, a Hub id or a tokenizer object) when the model's own folder
has none or the wrong one. It handles what older or hand-made folders look like:

- ``config.json`` without ``model_type``: inferred from ``architectures`` or the weights' names, with a warning,
  or a ``ValueError`` naming the missing key (``processing.pretrained.load_config``);
- a tokenizer that is only a ``vocab.txt``: read case-sensitively (``processing.pretrained.load_tokenizer``);
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

import os

from transformers import AutoModelForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from .models.serialization import check_pretrained_source, load_safetensors_only
from .processing.pretrained import load_config, load_tokenizer
from .processing.smiles import check_smiles_tokenizer

__all__ = ["CHEMBERTA_MODELS", "load_masked_lm"]

# Short names of the seed -> public checkpoints (RoBERTa masked LMs with their own SMILES tokenizers).
CHEMBERTA_MODELS: dict[str, str] = {
    "chemberta-base": "seyonec/ChemBERTa-zinc-base-v1",
    "chemberta-mlm": "DeepChem/ChemBERTa-77M-MLM",
}


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
    config = load_config(name)
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
