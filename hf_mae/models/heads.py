"""The sequence-classification/regression head that every ``...ForSequenceClassification`` model shares.

One implementation of what a task head does on top of an encoder's token states:

1. **pooling** (``pool``): ``"cls"`` takes the first token; ``"mean"`` averages the positions an
   ``attention_mask`` marks valid (1 = valid, 0 = padding), so padding never changes the result;
2. **head**: dropout (``classifier_dropout``), then one linear layer -> ``num_labels`` logits;
3. **loss** (``sequence_classification_loss``): transformers' ``problem_type`` semantics, exactly those of
   ``BertForSequenceClassification`` (it calls transformers' own ``ForSequenceClassificationLoss``):
   when ``config.problem_type`` is None it is inferred on the first labelled call and written to the config:
   ``num_labels == 1`` -> ``"regression"`` (MSE); ``num_labels > 1`` and integer labels ->
   ``"single_label_classification"`` (cross-entropy); ``num_labels > 1`` and float labels ->
   ``"multi_label_classification"`` (BCE with logits). Multi-target regression (float labels
   ``(B, num_labels)``) therefore needs ``problem_type="regression"`` set explicitly, as in transformers.
   Every loss is the **mean over the batch** (over batch x targets for MSE/BCE).

**Gradient accumulation and several processes.** The loss is a per-batch mean and the models' ``forward``
takes no ``**kwargs`` (nor ``num_items_in_batch``), so ``Trainer`` sees ``model_accepts_loss_kwargs=False``
and divides each micro-batch loss by ``gradient_accumulation_steps``: with equal micro-batches, GA=2 at
batch B/2 gives exactly the loss and gradients of one batch B (tested), and DDP's gradient average over P
processes at batch B gives those of one process at batch P*B. Only a smaller last micro-batch of an epoch
is weighted up, which is what every transformers sequence-classification head does too. Models built on
this module should set ``accepts_loss_kwargs = False`` so that an added ``**kwargs`` never changes that.

**Config fields** the heads read (``head_options``; defaults in ``HEAD_CONFIG_DEFAULTS``):
``classifier_pooling`` ("cls" | "mean"), ``classifier_dropout`` (float in [0, 1)), ``freeze_encoder``
(bool: linear probe) and ``layerwise_lr_decay`` (float in (0, 1]; 1 = none).

**Linear probe**: ``freeze_encoder(model)`` stops gradients to everything but the head and keeps the frozen
modules in eval mode (no dropout), even when ``Trainer`` calls ``model.train()``.

**Layer-wise learning-rate decay**: ``layerwise_lr_optimizer(model, lr, decay)`` returns
``(torch.optim.AdamW, {"params": groups, ...})`` for ``Trainer(optimizer_cls_and_kwargs=...)``: the head gets
``lr``, encoder layer k of L gets ``lr * decay ** (L - k)``, the embeddings ``lr * decay ** (L + 1)``.
Trainer's scheduler then scales every group's rate by the same factor. ``TrainingArguments.learning_rate``
and ``weight_decay`` are not used for these groups: pass them here.

Example:
    >>> import torch
    >>> from transformers import PretrainedConfig
    >>> config = PretrainedConfig(num_labels=3)
    >>> head = SequenceClassificationHead(hidden_size=8, num_labels=3, pooling="mean")
    >>> hidden, mask = torch.randn(2, 5, 8), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    >>> out = classification_output(head(hidden, mask), torch.tensor([0, 2]), config)
    >>> tuple(out.logits.shape), config.problem_type
    ((2, 3), 'single_label_classification')
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from transformers.loss.loss_utils import ForSequenceClassificationLoss
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging

logger = logging.get_logger(__name__)

from .pooling import masked_mean

__all__ = [
    "POOLINGS", "PROBLEM_TYPES", "HEAD_CONFIG_DEFAULTS", "HeadOptions", "head_options", "pool",
    "SequenceClassificationHead", "sequence_classification_loss", "classification_output", "freeze_encoder",
    "layer_index", "layerwise_lr_groups", "layerwise_lr_optimizer", "SequenceClassifierMixin",
]

POOLINGS = ("cls", "mean")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
HEAD_CONFIG_DEFAULTS = {"classifier_pooling": "cls", "classifier_dropout": 0.0, "freeze_encoder": False,
                        "layerwise_lr_decay": 1.0}


@dataclass(frozen=True)
class HeadOptions:
    """The head's choices, validated: see the module docstring for their meaning."""

    pooling: str = "cls"
    dropout: float = 0.0
    freeze_encoder: bool = False
    layerwise_lr_decay: float = 1.0

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"`classifier_pooling` must be one of {list(POOLINGS)}, got {self.pooling!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`classifier_dropout` must be in [0, 1), got {self.dropout!r}.")
        if not isinstance(self.freeze_encoder, bool):
            raise ValueError(f"`freeze_encoder` must be True or False, got {self.freeze_encoder!r}.")
        if not 0.0 < self.layerwise_lr_decay <= 1.0:
            raise ValueError(f"`layerwise_lr_decay` must be in (0, 1], got {self.layerwise_lr_decay!r}.")


def head_options(config) -> HeadOptions:
    """The head fields of a model config (``HEAD_CONFIG_DEFAULTS`` where a config lacks one), validated.

    Example:
        >>> from transformers import PretrainedConfig
        >>> head_options(PretrainedConfig(classifier_pooling="mean")).pooling
        'mean'
    """
    values = {name: getattr(config, name, default) for name, default in HEAD_CONFIG_DEFAULTS.items()}
    if values["classifier_dropout"] is None:  # transformers configs use None for "same as hidden dropout"
        values["classifier_dropout"] = 0.0
    return HeadOptions(pooling=values["classifier_pooling"], dropout=float(values["classifier_dropout"]),
                       freeze_encoder=values["freeze_encoder"], layerwise_lr_decay=float(values["layerwise_lr_decay"]))


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, pooling: str = "cls") -> torch.Tensor:
    """(B, T, D) token states -> (B, D): the first token (``"cls"``) or the mean over valid positions (``"mean"``).

    ``attention_mask`` (B, T), 1/True = valid, is only read by ``"mean"``; without it every position counts.
    A row without any valid position is refused (its mean is undefined) on CPU; on an accelerator the check is
    skipped (it would cost a host-device synchronisation every step) and such a row pools to zeros.

    Example:
        >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])
        >>> pool(h, torch.tensor([[1, 1, 0]]), "mean").tolist(), pool(h, pooling="cls").tolist()
        ([[2.0]], [[1.0]])
    """
    if hidden_states.ndim != 3:
        raise ValueError(f"`hidden_states` must be (batch, tokens, hidden), got shape {tuple(hidden_states.shape)}.")
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {list(POOLINGS)}, got {pooling!r}.")
    if pooling == "cls":
        return hidden_states[:, 0]
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    if attention_mask.shape != hidden_states.shape[:2]:
        raise ValueError(f"`attention_mask` must be (batch, tokens) = {tuple(hidden_states.shape[:2])}, "
                         f"got {tuple(attention_mask.shape)}.")
    valid = attention_mask.bool()
    if hidden_states.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(valid.any(dim=1).all()):
        raise ValueError("`attention_mask` has a row with no valid position: mean pooling is undefined there.")
    return masked_mean(hidden_states, valid)


class SequenceClassificationHead(nn.Module):
    """Pooling, dropout and a linear layer: (B, T, D) token states [+ mask] -> (B, num_labels) logits.

    Example:
        >>> head = SequenceClassificationHead(hidden_size=4, num_labels=2, pooling="cls", dropout=0.1)
        >>> tuple(head(torch.randn(3, 7, 4)).shape)
        (3, 2)
    """

    def __init__(self, hidden_size: int, num_labels: int, pooling: str = "cls", dropout: float = 0.0):
        super().__init__()
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive integer, got {num_labels!r}.")
        options = HeadOptions(pooling=pooling, dropout=dropout)
        self.pooling = options.pooling
        self.dropout = nn.Dropout(options.dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(pool(hidden_states, attention_mask, self.pooling)))


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The loss of transformers' sequence-classification heads (see the module docstring), with checks.

    ``config`` needs ``num_labels`` and ``problem_type``; an unset ``problem_type`` is inferred from
    ``num_labels`` and the labels' dtype and stored on the config, exactly as transformers does. Checked first:
    the batch size and the label shape each problem type needs, and on CPU the class indices' range (on an
    accelerator that check would synchronise with the host every step; cross-entropy itself refuses them). Regression labels given as integers
    are converted to the logits' float type (MSE cannot take them).

    Example:
        >>> from transformers import PretrainedConfig
        >>> config = PretrainedConfig(num_labels=1)
        >>> float(sequence_classification_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]), config))
        2.5
    """
    if logits.ndim != 2 or logits.shape[1] != config.num_labels:
        raise ValueError(f"`logits` must be (batch, num_labels={config.num_labels}), got {tuple(logits.shape)}.")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"`labels` has {labels.shape[0]} rows for a batch of {logits.shape[0]}.")
    if config.problem_type is not None and config.problem_type not in PROBLEM_TYPES:
        raise ValueError(f"`problem_type` must be one of {list(PROBLEM_TYPES)} or None, got {config.problem_type!r}.")
    integer = not (labels.dtype.is_floating_point or labels.dtype.is_complex) and labels.dtype != torch.bool
    problem = config.problem_type
    if problem is None:  # transformers' inference, stated here so the checks below know the outcome
        problem = ("regression" if config.num_labels == 1 else
                   "single_label_classification" if labels.dtype in (torch.long, torch.int) else
                   "multi_label_classification")
    if problem == "single_label_classification":
        if not integer or labels.numel() != logits.shape[0]:
            raise ValueError(f"single-label classification needs integer `labels` of shape (batch,), got dtype "
                             f"{labels.dtype} shape {tuple(labels.shape)}.")
        if labels.device.type == "cpu" and labels.numel() and (int(labels.min()) < 0 or
                                                               int(labels.max()) >= config.num_labels):
            raise ValueError(f"`labels` must be class indices in [0, {config.num_labels - 1}], got values "
                             f"{int(labels.min())}..{int(labels.max())}.")
        labels = labels.long()
    else:
        if config.num_labels == 1 and labels.numel() != logits.shape[0]:
            raise ValueError(f"{problem} with num_labels=1 needs (batch,) or (batch, 1) `labels`, got "
                             f"{tuple(labels.shape)}.")
        if config.num_labels > 1 and tuple(labels.shape) != tuple(logits.shape):
            raise ValueError(f"{problem} with num_labels={config.num_labels} needs `labels` of shape "
                             f"{tuple(logits.shape)}, got {tuple(labels.shape)}.")
        if integer or labels.dtype == torch.bool:
            labels = labels.to(logits.dtype)
    return ForSequenceClassificationLoss(labels, logits, config)


def classification_output(logits: torch.Tensor, labels: torch.Tensor | None, config,
                          hidden_states: tuple[torch.Tensor, ...] | None = None,
                          attentions: tuple[torch.Tensor, ...] | None = None) -> SequenceClassifierOutput:
    """``SequenceClassifierOutput`` with the loss when ``labels`` are given (``sequence_classification_loss``)."""
    loss = None if labels is None else sequence_classification_loss(logits, labels, config)
    return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=attentions)


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen module: whatever the mode asked, the module and its children stay in eval mode."""
    nn.Module.train(module, False)
    return module


def freeze_encoder(model: nn.Module, head_prefixes: Iterable[str] = ("classifier",)) -> list[str]:
    """Linear probe: freeze every parameter outside the head; returns the frozen parameter names.

    The head is every submodule whose name starts with one of ``head_prefixes`` (list a head's own dropout
    there too). All other top-level submodules, parameterless ones included, get ``requires_grad=False`` and
    stay in eval mode (dropout off, deterministic features) even
    when ``model.train()`` is called, e.g. by ``Trainer``.

    Example:
        >>> model = nn.Sequential()
        >>> model.add_module("encoder", nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))
        >>> model.add_module("classifier", nn.Linear(4, 2))
        >>> freeze_encoder(model), model.train().encoder.training, model.classifier.training
        (['encoder.0.weight', 'encoder.0.bias'], False, True)
    """
    prefixes = tuple(head_prefixes)
    if not any(name.startswith(prefixes) for name, _ in model.named_parameters()):
        raise ValueError(f"No parameter of {type(model).__name__} starts with `head_prefixes`={list(prefixes)}: "
                         f"nothing would stay trainable.")
    frozen = []
    for child_name, child in model.named_children():
        if child_name.startswith(prefixes):
            continue
        names = [f"{child_name}.{n}" for n, _ in child.named_parameters()]
        child.requires_grad_(False)
        child.train = functools.partial(_stay_in_eval, child)
        child.train()
        frozen += names
    for name, parameter in model.named_parameters(recurse=False):  # parameters held by the model itself
        if not name.startswith(prefixes):
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


_LAYER_PATTERN = re.compile(r"(?:^|\.)(?:layers?|blocks?)\.(\d+)(?:\.|$)")


def layer_index(name: str) -> int | None:
    """The encoder layer a parameter belongs to, from ``...layers.<k>.``/``layer.<k>``/``blocks.<k>`` in its
    name; None for parameters outside the layers (embeddings, [CLS], final norm, head).

    Example:
        >>> layer_index("encoder.layers.3.attn.weight"), layer_index("embeddings.weight")
        (3, None)
    """
    match = _LAYER_PATTERN.search(name)
    return None if match is None else int(match.group(1))


def layerwise_lr_groups(model: nn.Module, lr: float, decay: float, *, weight_decay: float = 0.0,
                        head_prefixes: Iterable[str] = ("classifier",), top_prefixes: Iterable[str] = (),
                        layer_of: Callable[[str], int | None] = layer_index) -> list[dict]:
    """Optimizer parameter groups with layer-wise learning-rate decay (frozen parameters left out).

    Depths: parameters under ``head_prefixes`` or ``top_prefixes`` (e.g. a final norm after the last layer)
    get depth L + 1, a parameter of encoder layer k (``layer_of(name)``, 0-based) depth k + 1, everything else
    (embeddings, position and [CLS] tokens) depth 0, where L is the number of layers found. A group's rate is
    ``lr * decay ** (L + 1 - depth)``. Biases and other 1-D parameters (norms) get no weight decay, as in
    ``Trainer``. Each group carries ``depth`` and ``lr_scale`` for inspection.

    Example:
        >>> model = nn.ModuleDict({"embed": nn.Linear(2, 2), "layers": nn.ModuleList([nn.Linear(2, 2)] * 1),
        ...                        "classifier": nn.Linear(2, 1)})
        >>> [(g["depth"], g["lr"]) for g in layerwise_lr_groups(model, 1.0, 0.5) if g["params"]][::2]
        [(0, 0.25), (1, 0.5), (2, 1.0)]
    """
    if not lr > 0:
        raise ValueError(f"`lr` must be > 0, got {lr!r}.")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"`decay` must be in (0, 1], got {decay!r}.")
    top = tuple(head_prefixes) + tuple(top_prefixes)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = [layer_of(n) for n, _ in named]
    num_layers = 1 + max((k for k in layers if k is not None), default=-1)
    groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for (name, parameter), k in zip(named, layers):
        depth = num_layers + 1 if name.startswith(top) else (0 if k is None else k + 1)
        groups.setdefault((depth, parameter.ndim >= 2), []).append(parameter)
    result = []
    for (depth, decays), params in sorted(groups.items()):
        scale = decay ** (num_layers + 1 - depth)
        result.append({"params": params, "lr": lr * scale, "weight_decay": weight_decay if decays else 0.0,
                       "depth": depth, "lr_scale": scale})
    return result


def layerwise_lr_optimizer(model: nn.Module, lr: float, decay: float, *, weight_decay: float = 0.0,
                           head_prefixes: Iterable[str] = ("classifier",), top_prefixes: Iterable[str] = (),
                           layer_of: Callable[[str], int | None] = layer_index,
                           optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
                           **optimizer_kwargs) -> tuple[type[torch.optim.Optimizer], dict]:
    """``(optimizer_cls, kwargs)`` for ``Trainer(optimizer_cls_and_kwargs=...)`` with layer-wise lr decay.

    ``kwargs["params"]`` holds ``layerwise_lr_groups(model, lr, decay, ...)``; Trainer builds the optimizer
    from those groups (instead of its own two) and its scheduler scales each group's rate alike. Extra
    ``optimizer_kwargs`` (``betas``, ``eps`` ...) go to the optimizer. Group keys ``depth``/``lr_scale`` are
    kept by torch optimizers as inert entries.

    Example:
        >>> model = nn.ModuleDict({"layers": nn.ModuleList([nn.Linear(2, 2)]), "classifier": nn.Linear(2, 1)})
        >>> cls, kwargs = layerwise_lr_optimizer(model, 1e-3, 0.8)
        >>> cls.__name__, sorted(g["lr"] for g in kwargs["params"])[0]
        ('AdamW', 0.0008)
    """
    groups = layerwise_lr_groups(model, lr, decay, weight_decay=weight_decay, head_prefixes=head_prefixes,
                                 top_prefixes=top_prefixes, layer_of=layer_of)
    return optimizer_cls, {"params": groups, "lr": lr, **optimizer_kwargs}


class SequenceClassifierMixin:
    """What every ``...ForSequenceClassification`` of hf_mae adds to its ``PreTrainedModel``.

    - ``build_head(hidden_size)`` makes ``self.classifier`` (a ``SequenceClassificationHead`` with the config's
      ``classifier_pooling``/``classifier_dropout``); the head's parameters are ``classifier.*``, the only
      weights ``from_pretrained`` of a pretraining checkpoint initialises (and reports as newly initialised);
    - ``post_init`` also freezes the encoder when ``config.freeze_encoder`` is True (linear probe), and so does
      ``from_pretrained`` after loading (loading replaces the parameters, and their ``requires_grad`` with them);
    - ``layerwise_lr_optimizer(lr)`` is the config-driven layer-wise learning-rate decay: it reads
      ``config.layerwise_lr_decay`` and gives ``Trainer(optimizer_cls_and_kwargs=...)`` its argument
      (``layerwise_lr_optimizer`` of this module, with the model's head and top-of-encoder prefixes);
    - ``accepts_loss_kwargs = False``: the loss is a per-batch mean (see the module docstring).

    Class attribute ``lr_top_prefixes``: parameters after the last encoder layer (final norm, projection),
    which get the head's rate.
    """

    accepts_loss_kwargs = False
    head_prefixes: tuple[str, ...] = ("classifier",)
    lr_top_prefixes: tuple[str, ...] = ()

    def build_head(self, hidden_size: int) -> None:
        """``self.classifier``: pooling, dropout and a linear layer to ``config.num_labels`` logits."""
        options = head_options(self.config)
        self.classifier = SequenceClassificationHead(hidden_size, self.config.num_labels, options.pooling,
                                                     options.dropout)

    def post_init(self) -> None:
        super().post_init()
        if head_options(self.config).freeze_encoder:
            freeze_encoder(self, self.head_prefixes)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded   # (model, loading_info) with output_loading_info
        if head_options(model.config).freeze_encoder:
            freeze_encoder(model, model.head_prefixes)
        scaling = getattr(model.config, "standardised_targets", None)
        if scaling:   # an intermediate checkpoint of `hf-mae finetune`, written before the scaling was folded in
            logger.warning(f"{args[0] if args else 'this checkpoint'} predicts standardised targets, (y - mean) / std "
                           f"with mean {scaling['mean']} and std {scaling['std']} (config `standardised_targets`): "
                           "multiply its outputs by std and add mean; the final model of the run predicts the "
                           "file's units.")
        return loaded

    def layerwise_lr_optimizer(self, lr: float, *, weight_decay: float = 0.0,
                               **optimizer_kwargs) -> tuple[type[torch.optim.Optimizer], dict]:
        """``(optimizer_cls, kwargs)`` for ``Trainer(optimizer_cls_and_kwargs=...)`` with the decay of
        ``config.layerwise_lr_decay`` (1.0: every parameter at ``lr``). Frozen parameters are left out."""
        return layerwise_lr_optimizer(self, lr, head_options(self.config).layerwise_lr_decay,
                                      weight_decay=weight_decay, head_prefixes=self.head_prefixes,
                                      top_prefixes=self.lr_top_prefixes, **optimizer_kwargs)
