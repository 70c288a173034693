"""transformers' own model tests (``ModelTesterMixin``, ``ConfigTester``) against every hf_mae model and config.

The mixins come from the installed transformers version's source distribution, extracted by
``scripts/fetch_transformers_tests.py`` (``scripts/setup.sh`` runs it). Each architecture has a small
``ModelTester`` in the style of transformers' ViTMAE test: tiny sizes, and masks fixed through ``noise`` so
that two calls give the same outputs. Tests that do not apply to a class are listed, with the reason, in
``NOT_APPLICABLE``; every other common test must pass.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import unittest
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _common_tests_folder() -> Path:
    """The folder that holds ``transformers_common_tests`` for the installed transformers version."""
    spec = importlib.util.spec_from_file_location("_fetch_transformers_tests", ROOT / "scripts" / "fetch_transformers_tests.py")
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    folder = fetch.tests_dir()
    if not (folder / fetch.PACKAGE / "test_modeling_common.py").is_file():
        raise RuntimeError(
            f"transformers' common model tests are not in {folder}: run `scripts/setup.sh` (or "
            f"`python scripts/fetch_transformers_tests.py`) once to extract them from the transformers source "
            f"distribution."
        )
    return folder


sys.path.insert(0, str(_common_tests_folder()))

import transformers_common_tests.test_modeling_common as common  # noqa: E402
from transformers_common_tests.test_configuration_common import ConfigTester  # noqa: E402
from transformers_common_tests.test_modeling_common import ModelTesterMixin, floats_tensor, ids_tensor  # noqa: E402

from hf_mae._auto import REGISTRY  # noqa: E402

from hf_mae.models import (  # noqa: E402
    ChemoMAE,
    ChemoMAEConfig,
    ChemoMAEForPreTraining,
    ChemoMAEForSequenceClassification,
    MAEEncoder,
    ProteinInteractionConfig,
    ProteinInteractionForSequenceClassification,
    ProteinInteractionModel,
    ProteinMAEV2Config,
    ProteinMAEV2ForPreTraining,
    ProteinMAEV2ForSequenceClassification,
    ProteinMAEV5Config,
    ProteinMAEV5ForPreTraining,
    ProteinMAEV5ForSequenceClassification,
    SMILESBERTForMaskedLM,
    SMILESBERTForSequenceClassification,
    SMILESBERTMLMConfig,
    SMILESBERTModel,
    SpectralGPTConfig,
    SpectralGPTForImageClassification,
    SpectralGPTForPreTraining,
    SpectralGPTModel,
    TransformerMAE,
    WaveMAE,
    WaveMAEConfig,
    WaveMAEForPreTraining,
    WaveMAEForSequenceClassification,
)

# ---------------------------------------------------------------------------------------------------------
# The common tests know a model's role (base model without a loss, sequence or image classifier, masked LM)
# from transformers' `*_MAPPING_NAMES`, which list only transformers' own model types. Add hf_mae's, from the
# same registry that registers them with the Auto classes (in the test module's namespace only).
# ---------------------------------------------------------------------------------------------------------
def _with_hf_mae(mapping_name: str, auto_class_name: str) -> None:
    names = {config_class.model_type: models[auto].__name__
             for config_class, models, _ in REGISTRY for auto in models if auto.__name__ == auto_class_name}
    setattr(common, mapping_name, {**getattr(common, mapping_name), **names})


for _mapping, _auto in (("MODEL_MAPPING_NAMES", "AutoModel"),
                        ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", "AutoModelForSequenceClassification"),
                        ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES", "AutoModelForImageClassification"),
                        ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", "AutoModelForMaskedLM")):
    _with_hf_mae(_mapping, _auto)


# ---------------------------------------------------------------------------------------------------------
# The one list of common tests that do not apply, per test class, with the reason.
# ---------------------------------------------------------------------------------------------------------
_CONTINUOUS = "inputs are continuous values (spectra, residue embeddings, cubes): there are no token embeddings"
_NOT_TOKENS = {
    "test_resize_tokens_embeddings": _CONTINUOUS + " to resize",
    "test_resize_embeddings_untied": _CONTINUOUS + " to resize",
    "test_resize_embeddings_untied_no_reinit_on_post_init": _CONTINUOUS + " to resize",
    "test_inputs_embeds": _CONTINUOUS + "; the input already is a sequence of vectors (no `inputs_embeds`)",
    "test_inputs_embeds_matches_input_ids": _CONTINUOUS + " (no `input_ids`/`inputs_embeds` pair)",
    # The common test asserts nn.Embedding; test_input_embeddings_are_the_patch_projection checks ours.
    "test_model_get_set_embeddings": _CONTINUOUS + ": get_input_embeddings() is the nn.Linear patch/residue "
                                     "projection (checked by test_input_embeddings_are_the_patch_projection)",
}
_SEED_TRIPLE = {
    # ChemoMAE/WaveMAE outputs unpack as the seed's triple `x_recon, z, visible = mae(x)`, so iterating one
    # yields those three values instead of the field names this common test iterates over.
    "test_batching_equivalence": "iterating the output yields the seed's (x_recon, z, visible_mask), not field "
                                 "names (test_spectral_mae_batching_equivalence checks batching instead)",
}
_SEED_SIGNATURE = {
    "test_jit_trace_matches_eager": "forward(input_values, visible_mask=None, *, n_mask=None, noise=None, ...) keeps the "
                                    "seeds' keyword-only arguments, which torch.jit.trace cannot pass (it binds "
                                    "positional-or-keyword ones only); test_torch_export_matches_eager covers it",
}
_VOCABULARY_MISMATCH = {
    # Its second half sets `vocab_size` to provoke a size mismatch in the base model; the first half (num_labels)
    # is what test_can_load_ignoring_mismatched_shapes checks too.
    "test_load_with_mismatched_shapes": _CONTINUOUS + ": changing `vocab_size` changes no weight, so the expected "
                                        "mismatch error cannot happen (test_can_load_ignoring_mismatched_shapes "
                                        "covers the classifier's num_labels mismatch)",
}
_LEFT_PADDING = {
    # Residue i is position i (learned position tables, patches of consecutive residues): the protein models
    # refuse left-padded masks with a ValueError. Their right-padding and no-mask variants run.
    name: "left-padded attention masks are refused (residue i is position i); right padding is tested"
    for name in dir(ModelTesterMixin)
    if name.startswith("test_eager_matches_sdpa_inference") and "pad_left" in name and "no_attn_mask" not in name
}
_BOOL_OUTPUTS = {
    # The test compares tuple and dict outputs, but builds its failure message eagerly with `a - b`, which
    # torch refuses for bool tensors even when they are equal. test_tuple_and_dict_outputs_agree checks the same.
    "test_model_outputs_equivalence": "the outputs include bool masks (visible/hidden tokens), which the common "
                                      "test subtracts (test_tuple_and_dict_outputs_agree checks them instead)",
}
_ENCODER_ONLY_BASE = {
    # The common test saves `getattr(model, base_model_prefix)` as a base model and reloads the classifier from
    # it. These heads hold only the MAE's encoder under that prefix (no decoder, nothing a base model can be
    # saved from); loading them from a saved base model and from a pretraining run is tested in
    # tests/test_task_heads.py (encoder weights bit-identical, missing keys = the head's only).
    "test_correct_missing_keys": "the head keeps only the encoder under `base_model_prefix`, not a saveable base "
                                 "model (tests/test_task_heads.py loads it from base and pretraining checkpoints)",
}
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "ChemoMAEModelTest": {**_NOT_TOKENS, **_SEED_TRIPLE, **_SEED_SIGNATURE, **_BOOL_OUTPUTS},
    "ChemoMAEForPreTrainingTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS},
    "WaveMAEModelTest": {**_NOT_TOKENS, **_SEED_TRIPLE, **_SEED_SIGNATURE, **_BOOL_OUTPUTS},
    "WaveMAEForPreTrainingTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS},
    "ProteinMAEV2ModelTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS, **_LEFT_PADDING},
    "ProteinMAEV5ModelTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS, **_LEFT_PADDING},
    "ProteinMAEV5ForPreTrainingTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS, **_LEFT_PADDING},
    "ProteinInteractionModelTest": {**_NOT_TOKENS, **_VOCABULARY_MISMATCH},
    "ProteinInteractionV2ModelTest": {**_NOT_TOKENS, **_VOCABULARY_MISMATCH},
    "SpectralGPTModelTest": dict(_NOT_TOKENS),
    "SpectralGPTForPreTrainingTest": {**_NOT_TOKENS, **_BOOL_OUTPUTS},
    "SpectralGPTForPreTrainingWithAuxTest": {
        **_NOT_TOKENS, **_BOOL_OUTPUTS,
        "test_batching_equivalence": "auxiliary images come as a dict of tensors, which the common test does not "
                                     "slice per row (SpectralGPTForPreTrainingTest covers batching without them)",
    },
    "SMILESBERTModelTest": {},
    "ChemoMAEForSequenceClassificationTest": {**_NOT_TOKENS, **_VOCABULARY_MISMATCH, **_ENCODER_ONLY_BASE},
    "WaveMAEForSequenceClassificationTest": {**_NOT_TOKENS, **_VOCABULARY_MISMATCH, **_ENCODER_ONLY_BASE},
    "ProteinMAEV2ForSequenceClassificationTest": {**_NOT_TOKENS, **_LEFT_PADDING, **_VOCABULARY_MISMATCH,
                                                  **_ENCODER_ONLY_BASE},
    "ProteinMAEV5ForSequenceClassificationTest": {**_NOT_TOKENS, **_LEFT_PADDING, **_VOCABULARY_MISMATCH},
}


def _not_applicable(reason: str):
    def test(self):
        self.skipTest(f"not applicable: {reason}")
    return test


def _apply_not_applicable() -> None:
    if set(NOT_APPLICABLE) != set(COMMON_TEST_CASES):  # every test class has its (possibly empty) entry
        raise KeyError(f"NOT_APPLICABLE lists {sorted(NOT_APPLICABLE)}, the test classes are {sorted(COMMON_TEST_CASES)}.")
    for class_name, tests in NOT_APPLICABLE.items():
        test_class = globals()[class_name]
        for name, reason in tests.items():
            if not hasattr(test_class, name):  # a renamed common test must not leave a stale entry behind
                raise AttributeError(f"NOT_APPLICABLE[{class_name!r}] names {name!r}, which {class_name} does not have.")
            setattr(test_class, name, _not_applicable(reason))


# ---------------------------------------------------------------------------------------------------------
# Model testers
# ---------------------------------------------------------------------------------------------------------
class _Tester:
    """What ModelTesterMixin reads: sizes, ``get_config`` and ``prepare_config_and_inputs_for_common``."""

    batch_size = 3
    is_training = True
    num_hidden_layers = 2
    num_attention_heads = 2
    hidden_size = 16

    def __init__(self, parent: unittest.TestCase):
        self.parent = parent

    def prepare_config_and_inputs_for_common(self):
        return self.get_config(), self.inputs()


class SpectralMAETester(_Tester):
    """ChemoMAE/WaveMAE: 32-point spectra in 16 blocks, 12 hidden; the encoder sees CLS + 4 visible blocks.

    ``image_size``/``patch_size`` are only what the common eager-vs-SDPA test sizes ``noise`` from:
    (image_size // patch_size) ** 2 = 16 blocks.
    """

    seq_length = 5
    image_size, patch_size = 4, 1

    def __init__(self, parent, config_class):
        super().__init__(parent)
        self.config_class = config_class

    def get_config(self):
        return self.config_class(seq_len=32, n_blocks=16, n_mask=12, d_model=16, nhead=2, num_layers=2,
                                 dim_feedforward=32, latent_dim=8, dec_hidden=16, dropout=0.0, dec_dropout=0.0)

    def inputs(self):
        return {"input_values": floats_tensor([self.batch_size, 32]), "noise": torch.rand(self.batch_size, 16)}


class SpectralMAEClassifierTester(SpectralMAETester):
    """The task heads read every block (no mask): CLS + 16 block tokens."""

    seq_length = 17

    def inputs(self):
        return {"input_values": floats_tensor([self.batch_size, 32])}


def _residues(batch: int, length: int, dim: int, padded: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Residue embeddings and a right-padded mask: the last row has ``padded`` padding positions."""
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length - padded:] = 0
    return floats_tensor([batch, length, dim]), mask


# ``image_size``/``patch_size`` in the protein testers are only what the common eager-vs-SDPA test sizes `noise`
# from: (image_size // patch_size) ** 2 tokens (residues for V2, patches for V5).
PROTEIN_SIZES = dict(input_dim=12, max_length=16, embed_dim=16, num_layers=2, nhead=2, dim_feedforward=32, dropout=0.0)


class ProteinMAEV2Tester(_Tester):
    """V2: 9 residues of 12-d embeddings (one protein padded); the encoder sees every position."""

    seq_length = 9
    image_size, patch_size = 3, 1

    def get_config(self):
        return ProteinMAEV2Config(**PROTEIN_SIZES, decoder_hidden_dim=16)

    def inputs(self):
        embeddings, mask = _residues(self.batch_size, self.seq_length, 12, padded=3)
        return {"residue_embeddings": embeddings, "attention_mask": mask,
                "noise": torch.rand(self.batch_size, self.seq_length)}


class ProteinMAEV2ClassifierTester(ProteinMAEV2Tester):
    """The V2 task head reads every residue (no mask)."""

    def inputs(self):
        inputs = super().inputs()
        del inputs["noise"]
        return inputs


def _v5_config() -> ProteinMAEV5Config:
    # 16 residues in 4 patches of 4
    return ProteinMAEV5Config(**PROTEIN_SIZES, num_patches=4, decoder_embed_dim=16, decoder_num_layers=1,
                              decoder_nhead=2, decoder_dim_feedforward=32)


class ProteinMAEV5Tester(_Tester):
    """V5 encoder: CLS + 4 patches (10 residues: 3 of them hold residues, one protein padded)."""

    seq_length = 5
    image_size, patch_size = 2, 1

    def get_config(self):
        return _v5_config()

    def inputs(self):
        embeddings, mask = _residues(self.batch_size, 10, 12, padded=3)
        return {"residue_embeddings": embeddings, "attention_mask": mask}


class ProteinMAEV5ForPreTrainingTester(ProteinMAEV5Tester):
    """V5 pretraining: 75% of 4 patches hidden, the encoder sees CLS + 1 visible slot."""

    seq_length = 2

    def inputs(self):
        return {**super().inputs(), "noise": torch.rand(self.batch_size, 4)}


class ProteinInteractionTester(_Tester):
    """Pair classifier on a V5 encoder: two cross-attention layers over A's and B's CLS + 4 patches each.

    The interaction model's hidden states are A's and B's token sets side by side (5 + 5 tokens).
    """

    seq_length = 10

    def get_config(self):
        return ProteinInteractionConfig(encoder_config=_v5_config(), cross_attention_layers=2,
                                        cross_attention_heads=2, cross_attention_dim_feedforward=32)

    def inputs(self):
        a, mask_a = _residues(self.batch_size, 10, 12, padded=3)
        b, mask_b = _residues(self.batch_size, 14, 12, padded=6)
        return {"residue_embeddings_a": a, "residue_embeddings_b": b, "attention_mask_a": mask_a,
                "attention_mask_b": mask_b}


class ProteinInteractionV2Tester(ProteinInteractionTester):
    """Pair classifier on a V2 encoder through ``V2ToV5Adapter`` (4 patches of 4 residues + CLS per protein)."""

    def get_config(self):
        return ProteinInteractionConfig(encoder_config=ProteinMAEV2Config(**PROTEIN_SIZES, decoder_hidden_dim=16),
                                        adapter_dim=16, adapter_num_patches=4, adapter_patch_size=4,
                                        cross_attention_layers=2, cross_attention_heads=2,
                                        cross_attention_dim_feedforward=32)


class SpectralGPTTester(_Tester):
    """8-band 8 x 8 cubes in 4 x 2 x 2 patches of 2 bands x 4 x 4 pixels: 16 tokens.

    ``image_size``/``patch_size`` here are only what the common eager-vs-SDPA test sizes ``noise`` from:
    (image_size // patch_size) ** 2 = 16 tokens (the cube itself is 8 x 8 pixels, see ``get_config``).
    """

    seq_length = 16
    image_size, patch_size = 16, 4
    aux_modalities: list[str] = []

    def get_config(self):
        return SpectralGPTConfig(
            image_size=8, patch_size=4, num_bands=8, band_patch_size=2, hidden_size=16, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16, decoder_num_hidden_layers=1,
            decoder_num_attention_heads=2, decoder_intermediate_size=32, aux_modalities=self.aux_modalities,
            aux_encoder_type=["vit", "cnn"][: len(self.aux_modalities)] or "vit", aux_hidden_size=16,
            aux_patch_size=4, aux_num_hidden_layers=1, aux_num_attention_heads=2, aux_intermediate_size=32,
            projection_dim=8, num_labels=3)

    def inputs(self):
        return {"pixel_values": floats_tensor([self.batch_size, 8, 8, 8])}


class SpectralGPTForPreTrainingTester(SpectralGPTTester):
    """75% of the 16 tokens hidden: the encoder sees 4."""

    seq_length = 4

    def inputs(self):
        return {**super().inputs(), "noise": torch.rand(self.batch_size, 16)}


class SpectralGPTWithAuxTester(SpectralGPTForPreTrainingTester):
    """With an IR image (ViT-style encoder) and an autofluorescence image (CNN-style), one sample missing IR."""

    aux_modalities = ["ir", "af"]

    def inputs(self):
        present = torch.ones(self.batch_size, dtype=torch.bool)
        present[-1] = False
        return {**super().inputs(),
                "aux_pixel_values": {name: floats_tensor([self.batch_size, 1, 8, 8]) for name in self.aux_modalities},
                "aux_present": {"ir": present}}


class SMILESBERTTester(_Tester):
    seq_length = 7
    vocab_size = 40

    def get_config(self):
        return SMILESBERTMLMConfig(vocab_size=self.vocab_size, hidden_size=16, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                                   pad_token_id=0, mask_token_id=4, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)

    def inputs(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[-1, -2:] = 0
        return {"input_ids": input_ids, "attention_mask": attention_mask}


# ---------------------------------------------------------------------------------------------------------
# Test classes
# ---------------------------------------------------------------------------------------------------------
class _HfMaeModelTest(ModelTesterMixin):
    _tester_class: type[_Tester]
    _tester_args: tuple = ()
    config_has_text_modality = False

    def setUp(self):
        self.model_tester = self._tester_class(self, *self._tester_args)
        self.config_tester = ConfigTester(self, config_class=type(self.model_tester.get_config()),
                                          has_text_modality=self.config_has_text_modality)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_input_embeddings_are_the_patch_projection(self):
        """get_input_embeddings() is the module that turns inputs into vectors, so adapters and
        enable_input_require_grads() hook the right place."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config))
            embeddings = model.get_input_embeddings()
            self.assertIsInstance(embeddings, (torch.nn.Linear, torch.nn.Embedding), model_class.__name__)
            seen = []
            handle = embeddings.register_forward_hook(lambda module, args, output: seen.append(output))
            model.eval()
            with torch.no_grad():
                model(**self._prepare_for_class(inputs, model_class))
            handle.remove()
            self.assertTrue(seen, f"{model_class.__name__}: get_input_embeddings() is not used by forward")


    def test_tuple_and_dict_outputs_agree(self):
        """``return_dict=False`` gives ``to_tuple()`` of the ModelOutput, bool masks included (same model, same
        inputs, same kernels: equal bit for bit)."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            for extra in ({}, {"output_hidden_states": True, "output_attentions": True}):
                prepared = self._prepare_for_class(inputs, model_class, return_labels=True)
                with torch.no_grad():
                    as_tuple = model(**prepared, **extra, return_dict=False)
                    as_dict = model(**prepared, **extra, return_dict=True)
                self.assertIsInstance(as_tuple, tuple)
                _assert_same(self, as_tuple, as_dict.to_tuple(), model_class.__name__)


    def test_torch_export_matches_eager(self):
        """``torch.export`` captures every model with the tester's inputs (attention masks, noise, aux images
        included): the forward must not branch on tensor values. The exported program runs on other values."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            config.return_dict = False   # tuples out, as a deployed graph would return them
            model = model_class(copy.deepcopy(config)).eval()
            prepared = self._prepare_for_class(inputs, model_class)
            exported = torch.export.export(model, args=(), kwargs=prepared)
            other = _resampled(prepared)
            with torch.no_grad():
                expected = model(**other)
            _assert_close(self, exported.module()(**other), expected, model_class.__name__)

    # The tracer warns on every Python comparison of a size (shape checks); a traced graph is for fixed shapes.
    # torch deprecates jit in favour of export, which test_torch_export_matches_eager covers.
    @pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
    @pytest.mark.filterwarnings("ignore:`torch.jit.trace")
    def test_jit_trace_matches_eager(self):
        """``torch.jit.trace`` of the tuple output (``return_dict=False``), replayed on other values."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        config.return_dict = False
        for model_class in self.all_model_classes:
            model = model_class(copy.deepcopy(config)).eval()
            prepared = self._prepare_for_class(inputs, model_class)
            with torch.no_grad():
                # strict=False: SpectralGPT's output holds a dict of per-modality losses, fixed by the config
                traced = torch.jit.trace(model, example_kwarg_inputs=prepared, check_trace=False, strict=False)
                other = _resampled(prepared)
                _assert_close(self, traced(**other), model(**other), model_class.__name__)


def _resampled(inputs: dict) -> dict:
    """Same shapes, new float values and new right-padded attention masks (other lengths per row): a traced or
    exported graph must not have baked either in."""
    def new(key, value):
        if isinstance(value, dict):
            return {name: new(name, item) for name, item in value.items()}
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return torch.rand_like(value) if value.min() >= 0 and value.max() <= 1 else torch.randn_like(value)
        if isinstance(value, torch.Tensor) and key.startswith("attention_mask"):
            batch, length = value.shape
            lengths = torch.randint(1, length + 1, (batch, 1))
            lengths[0] = length                          # one full row, so the padded length stays as traced
            return (torch.arange(length) < lengths).to(value.dtype)
        return value
    return {key: new(key, value) for key, value in inputs.items()}


def _assert_close(test: unittest.TestCase, actual, expected, where: str) -> None:
    """fp32 outputs of the same model through a traced/exported graph: op order may differ by fusion or
    decomposition, a few ulp per op over at most ~100 accumulated terms here, so 1e-5 relative to the largest
    value compared (an O(1) difference, e.g. a wrong mask, is far above it); ints and bools must be equal."""
    if isinstance(expected, (tuple, list)):
        test.assertEqual(len(actual), len(expected), where)
        for a, b in zip(actual, expected):
            _assert_close(test, a, b, where)
    elif isinstance(expected, dict):
        for key in expected:
            _assert_close(test, actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, torch.Tensor) and expected.is_floating_point():
        scale = float(expected.abs().max()) if expected.numel() else 1.0
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * max(scale, 1.0), msg=where)
    elif isinstance(expected, torch.Tensor):
        test.assertTrue(torch.equal(actual, expected), where)
    else:
        test.assertEqual(actual, expected, where)


def _assert_same(test: unittest.TestCase, first, second, where: str) -> None:
    if isinstance(first, (tuple, list)):
        test.assertEqual(len(first), len(second), where)
        for a, b in zip(first, second):
            _assert_same(test, a, b, where)
    elif isinstance(first, dict):
        test.assertEqual(list(first), list(second), where)
        for a, b in zip(first.values(), second.values()):
            _assert_same(test, a, b, where)
    elif isinstance(first, torch.Tensor):
        test.assertTrue(torch.equal(first, second), where)
    else:
        test.assertEqual(first, second, where)


# test class -> (model classes, their tester, the tester's arguments, more class attributes). One class per
# sequence layout: the common tests read one `seq_length` per class.
_PAIR_INPUTS = {"additional_model_inputs": ["residue_embeddings_b"]}  # what the eager-vs-SDPA test passes too
COMMON_TEST_CASES = {
    "ChemoMAEModelTest": ((ChemoMAE,), SpectralMAETester, (ChemoMAEConfig,), {}),
    "ChemoMAEForPreTrainingTest": ((ChemoMAEForPreTraining,), SpectralMAETester, (ChemoMAEConfig,), {}),
    "WaveMAEModelTest": ((WaveMAE,), SpectralMAETester, (WaveMAEConfig,), {}),
    "WaveMAEForPreTrainingTest": ((WaveMAEForPreTraining,), SpectralMAETester, (WaveMAEConfig,), {}),
    "ProteinMAEV2ModelTest": ((TransformerMAE, ProteinMAEV2ForPreTraining), ProteinMAEV2Tester, (), {}),
    "ChemoMAEForSequenceClassificationTest": ((ChemoMAEForSequenceClassification,), SpectralMAEClassifierTester,
                                              (ChemoMAEConfig,), {}),
    "WaveMAEForSequenceClassificationTest": ((WaveMAEForSequenceClassification,), SpectralMAEClassifierTester,
                                             (WaveMAEConfig,), {}),
    "ProteinMAEV2ForSequenceClassificationTest": ((ProteinMAEV2ForSequenceClassification,),
                                                  ProteinMAEV2ClassifierTester, (), {}),
    "ProteinMAEV5ModelTest": ((MAEEncoder,), ProteinMAEV5Tester, (), {}),
    "ProteinMAEV5ForSequenceClassificationTest": ((ProteinMAEV5ForSequenceClassification,), ProteinMAEV5Tester,
                                                  (), {}),
    "ProteinMAEV5ForPreTrainingTest": ((ProteinMAEV5ForPreTraining,), ProteinMAEV5ForPreTrainingTester, (), {}),
    "ProteinInteractionModelTest": ((ProteinInteractionModel, ProteinInteractionForSequenceClassification),
                                    ProteinInteractionTester, (), _PAIR_INPUTS),
    "ProteinInteractionV2ModelTest": ((ProteinInteractionModel, ProteinInteractionForSequenceClassification),
                                      ProteinInteractionV2Tester, (), _PAIR_INPUTS),
    "SpectralGPTModelTest": ((SpectralGPTModel, SpectralGPTForImageClassification), SpectralGPTTester, (), {}),
    "SpectralGPTForPreTrainingTest": ((SpectralGPTForPreTraining,), SpectralGPTForPreTrainingTester, (), {}),
    "SpectralGPTForPreTrainingWithAuxTest": ((SpectralGPTForPreTraining,), SpectralGPTWithAuxTester, (), {}),
    "SMILESBERTModelTest": ((SMILESBERTModel, SMILESBERTForMaskedLM, SMILESBERTForSequenceClassification),
                            SMILESBERTTester, (),
                            {"config_has_text_modality": True}),
}
for _name, (_models, _tester, _args, _extra) in COMMON_TEST_CASES.items():
    globals()[_name] = type(_name, (_HfMaeModelTest, unittest.TestCase),
                            {"all_model_classes": _models, "_tester_class": _tester, "_tester_args": _args,
                             "__module__": __name__, **_extra})

_apply_not_applicable()


# ---------------------------------------------------------------------------------------------------------
# Adapters: LoRA on the attention projections, with activation checkpointing
# ---------------------------------------------------------------------------------------------------------
def _lora_case(tester_class, model_class, target_modules, *tester_args):
    tester = tester_class(unittest.TestCase(), *tester_args)
    config, inputs = tester.prepare_config_and_inputs_for_common()
    if model_class in (SpectralGPTForImageClassification, ProteinInteractionForSequenceClassification):
        inputs["labels"] = torch.tensor([0, 2, 1]) % config.num_labels
    if model_class is SMILESBERTForMaskedLM:
        inputs["labels"] = inputs["input_ids"].masked_fill(torch.rand(inputs["input_ids"].shape) > 0.5, -100)
    return model_class, config, inputs, target_modules


# Our layers name the attention projections attn.qkv (fused query/key/value) and attn.proj (output); a regex,
# because ChemoMAE's decoder has a `proj` of its own.
_OUR_ATTENTION = r".*\.attn\.(qkv|q|kv|proj)"
LORA_CASES = {
    "ChemoMAEForPreTraining": lambda: _lora_case(SpectralMAETester, ChemoMAEForPreTraining, _OUR_ATTENTION,
                                                 ChemoMAEConfig),
    "SpectralGPTForImageClassification": lambda: _lora_case(SpectralGPTTester, SpectralGPTForImageClassification,
                                                            _OUR_ATTENTION),
    "ProteinInteractionForSequenceClassification": lambda: _lora_case(
        ProteinInteractionTester, ProteinInteractionForSequenceClassification, _OUR_ATTENTION),
    "SMILESBERTForMaskedLM": lambda: _lora_case(SMILESBERTTester, SMILESBERTForMaskedLM, ["query", "key", "value"]),
}


@pytest.mark.parametrize("case", sorted(LORA_CASES))
def test_lora_on_attention_projections_trains_with_checkpointing_and_saves(case, tmp_path):
    """A LoRA-wrapped model trains with activation checkpointing (reentrant, the strictest: it needs the input
    embeddings to require grad, which enable_input_require_grads() does through get_input_embeddings()), leaves
    the base weights alone, and its saved adapter reloads onto the base model with the same outputs."""
    from peft import LoraConfig, PeftModel, get_peft_model

    model_class, config, inputs, target_modules = LORA_CASES[case]()
    torch.manual_seed(0)
    model = model_class(config)
    base_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=target_modules))
    trained = [name for name, parameter in lora.named_parameters() if parameter.requires_grad]
    assert trained and all("lora_" in name for name in trained)
    assert any(".attn." in name or ".attention." in name for name in trained)

    lora.train()
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(6):
        loss = lora(**inputs).loss
        loss.backward()
        if step == 1:  # lora_B starts at zero, so lora_A's gradient is zero until one step has been taken
            missing = [name for name, parameter in lora.named_parameters()
                       if parameter.requires_grad and (parameter.grad is None or not parameter.grad.any())]
            assert not missing, f"adapter weights without gradient (bypassed by the forward?): {missing}"
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    for name, tensor in lora.get_base_model().state_dict().items():
        if "lora_" not in name:
            original = name.replace(".base_layer", "")
            assert torch.equal(tensor, base_state[original]), f"{name} changed: only the adapter should train"

    lora.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    fresh = model_class(config)
    fresh.load_state_dict(base_state)
    reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    lora.eval()
    with torch.no_grad():
        # the same weights (safetensors is exact) and the same kernels: equal bit for bit
        _assert_same(unittest.TestCase(), reloaded(**inputs).to_tuple(), lora(**inputs).to_tuple(), case)


# ---------------------------------------------------------------------------------------------------------
# The seeds' API next to transformers' outputs
# ---------------------------------------------------------------------------------------------------------
def _spectral_mae(mae_class):
    config = SpectralMAETester(unittest.TestCase(), mae_class.config_class).get_config()
    return mae_class(config).eval(), torch.randn(3, 32), torch.rand(3, 16)


@pytest.mark.parametrize("mae_class", [ChemoMAE, WaveMAE])
def test_seed_triple_unpacks_with_optional_outputs_and_return_dict(mae_class):
    mae, x, noise = _spectral_mae(mae_class)
    with torch.no_grad():
        x_recon, z, visible = mae(x, noise=noise)                       # the seeds' call
        out = mae(x, noise=noise, output_hidden_states=True, output_attentions=True)
        x_recon_2, z_2, visible_2 = out                                 # still the triple
    assert list(out.keys()) == ["x_recon", "z", "visible_mask", "hidden_states", "attentions"]
    assert torch.equal(visible_2, visible) and visible.dtype == torch.bool and int((~visible[0]).sum()) == 24
    # With hidden states asked for, the last layer computes every row instead of the CLS row alone: the same
    # values up to fp32 rounding of differently shaped matmuls (entries of z are at most 1 in magnitude).
    torch.testing.assert_close(z_2, z, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x_recon_2, x_recon, rtol=1e-5, atol=1e-5 * float(x_recon.abs().max()))
    assert [tuple(h.shape) for h in out.hidden_states] == [(3, 5, 16)] * 3     # CLS + 4 visible blocks
    assert [tuple(a.shape) for a in out.attentions] == [(3, 2, 5, 5)] * 2
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(3, 2, 5))  # probabilities
    with torch.no_grad():
        as_tuple = mae(x, noise=noise, return_dict=False)
        mae.config.return_dict = False
        from_config = mae(x, noise=noise)
    for result in (as_tuple, from_config):
        assert type(result) is tuple and len(result) == 3 and torch.equal(result[2], visible)


@pytest.mark.parametrize("mae_class", [ChemoMAE, WaveMAE])
def test_spectral_mae_batching_equivalence(mae_class):
    """Each row of a batch gets what it gets alone (the common test iterates outputs, see NOT_APPLICABLE)."""
    mae, x, noise = _spectral_mae(mae_class)
    with torch.no_grad():
        batched = mae(x, noise=noise, output_hidden_states=True)
        for row in range(3):
            alone = mae(x[row:row + 1], noise=noise[row:row + 1], output_hidden_states=True)
            assert torch.equal(alone.visible_mask[0], batched.visible_mask[row])
            # fp32 matmuls with another batch size may accumulate in another order: rounding relative to
            # the largest value compared
            for a, b in [(alone.x_recon, batched.x_recon), (alone.z, batched.z),
                         *zip(alone.hidden_states, batched.hidden_states)]:
                torch.testing.assert_close(a[0], b[row], rtol=1e-5, atol=1e-5 * max(float(b.abs().max()), 1.0))


def test_smiles_bert_masked_lm_return_dict_false():
    tester = SMILESBERTTester(unittest.TestCase())
    config, inputs = tester.prepare_config_and_inputs_for_common()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    model = SMILESBERTForMaskedLM(config).eval()
    with torch.no_grad():
        as_dict = model(**inputs, labels=labels)
        as_tuple = model(**inputs, labels=labels, return_dict=False)
        model.config.return_dict = False
        from_config = model(**inputs, labels=labels)
    for result in (as_tuple, from_config):
        assert type(result) is tuple and len(result) == 2
        assert torch.equal(result[0], as_dict.loss) and torch.equal(result[1], as_dict.logits)
    assert as_dict.logits.shape == (3, 7, tester.vocab_size)


# ---------------------------------------------------------------------------------------------------------
# Nested configs and the pair classifier's problem types
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tester_class", [ProteinInteractionTester, ProteinInteractionV2Tester, SpectralGPTWithAuxTester])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_attn_implementation_reaches_every_attention_module(tester_class, implementation, tmp_path):
    """from_pretrained(attn_implementation=...) sets it on the config of every attention module, the pair
    model's encoder included (its config is declared in `sub_configs`)."""
    from hf_mae.models.layers import CrossAttention, SelfAttention

    config, _ = tester_class(unittest.TestCase()).prepare_config_and_inputs_for_common()
    model_class = (SpectralGPTForPreTraining if tester_class is SpectralGPTWithAuxTester   # 4 attention stacks
                   else ProteinInteractionForSequenceClassification)
    model_class(config).save_pretrained(tmp_path)
    model = model_class.from_pretrained(tmp_path, attn_implementation=implementation)
    attention = [m for m in model.modules() if isinstance(m, (SelfAttention, CrossAttention))]
    assert len(attention) >= 4
    assert {m.config._attn_implementation for m in attention} == {implementation}
    for sub_config in (getattr(model.config, key) for key in model.config.sub_configs):
        assert sub_config._attn_implementation == implementation


def _pair_classifier(num_labels: int, problem_type: str | None):
    config, inputs = ProteinInteractionTester(unittest.TestCase()).prepare_config_and_inputs_for_common()
    config.num_labels, config.problem_type, config.classifier_dropout = num_labels, problem_type, 0.0
    torch.manual_seed(0)
    return ProteinInteractionForSequenceClassification(config).eval(), inputs


# The loss is computed in float32 from the same logits as the reference below: equal to rounding of a mean of
# 3-6 terms of magnitude ~1, hence 1e-6.
def test_pair_classifier_regression_with_one_label_is_mse_not_zero():
    model, inputs = _pair_classifier(1, "regression")
    labels = torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert out.logits.shape == (3, 1) and out.loss > 0
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits[:, 0], labels), rtol=0, atol=1e-6)
    # with num_labels=1 and no problem_type, transformers infers regression too (not a 1-class softmax, which
    # would always give a loss of exactly 0)
    model.config.problem_type = None
    with torch.no_grad():
        assert model(**inputs, labels=labels).loss > 0


def test_pair_classifier_single_and_multi_label_losses():
    model, inputs = _pair_classifier(2, None)
    labels = torch.tensor([0, 1, 1])
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels), rtol=0, atol=1e-6)

    model, inputs = _pair_classifier(3, "multi_label_classification")
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    torch.testing.assert_close(out.loss, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"`labels` must have one row per pair \(3\), got shape \(2, 3\)"):
        model(**inputs, labels=labels[:2])


def test_pair_config_answers_to_transformers_size_names():
    """The pair model's own transformer is its cross-attention: transformers' size names map onto it (the
    encoder keeps its own sizes in `encoder_config`), for reading, writing and keyword arguments."""
    config = ProteinInteractionConfig(encoder_config=_v5_config(), num_attention_heads=4, num_hidden_layers=3,
                                      intermediate_size=64)
    assert (config.cross_attention_heads, config.cross_attention_layers, config.cross_attention_dim_feedforward) == \
        (4, 3, 64)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers, config.intermediate_size) == \
        (16, 4, 3, 64)
    config.num_hidden_layers = 1
    assert config.cross_attention_layers == 1 and "num_hidden_layers" not in config.to_dict()
    assert config.encoder_config.num_hidden_layers == 2          # the encoder's own depth
