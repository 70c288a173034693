import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertModel, pipeline

import hf_mae
from hf_mae import ChemoMAE, ChemoMAEForPreTraining, SpectraProcessor, WaveMAE, extract_features
from hf_mae.analysis.features import FEATURE_RULES, feature_rule, register_feature_rule

TINY = dict(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, n_blocks=4, n_mask=2, latent_dim=8)

# Tiny tensors: single-threaded is faster, much faster on a shared machine (see conftest).
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def spectra():
    return np.random.default_rng(0).standard_normal((11, 32)).astype(np.float32)


@pytest.mark.parametrize("model_class", [ChemoMAE, WaveMAE, ChemoMAEForPreTraining])
def test_features_are_the_all_visible_latent(model_class, spectra):
    model = model_class(**TINY, dropout=0.5)  # heavy dropout: would make features random in train mode
    model.train()
    z = extract_features(model, spectra, batch_size=4, progress=False)
    assert model.training  # the caller's mode is restored
    assert z.shape == (11, 8) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    model.eval()
    with torch.no_grad():
        expected = model.encode(torch.from_numpy(spectra)).numpy()
    np.testing.assert_allclose(z, expected, atol=1e-6)
    # deterministic, and independent of the batching
    np.testing.assert_array_equal(z, extract_features(model, spectra, batch_size=4, progress=False))
    np.testing.assert_allclose(z, extract_features(model, torch.from_numpy(spectra), batch_size=64, progress=False),
                               atol=1e-6)


def test_dataset_in_numpy_or_dataset_out(spectra, tmp_path):
    model = WaveMAE(**TINY)
    reference = extract_features(model, spectra, progress=False)
    ds = Dataset.from_dict({"spectrum": spectra.tolist(), "label": list(range(11))})
    z = extract_features(model, ds, input_column="spectrum", batch_size=3, progress=False)
    np.testing.assert_allclose(z, reference, atol=1e-6)
    out = extract_features(model, ds, input_column="spectrum", batch_size=3, output="dataset", progress=False)
    assert out.column_names == ["spectrum", "label", "features"] and out["label"][:] == list(range(11))
    np.testing.assert_allclose(out.with_format("numpy")[:]["features"], reference, atol=1e-6)
    # arrays can also come back as a one-column Dataset, and go to a .npy file batch by batch
    assert extract_features(model, spectra, output="dataset", progress=False).column_names == ["features"]
    mm = extract_features(model, spectra, batch_size=5, out_path=tmp_path / "z.npy", progress=False)
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), reference, atol=1e-6)
    assert mm.shape == (11, 8)
    with pytest.raises(ValueError, match="already has a column 'label'"):
        extract_features(model, ds, input_column="spectrum", output="dataset", feature_column="label", progress=False)
    with pytest.raises(ValueError, match="no column 'input_values'"):
        extract_features(model, ds, progress=False)


def test_loads_a_saved_checkpoint_by_path(spectra, tmp_path):
    pretraining = ChemoMAEForPreTraining(**TINY)
    pretraining.save_pretrained(tmp_path / "ckpt")
    z = extract_features(str(tmp_path / "ckpt"), spectra, progress=False)  # AutoModel -> the base ChemoMAE
    with torch.no_grad():
        np.testing.assert_allclose(z, pretraining.eval().encode(torch.from_numpy(spectra)).numpy(), atol=1e-6)


def test_progress_bar(spectra, capsys):
    extract_features(ChemoMAE(**TINY), spectra, batch_size=4, progress=True)
    assert "Extracting features" in capsys.readouterr().err


def _tiny_bert():
    config = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    return BertModel(config, add_pooling_layer=False)


def test_other_architectures_plug_in():
    """A transformers encoder with tokens (how SMILES BERT or a protein model plugs in): mean-pooled last
    hidden state over the attention mask, so padding does not change a sequence's features."""
    bert = _tiny_bert()
    short, long = [2, 5, 7, 3], [2, 9, 9, 4, 6, 3]

    def pad(batch):
        ids = batch["input_ids"]
        width = max(len(x) for x in ids)
        return {"input_ids": torch.tensor([x + [0] * (width - len(x)) for x in ids]),
                "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])}

    ds = Dataset.from_dict({"input_ids": [short, long]})
    both = extract_features(bert, ds, preprocess=pad, progress=False)
    alone = extract_features(bert, Dataset.from_dict({"input_ids": [short]}), preprocess=pad, progress=False)
    np.testing.assert_allclose(both[0], alone[0], atol=1e-5)
    with torch.no_grad():
        hidden = bert.eval()(torch.tensor([long])).last_hidden_state
    np.testing.assert_allclose(both[1], hidden.mean(dim=1)[0].numpy(), atol=1e-5)


def test_rule_order(spectra):
    class WithGetFeatures(ChemoMAE):
        def get_features(self, input_values):
            return self.encode(input_values)[:, :3]

    model = WithGetFeatures(**TINY)
    assert extract_features(model, spectra, progress=False).shape == (11, 3)  # get_features beats encode
    model_type = model.config.model_type
    try:
        register_feature_rule(model_type, lambda m, batch: batch["input_values"][:, :5] * 2)
        assert feature_rule(model) is FEATURE_RULES[model_type]
        np.testing.assert_allclose(extract_features(model, spectra, progress=False), spectra[:, :5] * 2)
    finally:
        FEATURE_RULES.pop(model_type)
    with pytest.raises(ValueError, match="callable"):
        register_feature_rule("x", 3)


def test_bad_input(spectra):
    model = ChemoMAE(**TINY)
    bad = spectra.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in samples \[7\]"):
        extract_features(model, bad, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="empty"):
        extract_features(model, np.zeros((0, 32), np.float32), progress=False)
    with pytest.raises(ValueError, match="`output`"):
        extract_features(model, spectra, output="pandas", progress=False)
    with pytest.raises(ValueError, match="`batch_size`"):
        extract_features(model, spectra, batch_size=0, progress=False)
    with pytest.raises(ValueError, match=".npy"):
        extract_features(model, spectra, out_path="z.txt", progress=False)
    with pytest.raises(ValueError, match="size 32"):  # the model's own boundary check
        extract_features(model, spectra[:, :20], progress=False)
    with pytest.raises(ValueError, match="not rectangular"):
        extract_features(_tiny_bert(), Dataset.from_dict({"input_ids": [[1, 2], [1, 2, 3]]}), progress=False)


def test_latent_feature_pipeline(tmp_path):
    rng = np.random.default_rng(1)
    raw_axis = np.linspace(1000, 2600, 150)
    raw = rng.random((5, 150)) + 1.0
    processor = SpectraProcessor.for_range(1100, 2498, 32)
    model = ChemoMAE(**TINY)
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    extractor = pipeline("latent-feature-extraction", model=str(tmp_path / "m"), device="cpu")
    assert isinstance(extractor, hf_mae.analysis.features.LatentFeaturePipeline)
    z = extractor(raw, wavelengths=raw_axis)
    expected = extract_features(model, processor(raw, wavelengths=raw_axis)["input_values"], progress=False)
    assert z.shape == (5, 8)
    np.testing.assert_allclose(z, expected, atol=1e-5)
    one = extractor(raw[0], wavelengths=raw_axis)
    assert one.shape == (8,)
    np.testing.assert_allclose(one, expected[0], atol=1e-5)
    assert isinstance(extractor(raw, wavelengths=raw_axis, return_tensors=True), torch.Tensor)


def test_latent_feature_pipeline_with_a_tokenizer(tmp_path):
    """A tokenizer-based checkpoint (the SMILES BERT case): the pipeline tokenizes, then mean-pools."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "C": 2, "O": 3, "N": 4, "(": 5, ")": 6, "=": 7, "c": 8, "1": 9}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    bert = _tiny_bert()
    bert.save_pretrained(tmp_path / "b")
    tokenizer.save_pretrained(tmp_path / "b")
    extractor = pipeline("latent-feature-extraction", model=str(tmp_path / "b"), device="cpu")
    assert extractor.feature_extractor is None and extractor.tokenizer is not None
    one = extractor("CC(=O)O")
    with torch.no_grad():
        ids = torch.tensor([[vocab[c] for c in "CC(=O)O"]])
        expected = bert.eval()(ids).last_hidden_state.mean(dim=1)[0].numpy()
    assert one.shape == (16,)
    np.testing.assert_allclose(one, expected, atol=1e-5)
