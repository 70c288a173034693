"""Protein sequences -> per-residue embeddings from a protein language model (PLM).

The protein MAEs take per-residue embeddings (ESM C 300M: 960-d). ``ProteinEmbedder`` wraps any PLM that
transformers loads, with its tokenizer: ESM C (``EsmcModel``), ESM2 (``EsmModel``), BERT-style models whose
tokenizer wants the residues separated by spaces (ProtBert), and T5-style encoder-decoders (ProtT5: only the
encoder is loaded and run). It checks and cleans the sequences, truncates (with a warning) or refuses those
longer than ``max_length``, embeds them in batches of similar length (little padding), drops the special tokens
(CLS/BOS, EOS, padding), checks that exactly one embedding per residue is left, and returns one
``(length, hidden_size)`` float32 array per protein, or a ``datasets.Dataset`` with them.

How residues are written for the tokenizer (``input_format``) is detected from the tokenizer: ``"plain"``
(``"MKT"``, ESM) when that gives one known token per residue, else ``"spaced"`` (``"M K T"``, ProtBert, ProtT5).

    embedder = ProteinEmbedder.from_pretrained("/path/to/esmc-300m")      # a folder or a Hub id
    dataset = embedder.to_dataset(sequences, ids=names)                    # columns: id, sequence, length,
                                                                           #          residue_embeddings
No weights ship with any package, so tests and the default pretraining jobs use ``ProteinEmbedder.tiny_random``
(a small randomly initialised ESM C or ESM2): the code path is the real one, the embeddings are not.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    AutoModel,
    EsmcConfig,
    EsmcModel,
    EsmcTokenizer,
    EsmConfig,
    EsmModel,
    EsmTokenizer,
    MT5EncoderModel,
    PreTrainedModel,
    T5EncoderModel,
    UMT5EncoderModel,
)
from transformers.utils import logging as hf_logging

from ..models.configuration_protein_mae import ProteinMAEConfig
from ..models.serialization import check_pretrained_source, load_safetensors_only
from .pretrained import load_config, load_tokenizer
from ..models.validation import check_choice, check_int

logger = logging.getLogger(__name__)

#: The 20 standard amino acids and the ambiguity / rare codes every ESM vocabulary has: X (unknown),
#: B (D/N), Z (E/Q), U (selenocysteine), O (pyrrolysine).
AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY" + "XBZUO")

# ESM2's vocabulary (the ESM-1b alphabet): written out so a random ESM2 needs no downloaded tokenizer files.
_ESM2_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]

#: How residues are written for the tokenizer: "MKT" (ESM) or "M K T" (ProtBert, ProtT5); "auto" detects it.
INPUT_FORMATS = ("auto", "plain", "spaced")

# Encoder-decoder PLMs (ProtT5) are run as encoders only; these classes load just the encoder's weights.
_ENCODER_ONLY_CLASSES: dict[str, type[PreTrainedModel]] = {
    "t5": T5EncoderModel, "mt5": MT5EncoderModel, "umt5": UMT5EncoderModel,
}
_PROBE = "ACDEFGHIKLMNPQRSTVWY"   # the 20 standard residues, for detecting the input format
#: The protein MAEs' longest protein: their configs' default ``max_length`` (1502 in the seeds).
DEFAULT_MAX_LENGTH = ProteinMAEConfig.max_length


def clean_sequence(sequence: str, name: str = "sequence") -> str:
    """Upper-case, strip whitespace and one trailing stop ``*``; refuse empty sequences and foreign letters.

    Example:
        >>> clean_sequence("mkt avX*")
        'MKTAVX'
    """
    if not isinstance(sequence, str):
        raise ValueError(f"{name} must be a string of amino-acid letters, got {type(sequence).__name__}.")
    cleaned = "".join(sequence.split()).upper()
    if cleaned.endswith("*"):  # gene callers write the stop codon; it is not a residue
        cleaned = cleaned[:-1]
    if not cleaned:
        raise ValueError(f"{name} is empty: a protein needs at least one residue.")
    bad = sorted(set(cleaned) - AMINO_ACIDS)
    if bad:
        first = next(i for i, c in enumerate(cleaned) if c in bad)
        raise ValueError(
            f"{name} has letters outside the amino-acid alphabet: {bad} (first at position {first}). "
            f"Allowed: {''.join(sorted(AMINO_ACIDS))}."
        )
    return cleaned


def residue_embedding_features(width: int, *, with_sequence: bool = False) -> datasets.Features:
    """The columns of a per-residue embedding dataset: ``id``, (``sequence``), ``length``, ``residue_embeddings``."""
    columns = {"id": datasets.Value("string")}
    if with_sequence:
        columns["sequence"] = datasets.Value("string")
    columns["length"] = datasets.Value("int32")
    columns["residue_embeddings"] = datasets.Array2D((None, width), "float32")
    return datasets.Features(columns)


def format_residues(sequence: str, input_format: str) -> str:
    """A cleaned sequence as the tokenizer wants it: unchanged (``"plain"``) or space-separated (``"spaced"``).

    Example:
        >>> format_residues("MKT", "spaced")
        'M K T'
    """
    check_choice("input_format", input_format, ("plain", "spaced"))
    return " ".join(sequence) if input_format == "spaced" else sequence


def _residue_tokens(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without the tokenizer's special tokens."""
    encoded = tokenizer(text, return_special_tokens_mask=True)
    return [i for i, special in zip(encoded["input_ids"], encoded["special_tokens_mask"]) if not special]


def detect_input_format(tokenizer, name: str = "the model") -> str:
    """``"plain"`` if the tokenizer gives one known token per residue of ``"ACD..."``, else ``"spaced"`` if
    it does so for ``"A C D ..."``; neither raises a ``ValueError`` naming ``name``.

    Example:
        >>> detect_input_format(EsmcTokenizer())
        'plain'
    """
    seen = {}
    for input_format in ("plain", "spaced"):
        tokens = _residue_tokens(tokenizer, format_residues(_PROBE, input_format))
        seen[input_format] = tokenizer.convert_ids_to_tokens(tokens)
        if len(tokens) == len(_PROBE) and tokenizer.unk_token_id not in tokens:
            return input_format
    raise ValueError(
        f"the tokenizer of {name} ({type(tokenizer).__name__}) gives no single known token per residue: "
        f"{_PROBE!r} -> {seen['plain']}, spaced -> {seen['spaced']}. A protein language model's own tokenizer is "
        f"needed (pass `tokenizer=`), or set `input_format` ('plain' or 'spaced') if detection is wrong."
    )


def encoder_only(model: PreTrainedModel) -> torch.nn.Module:
    """The encoder of an encoder-decoder model (T5-style PLMs), else the model itself."""
    if getattr(model.config, "is_encoder_decoder", False):
        return model.get_encoder()
    return model


def residue_limit(model: torch.nn.Module, tokenizer) -> int | None:
    """Most residues ``model`` can embed in one piece: ``None`` when its positions are rotary or relative (ESM2,
    ESM C, T5), else what its absolute position table holds, less the tokenizer's special tokens. ESM-1b and
    RoBERTa-style tables start after the padding index (ESM-1b: 1026 rows, 1022 residues).

    Example:
        >>> from transformers import BertConfig, BertModel
        >>> bert = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                             intermediate_size=16, max_position_embeddings=40))
        >>> residue_limit(bert, ProteinEmbedder.tiny_random().tokenizer)
        38
    """
    embeddings = getattr(encoder_only(model), "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if not isinstance(table, torch.nn.Embedding):
        return None
    # positions counted from the padding index + 1 (create_position_ids_from_input_ids), else from 0
    padding_idx = getattr(embeddings, "padding_idx", None)
    first_position = padding_idx + 1 if isinstance(padding_idx, int) else 0
    return table.num_embeddings - first_position - tokenizer.num_special_tokens_to_add()


def _stderr_is_terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class ProteinEmbedder:
    """Per-residue embeddings from a protein language model (ESM C, ESM2, ProtBert, ProtT5, ...), batched by length.

    Args:
        model: a transformers model whose output has ``last_hidden_state`` (``EsmcModel``, ``EsmModel``,
            ``BertModel``, ``T5EncoderModel``, ...); of an encoder-decoder only the encoder is run.
        tokenizer: its tokenizer. After its special tokens are dropped, exactly one token per residue must be
            left (checked for every protein).
        input_format: ``"plain"`` (``"MKT"``), ``"spaced"`` (``"M K T"``) or ``"auto"`` (detected from the
            tokenizer, see ``detect_input_format``).
        name: how errors and logs name the model (default: its ``name_or_path``, else its class).
        max_length: most residues per protein. Default: the MAEs' 1502, or fewer when the PLM's absolute position
            embeddings hold fewer tokens (ESM-1b, BERT-style: see ``residue_limit``); a larger value is refused.
        too_long: ``"truncate"`` (keep the first ``max_length`` residues and log a warning) or ``"error"``.
        max_tokens_per_batch: padded tokens per forward pass; sorting by length keeps padding small.
        progress: show a progress bar over the proteins; ``None`` (default) shows it when stderr is a terminal.
            transformers' ``disable_progress_bar()`` turns it off too.

    Example:
        >>> embedder = ProteinEmbedder.tiny_random(hidden_size=32)
        >>> [e.shape for e in embedder.embed(["MKTAYIAK", "MSV"])]
        [(8, 32), (3, 32)]
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, input_format: str = "auto", name: str | None = None,
                 max_length: int | None = None, too_long: str = "truncate", max_tokens_per_batch: int = 16384,
                 device: str | torch.device | None = None, progress: bool | None = None):
        check_choice("input_format", input_format, INPUT_FORMATS)
        if max_length is not None:
            check_int("max_length", max_length)
        check_choice("too_long", too_long, ("truncate", "error"))
        model = encoder_only(model)
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.input_format = (detect_input_format(tokenizer, repr(self.name)) if input_format == "auto"
                             else input_format)
        limit = residue_limit(model, tokenizer)
        if max_length is None:
            max_length = DEFAULT_MAX_LENGTH if limit is None else min(DEFAULT_MAX_LENGTH, limit)
        elif limit is not None and max_length > limit:
            raise ValueError(
                f"max_length={max_length} is more residues than {self.name!r} can embed: its absolute position "
                f"embeddings end at {limit} residues (with its special tokens). Pass max_length={limit} or less; "
                f"longer proteins are then truncated, or refused with too_long='error'.")
        check_int("max_tokens_per_batch", max_tokens_per_batch, minimum=max_length + 2)
        self.progress = _stderr_is_terminal() if progress is None else progress
        self.max_length = max_length
        self.too_long = too_long
        self.max_tokens_per_batch = max_tokens_per_batch
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, tokenizer=None, use_safetensors: bool | None = None,
                        **kwargs) -> ProteinEmbedder:
        """Load a protein language model (a folder or a Hub id) and its tokenizer.

        ``tokenizer``: a folder, Hub id or tokenizer object when the model's own folder has none. Of a T5-style
        encoder-decoder only the encoder's weights are loaded. Pickled weights (``pytorch_model.bin``) are refused
        unless ``use_safetensors=False``; a missing local folder fails at once. Other keyword arguments go to the
        constructor.

        Example:
            >>> import tempfile
            >>> folder = tempfile.mkdtemp()
            >>> tiny = ProteinEmbedder.tiny_random("esm2", hidden_size=16, num_heads=2)
            >>> tiny.model.save_pretrained(folder); tiny.tokenizer.save_pretrained(folder)  # doctest: +ELLIPSIS
            (...)
            >>> embedder = ProteinEmbedder.from_pretrained(folder)
            >>> embedder.input_format, embedder.embed(["MKTAY"], ids=["p1"])[0].shape
            ('plain', (5, 16))
        """
        name = check_pretrained_source(name_or_path, "name_or_path")
        config = load_config(name)
        model_class = _ENCODER_ONLY_CLASSES.get(config.model_type, AutoModel)
        model = load_safetensors_only(model_class.from_pretrained, name, config=config, use_safetensors=use_safetensors,
                                      what="ProteinEmbedder.from_pretrained", parameter="name_or_path")
        tokenizer = load_tokenizer(name if tokenizer is None else tokenizer, config)
        return cls(model, tokenizer, name=kwargs.pop("name", name), **kwargs)

    @classmethod
    def tiny_random(cls, kind: str = "esmc", *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    seed: int = 0, **kwargs) -> ProteinEmbedder:
        """A small randomly initialised ESM C (``kind="esmc"``) or ESM2 (``"esm2"``), for tests and demos."""
        check_choice("kind", kind, ("esmc", "esm2"))
        torch.manual_seed(seed)
        if kind == "esmc":
            config = EsmcConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                                num_hidden_layers=num_layers, num_attention_heads=num_heads)
            return cls(EsmcModel(config), EsmcTokenizer(), **kwargs)
        with tempfile.TemporaryDirectory() as folder:
            vocab = Path(folder) / "vocab.txt"
            vocab.write_text("\n".join(_ESM2_VOCAB))
            tokenizer = EsmTokenizer(str(vocab))
        config = EsmConfig(vocab_size=len(_ESM2_VOCAB), hidden_size=hidden_size, num_hidden_layers=num_layers,
                           num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
                           position_embedding_type="rotary", pad_token_id=1, mask_token_id=32,
                           max_position_embeddings=(kwargs.get("max_length") or DEFAULT_MAX_LENGTH) + 2)
        return cls(EsmModel(config, add_pooling_layer=False), tokenizer, **kwargs)

    def prepare(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> list[str]:
        """Clean every sequence and apply the length policy; errors name the protein."""
        if isinstance(sequences, str):
            raise ValueError("`sequences` must be a list of sequences, got one string.")
        names = list(ids) if ids is not None else [f"sequence {i}" for i in range(len(sequences))]
        if len(names) != len(sequences):
            raise ValueError(f"`ids` has {len(names)} entries for {len(sequences)} sequences.")
        prepared, truncated = [], []
        for name, sequence in zip(names, sequences):
            sequence = clean_sequence(sequence, name=f"protein {name!r}")
            if len(sequence) > self.max_length:
                if self.too_long == "error":
                    raise ValueError(f"protein {name!r} has {len(sequence)} residues, more than max_length="
                                     f"{self.max_length} (set too_long='truncate' to keep the first {self.max_length}).")
                truncated.append(f"{name} ({len(sequence)})")
                sequence = sequence[: self.max_length]
            prepared.append(sequence)
        if truncated:
            logger.warning("%d of %d proteins longer than max_length=%d were truncated to their first %d residues: %s",
                           len(truncated), len(prepared), self.max_length, self.max_length,
                           ", ".join(truncated[:5]) + (", ..." if len(truncated) > 5 else ""))
        return prepared

    def length_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped into batches of similar length, each within ``max_tokens_per_batch`` padded tokens."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        batches, current = [], []
        for i in order:
            # sorted ascending, so the newest sequence is the longest of its batch
            if current and (len(current) + 1) * (lengths[i] + 2) > self.max_tokens_per_batch:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    @torch.no_grad()
    def embed(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> list[np.ndarray]:
        """One float32 array (length, hidden_size) per sequence, in input order.

        Raises ``ValueError`` naming the model and the protein if the tokens left after dropping the special
        ones and the padding are not exactly one per residue.
        """
        names = list(ids) if ids is not None else [f"sequence {i}" for i in range(len(sequences))]
        prepared = self.prepare(sequences, names)
        out: list[np.ndarray | None] = [None] * len(prepared)
        bar = hf_logging.tqdm(total=len(prepared), desc=f"Embedding proteins ({self.name})", unit="protein",
                              disable=not self.progress)
        with bar:
            for batch in self.length_batches([len(s) for s in prepared]):
                texts = [format_residues(prepared[i], self.input_format) for i in batch]
                encoded = self.tokenizer(texts, padding=True, return_special_tokens_mask=True, return_tensors="pt")
                residue = encoded["attention_mask"].bool() & ~encoded["special_tokens_mask"].bool()   # (b, T)
                inputs = {k: encoded[k].to(self.device) for k in ("input_ids", "attention_mask")}
                hidden = self.model(**inputs).last_hidden_state.float().cpu()                       # (b, T, H)
                for row, i in enumerate(batch):
                    n_tokens, n = int(residue[row].sum()), len(prepared[i])
                    if n_tokens != n:
                        raise ValueError(
                            f"{self.name!r} gave {n_tokens} token embeddings for the {n} residues of protein "
                            f"{names[i]!r} (input_format={self.input_format!r}, special tokens dropped); one per "
                            f"residue is needed. Pass this model's own tokenizer, or the other `input_format`.")
                    out[i] = hidden[row][residue[row]].numpy()
                bar.update(len(batch))
        return out

    def to_dataset(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> datasets.Dataset:
        """A ``datasets.Dataset`` with columns ``id``, ``sequence`` (as embedded), ``length`` and
        ``residue_embeddings`` (length x hidden_size float32), in numpy format."""
        ids = list(ids) if ids is not None else [str(i) for i in range(len(sequences))]
        prepared = self.prepare(sequences, ids)
        embeddings = self.embed(prepared, ids)
        features = residue_embedding_features(self.hidden_size, with_sequence=True)
        data = {"id": ids, "sequence": prepared, "length": [len(s) for s in prepared],
                "residue_embeddings": embeddings}
        return datasets.Dataset.from_dict(data, features=features).with_format("numpy")
