"""SMILES BERT, ChemBERTaMLM and SmilesMLMFeaturizer: seed examples, Auto classes, fill-mask pipeline,
gradient accumulation, bad input, and the pretraining job. Tiny random models in local folders; no network."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM,
    PreTrainedTokenizerFast, RobertaConfig, RobertaForMaskedLM, Trainer, TrainingArguments, pipeline,
)

import hf_mae
from hf_mae import SMILESBERTForMaskedLM, SMILESBERTMLMConfig, SMILESBERTModel
from hf_mae.data.smiles import load_smiles
from hf_mae.processing.smiles import load_smiles_tokenizer
from hf_mae.training.smiles_mlm import make_mlm_trainer

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread is as fast, and far faster when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus():
    return load_smiles("chembl_drugs", limit=120)


@pytest.fixture(scope="module")
def smiles_bert_dir(tmp_path_factory):
    """A tiny random SMILES BERT saved with the bundled tokenizer, as the pretraining job saves one."""
    path = tmp_path_factory.mktemp("smiles_bert")
    torch.manual_seed(0)
    SMILESBERTForMaskedLM(SMILESBERTMLMConfig(**TINY)).save_pretrained(path)
    load_smiles_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory, corpus):
    """A ChemBERTa-like checkpoint: tiny random RobertaForMaskedLM + a byte-level BPE tokenizer trained here on
    real SMILES (the layout of the public ChemBERTa repositories, which tests never download)."""
    path = tmp_path_factory.mktemp("chemberta_like")
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    core.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                        model_max_length=512)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2)
    RobertaForMaskedLM(config).save_pretrained(path)
    return path


@pytest.fixture
def chemberta_names(monkeypatch, roberta_dir):
    """Point the seed's short names at the local ChemBERTa-like folder (they name public repos otherwise)."""
    from hf_mae.training.smiles_mlm import CHEMBERTA_MODELS

    assert CHEMBERTA_MODELS == {"chemberta-base": "seyonec/ChemBERTa-zinc-base-v1",
                                "chemberta-mlm": "DeepChem/ChemBERTa-77M-MLM"}
    monkeypatch.setitem(CHEMBERTA_MODELS, "chemberta-base", str(roberta_dir))
    monkeypatch.setitem(CHEMBERTA_MODELS, "chemberta-mlm", str(roberta_dir))


# ---------------------------------------------------------------------------------------------- seed examples

def test_seed_basic_mlm_usage(chemberta_names):
    from hf_mae.representations.sequential.language_model import SmilesMLMFeaturizer

    # Create MLM featurizer
    mlm_model = SmilesMLMFeaturizer(
        model_name="chemberta-mlm",
        mask_probability=0.15
    )

    # Generate masked predictions
    smiles = "CC(=O)OC1=CC=CC=C1C(=O)O"  # Aspirin
    masked_predictions = mlm_model.predict_masked(smiles)

    assert len(masked_predictions) >= 1
    for prediction in masked_predictions:
        assert prediction.original_token is not None and "<mask>" in prediction.masked_smiles
        assert len(prediction.candidates) == 5
        probabilities = [c.probability for c in prediction.candidates]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6
        assert all(isinstance(c.smiles, str) and c.smiles for c in prediction.candidates)


def test_seed_fine_tuning_on_custom_data(chemberta_names, corpus):
    from hf_mae.representations.sequential.language_model import ChemBERTaMLM

    # Initialize model for fine-tuning
    model = ChemBERTaMLM(
        pretrained_model="chemberta-base",
        vocab_size=1000,
        max_length=512
    )

    # Fine-tune on custom SMILES dataset ("..." of the seed: real ChEMBL drugs)
    training_smiles = ["CCO", "c1ccccc1", "CC(=O)O", *corpus[:27]]
    report = model.fine_tune(training_smiles, epochs=10, batch_size=32, verbose=False)

    assert model.model.get_input_embeddings().weight.shape[0] == 1000
    assert report["n_train"] + report["n_validation"] == 30 and report["n_skipped"] == 0
    assert math.isclose(report["perplexity"], math.exp(report["eval_loss"]), rel_tol=1e-9)
    assert 0.0 <= report["masked_token_accuracy"] <= 1.0 and report["n_masked_tokens"] > 0


def test_seed_custom_mlm_configuration():
    from hf_mae.representations.sequential.language_model import SMILESBERTMLMConfig

    # Custom configuration
    config = SMILESBERTMLMConfig(
        vocab_size=2000,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        mask_token_id=103,
        pad_token_id=0
    )

    # Use config to initialize model
    from hf_mae import ChemBERTaMLM
    model = ChemBERTaMLM(config=config)

    assert isinstance(model.model, SMILESBERTForMaskedLM)
    assert model.tokenizer.mask_token_id == config.mask_token_id and model.tokenizer.pad_token_id == 0
    assert 80e6 < model.model.num_parameters() < 100e6   # BERT-base encoder with a 2000-token vocabulary


def test_seed_config_defaults():
    config = SMILESBERTMLMConfig()
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.max_position_embeddings) == (1000, 768, 12, 12, 3072, 512)
    assert (config.mask_probability, config.replace_probability, config.random_probability) == (0.15, 0.8, 0.1)
    assert config.model_type == "hf_mae_smiles_bert"


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_size=33), "divisible"),
    (dict(vocab_size=100), "mask_token_id"),
    (dict(pad_token_id=103), "must differ"),
    (dict(replace_probability=0.95), "<= 1"),
    (dict(mask_probability=0.0), "mask_probability"),
    (dict(hidden_size="768"), "integer"),
    (dict(hidden_act="swish2"), "hidden_act"),
    (dict(is_decoder=True), "is_decoder"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SMILESBERTMLMConfig(**{**TINY, **kwargs})


# --------------------------------------------------------------------------------------- Auto classes, pipeline

def test_auto_classes_round_trip(smiles_bert_dir):
    assert type(AutoConfig.from_pretrained(smiles_bert_dir)) is SMILESBERTMLMConfig
    mlm = AutoModelForMaskedLM.from_pretrained(smiles_bert_dir).eval()
    encoder = AutoModel.from_pretrained(smiles_bert_dir).eval()
    assert type(mlm) is SMILESBERTForMaskedLM and type(encoder) is SMILESBERTModel
    tokenizer = AutoTokenizer.from_pretrained(smiles_bert_dir)
    batch = tokenizer(["CC(=O)O", "c1ccc(Cl)cc1"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = mlm(**batch).logits
        hidden = encoder(**batch).last_hidden_state
        assert torch.equal(hidden, mlm.bert(**batch).last_hidden_state)
    assert logits.shape == (2, batch["input_ids"].shape[1], 1000)
    # the MLM head is tied to the token embeddings (BERT's tying, declared in _tied_weights_keys)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()


def test_fill_mask_pipeline(smiles_bert_dir):
    fill = pipeline("fill-mask", model=str(smiles_bert_dir), top_k=3)
    out = fill("CC(=O)[MASK]c1ccccc1")
    assert len(out) == 3
    for row in out:
        assert row["sequence"] == f"CC(=O){row['token_str']}c1ccccc1"


# -------------------------------------------------------------------------------------- gradient accumulation

def _premasked_examples(tokenizer, corpus):
    """Four fixed examples with 1, 2, 5 and 9 labelled tokens: per-micro-batch means differ from the mean."""
    examples = []
    for smiles, n_masked in zip(corpus[:4], (1, 2, 5, 9)):
        ids = tokenizer(smiles)["input_ids"]
        labels = [-100] * len(ids)
        for position in range(1, n_masked + 1):
            labels[position] = ids[position]
            ids = ids[:position] + [tokenizer.mask_token_id] + ids[position + 1:]
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _collate(examples):
    width = max(len(e["input_ids"]) for e in examples)
    pad = lambda rows, value: torch.tensor([r + [value] * (width - len(r)) for r in rows])  # noqa: E731
    input_ids = pad([e["input_ids"] for e in examples], 0)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
            "labels": pad([e["labels"] for e in examples], -100)}


def _one_step(model, examples, tmp_path, batch_size, accumulation, with_loss_func):
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0, optim="sgd",
                             lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0, report_to="none",
                             save_strategy="no", disable_tqdm=True, dataloader_pin_memory=False, seed=0)
    if with_loss_func:
        trainer = make_mlm_trainer(model, None, args, examples, _collate)
    else:
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=_collate)
    trainer.train()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("kind", ["smiles_bert", "roberta_via_fine_tune_trainer", "stock_bert"])
def test_gradient_accumulation_matches_full_batch(kind, corpus, roberta_dir, tmp_path):
    """One optimizer step of GA=2 x 2 SMILES equals one step on the 4 SMILES at once."""
    def build():
        torch.manual_seed(0)
        if kind == "smiles_bert":
            return SMILESBERTForMaskedLM(SMILESBERTMLMConfig(**TINY, hidden_dropout_prob=0, attention_probs_dropout_prob=0))
        if kind == "stock_bert":
            return BertForMaskedLM(BertConfig(vocab_size=1000, **TINY, hidden_dropout_prob=0, attention_probs_dropout_prob=0))
        return RobertaForMaskedLM.from_pretrained(roberta_dir, hidden_dropout_prob=0, attention_probs_dropout_prob=0)

    tokenizer = AutoTokenizer.from_pretrained(roberta_dir) if kind.startswith("roberta") else load_smiles_tokenizer()
    examples = _premasked_examples(tokenizer, corpus)
    start = torch.cat([p.detach().flatten() for p in build().parameters()])
    loss_func = kind.startswith("roberta")
    full = _one_step(build(), examples, tmp_path / "full", 4, 1, loss_func) - start
    accumulated = _one_step(build(), examples, tmp_path / "ga", 2, 2, loss_func) - start
    assert full.abs().max() > 1e-4
    if kind == "stock_bert":
        # the trap this model fixes: stock BertForMaskedLM's per-micro-batch mean is not divided by GA
        assert not torch.allclose(accumulated, full, rtol=1e-3, atol=1e-6)
    else:
        torch.testing.assert_close(accumulated, full, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ featurizer, bad input

@pytest.fixture(scope="module")
def featurizer(smiles_bert_dir):
    from hf_mae import SmilesMLMFeaturizer

    return SmilesMLMFeaturizer(str(smiles_bert_dir), mask_probability=0.15, top_k=3)


def test_predict_masked_with_written_masks(featurizer):
    predictions = featurizer.predict_masked("CC(=O)[MASK]c1ccc([MASK])cc1")
    assert [p.position for p in predictions] == [7, 14]
    for p in predictions:
        assert p.original_token is None and p.masked_smiles == "CC(=O)[MASK]c1ccc([MASK])cc1"
        assert len(p.candidates) == 3 and all(c.token not in ("[MASK]", "[PAD]", "[CLS]") for c in p.candidates)
        assert all(c.valid in (True, False) for c in p.candidates)       # RDKit is installed for the tests
    best_second = predictions[1].candidates[0].token
    for c in predictions[0].candidates:   # this position gets the candidate, the other one its top-1
        assert c.smiles == f"CC(=O){c.token}c1ccc({best_second})cc1"


def test_predict_masked_random_positions_are_seeded(featurizer):
    smiles = "CC(=O)Oc1ccccc1C(=O)O"
    first = featurizer.predict_masked(smiles)
    assert [p.position for p in first] == [p.position for p in featurizer.predict_masked(smiles)]
    assert len(first) == round(0.15 * 21)
    tokens = featurizer.tokenizer.convert_ids_to_tokens(featurizer.tokenizer(smiles)["input_ids"])
    for p in first:
        assert p.original_token == tokens[p.position]
        # the other hidden positions keep their original tokens in the filled-in SMILES
        for c in p.candidates:
            expected = tokens[1:-1]
            expected[p.position - 1] = c.token
            assert c.smiles == "".join(expected)


def test_predict_masked_says_when_nothing_is_masked(smiles_bert_dir):
    from hf_mae import SmilesMLMFeaturizer

    no_masking = SmilesMLMFeaturizer(str(smiles_bert_dir), mask_probability=0.0)
    with pytest.raises(ValueError, match="no position to predict"):
        no_masking.predict_masked("CCO")
    assert len(no_masking.predict_masked("CC[MASK]")) == 1


def test_featurize_is_batched_and_padding_invariant(featurizer, corpus):
    smiles = corpus[:5]
    together = featurizer.featurize(smiles)
    assert together.shape == (5, 32) and together.dtype == np.float32
    one_by_one = np.concatenate([featurizer.featurize([s]) for s in smiles])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(featurizer.featurize(smiles[0]), together[:1], atol=1e-6)   # a bare string: one molecule


@pytest.mark.parametrize("bad, message", [
    ("C1CC", "not a valid SMILES"),
    ("", "empty SMILES"),
    ("C[Hg]C", "not in the tokenizer's vocabulary"),
    (None, "not a string"),
    ("C" * 200, "max_length"),
])
def test_featurize_rejects_bad_input(featurizer, bad, message):
    with pytest.raises(ValueError, match=message):
        featurizer.featurize(["CCO", bad])


def test_featurize_truncates_only_when_asked(featurizer):
    with pytest.warns(UserWarning, match="truncated 1 SMILES"):
        out = featurizer.featurize(["CCO", "C" * 200], truncation=True)
    assert out.shape == (2, 32) and np.isfinite(out).all()


def test_fine_tune_reports_skips_and_can_raise(corpus):
    from hf_mae import ChemBERTaMLM

    mlm = ChemBERTaMLM(config=SMILESBERTMLMConfig(**TINY), max_length=128)
    bad = ["", "C1CC", "CC X", "C" * 200]
    with pytest.raises(ValueError, match="4 of 24"):
        mlm.fine_tune(corpus[:20] + bad, epochs=1, batch_size=8, on_invalid="raise", verbose=False)
    report = mlm.fine_tune(corpus[:20] + bad, epochs=1, batch_size=8, verbose=False)
    assert report["n_skipped"] == 4 and report["n_train"] + report["n_validation"] == 20
    with pytest.raises(ValueError, match="`config.mask_token_id`=5"):
        ChemBERTaMLM(config=SMILESBERTMLMConfig(**TINY, mask_token_id=5))
    with pytest.raises(ValueError, match="exceeds"):
        ChemBERTaMLM(config=SMILESBERTMLMConfig(**TINY), max_length=512)


# --------------------------------------------------------------------------------------------- pretraining job

def test_pretrain_job_saves_model_and_tokenizer(tmp_path, capsys):
    from hf_mae.cli import main

    out = tmp_path / "run"
    code = main(["pretrain", "smiles-bert", "--output_dir", str(out), "--max_steps", "8", "--hidden_size", "32",
                 "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
                 "--max_train_samples", "400", "--max_eval_samples", "64", "--per_device_train_batch_size", "16",
                 "--eval_strategy", "no", "--logging_steps", "4", "--disable_tqdm", "true", "--use_cpu", "true",
                 "--dataloader_pin_memory", "false"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "validation masked-token accuracy" in printed and "most frequent token 'c'" in printed
    assert "max |logit difference| = 0.0e+00" in printed
    saved = json.loads((out / "all_results.json").read_text())  # what hf-mae push puts in the model card
    assert 0.0 <= saved["validation_masked_token_accuracy"] <= 1.0 and saved["validation_n_masked_tokens"] > 0
    assert type(AutoModelForMaskedLM.from_pretrained(out)) is SMILESBERTForMaskedLM
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.decode(tokenizer("Cl[C@@H]1CC%10CC1")["input_ids"], skip_special_tokens=True) == "Cl[C@@H]1CC%10CC1"
    assert hf_mae.cli.PRETRAIN_JOBS["smiles-bert"] == "hf_mae.training.pretrain_smiles:pretrain_smiles_bert"


def test_masked_lm_metrics_are_seeded_and_never_empty(smiles_bert_dir, corpus):
    from hf_mae.training.smiles_mlm import encode_smiles_for_mlm, masked_lm_metrics

    model = AutoModelForMaskedLM.from_pretrained(smiles_bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(smiles_bert_dir)
    examples, _ = encode_smiles_for_mlm(["CCO", "CN"] + corpus[:6], tokenizer, 128)
    first = masked_lm_metrics(model, tokenizer, examples, batch_size=3, seed=3, baseline_token_id=1)
    assert first == masked_lm_metrics(model, tokenizer, examples, batch_size=3, seed=3, baseline_token_id=1)
    assert first["n_masked_tokens"] >= len(examples)   # at least one position per molecule
    tiny = masked_lm_metrics(model, tokenizer, examples[:1], seed=0)   # "CCO": 3 atoms, usually none drawn
    assert tiny["n_masked_tokens"] >= 1 and math.isclose(tiny["perplexity"], math.exp(tiny["loss"]))
