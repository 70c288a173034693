"""Masked-language-model training plumbing for SMILES, shared by ``ChemBERTaMLM.fine_tune`` and
``hf-mae pretrain smiles-bert``; works with any BERT- or RoBERTa-style masked LM and its tokenizer.

    SMILES strings -> checked (find_smiles_problems) -> token ids (+ special-token mask)
      -> DataCollatorForLanguageModeling: pad, select mask_probability of the atoms, replace
         replace_probability of them by the mask token and random_probability by a random token
      -> model logits -> masked_lm_loss (sum / num_items_in_batch: right under gradient accumulation and DDP)

``masked_lm_metrics`` evaluates on a fixed, seeded masking, so two evaluations of one model agree and two
models are compared on the same masked positions.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from ..models.modeling_smiles_bert import masked_lm_loss
from ..models.validation import check_choice, check_float, check_int
from ..processing.smiles import describe_problems, find_smiles_problems

logger = logging.getLogger(__name__)

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
                          check_validity: bool = True, name: str = "smiles") -> tuple[list[dict], list]:
    """Token ids of every usable SMILES, and the problems of the others.

    With ``on_invalid="skip"`` unusable SMILES (see ``find_smiles_problems``; too long ones included: a
    truncated SMILES is a different molecule) are left out and logged as a warning; with ``"raise"`` the
    first ones are named in a ``ValueError``. Returns ``(examples, problems)``: each example holds
    ``input_ids`` and ``special_tokens_mask``.
    """
    check_choice("on_invalid", on_invalid, ON_INVALID)
    if isinstance(smiles, str) or not isinstance(smiles, Sequence):
        raise ValueError(f"`{name}` must be a list of SMILES strings, got {type(smiles).__name__}.")
    problems = find_smiles_problems(smiles, tokenizer, max_length, check_validity=check_validity)
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
