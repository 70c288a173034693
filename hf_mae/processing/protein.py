"""Protein sequences -> per-residue embeddings from a protein language model (ESM C or ESM2).

The protein MAEs take per-residue embeddings (ESM C 300M: 960-d). ``ProteinEmbedder`` wraps transformers'
``EsmcModel`` or ``EsmModel`` and its tokenizer: it checks and cleans the sequences, truncates (with a warning)
or refuses those longer than ``max_length``, embeds them in batches of similar length (little padding), drops
the special tokens (CLS/BOS and EOS) and returns one ``(length, hidden_size)`` float32 array per protein, or a
``datasets.Dataset`` with them.

    embedder = ProteinEmbedder.from_pretrained("/path/to/esmc-300m")      # a local checkpoint
    dataset = embedder.to_dataset(sequences, ids=names)                    # columns: id, sequence, length,
                                                                           #          residue_embeddings
No weights ship with any package, so tests and the default pretraining jobs use ``ProteinEmbedder.tiny_random``
(a small randomly initialised ESM C or ESM2): the code path is the real one, the embeddings are not.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    EsmcConfig,
    EsmcModel,
    EsmcTokenizer,
    EsmConfig,
    EsmModel,
    EsmTokenizer,
)

from ..models.validation import check_choice, check_int

logger = logging.getLogger(__name__)

#: The 20 standard amino acids and the ambiguity / rare codes every ESM vocabulary has: X (unknown),
#: B (D/N), Z (E/Q), U (selenocysteine), O (pyrrolysine).
AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY" + "XBZUO")

# ESM2's vocabulary (the ESM-1b alphabet): written out so a random ESM2 needs no downloaded tokenizer files.
_ESM2_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>", "<mask>"]


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


class ProteinEmbedder:
    """Per-residue embeddings from an ESM C / ESM2 model, batched by length.

    Args:
        model: an ``EsmcModel`` or ``EsmModel`` (any model whose output has ``last_hidden_state`` and whose
            tokenizer wraps each sequence as one start token + residues + one end token).
        tokenizer: its tokenizer.
        max_length: most residues per protein (the MAEs' ``max_length``, 1502 by default).
        too_long: ``"truncate"`` (keep the first ``max_length`` residues and log a warning) or ``"error"``.
        max_tokens_per_batch: padded tokens per forward pass; sorting by length keeps padding small.

    Example:
        >>> embedder = ProteinEmbedder.tiny_random(hidden_size=32)
        >>> [e.shape for e in embedder.embed(["MKTAYIAK", "MSV"])]
        [(8, 32), (3, 32)]
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_length: int = 1502, too_long: str = "truncate",
                 max_tokens_per_batch: int = 16384, device: str | torch.device | None = None):
        check_int("max_length", max_length)
        check_choice("too_long", too_long, ("truncate", "error"))
        check_int("max_tokens_per_batch", max_tokens_per_batch, minimum=max_length + 2)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.too_long = too_long
        self.max_tokens_per_batch = max_tokens_per_batch
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> ProteinEmbedder:
        """Load a local ESM C / ESM2 checkpoint folder (model + tokenizer), without network access."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"`path`={str(path)!r} is not a model folder with a config.json (a local ESM C or "
                             f"ESM2 checkpoint is expected; nothing is downloaded).")
        model = AutoModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, **kwargs)

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
                           max_position_embeddings=kwargs.get("max_length", 1502) + 2)
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
        """One float32 array (length, hidden_size) per sequence, in input order."""
        prepared = self.prepare(sequences, ids)
        out: list[np.ndarray | None] = [None] * len(prepared)
        for batch in self.length_batches([len(s) for s in prepared]):
            encoded = self.tokenizer([prepared[i] for i in batch], padding=True, return_tensors="pt")
            encoded = {k: v.to(self.device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
            hidden = self.model(**encoded).last_hidden_state.float()            # (b, 1 + L + 1, H)
            for row, i in enumerate(batch):
                n = len(prepared[i])
                residues = hidden[row, 1: 1 + n]                               # drop the start and end tokens
                if residues.shape[0] != n:
                    raise ValueError(f"The tokenizer did not give one token per residue for protein {i}.")
                out[i] = residues.cpu().numpy()
        return out

    def to_dataset(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> datasets.Dataset:
        """A ``datasets.Dataset`` with columns ``id``, ``sequence`` (as embedded), ``length`` and
        ``residue_embeddings`` (length x hidden_size float32), in numpy format."""
        ids = list(ids) if ids is not None else [str(i) for i in range(len(sequences))]
        prepared = self.prepare(sequences, ids)
        embeddings = self.embed(prepared, ids)
        features = datasets.Features({
            "id": datasets.Value("string"),
            "sequence": datasets.Value("string"),
            "length": datasets.Value("int32"),
            "residue_embeddings": datasets.Array2D((None, self.hidden_size), "float32"),
        })
        data = {"id": ids, "sequence": prepared, "length": [len(s) for s in prepared],
                "residue_embeddings": embeddings}
        return datasets.Dataset.from_dict(data, features=features).with_format("numpy")
