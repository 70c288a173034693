"""The ``...ForSequenceClassification`` heads of every architecture, on tiny configs.

One table (``ARCHITECTURES``) says, per architecture, how to build a tiny pretraining model and its inputs;
every test runs on each row: shapes, the loss of each ``problem_type`` against a hand computation, encoder
weights loaded from a pretraining checkpoint (only the head newly initialised), a ``Trainer`` run that lowers
the loss, gradient accumulation 2 == one batch, the linear probe (``freeze_encoder``) and layer-wise lr decay.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

import hf_mae

SPECTRAL = dict(seq_len=32, d_model=16, nhead=2, num_layers=2, dim_feedforward=32, n_blocks=4, n_mask=2,
                latent_dim=8, dec_hidden=16, dropout=0.0)


def _spectra(n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"input_values": torch.randn(n, SPECTRAL["seq_len"], generator=generator)}


SMILES = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
              max_position_embeddings=16, mask_token_id=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _smiles(n: int, seed: int) -> dict[str, torch.Tensor]:
    """[CLS]=2 atoms... [SEP]=3 then padding (id 0): rows of 3 to 6 atoms."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.zeros(n, 8, dtype=torch.long)
    attention_mask = torch.zeros(n, 8, dtype=torch.long)
    for row in range(n):
        atoms = 3 + row % 4
        input_ids[row, :atoms + 2] = torch.cat([torch.tensor([2]), torch.randint(5, 64, (atoms,), generator=generator),
                                                torch.tensor([3])])
        attention_mask[row, :atoms + 2] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


PROTEIN = dict(input_dim=8, embed_dim=16, num_layers=2, nhead=2, dim_feedforward=32, max_length=24, dropout=0.0)
PROTEIN_V5 = dict(PROTEIN, num_patches=3, decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2,
                  decoder_dim_feedforward=32)


def _proteins(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Right-padded residue embeddings of 10 to 24 residues."""
    generator = torch.Generator().manual_seed(seed)
    attention_mask = torch.zeros(n, 24, dtype=torch.long)
    for row in range(n):
        attention_mask[row, :10 + (row * 5) % 15] = 1
    residue_embeddings = torch.randn(n, 24, 8, generator=generator) * attention_mask[..., None]
    return {"residue_embeddings": residue_embeddings, "attention_mask": attention_mask}


@dataclass
class Architecture:
    pretraining: Callable[..., torch.nn.Module]   # **head fields -> a pretraining model
    classifier: type
    inputs: Callable[[int, int], dict[str, torch.Tensor]]   # (n, seed) -> model inputs without labels
    encoder_prefix: str   # where the encoder's weights sit in the pretraining model's state dict
    poolings: tuple[str, ...] = ("cls", "mean")


ARCHITECTURES = {
    "chemomae": Architecture(lambda **kw: hf_mae.ChemoMAEForPreTraining(**SPECTRAL, **kw),
                             hf_mae.ChemoMAEForSequenceClassification, _spectra, "mae.encoder."),
    "wavemae": Architecture(lambda **kw: hf_mae.WaveMAEForPreTraining(**SPECTRAL, **kw),
                            hf_mae.WaveMAEForSequenceClassification, _spectra, "mae.encoder."),
}
ARCHITECTURES["smiles_bert"] = Architecture(
    lambda **kw: hf_mae.SMILESBERTForMaskedLM(hf_mae.SMILESBERTMLMConfig(**SMILES, **kw)),
    hf_mae.SMILESBERTForSequenceClassification, _smiles, "bert.")
ARCHITECTURES["protein_v2"] = Architecture(
    lambda **kw: hf_mae.ProteinMAEV2ForPreTraining(**PROTEIN, decoder_hidden_dim=16, **kw),
    hf_mae.ProteinMAEV2ForSequenceClassification, _proteins, "mae.", poolings=("mean",))
ARCHITECTURES["protein_v5"] = Architecture(
    lambda **kw: hf_mae.ProteinMAEV5ForPreTraining(**PROTEIN_V5, **kw),
    hf_mae.ProteinMAEV5ForSequenceClassification, _proteins, "mae.")
NAMES = sorted(ARCHITECTURES)


def _classifier(name: str, **fields) -> torch.nn.Module:
    torch.manual_seed(0)
    return ARCHITECTURES[name].classifier(ARCHITECTURES[name].pretraining(**fields).config)


def _head_keys(model: torch.nn.Module) -> set[str]:
    return {k for k in model.state_dict() if k.startswith("classifier.")}


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_output_type(name):
    for pooling in ARCHITECTURES[name].poolings:
        model = _classifier(name, num_labels=3, classifier_pooling=pooling).eval()
        out = model(**ARCHITECTURES[name].inputs(4, 0))
        assert type(out).__name__ == "SequenceClassifierOutput"
        assert tuple(out.logits.shape) == (4, 3) and out.loss is None
        assert model.accepts_loss_kwargs is False
        assert AutoModelForSequenceClassification.from_config(model.config).__class__ is type(model)


@pytest.mark.parametrize("name", NAMES)
def test_hidden_states_attentions_and_tuple_output(name):
    for pooling in ARCHITECTURES[name].poolings:
        model = _classifier(name, num_labels=2, classifier_pooling=pooling).eval()
        model.set_attn_implementation("eager")   # SDPA returns no attention probabilities (BERT)
        inputs = ARCHITECTURES[name].inputs(2, 0)
        out = model(**inputs, output_hidden_states=True, output_attentions=True)
        layers = model.config.num_hidden_layers
        assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
        assert out.attentions[0].shape[:2] == (2, model.config.num_attention_heads)
        plain = model(**inputs)
        assert plain.hidden_states is None and plain.attentions is None
        as_tuple = model(**inputs, labels=torch.tensor([0, 1]), return_dict=False)
        assert isinstance(as_tuple, tuple) and as_tuple[0].ndim == 0
        torch.testing.assert_close(as_tuple[1], plain.logits)


@pytest.mark.parametrize("name", [n for n in NAMES if len(ARCHITECTURES[n].poolings) == 2])
def test_cls_and_mean_pooling_read_different_features(name):
    cls = _classifier(name, num_labels=1, classifier_pooling="cls").eval()
    mean = _classifier(name, num_labels=1, classifier_pooling="mean").eval()
    inputs = ARCHITECTURES[name].inputs(2, 0)
    features = {}
    for key, model in (("cls", cls), ("mean", mean)):
        model.classifier.classifier.register_forward_hook(lambda m, args, out, key=key: features.update({key: args[0]}))
        model(**inputs)
    assert not torch.allclose(features["cls"][:, :4], features["mean"][:, :4])


def _logits_and_loss(model, inputs, labels):
    out = model(**inputs, labels=labels)
    return out.logits.detach(), out.loss.detach()


@pytest.mark.parametrize("name", NAMES)
def test_loss_matches_hand_computation_for_each_problem_type(name):
    inputs = ARCHITECTURES[name].inputs(4, 1)
    # regression, one target, problem_type inferred
    model = _classifier(name, num_labels=1).eval()
    y = torch.tensor([0.5, -1.0, 2.0, 0.0])
    logits, loss = _logits_and_loss(model, inputs, y)
    assert model.config.problem_type == "regression"
    assert float(loss) == pytest.approx(float(((logits[:, 0] - y) ** 2).mean()), rel=1e-5)
    # multi-target regression needs problem_type="regression" explicitly
    model = _classifier(name, num_labels=2, problem_type="regression").eval()
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    logits, loss = _logits_and_loss(model, inputs, y)
    assert float(loss) == pytest.approx(float(((logits - y) ** 2).mean()), rel=1e-5)
    # single-label classification, inferred from integer labels
    model = _classifier(name, num_labels=3).eval()
    y = torch.tensor([0, 2, 1, 2])
    logits, loss = _logits_and_loss(model, inputs, y)
    assert model.config.problem_type == "single_label_classification"
    hand = -(logits.log_softmax(-1)[torch.arange(4), y]).mean()
    assert float(loss) == pytest.approx(float(hand), rel=1e-5)
    # multi-label classification, inferred from float labels
    model = _classifier(name, num_labels=3).eval()
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    logits, loss = _logits_and_loss(model, inputs, y)
    assert model.config.problem_type == "multi_label_classification"
    p = torch.sigmoid(logits)
    hand = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    assert float(loss) == pytest.approx(float(hand), rel=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("from_base", [False, True])
def test_from_pretrained_loads_the_encoder_and_initialises_only_the_head(name, from_base, tmp_path):
    torch.manual_seed(0)
    pretraining = ARCHITECTURES[name].pretraining()
    prefix = ARCHITECTURES[name].encoder_prefix
    source = pretraining.base_model if from_base else pretraining
    source_prefix = prefix[len(pretraining.base_model_prefix) + 1:] if from_base else prefix
    source.save_pretrained(tmp_path)
    model, info = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    assert isinstance(model, ARCHITECTURES[name].classifier)
    assert set(info["missing_keys"]) == _head_keys(model)
    assert not info["mismatched_keys"]
    encoder = {k[len(source_prefix):]: v for k, v in source.state_dict().items() if k.startswith(source_prefix)}
    loaded = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    assert loaded and set(model.state_dict()) - _head_keys(model) == {prefix + k for k in loaded}
    for key, value in loaded.items():   # every encoder weight of the classifier comes from the checkpoint
        torch.testing.assert_close(value, encoder[key], rtol=0, atol=0, msg=key)
    unused = set(encoder) - set(loaded)  # only pretraining-only weights (decoder, mask token) are left out
    patterns = type(model)._keys_to_ignore_on_load_unexpected or []
    assert all(any(re.search(p, prefix + k) or re.search(p, k) for p in patterns) for k in unused), unused


def _dataset(name: str, n: int, num_labels: int):
    from datasets import Dataset

    inputs = ARCHITECTURES[name].inputs(n, 3)
    first = next(iter(inputs.values())).float()
    signal = first.reshape(n, -1)[:, :4].sum(1)
    signal = (signal - signal.mean()) / signal.std()
    labels = signal.tolist() if num_labels == 1 else (signal > signal.median()).long().tolist()
    return Dataset.from_dict({**{k: v.tolist() for k, v in inputs.items()}, "labels": labels}).with_format("torch")


def _train(name, tmp_path, *, batch=4, accumulation=1, steps=1, num_labels=1, optimizer=None, n=4, lr=0.05,
           **fields):
    model = _classifier(name, num_labels=num_labels, **fields)
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
                             max_steps=steps, learning_rate=lr, optim="sgd" if optimizer is None else "adamw_torch",
                             lr_scheduler_type="constant", use_cpu=True, report_to="none", logging_steps=1,
                             save_strategy="no", seed=0, disable_tqdm=True, dataloader_drop_last=True)
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(name, n, num_labels),
                      optimizer_cls_and_kwargs=None if optimizer is None else optimizer(model))
    before = copy.deepcopy(model.state_dict())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return model, trainer, before, losses


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_labels", [1, 2])
def test_gradient_accumulation_two_equals_one_batch(name, num_labels, tmp_path):
    one, t1, _, loss1 = _train(name, tmp_path / "a", batch=4, accumulation=1, num_labels=num_labels)
    two, t2, _, loss2 = _train(name, tmp_path / "b", batch=2, accumulation=2, num_labels=num_labels)
    assert not t2.model_accepts_loss_kwargs
    assert loss1[0] == pytest.approx(loss2[0], rel=1e-4)
    for (key, p1), (_, p2) in zip(one.named_parameters(), two.named_parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_trainer_lowers_the_loss_with_layerwise_lr_decay(name, tmp_path):
    model, trainer, _, losses = _train(name, tmp_path, steps=60, n=8, batch=8, lr=0.02, num_labels=1,
                                       layerwise_lr_decay=0.5,
                                       optimizer=lambda m: m.layerwise_lr_optimizer(0.02))
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses
    scales = sorted({g["lr_scale"] for g in trainer.optimizer.param_groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** model.config.num_hidden_layers * 0.5)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_freeze_encoder_trains_only_the_head(name, tmp_path):
    model, _, before, losses = _train(name, tmp_path, steps=3, num_labels=2, freeze_encoder=True)
    after = model.state_dict()
    head = _head_keys(model)
    assert all(torch.equal(before[k], after[k]) for k in after if k not in head)
    assert any(not torch.equal(before[k], after[k]) for k in head)
    # loaded through from_pretrained the probe stays frozen (loading replaces the parameters)
    model.save_pretrained(tmp_path / "probe")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "probe")
    assert {n for n, p in reloaded.named_parameters() if p.requires_grad} == head


def test_bad_head_fields_name_the_field():
    with pytest.raises(ValueError, match="classifier_pooling.*no \\[CLS\\] token"):
        _classifier("protein_v2", classifier_pooling="cls")
    with pytest.raises(ValueError, match="classifier_pooling"):
        _classifier("chemomae", classifier_pooling="max")
    with pytest.raises(ValueError, match="layerwise_lr_decay"):
        _classifier("chemomae", layerwise_lr_decay=0.0).layerwise_lr_optimizer(1e-3)


@pytest.mark.parametrize("name", [n for n in NAMES if "attention_mask" in ARCHITECTURES[n].inputs(1, 0)])
def test_mean_pooling_ignores_padding(name):
    model = _classifier(name, num_labels=2, classifier_pooling="mean").eval()
    inputs = ARCHITECTURES[name].inputs(4, 0)
    padded = ~inputs["attention_mask"].bool()
    assert padded.any()
    changed = {k: v.clone() for k, v in inputs.items()}
    main = next(k for k in changed if k != "attention_mask")
    changed[main][padded] = changed[main][padded] + 1 if main != "input_ids" else 7
    torch.testing.assert_close(model(**changed).logits, model(**inputs).logits)


# -- SpectralGPT: per-pixel classification of a hyperspectral scene ----------------------------------------
GPT = dict(image_size=8, patch_size=4, num_bands=6, band_patch_size=2, hidden_size=16, num_hidden_layers=2,
           num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16, decoder_num_hidden_layers=1,
           decoder_num_attention_heads=2, decoder_intermediate_size=32, dropout=0.0)


def _scene(seed: int = 0):
    """A 6-band 20x20 scene, band axis last: 5x5-pixel fields of three classes whose spectra differ in level,
    about a quarter of them unlabelled (0)."""
    from hf_mae.data.pixels import LabelledPixels

    rng = np.random.default_rng(seed)
    label_map = np.kron(rng.integers(0, 4, size=(4, 4)), np.ones((5, 5), dtype=np.int64))
    cube = rng.normal(0, 0.3, size=(20, 20, 6)) + label_map[..., None] * np.linspace(0.5, 1.5, 6)
    return LabelledPixels(cube.astype(np.float32), label_map, band_axis=-1)


def test_spectral_gpt_without_aux_builds_nothing_auxiliary_and_takes_any_aux_sizes():
    config = hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[], aux_patch_size=3, aux_hidden_size=7,
                                      aux_num_attention_heads=2)
    model = hf_mae.SpectralGPTForPreTraining(config)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.startswith(("aux_", "conditioning", "hsi_projection"))]
    out = model(torch.randn(2, 6, 8, 8))
    assert out.contrastive_loss is None and out.loss.ndim == 0
    with pytest.raises(ValueError, match="aux_patch_size"):   # with a modality the ViT aux encoder needs it
        hf_mae.SpectralGPTConfig(**GPT, aux_modalities=["ir"], aux_patch_size=3)


def test_spectral_gpt_per_pixel_classification_with_trainer(tmp_path):
    from transformers import AutoModelForImageClassification

    from hf_mae.data.pixels import (DataCollatorForPixelWindows, PixelWindowDataset, band_statistics,
                                    predictions_to_map, split_pixels)

    torch.manual_seed(0)
    pretraining = hf_mae.SpectralGPTForPreTraining(hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[]))
    pretraining.save_pretrained(tmp_path / "pretrained")
    pixels = _scene()
    splits = split_pixels(pixels, (0.6, 0.2, 0.2), seed=0)
    train, test = splits["train"], splits["test"]
    mean, std = band_statistics(pixels, train)
    windows = {name: PixelWindowDataset(pixels, indices, window=8, band_mean=mean, band_std=std)
               for name, indices in (("train", train), ("test", test))}
    model, info = AutoModelForImageClassification.from_pretrained(
        tmp_path / "pretrained", num_labels=len(pixels.classes), id2label=pixels.id2label(), output_loading_info=True)
    assert isinstance(model, hf_mae.SpectralGPTForImageClassification)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    source = pretraining.spectral_gpt.state_dict()
    for key, value in model.spectral_gpt.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0, msg=key)

    args = TrainingArguments(str(tmp_path / "run"), per_device_train_batch_size=16, num_train_epochs=10,
                             learning_rate=3e-3, lr_scheduler_type="constant", use_cpu=True, report_to="none",
                             logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=windows["train"],
                      data_collator=DataCollatorForPixelWindows())
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    predicted = trainer.predict(windows["test"]).predictions.argmax(-1)
    class_map = predictions_to_map(pixels, test, predicted)
    assert class_map.shape == (20, 20)
    rows, cols = pixels.rows[test], pixels.cols[test]
    assert (class_map[rows, cols] == pixels.classes[predicted]).all()
    assert (class_map[rows, cols] == pixels.label_map[rows, cols]).mean() > 0.5


@pytest.mark.parametrize("config_class", [hf_mae.ChemoMAEConfig, hf_mae.WaveMAEConfig, hf_mae.SMILESBERTMLMConfig,
                                          hf_mae.ProteinMAEV2Config, hf_mae.ProteinMAEV5Config])
def test_head_config_fields_default_to_the_shared_defaults(config_class):
    from hf_mae.models.heads import HEAD_CONFIG_DEFAULTS, head_options

    config = config_class()
    options = head_options(config)
    assert options.dropout == HEAD_CONFIG_DEFAULTS["classifier_dropout"]
    assert options.freeze_encoder is HEAD_CONFIG_DEFAULTS["freeze_encoder"]
    assert options.layerwise_lr_decay == HEAD_CONFIG_DEFAULTS["layerwise_lr_decay"]
    # V2 has no [CLS] token: mean pooling is its default; every other config takes the shared default
    expected = "mean" if config_class is hf_mae.ProteinMAEV2Config else HEAD_CONFIG_DEFAULTS["classifier_pooling"]
    assert options.pooling == expected
    reloaded = config_class.from_dict(config_class(classifier_pooling="mean", freeze_encoder=True).to_dict())
    assert (reloaded.classifier_pooling, reloaded.freeze_encoder) == ("mean", True)


def test_fine_tuned_spectral_encoder_gives_features_and_saves_remote_code(tmp_path):
    from hf_mae import extract_features

    model = _classifier("chemomae", num_labels=2).eval()
    x = _spectra(3, 0)["input_values"]
    z = extract_features(model, x.numpy())
    torch.testing.assert_close(torch.as_tensor(z), model.mae["encoder"](x))
    model.save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_spectral_mae.ChemoMAEForSequenceClassification"
    assert (tmp_path / "heads.py").is_file()   # the head travels with the remote code


def test_spectral_gpt_head_fields_probe_and_layerwise_rates(tmp_path):
    config = hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[], num_labels=3, freeze_encoder=True)
    hf_mae.SpectralGPTForPreTraining(config).save_pretrained(tmp_path)
    model = hf_mae.SpectralGPTForImageClassification.from_pretrained(tmp_path, num_labels=3, freeze_encoder=True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    model.train()
    assert model.classifier_dropout.training and not model.spectral_gpt.training
    unfrozen = hf_mae.SpectralGPTForImageClassification(
        hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[], num_labels=3, layerwise_lr_decay=0.5))
    _, kwargs = unfrozen.layerwise_lr_optimizer(1e-3)
    rates = {id(p): g["lr"] for g in kwargs["params"] for p in g["params"]}
    named = dict(unfrozen.named_parameters())
    assert rates[id(named["classifier.weight"])] == pytest.approx(1e-3)
    assert rates[id(named["spectral_gpt.encoder.norm.weight"])] == pytest.approx(1e-3)
    assert rates[id(named["spectral_gpt.encoder.layers.1.mlp.fc1.weight"])] == pytest.approx(5e-4)
    assert rates[id(named["spectral_gpt.embeddings.patch_embeddings.weight"])] == pytest.approx(1.25e-4)
    with pytest.raises(ValueError, match="classifier_pooling.*no \\[CLS\\]"):
        hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[], classifier_pooling="cls")


def test_spectral_gpt_gradient_accumulation_two_equals_one_batch(tmp_path):
    from hf_mae.data.pixels import DataCollatorForPixelWindows, PixelWindowDataset

    windows = torch.utils.data.Subset(PixelWindowDataset(_scene(), window=8), range(8))
    models, losses = [], []
    for batch, accumulation in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = hf_mae.SpectralGPTForImageClassification(hf_mae.SpectralGPTConfig(**GPT, aux_modalities=[], num_labels=3))
        args = TrainingArguments(str(tmp_path / str(batch)), per_device_train_batch_size=batch,
                                 gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.1, optim="sgd",
                                 lr_scheduler_type="constant", use_cpu=True, report_to="none", logging_steps=1,
                                 save_strategy="no", seed=0, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=windows, data_collator=DataCollatorForPixelWindows())
        trainer.train()
        assert not trainer.model_accepts_loss_kwargs
        models.append(model)
        losses.append(next(h["loss"] for h in trainer.state.log_history if "loss" in h))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (key, p1), (_, p2) in zip(models[0].named_parameters(), models[1].named_parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6, msg=key)


def test_v2_classifier_encoder_is_the_v2_model_without_masking_parts():
    """The V2 head holds ProteinMAEV2Model itself (no decoder, no mask token): its residue states equal the
    pretraining model's all-visible ones, and asking it to mask is an error naming mask_ratio."""
    settings = dict(input_dim=12, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32, decoder_hidden_dim=16,
                    max_length=32)
    torch.manual_seed(0)
    pretraining = hf_mae.ProteinMAEV2Model(**settings).eval()
    head = hf_mae.ProteinMAEV2ForSequenceClassification(**settings, num_labels=2).eval()
    missing, unexpected = head.mae.load_state_dict(pretraining.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == sorted(
        k for k in pretraining.state_dict() if k.startswith("decoder.") or k == "mask_token")
    assert head.mae.mask_token is None and head.mae.decoder is None
    x, attention = torch.randn(2, 9, 12), torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    with torch.no_grad():
        expected, _ = pretraining.encode_residues(x, attention)
        states, valid, _ = head.mae._encode(x, attention, None, 0.0, None)
    torch.testing.assert_close(states.last_hidden_state, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="mask_ratio"):
        head.mae(x, attention, mask_ratio=0.5)
