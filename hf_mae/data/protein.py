"""Protein sequences from FASTA files, and the collators that feed per-residue embeddings to the protein MAEs.

Real sequences: pyhmmer 0.12.3 ships ``tests/data/seqs/938293.PRJEB85.HG003687.faa``, 2100 bacterial proteins
(33-4560 residues) predicted from one genome (``pip install "hf-mae[protein]"``). ``load_pyhmmer_proteins``
reads it.

Collators:
- ``DataCollatorForProteinEmbeddings``: rows with ``residue_embeddings`` (L_i, H) -> right-padded
  ``residue_embeddings`` (B, L, H) float32 and ``attention_mask`` (B, L), for pretraining.
- ``DataCollatorForProteinPairs``: rows with ``residue_embeddings_a``/``_b`` and ``labels``, for the pair model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from ..processing.protein import residue_embedding_features
from .spectra import collate_labels, package_file

PYHMMER_FASTA = "tests/data/seqs/938293.PRJEB85.HG003687.faa"


def read_fasta(path: str | Path) -> tuple[list[str], list[str]]:
    """``(ids, sequences)`` from a FASTA file; the id is the header's first word. Sequences are not cleaned
    here (``ProteinEmbedder`` checks the alphabet), but a record without sequence lines is refused."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"FASTA file {str(path)!r} does not exist.")
    ids, sequences, chunks = [], [], None
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if line.startswith(">"):
                if chunks is not None:
                    sequences.append("".join(chunks))
                name = line[1:].split(maxsplit=1)
                ids.append(name[0] if name else f"record{len(ids)}")
                chunks = []
            elif line:
                if chunks is None:
                    raise ValueError(f"{path}:{number}: sequence line before the first '>' header.")
                chunks.append(line)
    if chunks is not None:
        sequences.append("".join(chunks))
    for name, sequence in zip(ids, sequences):
        if not sequence:
            raise ValueError(f"{path}: record {name!r} has an empty sequence.")
    if not ids:
        raise ValueError(f"{path}: no FASTA records found.")
    return ids, sequences


def load_pyhmmer_proteins(max_proteins: int | None = None) -> tuple[list[str], list[str]]:
    """The 2100 real bacterial proteins that pyhmmer ships (file order), optionally the first ``max_proteins``."""
    ids, sequences = read_fasta(package_file("pyhmmer", PYHMMER_FASTA, extra="protein"))
    if max_proteins is not None:
        ids, sequences = ids[:max_proteins], sequences[:max_proteins]
    return ids, sequences


def _as_tensor(value, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
    if tensor.ndim != 2 or tensor.shape[0] == 0:
        raise ValueError(f"`{name}` of a row must be (length >= 1, hidden_size), got shape {tuple(tensor.shape)}.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` of a row contains NaN or infinite values.")
    return tensor


def pad_residues(rows: Sequence, name: str = "residue_embeddings", input_dim: int | None = None,
                 max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-protein (L_i, H) arrays: -> (B, L, H) float32 and attention mask (B, L) long."""
    tensors = [_as_tensor(row, name) for row in rows]
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1 or (input_dim is not None and dims != {input_dim}):
        raise ValueError(f"`{name}` widths {sorted(dims)} in one batch; expected all {input_dim or 'equal'}.")
    longest = max(t.shape[0] for t in tensors)
    if max_length is not None and longest > max_length:
        raise ValueError(f"a protein has {longest} residues, more than max_length={max_length}.")
    values = torch.zeros(len(tensors), longest, tensors[0].shape[1])
    mask = torch.zeros(len(tensors), longest, dtype=torch.long)
    for i, t in enumerate(tensors):
        values[i, : t.shape[0]] = t
        mask[i, : t.shape[0]] = 1
    return values, mask


@dataclass
class DataCollatorForProteinEmbeddings:
    """Pad ``residue_embeddings`` rows into ``residue_embeddings`` (B, L, H) + ``attention_mask`` (B, L), and
    stack ``labels`` when the rows have them (``hf_mae.data.spectra.collate_labels``).

    ``input_dim`` / ``max_length`` (optional) are checked here, on the host, before anything reaches the model.
    """

    input_dim: int | None = None
    max_length: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        values, mask = pad_residues([f["residue_embeddings"] for f in features], "residue_embeddings",
                                    self.input_dim, self.max_length)
        return {"residue_embeddings": values, "attention_mask": mask, **collate_labels(features)}


@dataclass
class DataCollatorForProteinPairs:
    """Pad both proteins of each pair and stack the 0/1 ``labels``."""

    input_dim: int | None = None
    max_length: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        batch = {}
        for side in ("a", "b"):
            values, mask = pad_residues([f[f"residue_embeddings_{side}"] for f in features],
                                        f"residue_embeddings_{side}", self.input_dim, self.max_length)
            batch[f"residue_embeddings_{side}"], batch[f"attention_mask_{side}"] = values, mask
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)
        return batch


def fragment_pairs(dataset: datasets.Dataset, n_pairs: int, *, min_length: int = 40, seed: int = 0
                   ) -> datasets.Dataset:
    """A balanced pair task from per-residue embeddings: are two fragments halves of the same protein?

    Positive: the first and second half of one protein. Negative: the first half of one protein and the second
    half of another. A check that the pair model and its training work on real proteins, not a benchmark of
    biological interaction (no interaction labels ship with any package).
    """
    rng = random.Random(seed)
    lengths = np.asarray(dataset["length"])
    usable = [int(i) for i in np.flatnonzero(lengths >= min_length)]
    if len(usable) < 2:
        raise ValueError(f"`fragment_pairs` needs at least 2 proteins of >= {min_length} residues, got {len(usable)}.")
    rows = {"residue_embeddings_a": [], "residue_embeddings_b": [], "labels": []}
    for k in range(n_pairs):
        i = rng.choice(usable)
        j = i if k % 2 == 0 else rng.choice([u for u in usable if u != i])
        first, second = dataset[i]["residue_embeddings"], dataset[j]["residue_embeddings"]
        rows["residue_embeddings_a"].append(first[: len(first) // 2])
        rows["residue_embeddings_b"].append(second[len(second) // 2:])
        rows["labels"].append(int(i == j))
    hidden = int(dataset.features["residue_embeddings"].shape[1])
    features = datasets.Features({
        "residue_embeddings_a": datasets.Array2D((None, hidden), "float32"),
        "residue_embeddings_b": datasets.Array2D((None, hidden), "float32"),
        "labels": datasets.Value("int64"),
    })
    return datasets.Dataset.from_dict(rows, features=features).with_format("numpy")


# ---------------------------------------------------------------------------------------------------------
# Precomputed per-residue embeddings
# ---------------------------------------------------------------------------------------------------------
def has_residue_embeddings(folder: str | Path) -> bool:
    """Whether ``folder`` holds precomputed embeddings in a format ``load_residue_embeddings`` reads."""
    folder = Path(folder)
    return (folder / "dataset_info.json").is_file() or any(folder.glob("*.npy"))


def load_residue_embeddings(folder: str | Path) -> datasets.Dataset:
    """Precomputed per-residue embeddings of any width, as a Dataset (``id``, ``length``, ``residue_embeddings``).

    ``folder`` holds either
    - a ``datasets.Dataset`` written by ``save_to_disk`` with a ``residue_embeddings`` column (one
      ``(length, width)`` float array per protein) and optionally ``id`` and ``length`` (computed if absent), or
    - one ``<protein id>.npy`` file per protein, each a ``(length, width)`` array (read without pickle).

    Every protein must have the same width; NaN/inf values are refused with the protein's id.

    Example:
        >>> import tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> np.save(f"{folder}/P1.npy", np.ones((7, 24), np.float32)); np.save(f"{folder}/P2.npy", np.ones((3, 24)))
        >>> ds = load_residue_embeddings(folder)
        >>> ds[:]["id"].tolist(), ds[:]["length"].tolist(), ds.features["residue_embeddings"].shape
        (['P1', 'P2'], [7, 3], (None, 24))
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"`embeddings_dir`={str(folder)!r} is not a folder.")
    if (folder / "dataset_info.json").is_file():
        dataset = datasets.load_from_disk(str(folder))
        if "residue_embeddings" not in dataset.column_names:
            raise ValueError(f"the dataset in {str(folder)!r} has no `residue_embeddings` column (columns: "
                             f"{dataset.column_names}); one (length, width) array per protein is expected.")
        ids = dataset["id"] if "id" in dataset.column_names else [str(i) for i in range(len(dataset))]
        arrays = [np.asarray(row, dtype=np.float32) for row in dataset.with_format("numpy")["residue_embeddings"]]
    else:
        files = sorted(folder.glob("*.npy"))
        if not files:
            raise ValueError(f"`embeddings_dir`={str(folder)!r} holds neither a saved dataset (dataset_info.json) "
                             f"nor .npy files (one (length, width) array per protein).")
        ids = [f.stem for f in files]
        arrays = [np.load(f, allow_pickle=False).astype(np.float32, copy=False) for f in files]
    widths = {}
    for name, array in zip(ids, arrays):
        if array.ndim != 2 or array.shape[0] == 0:
            raise ValueError(f"protein {name!r} in {str(folder)!r}: embeddings must be (length >= 1, width), "
                             f"got shape {array.shape}.")
        if not np.isfinite(array).all():
            raise ValueError(f"protein {name!r} in {str(folder)!r}: embeddings contain NaN or infinite values.")
        widths.setdefault(array.shape[1], name)
    if len(widths) > 1:
        raise ValueError(f"embeddings in {str(folder)!r} have different widths: "
                         + ", ".join(f"{w} (e.g. {name!r})" for w, name in widths.items()))
    width = next(iter(widths))
    data = {"id": [str(i) for i in ids], "length": [a.shape[0] for a in arrays], "residue_embeddings": arrays}
    return datasets.Dataset.from_dict(data, features=residue_embedding_features(width)).with_format("numpy")
