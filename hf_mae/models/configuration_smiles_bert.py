"""Configuration of SMILES BERT, a BERT masked language model over atom-level SMILES tokens.

The architecture fields are BERT's (transformers' own ``BertForMaskedLM`` runs the model); the defaults
are the reference design's (BERT-base: 12 layers of 768, vocabulary 1000). The three masking probabilities describe
the pretraining objective and are what ``DataCollatorForLanguageModeling`` is given by default.
``pad_token_id=0`` and ``mask_token_id=103`` are where the bundled SMILES tokenizer keeps those tokens.

The class subclasses ``PreTrainedConfig`` rather than ``BertConfig``: ``BertConfig`` is a strict dataclass
whose type errors are not ``ValueError``; here every field is checked in ``__post_init__`` with a
``ValueError`` naming the field, its value and what was expected.
"""

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

from .validation import (REFERENCE_SIZE_NAMES, TRANSFORMERS_SIZE_NAMES, check_choice, check_float, check_heads,
                         check_int, size_names_map)


class SMILESBERTMLMConfig(PreTrainedConfig):
    r"""SMILES BERT masked language model.

    Args:
        vocab_size: size of the token vocabulary (at least the tokenizer's length).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size: BERT's width, depth, heads
            (``hidden_size % num_attention_heads == 0``) and feed-forward width.
        max_position_embeddings: longest input in tokens, ``[CLS]`` and ``[SEP]`` included.
        hidden_act, hidden_dropout_prob, attention_probs_dropout_prob, type_vocab_size, layer_norm_eps,
            initializer_range: as in ``BertConfig``.
        pad_token_id, mask_token_id: ids of ``[PAD]`` and ``[MASK]`` in the tokenizer.
        mask_probability: share of tokens selected for prediction during pretraining.
        replace_probability / random_probability: of the selected tokens, the share replaced by ``[MASK]`` /
            by a random token (the rest stay as they are); BERT's 0.8 / 0.1.

    Example:
        >>> from hf_mae import SMILESBERTMLMConfig
        >>> config = SMILESBERTMLMConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        ...                              intermediate_size=128)
        >>> config.model_type, config.vocab_size, config.mask_token_id
        ('hf_mae_smiles_bert', 1000, 103)
    """

    # the reference packages' size names read and write transformers' ones
    attribute_map = size_names_map(TRANSFORMERS_SIZE_NAMES, REFERENCE_SIZE_NAMES)

    model_type = "hf_mae_smiles_bert"

    vocab_size: int = 1000
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    mask_token_id: int = 103
    mask_probability: float | int = 0.15
    replace_probability: float | int = 0.8
    random_probability: float | int = 0.1
    # BERT reads these; a masked language model is an encoder.
    is_decoder: bool = False
    add_cross_attention: bool = False
    use_cache: bool = False
    classifier_dropout: float | int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            check_int(name, getattr(self, name))
        check_int("max_position_embeddings", self.max_position_embeddings, minimum=3)  # [CLS] x [SEP]
        check_choice("hidden_act", self.hidden_act, sorted(ACT2FN))
        check_heads("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)
        for name in ("pad_token_id", "mask_token_id"):
            check_int(name, getattr(self, name), minimum=0, maximum=self.vocab_size - 1)
        if self.pad_token_id == self.mask_token_id:
            raise ValueError(f"`pad_token_id` and `mask_token_id` must differ, both are {self.pad_token_id}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            check_float(name, getattr(self, name), minimum=0.0, maximum=1.0, maximum_exclusive=True)
        check_float("mask_probability", self.mask_probability, minimum=0.0, maximum=1.0, minimum_exclusive=True)
        check_float("replace_probability", self.replace_probability, minimum=0.0, maximum=1.0)
        check_float("random_probability", self.random_probability, minimum=0.0, maximum=1.0)
        if self.replace_probability + self.random_probability > 1.0 + 1e-9:
            raise ValueError(
                f"`replace_probability` + `random_probability` must be <= 1 (the rest keeps the original token), "
                f"got {self.replace_probability} + {self.random_probability}."
            )
        check_float("layer_norm_eps", self.layer_norm_eps, minimum=0.0, minimum_exclusive=True)
        check_float("initializer_range", self.initializer_range, minimum=0.0, minimum_exclusive=True)
        if self.is_decoder:
            raise ValueError("`is_decoder` must be False: a masked language model attends in both directions.")
