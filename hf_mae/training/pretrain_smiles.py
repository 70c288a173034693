"""``hf-mae pretrain smiles-bert``: masked-language-model pretraining of SMILES BERT on real SMILES.

By default: the bundled atom-level tokenizer, 100,000 SMILES of the MOSES training set (molsets), a small
BERT (4 layers of 256), 300 steps of batch 64, validation on 2,000 MOSES test SMILES. At the end the job
prints the validation masked-token accuracy next to always predicting the most frequent training token (on
the same seeded masks) and saves it as ``validation_results.json`` (read by ``hf-mae push`` for the model
card), saves model and tokenizer together in ``--output_dir`` and reloads them with
``AutoModelForMaskedLM``/``AutoTokenizer`` to check the logits are identical.

    pip install --no-deps molsets==0.3.1
    hf-mae pretrain smiles-bert --output_dir runs/smiles-bert --max_steps 300
    hf-mae pretrain smiles-bert --max_train_samples 0 --hidden_size 768 --num_hidden_layers 12 \\
        --num_attention_heads 12 --intermediate_size 3072 --bf16 --max_steps 100000     # the reference BERT-base

Your own SMILES: ``--data FILE``, a ``.smi`` file (SMILES [name] per line) or a CSV/TSV/Parquet table with a
``--smiles_column``; ``--eval_fraction`` of it (seeded) is held out for validation. SMILES RDKit cannot parse
are skipped, counted and reported, never dropped silently.

    hf-mae pretrain smiles-bert --data my_molecules.smi --max_steps 200
    hf-mae pretrain smiles-bert --data library.csv --smiles_column canonical_smiles
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from ..data.files import read_smiles
from ..data.smiles import SMILES_SOURCES, load_smiles
from ..data.tasks import seeded_split
from ..models import SMILESBERTForMaskedLM, SMILESBERTMLMConfig
from ..models.validation import check_float
from ..processing.pretrained import load_tokenizer
from ..processing.smiles import check_smiles_tokenizer, load_smiles_tokenizer
from .common import PerRankMaskSeed, check_reload, config_arguments, parse_args, print_held_out, train_and_save
from .smiles_mlm import encode_smiles_for_mlm, make_mlm_trainer, masked_lm_metrics, mlm_collator, most_frequent_token


SmilesModelArguments = config_arguments(
    SMILESBERTMLMConfig,
    ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_dropout_prob",
     "attention_probs_dropout_prob", "vocab_size", "mask_probability", "replace_probability", "random_probability"],
    defaults={"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
              "vocab_size": 0},
    help={"vocab_size": "embedding rows; 0 = the tokenizer's length"},
    extra=[("max_length", int, field(default=128, metadata={
                "help": "longest SMILES in tokens, [CLS]/[SEP] included (= max_position_embeddings); longer ones "
                        "are skipped"})),
           ("tokenizer", str, field(default="", metadata={
                "help": "tokenizer folder; empty = the bundled SMILES tokenizer"}))],
    doc="Architecture (a small BERT by default) and the masking of the objective.")


@dataclass
class SmilesDataArguments:
    """Which real SMILES to train and validate on."""

    train_corpus: str = field(default="moses_train", metadata={"help": f"one of {sorted(SMILES_SOURCES)}"})
    eval_corpus: str = field(default="moses_test", metadata={"help": "held-out SMILES for validation"})
    max_train_samples: int = field(default=100_000, metadata={"help": "first N training SMILES; 0 = all"})
    max_eval_samples: int = 2000
    data: str | None = field(default=None, metadata={
        "help": "your SMILES: a .smi file or a CSV/TSV/Parquet table with --smiles_column (instead of the corpora)"})
    smiles_column: str = field(default="smiles", metadata={"help": "SMILES column of a --data table"})
    eval_fraction: float = field(default=0.1, metadata={"help": "share of --data SMILES held out (seeded)"})
    check_validity: bool = field(default=False, metadata={
        "help": "parse every SMILES with RDKit first (MOSES is RDKit-clean already; slow on millions)"})


def pretraining_smiles(data_args: SmilesDataArguments, seed: int) -> tuple[list[str], list[str], tuple[str, str]]:
    """``(train, validation, (train_name, validation_name))`` SMILES: the corpora ``--train_corpus`` /
    ``--eval_corpus``, or the user's ``--data`` file split by a seeded ``--eval_fraction`` (unparsable SMILES
    skipped and reported on stdout by ``read_smiles``' report; ``--max_train_samples`` caps the training part).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "mols.smi")
        >>> _ = open(path, "w").write("\\n".join(["CCO", "C1CC", "c1ccccc1", "CCN", "CCCl"]) + "\\n")
        >>> train, held_out, names = pretraining_smiles(SmilesDataArguments(data=path, eval_fraction=0.25), seed=0)
        ... # doctest: +ELLIPSIS
        /.../mols.smi: 4 of 5 SMILES kept, 1 skipped (row 1: 'C1CC' (RDKit cannot parse it))
        >>> len(train), len(held_out), names
        (3, 1, ('mols.smi (train)', 'mols.smi (validation)'))
    """
    if data_args.data is None:
        return (load_smiles(data_args.train_corpus, limit=data_args.max_train_samples or None),
                load_smiles(data_args.eval_corpus, limit=data_args.max_eval_samples or None),
                (data_args.train_corpus, data_args.eval_corpus))
    check_float("eval_fraction", data_args.eval_fraction, minimum=0.0, maximum=1.0, minimum_exclusive=True,
                maximum_exclusive=True)
    molecules, report = read_smiles(data_args.data, data_args.smiles_column)
    print(report.summary())
    smiles = molecules["smiles"][:]
    train_rows, eval_rows = seeded_split(len(smiles), data_args.eval_fraction, seed)
    if train_rows.size < 1 or eval_rows.size < 1:
        raise ValueError(f"{data_args.data}: {len(smiles)} usable SMILES give {train_rows.size} training and "
                         f"{eval_rows.size} validation ones at `eval_fraction`={data_args.eval_fraction}; expected "
                         f"at least one of each.")
    if data_args.max_train_samples:
        train_rows = train_rows[: data_args.max_train_samples]
    eval_rows = eval_rows[: data_args.max_eval_samples or None]
    name = Path(data_args.data).name
    return [smiles[i] for i in train_rows], [smiles[i] for i in eval_rows], (f"{name} (train)", f"{name} (validation)")


def pretrain_smiles_bert(argv: Sequence[str] | None = None) -> int:
    """Run the job (see the module docstring); returns the exit code."""
    model_args, data_args, training_args = parse_args(
        [SmilesModelArguments, SmilesDataArguments], argv, {"output_dir": "runs/smiles-bert", "max_steps": 300},
        prog="hf-mae pretrain smiles-bert")
    if data_args.data is None and data_args.train_corpus == data_args.eval_corpus:
        raise ValueError(f"`eval_corpus` must differ from `train_corpus` ({data_args.train_corpus!r}): "
                         f"validation needs held-out SMILES.")

    # data -> processing: real SMILES -> token ids (unusable ones skipped and reported)
    if model_args.tokenizer:   # a folder or Hub id; a typo fails at once, a generic tokenizer is refused
        tokenizer = load_tokenizer(model_args.tokenizer)
        check_smiles_tokenizer(tokenizer, model_args.tokenizer)
    else:
        tokenizer = load_smiles_tokenizer()
    train_smiles, eval_smiles, (train_name, eval_name) = pretraining_smiles(data_args, training_args.seed)
    train_examples, _ = encode_smiles_for_mlm(train_smiles, tokenizer, model_args.max_length,
                                              check_validity=data_args.check_validity, name=train_name)
    eval_examples, _ = encode_smiles_for_mlm(eval_smiles, tokenizer, model_args.max_length,
                                             check_validity=data_args.check_validity, name=eval_name)

    # model
    architecture = {name: value for name, value in asdict(model_args).items()
                    if name not in ("max_length", "vocab_size", "tokenizer")}
    config = SMILESBERTMLMConfig(**architecture, vocab_size=model_args.vocab_size or len(tokenizer),
                                 max_position_embeddings=model_args.max_length,
                                 pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id)
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"`vocab_size`={config.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens).")
    model = SMILESBERTForMaskedLM(config)   # initialised from --seed (parse_args seeds every generator)

    collator = mlm_collator(tokenizer, config.mask_probability, config.replace_probability, config.random_probability)
    trainer = make_mlm_trainer(model, tokenizer, training_args, train_examples, collator, eval_examples=eval_examples,
                               callbacks=[PerRankMaskSeed()])
    metrics = train_and_save(trainer, training_args)    # saves model + tokenizer in output_dir
    if not trainer.is_world_process_zero():
        return 0

    # validation against the simplest baseline, on identical seeded masks
    baseline_id, baseline_share = most_frequent_token(train_examples)
    model = model.float().cpu()
    result = masked_lm_metrics(model, tokenizer, eval_examples, batch_size=training_args.per_device_eval_batch_size,
                               mask_probability=config.mask_probability,
                               replace_probability=config.replace_probability,
                               random_probability=config.random_probability, seed=training_args.seed,
                               baseline_token_id=baseline_id)
    baseline_token = tokenizer.convert_ids_to_tokens(baseline_id)
    # validation_results.json (and all_results.json): what `hf-mae push` puts in the model card
    trainer.save_metrics("validation", {f"validation_{key}": value for key, value in result.items()})
    print_held_out(f"validation masked-token accuracy ({len(eval_examples)} {eval_name} SMILES, "
                   f"{result['n_masked_tokens']} masked tokens, {trainer.state.global_step} steps; perplexity "
                   f"{result['perplexity']:.3f}):", ("smiles-bert", result["masked_token_accuracy"]),
                   (f"most frequent token {baseline_token!r} ({baseline_share:.1%} of training tokens)",
                    result["most_frequent_token_accuracy"]), metrics)

    # reload as a user would: one folder, Auto classes
    batch = AutoTokenizer.from_pretrained(training_args.output_dir)(eval_smiles[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = model.eval()(**batch).logits
    check_reload(training_args.output_dir, AutoModelForMaskedLM, lambda reloaded: reloaded(**batch).logits,
                 reference, "logit")
    return 0
