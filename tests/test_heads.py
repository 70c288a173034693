"""The shared sequence-classification head: pooling, losses per problem_type, freezing, LLRD, Trainer + GA."""

import copy
import doctest

import numpy as np
import pytest
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

from hf_mae.models import heads
from hf_mae.models.heads import (SequenceClassificationHead, classification_output, freeze_encoder, head_options,
                                 layerwise_lr_groups, layerwise_lr_optimizer, pool, sequence_classification_loss)


def test_docstring_examples_run():
    assert doctest.testmod(heads).failed == 0


def test_mean_pooling_ignores_padding_and_cls_takes_first():
    h = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]])
    pooled = pool(h, mask, "mean")
    for i in range(3):
        torch.testing.assert_close(pooled[i], h[i][mask[i].bool()].mean(0))
    changed = h.clone()
    changed[0, 2:] = 1e6  # padding values never leak into the mean
    torch.testing.assert_close(pool(changed, mask, "mean")[0], pooled[0])
    torch.testing.assert_close(pool(h, mask.bool(), "mean"), pooled)
    torch.testing.assert_close(pool(h, None, "mean"), h.mean(1))
    torch.testing.assert_close(pool(h, mask, "cls"), h[:, 0])
    with pytest.raises(ValueError, match="no valid position"):
        pool(h, torch.zeros(3, 5), "mean")
    with pytest.raises(ValueError, match="pooling"):
        pool(h, mask, "max")
    with pytest.raises(ValueError, match="attention_mask"):
        pool(h, mask[:, :3], "mean")


def test_regression_loss_single_and_multi_target():
    logits = torch.tensor([[1.0], [2.0], [4.0]])
    config = PretrainedConfig(num_labels=1)
    loss = sequence_classification_loss(logits, torch.tensor([0.0, 2.0, 1.0]), config)
    assert config.problem_type == "regression"
    assert float(loss) == pytest.approx((1 + 0 + 9) / 3)
    # integer regression labels are converted, (B, 1) labels accepted
    assert float(sequence_classification_loss(logits, torch.tensor([[0], [2], [1]]), config)) == pytest.approx(10 / 3)
    multi = PretrainedConfig(num_labels=2, problem_type="regression")
    logits2 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    loss2 = sequence_classification_loss(logits2, torch.tensor([[0.0, 2.0], [1.0, 0.0]]), multi)
    assert float(loss2) == pytest.approx((1 + 4 + 1 + 0) / 4)
    with pytest.raises(ValueError, match="shape"):
        sequence_classification_loss(logits2, torch.tensor([0.0, 1.0]), multi)


def test_single_label_loss_matches_hand_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 1])
    config = PretrainedConfig(num_labels=3)
    loss = sequence_classification_loss(logits, labels, config)
    assert config.problem_type == "single_label_classification"
    expected = np.mean([-np.log(np.exp(2) / (np.exp(2) + 1 + np.exp(-1))),
                        -np.log(np.exp(0.5) / (2 * np.exp(0.5) + np.exp(3)))])
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        sequence_classification_loss(logits, torch.tensor([0, 3]), PretrainedConfig(num_labels=3))
    with pytest.raises(ValueError, match="rows for a batch"):
        sequence_classification_loss(logits, torch.tensor([0]), config)


def test_multi_label_loss_inferred_from_float_labels():
    logits = torch.tensor([[0.0, 1.0], [-2.0, 3.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    config = PretrainedConfig(num_labels=2)
    loss = sequence_classification_loss(logits, labels, config)
    assert config.problem_type == "multi_label_classification"

    def bce(z, y):
        p = 1 / (1 + np.exp(-z))
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    expected = np.mean([bce(0, 1), bce(1, 0), bce(-2, 0), bce(3, 1)])
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="problem_type"):
        sequence_classification_loss(logits, labels, PretrainedConfig(num_labels=2, problem_type="ranking"))


def test_head_shapes_output_and_options():
    head = SequenceClassificationHead(8, 3, pooling="mean", dropout=0.2)
    out = classification_output(head(torch.randn(4, 6, 8), torch.ones(4, 6)), None, PretrainedConfig(num_labels=3))
    assert out.loss is None and out.logits.shape == (4, 3)
    assert head_options(PretrainedConfig()) == heads.HeadOptions()
    options = head_options(PretrainedConfig(classifier_pooling="mean", classifier_dropout=None, freeze_encoder=True,
                                            layerwise_lr_decay=0.75))
    assert (options.pooling, options.dropout, options.freeze_encoder, options.layerwise_lr_decay) == ("mean", 0.0, True, 0.75)
    for bad in ({"classifier_pooling": "max"}, {"classifier_dropout": 1.0}, {"layerwise_lr_decay": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            head_options(PretrainedConfig(**bad))
    with pytest.raises(ValueError, match="num_labels"):
        SequenceClassificationHead(8, 0)


class TinyConfig(PretrainedConfig):
    model_type = "tiny_head_test"

    def __init__(self, hidden_size=6, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.num_layers = hidden_size, num_layers


class TinyForSequenceClassification(PreTrainedModel):
    """An encoder (embedding, layers, dropout) with the shared head, as the real models will have it."""

    config_class = TinyConfig
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Linear(3, config.hidden_size)
        self.layers = nn.ModuleList(nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.num_layers))
        self.dropout = nn.Dropout(0.5)
        options = head_options(config)
        self.head = SequenceClassificationHead(config.hidden_size, config.num_labels, options.pooling, options.dropout)
        self.post_init()

    def forward(self, input_values, attention_mask=None, labels=None):
        h = self.embeddings(input_values)
        for layer in self.layers:
            h = torch.tanh(layer(h))
        return classification_output(self.head(self.dropout(h), attention_mask), labels, self.config)


def test_freeze_encoder_keeps_encoder_fixed_and_in_eval():
    model = TinyForSequenceClassification(TinyConfig(num_labels=2))
    frozen = freeze_encoder(model, head_prefixes=("head",))
    assert set(frozen) == {n for n, _ in model.named_parameters() if not n.startswith("head.")}
    model.train()
    assert not model.dropout.training and model.head.training and not model.layers[0].training
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 5, 3)
    out = model(x, labels=torch.tensor([0, 1, 1, 0]))
    out.loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    assert model.head.classifier.weight.grad is not None
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert not torch.equal(before["head.classifier.weight"], after["head.classifier.weight"])
    # deterministic features in train mode: the frozen dropout stays off
    torch.testing.assert_close(model(x).logits, model(x).logits)
    with pytest.raises(ValueError, match="head_prefixes"):
        freeze_encoder(model, head_prefixes=("classifier",))


def test_layerwise_lr_groups_rates_and_weight_decay():
    model = TinyForSequenceClassification(TinyConfig(num_labels=1, num_layers=3))
    groups = layerwise_lr_groups(model, 1e-3, 0.5, weight_decay=0.01, head_prefixes=("head",))
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert by_param[id(named["head.classifier.weight"])]["lr"] == pytest.approx(1e-3)
    assert by_param[id(named["layers.2.weight"])]["lr"] == pytest.approx(5e-4)
    assert by_param[id(named["layers.0.weight"])]["lr"] == pytest.approx(1.25e-4)
    assert by_param[id(named["embeddings.weight"])]["lr"] == pytest.approx(6.25e-5)
    assert by_param[id(named["layers.0.weight"])]["weight_decay"] == 0.01
    assert by_param[id(named["layers.0.bias"])]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(named)
    freeze_encoder(model, head_prefixes=("head",))
    assert [g["depth"] for g in layerwise_lr_groups(model, 1e-3, 0.5, head_prefixes=("head",))] == [1, 1]
    with pytest.raises(ValueError, match="decay"):
        layerwise_lr_groups(model, 1e-3, 1.5)


def _data(n=4, seed=0, num_labels=1):
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5, 3)).astype(np.float32)
    target = x[:, :, 0].mean(1)
    labels = target.tolist() if num_labels == 1 else (np.arange(n) % num_labels).tolist()
    return Dataset.from_dict({"input_values": x.tolist(), "labels": labels}).with_format("torch")


def _train(tmp_path, batch, accumulation, optimizer_for=None, steps=1, num_labels=1):
    torch.manual_seed(0)
    model = TinyForSequenceClassification(TinyConfig(num_labels=num_labels))
    model.dropout.p = 0.0
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                             max_steps=steps, learning_rate=0.1, optim="sgd", lr_scheduler_type="constant",
                             use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", seed=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=_data(num_labels=num_labels),
                      optimizer_cls_and_kwargs=None if optimizer_for is None else optimizer_for(model))
    trainer.train()
    return model, trainer


@pytest.mark.parametrize("num_labels", [1, 3])   # MSE regression and cross-entropy classification
def test_gradient_accumulation_two_equals_one_batch(tmp_path, num_labels):
    one, t1 = _train(tmp_path / "a", batch=4, accumulation=1, num_labels=num_labels)
    two, t2 = _train(tmp_path / "b", batch=2, accumulation=2, num_labels=num_labels)
    assert not t2.model_accepts_loss_kwargs
    assert one.config.problem_type == ("regression" if num_labels == 1 else "single_label_classification")
    for (name, p1), (_, p2) in zip(one.named_parameters(), two.named_parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-5, atol=1e-6, msg=name)
    loss1 = next(h["loss"] for h in t1.state.log_history if "loss" in h)
    loss2 = next(h["loss"] for h in t2.state.log_history if "loss" in h)
    assert loss1 == pytest.approx(loss2, rel=1e-5)


def test_trainer_uses_layerwise_groups_and_lowers_the_loss(tmp_path):
    model, trainer = _train(tmp_path, batch=4, accumulation=1, steps=30, optimizer_for=lambda m: layerwise_lr_optimizer(
        m, 0.05, 0.5, head_prefixes=("head",)))
    # the optimizer Trainer built holds our groups, with decayed rates, over every parameter of the model
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    rates = sorted({g["lr_scale"] for g in trainer.optimizer.param_groups})
    assert rates == pytest.approx([0.125, 0.25, 0.5, 1.0])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
