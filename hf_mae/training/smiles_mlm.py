"""The SMILES masked-language-model API: fine-tune one (``ChemBERTaMLM``), use one to fill masks and to
embed molecules (``SmilesMLMFeaturizer``), and the training plumbing ``hf-mae pretrain smiles-bert`` shares
with ``ChemBERTaMLM.fine_tune``. One module owns it so the masking, the loss and the metrics are written once;
it runs about 600 lines because fine-tuning, filling masks and featurizing are three faces of one API.

Both classes take any BERT- or RoBERTa-style masked-LM checkpoint together with its own tokenizer: a local
folder, a Hub id, or a short name of ``CHEMBERTA_MODELS`` (the public ChemBERTa checkpoints). Without a
checkpoint ``ChemBERTaMLM`` builds a fresh ``SMILESBERTForMaskedLM`` with the bundled atom-level SMILES tokenizer.

Training, one SMILES from text to loss:

    SMILES strings -> checked (find_smiles_problems) -> token ids (+ special-token mask)
      -> DataCollatorForLanguageModeling: pad, select mask_probability of the atoms, replace
         replace_probability of them by the mask token and random_probability by a random token
      -> model logits -> masked_lm_loss (sum / num_items_in_batch: right under gradient accumulation and DDP)

``masked_lm_metrics`` evaluates on a fixed, seeded masking, so two evaluations of one model agree and two
models are compared on the same masked positions.

Example:
    >>> from hf_mae import ChemBERTaMLM, SMILESBERTMLMConfig, SmilesMLMFeaturizer
    >>> config = SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...                              intermediate_size=64, max_position_embeddings=64)
    >>> mlm = ChemBERTaMLM(config=config, max_length=64)
    >>> report = mlm.fine_tune(["CCO", "c1ccccc1", "CC(=O)O", "CCN", "CCCl", "OCCO"], epochs=1, batch_size=2,
    ...                        verbose=False)
    >>> sorted(report)[:3]
    ['eval_loss', 'masked_token_accuracy', 'n_masked_tokens']
    >>> featurizer = SmilesMLMFeaturizer.from_model(mlm.model, mlm.tokenizer)
    >>> featurizer.featurize(["CCO", "c1ccccc1"]).shape
    (2, 32)
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, PreTrainedModel,
                          PreTrainedTokenizerBase, PrinterCallback, Trainer, TrainingArguments)

from ..models.configuration_smiles_bert import SMILESBERTMLMConfig
from ..models.modeling_smiles_bert import SMILESBERTForMaskedLM, masked_lm_loss, smiles_embedding
from ..models.serialization import check_pretrained_source, load_safetensors_only
from ..models.validation import check_choice, check_float, check_int
from ..processing.pretrained import load_config, load_tokenizer
from ..processing.smiles import (
    check_smiles_tokenizer, describe_problems, find_smiles_problems, load_smiles_tokenizer, rdkit_available,
    rdkit_parses,
)

logger = logging.getLogger(__name__)

__all__ = ["CHEMBERTA_MODELS", "ChemBERTaMLM", "SmilesMLMFeaturizer", "MaskedTokenPrediction", "TokenCandidate",
           "load_masked_lm", "check_mask_probabilities", "encode_smiles_for_mlm", "mlm_collator", "mlm_loss_func",
           "make_mlm_trainer", "most_frequent_token", "masked_lm_metrics"]

ON_INVALID = ("skip", "raise")


def check_mask_probabilities(mask_probability: float, replace_probability: float, random_probability: float) -> None:
    """The three masking probabilities of BERT pretraining, validated together."""
    check_float("mask_probability", mask_probability, minimum=0.0, maximum=1.0, minimum_exclusive=True)
    check_float("replace_probability", replace_probability, minimum=0.0, maximum=1.0)
    check_float("random_probability", random_probability, minimum=0.0, maximum=1.0)
    if replace_probability + random_probability > 1.0 + 1e-9:
        raise ValueError(f"`replace_probability` + `random_probability` must be <= 1, got "
                         f"{replace_probability} + {random_probability}.")


def encode_smiles_for_mlm(smiles: Sequence[str], tokenizer, max_length: int, *, on_invalid: str = "skip",
                          check_validity: bool = True, reactions: bool = False,
                          name: str = "smiles") -> tuple[list[dict], list]:
    """Token ids of every usable SMILES, and the problems of the others.

    With ``on_invalid="skip"`` unusable SMILES (see ``find_smiles_problems``; too long ones included: a
    truncated SMILES is a different molecule) are left out and logged as a warning; with ``"raise"`` the
    first ones are named in a ``ValueError``. Returns ``(examples, problems)``: each example holds
    ``input_ids`` and ``special_tokens_mask``. ``reactions=True`` accepts reaction SMILES (``A.B>>C``), each side
    validated.
    """
    check_choice("on_invalid", on_invalid, ON_INVALID)
    if isinstance(smiles, str) or not isinstance(smiles, Sequence):
        raise ValueError(f"`{name}` must be a list of SMILES strings, got {type(smiles).__name__}.")
    problems = find_smiles_problems(smiles, tokenizer, max_length, check_validity=check_validity, reactions=reactions)
    if problems and on_invalid == "raise":
        raise ValueError(f"{len(problems)} of {len(smiles)} `{name}` cannot be used: {describe_problems(problems)}")
    if problems:
        logger.warning("skipping %d of %d `%s`: %s", len(problems), len(smiles), name, describe_problems(problems))
    bad = {p.index for p in problems}
    kept = [s for i, s in enumerate(smiles) if i not in bad]
    if not kept:
        raise ValueError(f"no usable SMILES left in `{name}` ({len(smiles)} given): {describe_problems(problems)}")
    encoded = tokenizer(kept, return_special_tokens_mask=True, return_attention_mask=False)
    examples = [{"input_ids": ids, "special_tokens_mask": special}
                for ids, special in zip(encoded["input_ids"], encoded["special_tokens_mask"])]
    return examples, problems


def mlm_collator(tokenizer, mask_probability: float = 0.15, replace_probability: float = 0.8,
                 random_probability: float = 0.1, seed: int | None = None) -> DataCollatorForLanguageModeling:
    """BERT's masking (mask / random / keep) with the given probabilities; ``seed`` fixes the masks."""
    check_mask_probabilities(mask_probability, replace_probability, random_probability)
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer {type(tokenizer).__name__} has no mask token: it cannot serve a masked LM.")
    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=mask_probability,
                                           mask_replace_prob=replace_probability,
                                           random_replace_prob=random_probability, seed=seed)


def mlm_loss_func(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Trainer's ``compute_loss_func``: the masked-LM loss of any model's logits, normalised by the number of
    masked tokens of the whole optimizer step (stock BERT/RoBERTa losses are per micro-batch means)."""
    return masked_lm_loss(outputs["logits"], labels, num_items_in_batch)


def make_mlm_trainer(model, tokenizer, args: TrainingArguments, train_examples, collator, eval_examples=None,
                     callbacks=None) -> Trainer:
    """A ``Trainer`` whose masked-LM loss is right under gradient accumulation and several processes."""
    return Trainer(model=model, args=args, train_dataset=train_examples, eval_dataset=eval_examples,
                   data_collator=collator, processing_class=tokenizer, compute_loss_func=mlm_loss_func,
                   callbacks=callbacks)


def most_frequent_token(examples: Sequence[dict]) -> tuple[int, float]:
    """Id of the commonest non-special token in ``examples`` and its share of those tokens."""
    counts = Counter(i for ex in examples for i, special in zip(ex["input_ids"], ex["special_tokens_mask"])
                     if not special)
    token_id, count = counts.most_common(1)[0]
    return token_id, count / sum(counts.values())


@torch.no_grad()
def masked_lm_metrics(model, tokenizer, examples: Sequence[dict], *, batch_size: int = 64,
                      mask_probability: float = 0.15, replace_probability: float = 0.8,
                      random_probability: float = 0.1, seed: int = 0,
                      baseline_token_id: int | None = None) -> dict[str, float]:
    """Loss, perplexity and masked-token accuracy on a fixed, seeded masking of ``examples``.

    Positions are drawn as in training, at least one per molecule. Accuracy is the share of selected positions
    (all of them: ``[MASK]``, random and kept) whose argmax prediction is the original token. With ``baseline_token_id`` also the accuracy of always predicting that
    token on the same positions (``most_frequent_token`` of the training set gives the usual baseline).
    """
    check_int("batch_size", batch_size)
    collator = mlm_collator(tokenizer, mask_probability, replace_probability, random_probability)
    collator.generator = torch.Generator().manual_seed(seed)   # BERT's draw, the same for every evaluation
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, n_masked, n_correct, n_baseline = 0.0, 0, 0, 0
    generator = torch.Generator().manual_seed(seed + 1)   # a position for rows where BERT's draw picked none
    for start in range(0, len(examples), batch_size):
        padded = tokenizer.pad([dict(ex) for ex in examples[start:start + batch_size]], return_tensors="pt")
        special = padded.pop("special_tokens_mask").bool()
        original = padded["input_ids"]
        input_ids, labels = collator.torch_mask_tokens(original.clone(), special_tokens_mask=special)
        # every molecule is evaluated on at least one token, so small validation sets never come out empty
        for row in (labels != -100).sum(1).eq(0).nonzero().flatten().tolist():
            choices = (~special[row]).nonzero().flatten()
            position = choices[torch.randint(len(choices), (1,), generator=generator)]
            labels[row, position], input_ids[row, position] = original[row, position], tokenizer.mask_token_id
        batch = {"input_ids": input_ids, "attention_mask": padded["attention_mask"]}
        labels = labels.to(device)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        selected = labels != -100
        total_loss += float(torch.nn.functional.cross_entropy(logits[selected].float(), labels[selected], reduction="sum"))
        n_masked += int(selected.sum())
        n_correct += int((logits[selected].argmax(-1) == labels[selected]).sum())
        if baseline_token_id is not None:
            n_baseline += int((labels[selected] == baseline_token_id).sum())
    model.train(was_training)
    if n_masked == 0:
        raise ValueError(f"no token was masked in {len(examples)} examples; use more or longer SMILES.")
    loss = total_loss / n_masked
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "masked_token_accuracy": n_correct / n_masked,
               "n_masked_tokens": n_masked}
    if baseline_token_id is not None:
        metrics["most_frequent_token_accuracy"] = n_baseline / n_masked
    return metrics


# Short names of public checkpoints (RoBERTa masked LMs with their own SMILES tokenizers).
CHEMBERTA_MODELS: dict[str, str] = {
    "chemberta-base": "seyonec/ChemBERTa-zinc-base-v1",
    "chemberta-mlm": "DeepChem/ChemBERTa-77M-MLM",
}


def load_masked_lm(name_or_path: str | os.PathLike, *, tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None,
                   use_safetensors: bool | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Masked-LM model and its SMILES tokenizer from a short name (``CHEMBERTA_MODELS``), a folder or a Hub id.

    Any BERT- or RoBERTa-style masked LM: a ``config.json`` without ``model_type`` gets it inferred (with a warning)
    or an error naming the key; a tokenizer folder holding only a ``vocab.txt`` is read case-sensitively
    (``processing.pretrained``). The tokenizer (default: the model's own; else ``tokenizer=`` a folder, Hub id or
    object) must read SMILES (``check_smiles_tokenizer``: not a generic WordPiece that maps most of a SMILES to
    ``[UNK]``) and have a mask token. Pickled weights need ``use_safetensors=False``; a missing local folder fails
    at once.

    Example:
        >>> import tempfile
        >>> from hf_mae import SMILESBERTForMaskedLM, SMILESBERTMLMConfig
        >>> folder = tempfile.mkdtemp()
        >>> SMILESBERTForMaskedLM(SMILESBERTMLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        ...                       intermediate_size=32)).save_pretrained(folder)
        >>> model, tokenizer = load_masked_lm(folder, tokenizer=load_smiles_tokenizer())
        >>> type(model).__name__, tokenizer.mask_token
        ('SMILESBERTForMaskedLM', '[MASK]')
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
    _check_tokenizer(tokenizer, label)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(f"the tokenizer {label!r} has {len(tokenizer)} tokens, more than the {rows} embedding rows of "
                         f"{name!r}: they do not belong together. Pass the model's own tokenizer with `tokenizer=`.")
    return model, tokenizer


def _check_tokenizer(tokenizer, label: str) -> None:
    """A masked LM's tokenizer for SMILES: it has a mask token and reads SMILES (``check_smiles_tokenizer``)."""
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer {label!r} has no mask token: it cannot serve a masked language model. "
                         f"Pass the masked LM's own tokenizer with `tokenizer=`.")
    check_smiles_tokenizer(tokenizer, label)


def usable_positions(model: PreTrainedModel) -> int:
    """Longest input the model's position table holds (RoBERTa starts positions after its padding index)."""
    embeddings = getattr(model.base_model, "embeddings", None)
    offset = getattr(embeddings, "padding_idx", -1) + 1 if embeddings is not None else 0
    return int(model.config.max_position_embeddings) - offset


def _as_smiles_list(smiles, name: str) -> list:
    """One SMILES string or a sequence of them -> list (a bare string is one molecule, not its characters)."""
    if isinstance(smiles, str):
        return [smiles]
    if isinstance(smiles, np.ndarray):
        return smiles.tolist()
    if not isinstance(smiles, Sequence):
        raise ValueError(f"`{name}` must be a SMILES string or a list of them, got {type(smiles).__name__}.")
    return list(smiles)


class ChemBERTaMLM:
    """A masked language model on SMILES that fine-tunes with ``Trainer``.

    Either ``pretrained_model`` (short name, folder or Hub id of any BERT- or RoBERTa-style masked LM, see
    ``load_masked_lm``) or ``config`` (a fresh ``SMILESBERTForMaskedLM`` with the bundled SMILES tokenizer); with
    neither, a fresh model of ``SMILESBERTMLMConfig(vocab_size=..., max_position_embeddings=max_length)``.

    Args:
        tokenizer: a folder, Hub id or tokenizer object, for a checkpoint without its own tokenizer or for a fresh
            model; it must read SMILES (``check_smiles_tokenizer``).
        reactions: accept reaction SMILES (``A.B>>C``) in ``fine_tune``, each side validated.
        use_safetensors: ``False`` allows pickled weights of a checkpoint you trust.
        vocab_size: with a checkpoint, the embedding table is resized to it (never below the tokenizer's length);
            for a fresh model, the config's vocabulary size.
        max_length: longest SMILES in tokens (specials included) used for training; longer ones are skipped.
        mask_probability, replace_probability, random_probability: BERT masking (default: the config's, else
            0.15 / 0.8 / 0.1).
        learning_rate: AdamW learning rate of ``fine_tune``. seed: model initialisation, splits and training.

    Example:
        >>> from hf_mae import ChemBERTaMLM, SMILESBERTMLMConfig
        >>> mlm = ChemBERTaMLM(config=SMILESBERTMLMConfig(hidden_size=32, num_hidden_layers=1,
        ...                    num_attention_heads=2, intermediate_size=64))
        >>> type(mlm.model).__name__, mlm.tokenizer.mask_token
        ('SMILESBERTForMaskedLM', '[MASK]')
    """

    def __init__(self, pretrained_model: str | None = None, vocab_size: int | None = None, max_length: int = 512, *,
                 config: SMILESBERTMLMConfig | None = None, tokenizer=None,
                 mask_probability: float | None = None, replace_probability: float | None = None,
                 random_probability: float | None = None, learning_rate: float = 1e-4, seed: int = 42,
                 reactions: bool = False, use_safetensors: bool | None = None):
        if pretrained_model is not None and config is not None:
            raise ValueError("give either `pretrained_model` or `config`, not both.")
        check_int("max_length", max_length, minimum=3)
        check_float("learning_rate", learning_rate, minimum=0.0, minimum_exclusive=True)
        check_int("seed", seed, minimum=0)
        if vocab_size is not None:
            check_int("vocab_size", vocab_size)
        self.seed, self.learning_rate, self.max_length, self.reactions = seed, learning_rate, max_length, reactions

        if pretrained_model is not None:
            self.model, self.tokenizer = load_masked_lm(pretrained_model, tokenizer=tokenizer,
                                                        use_safetensors=use_safetensors)
            if vocab_size is not None and vocab_size != self.model.config.vocab_size:
                if vocab_size < len(self.tokenizer):
                    raise ValueError(f"`vocab_size`={vocab_size} is smaller than the tokenizer of {pretrained_model!r} "
                                     f"({len(self.tokenizer)} tokens).")
                logger.warning("resizing the token embeddings of %r from %d to vocab_size=%d (new rows are random)",
                               pretrained_model, self.model.config.vocab_size, vocab_size)
                self.model.resize_token_embeddings(vocab_size)
        else:
            if config is None:
                config = SMILESBERTMLMConfig(max_position_embeddings=max_length,
                                             **({"vocab_size": vocab_size} if vocab_size is not None else {}))
            elif not isinstance(config, SMILESBERTMLMConfig):
                raise ValueError(f"`config` must be a SMILESBERTMLMConfig, got {type(config).__name__}.")
            elif vocab_size is not None and vocab_size != config.vocab_size:
                raise ValueError(f"`vocab_size`={vocab_size} contradicts `config.vocab_size`={config.vocab_size}.")
            self.tokenizer = load_smiles_tokenizer() if tokenizer is None else load_tokenizer(tokenizer)
            _check_tokenizer(self.tokenizer, str(tokenizer) if not isinstance(tokenizer, PreTrainedTokenizerBase)
                             else type(tokenizer).__name__)
            _check_config_matches_tokenizer(config, self.tokenizer)
            with torch.random.fork_rng(devices=[]):  # reproducible init without touching the caller's RNG
                torch.manual_seed(seed)
                self.model = SMILESBERTForMaskedLM(config)

        if max_length > usable_positions(self.model):
            raise ValueError(f"`max_length`={max_length} exceeds the {usable_positions(self.model)} positions of the model.")
        defaults = {"mask_probability": 0.15, "replace_probability": 0.8, "random_probability": 0.1}
        given = {"mask_probability": mask_probability, "replace_probability": replace_probability,
                 "random_probability": random_probability}
        for name, value in given.items():
            setattr(self, name, value if value is not None else getattr(self.model.config, name, defaults[name]))
        check_mask_probabilities(self.mask_probability, self.replace_probability, self.random_probability)

    def fine_tune(self, smiles: Sequence[str], epochs: int = 1, batch_size: int = 32, *,
                  validation_smiles: Sequence[str] | None = None, validation_fraction: float = 0.1,
                  gradient_accumulation_steps: int = 1, output_dir: str | None = None, on_invalid: str = "skip",
                  check_validity: bool = True, verbose: bool = True, **training_kwargs) -> dict[str, float]:
        """Train the masked LM on ``smiles`` with ``Trainer`` and report validation perplexity and accuracy.

        Unusable SMILES (empty, invalid for RDKit, unknown tokens, longer than ``max_length``) are skipped and
        counted (``on_invalid="raise"`` stops instead). Without ``validation_smiles``, ``validation_fraction``
        of the molecules (at least one) is held out, chosen with ``seed``. Extra keyword arguments go to
        ``TrainingArguments``. Returns ``train_loss``, ``eval_loss``, ``perplexity``,
        ``masked_token_accuracy``, ``n_masked_tokens``, ``n_train``, ``n_validation``, ``n_skipped``.
        """
        check_int("epochs", epochs)
        check_int("batch_size", batch_size)
        check_int("gradient_accumulation_steps", gradient_accumulation_steps)
        examples, problems = encode_smiles_for_mlm(_as_smiles_list(smiles, "smiles"), self.tokenizer, self.max_length,
                                                   on_invalid=on_invalid, check_validity=check_validity,
                                                   reactions=self.reactions)
        if validation_smiles is not None:
            eval_examples, eval_problems = encode_smiles_for_mlm(
                _as_smiles_list(validation_smiles, "validation_smiles"), self.tokenizer, self.max_length,
                on_invalid=on_invalid, check_validity=check_validity, reactions=self.reactions,
                name="validation_smiles")
            problems = problems + eval_problems
            train_examples = examples
        else:
            check_float("validation_fraction", validation_fraction, minimum=0.0, maximum=1.0,
                        minimum_exclusive=True, maximum_exclusive=True)
            if len(examples) < 2:
                raise ValueError(f"fine_tune needs at least 2 usable SMILES to hold one out for validation, "
                                 f"got {len(examples)}; or pass `validation_smiles`.")
            order = list(range(len(examples)))
            random.Random(self.seed).shuffle(order)
            n_eval = min(len(examples) - 1, max(1, round(validation_fraction * len(examples))))
            eval_examples = [examples[i] for i in order[:n_eval]]
            train_examples = [examples[i] for i in order[n_eval:]]

        run_dir = output_dir or tempfile.mkdtemp(prefix="hf_mae_smiles_mlm_")
        args = TrainingArguments(**{
            "output_dir": run_dir, "num_train_epochs": epochs, "per_device_train_batch_size": batch_size,
            "per_device_eval_batch_size": batch_size, "gradient_accumulation_steps": gradient_accumulation_steps,
            "learning_rate": self.learning_rate, "seed": self.seed, "save_strategy": "no", "eval_strategy": "no",
            "report_to": "none", "logging_steps": 10, "disable_tqdm": not verbose,
            "dataloader_pin_memory": torch.cuda.is_available(), **training_kwargs})
        collator = mlm_collator(self.tokenizer, self.mask_probability, self.replace_probability, self.random_probability)
        trainer = make_mlm_trainer(self.model, self.tokenizer, args, train_examples, collator)
        if not verbose:   # without a progress bar Trainer prints its logs instead
            trainer.remove_callback(PrinterCallback)
        train_output = trainer.train()
        if output_dir is not None:
            trainer.save_model()

        metrics = masked_lm_metrics(self.model, self.tokenizer, eval_examples, batch_size=batch_size,
                                    mask_probability=self.mask_probability,
                                    replace_probability=self.replace_probability,
                                    random_probability=self.random_probability, seed=self.seed)
        report = {"train_loss": float(train_output.training_loss), "eval_loss": metrics["loss"],
                  "perplexity": metrics["perplexity"], "masked_token_accuracy": metrics["masked_token_accuracy"],
                  "n_masked_tokens": metrics["n_masked_tokens"], "n_train": len(train_examples),
                  "n_validation": len(eval_examples), "n_skipped": len(problems)}
        if verbose:
            print(f"validation ({len(eval_examples)} SMILES, {metrics['n_masked_tokens']} masked tokens): "
                  f"perplexity {report['perplexity']:.3f}, masked-token accuracy {report['masked_token_accuracy']:.3f}"
                  + (f"; skipped {len(problems)} unusable SMILES" if problems else ""))
        return report

    def save_pretrained(self, path: str) -> None:
        """Save model and tokenizer together (``AutoModelForMaskedLM``/``AutoTokenizer`` load the folder)."""
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def _check_config_matches_tokenizer(config: SMILESBERTMLMConfig, tokenizer) -> None:
    """A fresh model and its tokenizer must agree on the vocabulary and the special ids."""
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"`config.vocab_size`={config.vocab_size} is smaller than the tokenizer ({len(tokenizer)} "
                         f"tokens): token ids would fall outside the embedding table.")
    for name in ("pad_token_id", "mask_token_id"):
        if getattr(tokenizer, name) != getattr(config, name):
            raise ValueError(f"`config.{name}`={getattr(config, name)} but the tokenizer has "
                             f"{getattr(tokenizer, name)}; set the config to the tokenizer's ids.")


@dataclass
class TokenCandidate:
    """One proposal for a masked position: the token, its probability, the SMILES with it filled in."""

    token: str
    token_id: int
    probability: float
    smiles: str
    valid: bool | None = None   # RDKit parses ``smiles`` (None: RDKit not installed)


@dataclass
class MaskedTokenPrediction:
    """The top-k candidates for one masked position (``position`` counts tokens, ``[CLS]`` = 0)."""

    position: int
    original_token: str | None       # the token that was masked (None: the input held a mask token there)
    masked_smiles: str                # the input with every masked position shown as the mask token
    candidates: list[TokenCandidate] = field(default_factory=list)


class SmilesMLMFeaturizer:
    """Fill masked tokens of SMILES and embed molecules with a masked language model.

    Args:
        model_name: short name (``CHEMBERTA_MODELS``), local folder or Hub id of a BERT- or RoBERTa-style masked LM
            (see ``load_masked_lm``).
        tokenizer: a folder, Hub id or tokenizer object when the model's own is missing or wrong; it must read
            SMILES (``check_smiles_tokenizer``).
        reactions: accept reaction SMILES (``A.B>>C``), each side validated by RDKit.
        use_safetensors: ``False`` allows pickled weights of a checkpoint you trust.
        mask_probability: share of tokens ``predict_masked`` hides when the SMILES holds no mask token
            (at least one).
        top_k: candidates per masked position. max_length: longest SMILES in tokens (default: the model's).
        batch_size: molecules per forward pass in ``featurize``. pooling: ``"mean"`` over the atom tokens or
            ``"cls"`` (the first token). seed: which tokens ``predict_masked`` hides.
        check_validity: ask RDKit (when installed) whether inputs and filled-in SMILES parse.

    Example:
        >>> from hf_mae import SmilesMLMFeaturizer
        >>> featurizer = SmilesMLMFeaturizer("path/to/masked-lm", mask_probability=0.15)   # doctest: +SKIP
        >>> featurizer.predict_masked("CC(=O)Oc1ccccc1C(=O)O")[0].candidates[0]            # doctest: +SKIP
        TokenCandidate(token='O', token_id=6, probability=0.93, smiles='CC(=O)Oc1ccccc1C(=O)O', valid=True)
        >>> featurizer.featurize(["CCO", "c1ccccc1"]).shape                                   # doctest: +SKIP
        (2, 384)
    """

    def __init__(self, model_name: str | os.PathLike = "chemberta-mlm", mask_probability: float = 0.15, *,
                 tokenizer: str | os.PathLike | PreTrainedTokenizerBase | None = None, top_k: int = 5,
                 max_length: int | None = None, batch_size: int = 32, pooling: str = "mean", seed: int = 0,
                 check_validity: bool = True, reactions: bool = False, device: str | torch.device | None = None,
                 use_safetensors: bool | None = None):
        model, tokenizer = load_masked_lm(model_name, tokenizer=tokenizer, use_safetensors=use_safetensors)
        self._setup(model, tokenizer, mask_probability, top_k=top_k, max_length=max_length, batch_size=batch_size,
                    pooling=pooling, seed=seed, check_validity=check_validity, reactions=reactions, device=device)

    @classmethod
    def from_model(cls, model: PreTrainedModel, tokenizer, mask_probability: float = 0.15, **kwargs):
        """A featurizer around a model and tokenizer already in memory (e.g. ``ChemBERTaMLM.model``)."""
        featurizer = cls.__new__(cls)
        options = {"top_k": 5, "max_length": None, "batch_size": 32, "pooling": "mean", "seed": 0,
                   "check_validity": True, "reactions": False, "device": None}
        unknown = set(kwargs) - set(options)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; expected some of {sorted(options)}.")
        options.update(kwargs)
        _check_tokenizer(tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
        featurizer._setup(model, tokenizer, mask_probability, **options)
        return featurizer

    def _setup(self, model, tokenizer, mask_probability, *, top_k, max_length, batch_size, pooling, seed,
               check_validity, reactions, device):
        check_float("mask_probability", mask_probability, minimum=0.0, maximum=1.0)
        check_int("top_k", top_k)
        check_int("batch_size", batch_size)
        check_choice("pooling", pooling, ("mean", "cls"))
        check_int("seed", seed, minimum=0)
        if tokenizer.mask_token is None:
            raise ValueError(f"the tokenizer {type(tokenizer).__name__} has no mask token.")
        limit = min(usable_positions(model), tokenizer.model_max_length)
        if max_length is None:
            max_length = limit
        check_int("max_length", max_length, minimum=3, maximum=limit)
        self.model, self.tokenizer = model.eval(), tokenizer
        if device is not None:
            self.model.to(device)
        self.mask_probability, self.top_k, self.max_length = mask_probability, top_k, max_length
        self.batch_size, self.pooling, self.seed, self.check_validity = batch_size, pooling, seed, check_validity
        self.reactions = reactions
        # Candidates are real tokens only: no special token, no embedding row beyond the tokenizer.
        vocab_size = model.get_output_embeddings().weight.shape[0]
        banned = torch.ones(vocab_size, dtype=torch.bool)
        banned[: len(tokenizer)] = False
        banned[[i for i in tokenizer.all_special_ids if i < vocab_size]] = True
        self._banned = banned

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _check(self, smiles: list, allow_mask: bool, truncation: bool) -> None:
        problems = find_smiles_problems(smiles, self.tokenizer, self.max_length, check_validity=self.check_validity,
                                        allow_mask=allow_mask, reactions=self.reactions)
        fatal = [p for p in problems if not (truncation and p.too_long)]
        if fatal:
            raise ValueError(f"{len(fatal)} of {len(smiles)} SMILES cannot be used: {describe_problems(fatal)}")
        if problems:
            warnings.warn(f"truncated {len(problems)} SMILES to max_length={self.max_length} tokens: "
                          f"{describe_problems(problems)}", stacklevel=3)

    def predict_masked(self, smiles: str, top_k: int | None = None) -> list[MaskedTokenPrediction]:
        """Top-k tokens with probabilities, and the filled-in SMILES, for each masked position of one SMILES.

        Masked positions are the mask tokens written in ``smiles`` (e.g. ``"CC(=O)[MASK]"`` for the bundled
        tokenizer, ``"<mask>"`` for RoBERTa ones); if there are none, ``round(mask_probability * n_tokens)``
        tokens (at least one) are hidden, chosen with ``seed``. Each candidate's SMILES has that position filled
        with the candidate and every other hidden position with its original token (or, for written mask tokens,
        with its top-1 prediction).
        """
        if not isinstance(smiles, str):
            raise ValueError(f"`smiles` must be one SMILES string, got {type(smiles).__name__}.")
        top_k = self.top_k if top_k is None else top_k
        check_int("top_k", top_k)
        self._check([smiles], allow_mask=True, truncation=False)
        encoding = self.tokenizer(smiles, return_special_tokens_mask=True, return_tensors="pt")
        input_ids = encoding["input_ids"][0]
        special = encoding["special_tokens_mask"][0].bool()
        mask_id = self.tokenizer.mask_token_id
        written = (input_ids == mask_id).nonzero().flatten()
        original = input_ids.clone()
        if len(written):
            positions, known = written, False
        else:
            candidates = (~special).nonzero().flatten()
            n_mask = round(self.mask_probability * len(candidates))
            if self.mask_probability == 0 or len(candidates) == 0:
                raise ValueError(f"no position to predict in {smiles!r}: it holds no mask token "
                                 f"({self.tokenizer.mask_token!r}) and mask_probability is {self.mask_probability}.")
            generator = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(candidates), generator=generator)
            positions, known = candidates[order[: max(1, n_mask)]].sort().values, True
            input_ids = input_ids.clone()
            input_ids[positions] = mask_id

        with torch.no_grad():
            logits = self.model(input_ids=input_ids[None].to(self.device),
                                attention_mask=encoding["attention_mask"].to(self.device)).logits[0].float().cpu()
        logits[:, self._banned[: logits.shape[-1]]] = -math.inf
        probabilities = logits[positions].softmax(-1)              # (n_masked, V)
        top_p, top_ids = probabilities.topk(min(top_k, int((~self._banned).sum())), dim=-1)
        filled = original.clone() if known else input_ids.clone()
        if not known:
            filled[positions] = top_ids[:, 0]
        keep = ~special | (input_ids == mask_id)
        masked_smiles = self.tokenizer.decode(input_ids[keep], skip_special_tokens=False)

        predictions = []
        for row, position in enumerate(positions.tolist()):
            prediction = MaskedTokenPrediction(
                position=position, masked_smiles=masked_smiles,
                original_token=self.tokenizer.convert_ids_to_tokens(int(original[position])) if known else None)
            for p, token_id in zip(top_p[row].tolist(), top_ids[row].tolist()):
                ids = filled.clone()
                ids[position] = token_id
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                valid = rdkit_parses(text) if self.check_validity and rdkit_available() else None
                prediction.candidates.append(TokenCandidate(
                    token=self.tokenizer.convert_ids_to_tokens(token_id), token_id=token_id, probability=p,
                    smiles=text, valid=valid))
            predictions.append(prediction)
        return predictions

    def featurize(self, smiles_list: Sequence[str] | str, *, truncation: bool = False) -> np.ndarray:
        """One embedding per molecule, (n_molecules, hidden_size) float32, computed in batches with no masking.

        Unusable SMILES raise a ``ValueError`` naming them; SMILES longer than ``max_length`` tokens raise too,
        unless ``truncation=True`` (then they are cut, with a warning naming them).
        """
        smiles = _as_smiles_list(smiles_list, "smiles_list")
        if not smiles:
            raise ValueError("`smiles_list` is empty.")
        self._check(smiles, allow_mask=False, truncation=truncation)
        encoder = self.model.base_model
        rows = []
        for start in range(0, len(smiles), self.batch_size):
            limit = {"truncation": True, "max_length": self.max_length} if truncation else {}
            batch = self.tokenizer(smiles[start:start + self.batch_size], padding=True, **limit,
                                   return_special_tokens_mask=True, return_tensors="pt")
            special = batch.pop("special_tokens_mask").bool()
            batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            with torch.no_grad():
                hidden = encoder(**batch).last_hidden_state.float()             # (B, L, H)
            rows.append((hidden[:, 0] if self.pooling == "cls" else smiles_embedding(hidden, ~special)).cpu())
        return torch.cat(rows).numpy().astype(np.float32)

    __call__ = featurize
