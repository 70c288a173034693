"""The bundled atom-level SMILES tokenizer, and checks of SMILES before they reach a model.

One SMILES becomes one token per atom or symbol:

    "Cl[C@@H]1CC%10CC1"  ->  [CLS] Cl [C@@H] 1 C C %10 C C 1 [SEP]

- a bracket atom is one token, whatever it holds: ``[C@@H]``, ``[nH]``, ``[O-]``, ``[13CH3]``;
- ``Cl`` and ``Br`` are never split into ``C`` + ``l`` / ``B`` + ``r``;
- the organic subset ``B C N O P S F I`` and aromatic ``b c n o p s``, the wildcard ``*``;
- ring closures ``0``-``9`` and ``%10``-``%99``; bonds ``- = # $ : / \\``; branches ``( )``; the dot ``.``;
- any other character is a token of its own that maps to ``[UNK]`` (checked for by ``find_smiles_problems``).

The tokenizer is a plain ``tokenizers`` pipeline (regex ``Split`` pre-tokenizer, ``WordLevel`` model,
``TemplateProcessing`` for ``[CLS] ... [SEP]``, a ``Fuse`` decoder so ``decode`` gives the SMILES back with
no spaces), saved as ``tokenizer.json``: ``AutoTokenizer.from_pretrained`` loads it without hf_mae.
Special tokens sit at BERT's ids (``[PAD]`` 0, ``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103), so
a BERT config written with ``pad_token_id=0, mask_token_id=103`` matches it; SMILES tokens fill the other ids.

Example:
    >>> from hf_mae.processing.smiles import load_smiles_tokenizer
    >>> tokenizer = load_smiles_tokenizer()
    >>> ids = tokenizer("Cl[C@@H]1CC%10CC1")["input_ids"]
    >>> tokenizer.convert_ids_to_tokens(ids)
    ['[CLS]', 'Cl', '[C@@H]', '1', 'C', 'C', '%10', 'C', 'C', '1', '[SEP]']
    >>> tokenizer.decode(ids, skip_special_tokens=True)
    'Cl[C@@H]1CC%10CC1'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._shipped import shipped_dir

# One alternative per token kind, longest first where two overlap (Cl before C, %10 before %).
SMILES_TOKEN_PATTERN = (
    r"\[[^\[\]]*\]"            # bracket atom: [C@@H], [nH], [O-], [13CH3]
    r"|Br|Cl"                  # two-letter organic-subset elements
    r"|[BCNOPSFI]|[bcnops]"    # one-letter organic subset, aliphatic and aromatic
    r"|%\d{2}|\d"              # ring closures %10-%99 and 0-9
    r"|[-=#$:/\\.()*]"         # bonds, dot, branches, wildcard atom
    r"|[\s\S]"                 # anything else: one character, [UNK] unless in the vocabulary
)
SMILES_TOKEN_REGEX = re.compile(SMILES_TOKEN_PATTERN)

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
# BERT's layout of the special tokens.
SPECIAL_TOKEN_IDS = {PAD_TOKEN: 0, UNK_TOKEN: 100, CLS_TOKEN: 101, SEP_TOKEN: 102, MASK_TOKEN: 103}

# Tokens in the vocabulary whether or not the corpus has them: the grammar of SMILES outside brackets.
STRUCTURAL_TOKENS = (
    ["B", "C", "N", "O", "P", "S", "F", "I", "Cl", "Br", "b", "c", "n", "o", "p", "s", "*"]
    + ["-", "=", "#", "$", ":", "/", "\\", ".", "(", ")"]
    + [str(d) for d in range(10)] + [f"%{n}" for n in range(10, 100)]
)



def tokenize_smiles(smiles: str) -> list[str]:
    """Split one SMILES into its tokens with Python's ``re`` (the reference for the bundled tokenizer).

    Example:
        >>> tokenize_smiles("OC(=O)c1ccc(Br)cc1")
        ['O', 'C', '(', '=', 'O', ')', 'c', '1', 'c', 'c', 'c', '(', 'Br', ')', 'c', 'c', '1']
    """
    return SMILES_TOKEN_REGEX.findall(smiles)


def build_vocab(token_counts: Mapping[str, int]) -> dict[str, int]:
    """Vocabulary: specials at BERT's ids, then corpus tokens by falling count, then unseen structural ones.

    Ties are broken alphabetically so the same counts always give the same ids.
    """
    seen = sorted((t for t in token_counts if t not in SPECIAL_TOKEN_IDS), key=lambda t: (-token_counts[t], t))
    tokens = seen + [t for t in STRUCTURAL_TOKENS if t not in token_counts]
    free_ids = (i for i in range(len(tokens) + len(SPECIAL_TOKEN_IDS)) if i not in SPECIAL_TOKEN_IDS.values())
    vocab = dict(SPECIAL_TOKEN_IDS)
    vocab.update(zip(tokens, free_ids))
    return vocab


def build_smiles_tokenizer(vocab: Mapping[str, int], model_max_length: int = 512):
    """Wrap a vocabulary into the tokenizers pipeline and a ``PreTrainedTokenizerFast``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    missing = [t for t in SPECIAL_TOKEN_IDS if vocab.get(t) != SPECIAL_TOKEN_IDS[t]]
    if missing:
        raise ValueError(f"`vocab` must hold the special tokens at {SPECIAL_TOKEN_IDS}; wrong or missing: {missing}.")
    core = Tokenizer(models.WordLevel(dict(vocab), unk_token=UNK_TOKEN))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_TOKEN_PATTERN), behavior="isolated")
    core.post_processor = processors.TemplateProcessing(
        single=f"{CLS_TOKEN} $A {SEP_TOKEN}",
        pair=f"{CLS_TOKEN} $A {SEP_TOKEN} $B:1 {SEP_TOKEN}:1",
        special_tokens=[(CLS_TOKEN, vocab[CLS_TOKEN]), (SEP_TOKEN, vocab[SEP_TOKEN])],
    )
    core.decoder = decoders.Fuse()  # join tokens with no space: decode gives the SMILES back
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN, cls_token=CLS_TOKEN,
        sep_token=SEP_TOKEN, mask_token=MASK_TOKEN, model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"],
    )


def bundled_tokenizer_dir() -> Path:
    """Folder of the bundled tokenizer: ``tokenizers/smiles`` of a source checkout, or the installed wheel's copy."""
    return shipped_dir("tokenizers/smiles", "tokenizer.json",
                       hint="rebuild it with `python scripts/build_smiles_tokenizer.py`")


def load_smiles_tokenizer(path: str | Path | None = None):
    """Load the bundled SMILES tokenizer (or one saved elsewhere) with ``AutoTokenizer``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or bundled_tokenizer_dir()))


class RegexSmilesTokenizer:
    """The same rules and vocabulary in pure Python (``re`` + dict look-ups): the benchmark's baseline.

    ``encode`` returns exactly the ids of the bundled tokenizer; ``__call__`` pads a batch like it.

    Example:
        >>> tokenizer = load_smiles_tokenizer()
        >>> slow = RegexSmilesTokenizer(tokenizer.get_vocab())
        >>> slow.encode("CCO") == tokenizer("CCO")["input_ids"]
        True
    """

    def __init__(self, vocab: Mapping[str, int]):
        self.vocab = dict(vocab)
        self.unk_id, self.cls_id, self.sep_id, self.pad_id = (
            self.vocab[UNK_TOKEN], self.vocab[CLS_TOKEN], self.vocab[SEP_TOKEN], self.vocab[PAD_TOKEN])

    def encode(self, smiles: str) -> list[int]:
        get, unk = self.vocab.get, self.unk_id
        return [self.cls_id, *(get(t, unk) for t in SMILES_TOKEN_REGEX.findall(smiles)), self.sep_id]

    def __call__(self, batch: Sequence[str]) -> dict[str, list[list[int]]]:
        ids = [self.encode(s) for s in batch]
        width = max(map(len, ids), default=0)
        return {"input_ids": [row + [self.pad_id] * (width - len(row)) for row in ids],
                "attention_mask": [[1] * len(row) + [0] * (width - len(row)) for row in ids]}


# --------------------------------------------------------------------------------------------------
# Checks at the boundary: what is wrong with a SMILES before a model sees it.

@dataclass(frozen=True)
class SmilesProblem:
    """One SMILES that cannot go to the model as it is: its position in the input, the string, why."""

    index: int
    smiles: object
    reason: str
    too_long: bool = False   # the only problem truncation can fix

    def __str__(self) -> str:
        return f"#{self.index} {self.smiles!r}: {self.reason}"


def rdkit_available() -> bool:
    try:
        import rdkit  # noqa: F401
    except ImportError:
        return False
    return True


def rdkit_parses(smiles: str) -> bool:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")   # the reason is reported by the caller, not printed by RDKit
    try:
        return Chem.MolFromSmiles(smiles) is not None
    finally:
        RDLogger.EnableLog("rdApp.*")


REACTION_SIDES = ("reactants", "agents", "products")


def reaction_problem(reaction: str, *, check_validity: bool = True) -> str | None:
    """What is wrong with a reaction SMILES ``reactants>agents>products`` (``A.B>>C``), or ``None``.

    Exactly two ``>``; reactants and products non-empty (agents may be empty); with ``check_validity`` each
    non-empty side is parsed by RDKit on its own, so the message names the side that fails.

    Example:
        >>> reaction_problem("CC(=O)O.OCC>>CC(=O)OCC.O") is None
        True
        >>> reaction_problem("CCO>>C1CC")
        "products 'C1CC' are not valid SMILES (RDKit could not parse them)"
    """
    sides = reaction.split(">")
    if len(sides) != 3:
        return f"a reaction SMILES needs the form reactants>agents>products (two '>'), got {len(sides) - 1} '>'"
    for side, text in zip(REACTION_SIDES, sides):
        if not text.strip():
            if side != "agents":
                return f"the reaction has no {side}"
            continue
        if check_validity and not rdkit_parses(text):
            return f"{side} {text!r} are not valid SMILES (RDKit could not parse them)"
    return None


# Valid SMILES a tokenizer for molecules must cover: organic subset, aromatic rings, Cl/Br, charges, bracket
# atoms, stereo, ring closures, double and triple bonds.
REFERENCE_SMILES = (
    "CC(=O)Oc1ccccc1C(=O)O",                  # aspirin
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",             # caffeine
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O",        # ibuprofen
    "OC(=O)c1ccc(Br)cc1Cl",
    "C[N+](C)(C)CC(=O)[O-]",
    "c1ccc2[nH]ccc2c1",
    "N#CC1CCCCC1",
    "F/C=C/F",
)
#: A tokenizer that maps more than this share of the characters of ``REFERENCE_SMILES`` to its unknown token is
#: not a SMILES tokenizer (a SMILES one maps none; a generic English WordPiece about two thirds).
MAX_UNKNOWN_FRACTION = 0.1


def unknown_fraction(tokenizer, smiles: Sequence[str] = REFERENCE_SMILES) -> float:
    """Share of the characters of ``smiles`` that the tokenizer maps to its unknown token.

    Example:
        >>> unknown_fraction(load_smiles_tokenizer())
        0.0
    """
    unk_id, unknown, total = tokenizer.unk_token_id, 0, 0
    for text in smiles:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        total += len(text)
        if unk_id is not None:
            unknown += sum(b - a for i, (a, b) in zip(encoding["input_ids"], encoding["offset_mapping"]) if i == unk_id)
    return unknown / max(total, 1)


def check_smiles_tokenizer(tokenizer, name: str | None = None) -> None:
    """Refuse a tokenizer that cannot read SMILES: one that maps more than ``MAX_UNKNOWN_FRACTION`` of the
    characters of valid SMILES (``REFERENCE_SMILES``) to its unknown token, or one that lower-cases its input
    (aliphatic ``C`` and aromatic ``c`` would become one token). The error names the tokenizer and how to pass
    the right one.

    Example:
        >>> check_smiles_tokenizer(load_smiles_tokenizer())      # the bundled tokenizer passes
    """
    label = f"{name!r} ({type(tokenizer).__name__})" if name else type(tokenizer).__name__
    how = ("Pass the masked LM's own SMILES tokenizer with `tokenizer=` (a folder, a Hub id or a tokenizer object), "
           "e.g. hf_mae.processing.smiles.load_smiles_tokenizer() for hf_mae's SMILES BERT.")
    upper, lower = (tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("C", "c"))
    if upper == lower:
        raise ValueError(f"the tokenizer {label} lower-cases its input, so aliphatic 'C' and aromatic 'c' become the "
                         f"same token {tokenizer.convert_ids_to_tokens(upper)}; load it with do_lower_case=False. {how}")
    fraction = unknown_fraction(tokenizer)
    if fraction > MAX_UNKNOWN_FRACTION:
        example = REFERENCE_SMILES[0]
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(example, add_special_tokens=False)["input_ids"])
        raise ValueError(f"the tokenizer {label} maps {fraction:.0%} of the characters of valid SMILES to its unknown "
                         f"token {tokenizer.unk_token!r} ({example!r} -> {tokens}): it is not a SMILES tokenizer. {how}")


def find_smiles_problems(smiles: Iterable, tokenizer, max_length: int, *, check_validity: bool = True,
                         allow_mask: bool = False, reactions: bool = False) -> list[SmilesProblem]:
    """Everything wrong with a list of SMILES for this tokenizer, in input order (empty list: all fine).

    Checks, per SMILES: a non-empty ``str``; parsed by RDKit when installed and ``check_validity`` (a reaction
    SMILES ``reactants>agents>products``, e.g. ``A.B>>C``, only with ``reactions=True``, and then each side on its
    own: ``reaction_problem``); no character outside the tokenizer's vocabulary (it would become the unknown
    token); at most ``max_length`` tokens with the special tokens (``too_long=True``: the caller may truncate
    instead). With ``allow_mask`` the tokenizer's mask token may appear (and RDKit is not asked about that SMILES).

    Example:
        >>> tokenizer = load_smiles_tokenizer()
        >>> [str(p) for p in find_smiles_problems(["CCO", "", "C1CC"], tokenizer, 64)]  # doctest: +SKIP
        ["#1 '': empty SMILES", "#2 'C1CC': not a valid SMILES (RDKit could not parse it)"]
    """
    use_rdkit = check_validity and rdkit_available()
    mask_token = getattr(tokenizer, "mask_token", None)
    unk_id = tokenizer.unk_token_id
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    problems = []
    for index, text in enumerate(smiles):
        if not isinstance(text, str):
            problems.append(SmilesProblem(index, text, f"not a string but {type(text).__name__}"))
            continue
        if not text.strip():
            problems.append(SmilesProblem(index, text, "empty SMILES"))
            continue
        has_mask = bool(mask_token) and mask_token in text
        if has_mask and not allow_mask:
            problems.append(SmilesProblem(index, text, f"contains the mask token {mask_token!r}"))
            continue
        if ">" in text and not has_mask:
            reason = reaction_problem(text, check_validity=use_rdkit) if reactions else (
                "a reaction SMILES (it contains '>'); pass reactions=True to accept reactions")
            if reason:
                problems.append(SmilesProblem(index, text, reason))
                continue
        elif use_rdkit and not has_mask and not rdkit_parses(text):
            problems.append(SmilesProblem(index, text, "not a valid SMILES (RDKit could not parse it)"))
            continue
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoding["input_ids"]
        if unk_id is not None and unk_id in ids:
            unknown = sorted({text[a:b] for i, (a, b) in zip(ids, encoding["offset_mapping"]) if i == unk_id})
            problems.append(SmilesProblem(index, text, f"token(s) {unknown} are not in the tokenizer's vocabulary"))
            continue
        if len(ids) + n_special > max_length:
            problems.append(SmilesProblem(
                index, text, f"{len(ids) + n_special} tokens (with specials) > max_length={max_length}", too_long=True))
    return problems


def describe_problems(problems: Sequence[SmilesProblem], limit: int = 5) -> str:
    """One readable line per problem, at most ``limit`` of them."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "; ".join(lines)
