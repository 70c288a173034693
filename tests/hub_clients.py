"""Client-side scenarios for tests/test_hub.py, each run in its own Python process (fresh HF_HOME, HF_ENDPOINT
set before huggingface_hub or transformers is imported).

Nothing here imports hf_mae at module level: ``remote_code`` runs where hf_mae cannot be imported.

Every architecture in ``hf_mae._auto.REGISTRY`` is covered through ``FACTORIES``: a tiny config per config
class, how to build example inputs, training rows for Trainer, and processor arguments. A new architecture
needs one entry here (``test_every_registered_architecture_has_a_factory`` says so).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SEED_MAIN, SEED_DEV = 0, 1
BATCH = 3


def _spectral_inputs(config: dict, generator: "torch.Generator") -> tuple[tuple, dict]:
    import torch

    x = torch.randn(BATCH, config["seq_len"], generator=generator)
    noise = torch.rand(BATCH, config["n_blocks"], generator=generator)
    return (x,), {"noise": noise}


def _spectral_rows(config: dict, generator: "torch.Generator") -> list[dict]:
    import torch

    return [{"input_values": torch.randn(config["seq_len"], generator=generator)} for _ in range(8)]


def _spectral_processor(processor_class, config: dict):
    """The feature extractor: raw spectra resampled onto the model's grid."""
    return processor_class.for_range(1100.0, 2498.0, config["seq_len"])


def _spectral_processor_inputs(config: dict) -> tuple[tuple, dict]:
    """A call to compare processor outputs on: raw spectra on a finer grid."""
    import numpy as np

    axis = np.linspace(1100.0, 2498.0, 3 * config["seq_len"])
    raw = np.random.default_rng(7).random((2, axis.size)) + 1.0
    return (raw,), {"wavelengths": axis}


def _cube_inputs(config: dict, generator) -> tuple[tuple, dict]:
    import torch

    cube = torch.randn(BATCH, config["num_bands"], config["image_size"], config["image_size"], generator=generator)
    groups, grid = config["num_bands"] // config["band_patch_size"], config["image_size"] // config["patch_size"]
    return (cube,), {"noise": torch.rand(BATCH, groups * grid * grid, generator=generator)}


def _cube_rows(config: dict, generator) -> list[dict]:
    import torch

    shape = (config["num_bands"], config["image_size"], config["image_size"])
    return [{"pixel_values": torch.randn(*shape, generator=generator)} for _ in range(8)]


def _cube_processor(processor_class, config: dict):
    return processor_class(analysis_dim=config["image_size"], num_bands=config["num_bands"],
                           patch_size=config["patch_size"])


def _cube_processor_inputs(config: dict) -> tuple[tuple, dict]:
    import numpy as np

    return ([np.random.default_rng(5).random((config["num_bands"], 40, 36)) for _ in range(2)],), {}


SMILES = ["CCO", "Cl[C@@H]1CC%10CC1", "OC(=O)c1ccc(Br)cc1", "C[NH3+].[O-]C#N", "c1ccc2[nH]ccc2c1"]


def _smiles_inputs(config: dict, generator) -> tuple[tuple, dict]:
    import torch

    ids = torch.randint(104, config["vocab_size"], (BATCH, 12), generator=generator)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    ids[:, 3] = 103  # a [MASK]
    return (ids,), {}


def _smiles_rows(config: dict, generator) -> list[dict]:
    import torch

    rows = []
    for _ in range(8):
        (ids,), _ = _smiles_inputs(config, generator)
        labels = torch.full_like(ids[0], -100)
        labels[3] = ids[0, 4]
        rows.append({"input_ids": ids[0], "labels": labels})
    return rows


def _smiles_tokenizer(processor_class, config: dict):
    """The bundled SMILES tokenizer (a plain tokenizer.json: no processor class registered)."""
    from hf_mae.processing.smiles import load_smiles_tokenizer

    return load_smiles_tokenizer()


def _smiles_tokenizer_inputs(config: dict) -> tuple[tuple, dict]:
    return (SMILES,), {"padding": True}


def _smiles_run_metrics(model, tokenizer, config: dict) -> dict:
    """What hf-mae pretrain smiles-bert saves as validation_results.json: masked-token accuracy and more."""
    from hf_mae.training.smiles_mlm import encode_smiles_for_mlm, masked_lm_metrics

    examples, _ = encode_smiles_for_mlm(SMILES, tokenizer, config["max_position_embeddings"])
    metrics = masked_lm_metrics(model, tokenizer, examples, seed=0, baseline_token_id=tokenizer.convert_tokens_to_ids("C"))
    return {f"validation_{key}": value for key, value in metrics.items()}


_TINY_CUBE = dict(image_size=32, patch_size=8, num_bands=6, band_patch_size=2, hidden_size=32, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                  decoder_num_attention_heads=2, decoder_intermediate_size=32, aux_modalities=[], projection_dim=8)
_TINY_SPECTRAL = dict(seq_len=32, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, latent_dim=8,
                      dec_hidden=16, n_blocks=4, n_mask=2)
def _residue_inputs(config: dict, generator) -> tuple[tuple, dict]:
    """Per-residue embeddings of proteins of 30, 22 and 9 residues (right-padded), and mask noise."""
    import torch

    x = torch.randn(BATCH, 30, config["input_dim"], generator=generator)
    attention_mask = (torch.arange(30) < torch.tensor([30, 22, 9])[:, None]).long()
    positions = config.get("num_patches", 30)  # V5 masks patches, V2 residues
    return (x, attention_mask), {"noise": torch.rand(BATCH, positions, generator=generator)}


def _residue_rows(config: dict, generator) -> list[dict]:
    import torch

    return [{"residue_embeddings": torch.randn(30, config["input_dim"], generator=generator)} for _ in range(8)]


def _pair_inputs(config: dict, generator) -> tuple[tuple, dict]:
    (a, mask_a), _ = _residue_inputs(config["encoder_config"], generator)
    (b, mask_b), _ = _residue_inputs(config["encoder_config"], generator)
    return (a, b.flip(0), mask_a, mask_b.flip(0)), {}


def _pair_rows(config: dict, generator) -> list[dict]:
    import torch

    dim = config["encoder_config"]["input_dim"]
    return [{"residue_embeddings_a": torch.randn(30, dim, generator=generator),
             "residue_embeddings_b": torch.randn(30, dim, generator=generator), "labels": torch.tensor(i % 2)}
            for i in range(8)]


_TINY_V2 = dict(input_dim=24, max_length=64, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
                decoder_hidden_dim=32)
_TINY_V5 = dict(input_dim=24, max_length=64, num_patches=8, embed_dim=16, num_layers=1, nhead=2, dim_feedforward=32,
                decoder_embed_dim=16, decoder_num_layers=1, decoder_nhead=2, decoder_dim_feedforward=32)
# the pair classifier on a V2 encoder through the adapter (the V5 path is the V5 encoder covered above)
_TINY_PAIR = dict(encoder_config=dict(model_type="hf_mae_protein_mae_v2", **_TINY_V2), adapter_dim=16,
                  adapter_num_patches=8, adapter_patch_size=8, cross_attention_heads=2,
                  cross_attention_dim_feedforward=32)
_TINY_SMILES = dict(vocab_size=197, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                    max_position_embeddings=32)
_SPECTRAL = dict(config=_TINY_SPECTRAL, inputs=_spectral_inputs, rows=_spectral_rows, processor=_spectral_processor,
                 processor_inputs=_spectral_processor_inputs, processor_auto="AutoFeatureExtractor")
# config class name -> what the scenarios need to build, feed and train that architecture; where one is
# saved with the model, its processor (tokenizer or feature extractor; built in the push process, which has
# hf_mae), inputs to compare the processor's outputs on (built in every process) and the Auto class that
# loads it; optionally run_metrics,
# the metrics the architecture's pretrain job saves at the end (model, processor, config -> dict)
FACTORIES = {
    "ChemoMAEConfig": _SPECTRAL,
    "WaveMAEConfig": _SPECTRAL,
    "SpectralGPTConfig": dict(config=_TINY_CUBE, inputs=_cube_inputs, rows=_cube_rows, processor=_cube_processor,
                              processor_inputs=_cube_processor_inputs, processor_auto="AutoFeatureExtractor"),
    # proteins come as per-residue embeddings from a protein language model: no processor is saved with them
    "ProteinMAEV2Config": dict(config=_TINY_V2, inputs=_residue_inputs, rows=_residue_rows),
    "ProteinMAEV5Config": dict(config=_TINY_V5, inputs=_residue_inputs, rows=_residue_rows),
    "ProteinInteractionConfig": dict(config=_TINY_PAIR, inputs=_pair_inputs, rows=_pair_rows),
    "SMILESBERTMLMConfig": dict(config=_TINY_SMILES, inputs=_smiles_inputs, rows=_smiles_rows,
                                processor=_smiles_tokenizer, processor_inputs=_smiles_tokenizer_inputs,
                                processor_auto="AutoTokenizer", run_metrics=_smiles_run_metrics),
}


def _tensors(output) -> list:
    """Every tensor of a model output (tuple, NamedTuple, ModelOutput or tensor), in order."""
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if hasattr(output, "to_tuple"):
        output = output.to_tuple()
    return [t for item in output for t in _tensors(item)] if isinstance(output, (tuple, list)) else []


def outputs(model, config_name: str, config: dict) -> list:
    """The model's outputs on fixed inputs (same seed in every process), dropout off."""
    import torch

    import inspect

    args, kwargs = FACTORIES[config_name]["inputs"](config, torch.Generator().manual_seed(1234))
    accepted = inspect.signature(model.forward).parameters  # e.g. a base model may take no `noise`
    kwargs = {key: value for key, value in kwargs.items() if key in accepted}
    with torch.no_grad():
        return [t.detach().clone() for t in _tensors(model.eval()(*args, **kwargs))]


def _rows(registry):
    """(architecture short name, config class, {auto class name: model class}, processor class)."""
    for config_class, models, processor_class in registry:
        if config_class.__name__ not in FACTORIES:
            raise AssertionError(f"add a tiny config for {config_class.__name__} to FACTORIES in tests/hub_clients.py")
        short = config_class.model_type.removeprefix("hf_mae_")
        yield short, config_class, {auto.__name__: cls for auto, cls in models.items()}, processor_class


def _trainable(models: dict) -> str:
    """The Auto class whose model returns a loss (the one Trainer pretrains)."""
    for name in ("AutoModelForPreTraining", "AutoModelForMaskedLM", "AutoModelForSequenceClassification"):
        if name in models:
            return name
    raise AssertionError(f"no pretraining class among {sorted(models)}")


def push(work: str) -> None:
    """Push every architecture: model.push_to_hub (main, a branch, a tag), processor.push_to_hub,
    Trainer(push_to_hub=True, hub_strategy="checkpoint"), hf-mae push, and a pickled-only repository.
    Writes expected outputs to work/expected.safetensors and what was pushed to work/pushed.json."""
    import torch

    import hf_mae  # noqa: F401 - registers the architectures
    from huggingface_hub import HfApi
    from safetensors.torch import save_file
    from transformers import Trainer, TrainingArguments, default_data_collator

    from hf_mae._auto import REGISTRY
    from hf_mae.cli import main as cli

    api, expected, pushed = HfApi(), {}, {}
    for short, config_class, models, processor_class in _rows(REGISTRY):
        name, factory = config_class.__name__, FACTORIES[config_class.__name__]
        tiny = factory["config"]
        trainable = _trainable(models)
        repo = f"lab/{short}"
        # main: weights from SEED_MAIN; branch dev and tag v1: weights from SEED_DEV
        for seed, revision in ((SEED_MAIN, None), (SEED_DEV, "dev")):
            torch.manual_seed(seed)
            model = models[trainable](config_class(**tiny))
            model.push_to_hub(repo, revision=revision, commit_message=f"weights from seed {seed}")
            for auto_name, model_class in models.items():  # the pushed class and the base model it holds
                if model_class is not type(model) and auto_name != "AutoModel":
                    continue  # a task head absent from a pretraining checkpoint starts random: only loaded
                part = model if model_class is type(model) else model.base_model
                for i, t in enumerate(outputs(part, name, tiny)):
                    expected[f"{short}/{revision or 'main'}/{auto_name}/{i}"] = t
        api.create_tag(repo, tag="v1", revision="dev")
        processor = factory["processor"](processor_class, tiny) if "processor" in factory else None
        if processor is not None:
            processor.push_to_hub(repo)
            args, kwargs = factory["processor_inputs"](tiny)
            for key, value in processor(*args, **kwargs, return_tensors="pt").items():
                if isinstance(value, torch.Tensor):
                    expected[f"{short}/processor/{key}"] = value

        # Trainer pushes checkpoints while training (hub_strategy="checkpoint") and the model at the end,
        # each with the processor (tokenizer or feature extractor) it was given.
        torch.manual_seed(SEED_MAIN)
        model = models[trainable](config_class(**tiny))
        rows = factory["rows"](tiny, torch.Generator().manual_seed(3))
        output_dir = Path(work) / f"run-{short}"
        args = TrainingArguments(output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4,
                                 save_steps=1, logging_steps=1, eval_strategy="steps", eval_steps=1,
                                 push_to_hub=True, hub_model_id=f"lab/{short}-trained", hub_strategy="checkpoint",
                                 report_to="none", use_cpu=True, disable_tqdm=True, hub_always_push=True)
        trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows[:4], processing_class=processor,
                          data_collator=default_data_collator)
        trainer.train()
        card_needles = []
        if "run_metrics" in factory:  # as the pretrain job does: final metrics next to the model, for the card
            run_metrics = factory["run_metrics"](trainer.model.eval(), processor, tiny)
            trainer.save_metrics("validation", run_metrics)
            card_needles += [f"| {key.replace('_', ' ')} | {value:.4g} |" for key, value in run_metrics.items() if isinstance(value, float)]
        trainer.push_to_hub(commit_message="End of training")
        for i, t in enumerate(outputs(trainer.model, name, tiny)):
            expected[f"{short}/trained/{trainable}/{i}"] = t

        # hf-mae push: the finished run with its card (and a figure, from example inputs)
        examples = Path(work) / f"examples-{short}.safetensors"
        main_input = next(iter(rows[0]))  # stored as "input_values", the name the examples file uses
        save_file({"input_values": torch.stack([row[main_input] for row in rows[:2]])}, str(examples))
        assert cli(["push", str(output_dir), f"lab/{short}-card", "--dataset", "lab/corn-nir",
                    "--examples", str(examples)]) == 0

        # a repository holding only pickled weights
        pickled = Path(work) / f"pickled-{short}"
        model.save_pretrained(pickled)
        (pickled / "model.safetensors").unlink()
        torch.save(model.state_dict(), pickled / "pytorch_model.bin")
        api.create_repo(f"lab/{short}-pickled", exist_ok=True)
        api.upload_folder(repo_id=f"lab/{short}-pickled", folder_path=str(pickled))
        for i, t in enumerate(outputs(model, name, tiny)):
            expected[f"{short}/pickled/{trainable}/{i}"] = t
        pushed[short] = {"config": name, "models": sorted(models), "trainable": trainable,
                         "classes": {auto_name: cls.__name__ for auto_name, cls in models.items()},
                         "card_needles": card_needles,
                         "trained_files": api.list_repo_files(f"lab/{short}-trained"),
                         "card_files": api.list_repo_files(f"lab/{short}-card")}
    save_file({k: v.contiguous() for k, v in expected.items()}, str(Path(work) / "expected.safetensors"))
    (Path(work) / "pushed.json").write_text(json.dumps(pushed))


def _same(got: list, expected: dict, key: str) -> None:
    import torch

    want = [expected[f"{key}/{i}"] for i in range(sum(k.startswith(key + "/") for k in expected))]
    assert want and len(got) == len(want), f"{key}: {len(got)} outputs, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"{key}/{i}: outputs differ (max |diff| {(a.float() - b.float()).abs().max()})"


def pull(work: str, trust_remote_code: bool = False) -> dict:
    """Load everything ``push`` published, in a fresh process with an empty cache, and compare outputs.
    With ``trust_remote_code``, hf_mae must not be importable: the repositories' own code is used."""
    import torch
    from huggingface_hub import ModelCard, hf_hub_download
    from safetensors.torch import load_file
    import transformers
    from transformers import AutoConfig

    if not trust_remote_code:
        import hf_mae  # noqa: F401 - registered classes: no trust_remote_code needed

    expected = load_file(str(Path(work) / "expected.safetensors"))
    pushed = json.loads((Path(work) / "pushed.json").read_text())
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    report = {}
    for short, info in pushed.items():
        name, config = info["config"], FACTORIES[info["config"]]["config"]
        trainable, loaded_from = info["trainable"], set()
        for auto_name in info["models"]:
            auto = getattr(transformers, auto_name)
            for revision in ("main", "dev", "v1"):
                model = auto.from_pretrained(f"lab/{short}", revision=revision, **remote)
                loaded_from.add(type(model).__module__)
                if auto_name not in (trainable, "AutoModel"):
                    assert type(model).__name__ == info["classes"][auto_name]
                    continue
                _same(outputs(model, name, config), expected, f"{short}/{'main' if revision == 'main' else 'dev'}/{auto_name}")
        auto = getattr(transformers, trainable)
        _same(outputs(auto.from_pretrained(f"lab/{short}-trained", **remote), name, config), expected,
              f"{short}/trained/{trainable}")
        _same(outputs(auto.from_pretrained(f"lab/{short}-card", **remote), name, config), expected,
              f"{short}/trained/{trainable}")
        card = ModelCard.load(f"lab/{short}-card")
        assert card.data.library_name == "transformers" and card.data.license == "apache-2.0", card.data
        assert "hf-mae" in card.data.tags and card.data.datasets == ["lab/corn-nir"], card.data
        for needle in ("**Parameters:**", "This checkpoint holds", "final training loss", "trust_remote_code=True",
                       "](loss_curve.png)"):
            assert needle in card.text, needle
        figures = [f for f in info["card_files"] if f.endswith(".png")]  # loss curve, reconstructions (test_hub)
        for figure in figures:  # every figure pushed is a PNG the card shows
            assert f"]({figure})" in card.text, (figure, card.text)
            assert Path(hf_hub_download(f"lab/{short}-card", figure)).read_bytes()[:4] == b"\x89PNG", figure
        for needle in info["card_needles"]:  # metrics the run saved (e.g. masked-token accuracy)
            assert needle in card.text, needle
        # the processor pushed by itself, by Trainer with the model, and by hf-mae push with the run
        factory = FACTORIES[name]
        args, kwargs = factory["processor_inputs"](config) if "processor" in factory else ((), {})
        for repo in (f"lab/{short}", f"lab/{short}-trained", f"lab/{short}-card") if "processor" in factory else ():
            processor = getattr(transformers, factory["processor_auto"]).from_pretrained(repo, **remote)
            got = {key: value for key, value in processor(*args, **kwargs, return_tensors="pt").items()
                   if isinstance(value, torch.Tensor)}
            want = {key[len(f"{short}/processor/"):]: value for key, value in expected.items()
                    if key.startswith(f"{short}/processor/")}
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), (repo, got, want)
            if factory["processor_auto"] == "AutoTokenizer":  # a plain tokenizer.json: transformers' own class
                assert type(processor).__module__.startswith("transformers."), type(processor)
            else:
                loaded_from.add(type(processor).__module__)
        # pickled weights: refused unless the caller opts in
        try:
            auto.from_pretrained(f"lab/{short}-pickled", **remote)
            raise AssertionError("pickled weights were loaded without use_safetensors=False")
        except OSError as err:
            assert "refuses pickled weights" in str(err), err
        _same(outputs(auto.from_pretrained(f"lab/{short}-pickled", use_safetensors=False, **remote), name, config),
              expected, f"{short}/pickled/{trainable}")
        if trust_remote_code:
            try:  # without trust_remote_code the repository's code is not run
                AutoConfig.from_pretrained(f"lab/{short}")
                raise AssertionError("an unknown model type loaded without trust_remote_code")
            except ValueError as err:
                assert "trust_remote_code" in str(err), err
        report[short] = sorted(loaded_from)
    return report


class _BlockHfMae:
    """A meta path finder that makes ``import hf_mae`` fail, whatever is installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "hf_mae" or name.startswith("hf_mae."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)")
        return None


def remote_code(work: str) -> dict:
    sys.meta_path.insert(0, _BlockHfMae())
    try:
        import hf_mae  # noqa: F401
        raise AssertionError("hf_mae is importable in the remote-code process")
    except ModuleNotFoundError:
        pass
    report = pull(work, trust_remote_code=True)
    assert not [m for m in sys.modules if m.split(".")[0] == "hf_mae"]
    return report



def protocol(work: str) -> dict:
    """The server's answers to huggingface_hub's calls, errors included (no torch model involved)."""
    from huggingface_hub import CommitOperationAdd, HfApi, HfFileSystem, constants, hf_hub_download
    from huggingface_hub.errors import (BadRequestError, EntryNotFoundError, HfHubHTTPError, HFValidationError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    from huggingface_hub.utils import get_session, hf_raise_for_status

    api, endpoint, work = HfApi(), constants.ENDPOINT, Path(work)

    def fails(error_type, call, *needles):
        try:
            call()
        except error_type as err:
            message = f"{err} {err.__cause__ or ''}"  # the client may wrap the server's error
            for needle in needles:
                assert needle in message, f"{needle!r} not in {message}"
            return message
        raise AssertionError(f"{call} did not raise {error_type.__name__}")

    url = api.create_repo("lab/proto")
    assert url == f"{endpoint}/lab/proto" and url.repo_id == "lab/proto"
    fails(HfHubHTTPError, lambda: api.create_repo("lab/proto"), "409")
    assert api.create_repo("lab/proto", exist_ok=True).repo_id == "lab/proto"  # reads the url from the 409
    assert api.create_repo("solo").repo_id == "user/solo"  # no namespace: the server's user
    fails(HFValidationError, lambda: api.create_repo("lab/bad..name"))
    response = get_session().post(f"{endpoint}/api/repos/create", json={"name": "-bad", "organization": "lab"})
    fails(BadRequestError, lambda: hf_raise_for_status(response), "Invalid repository name")
    fails(RepositoryNotFoundError, lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="lab/none"))
    assert not api.repo_exists("lab/none")

    big = os.urandom(300_000)  # binary: stored as LFS
    first = api.create_commit("lab/proto", operations=[
        CommitOperationAdd("weights.safetensors", big), CommitOperationAdd("config.json", b'{"a": 1}'),
        CommitOperationAdd("sub/dir/notes.txt", b"hello")], commit_message="first")
    tree = {f.path: f for f in api.list_repo_tree("lab/proto", recursive=True)}
    assert tree["weights.safetensors"].lfs.size == len(big) and tree["config.json"].lfs is None
    assert "sub/dir" in tree and tree["sub/dir"].tree_id
    fails(EntryNotFoundError, lambda: list(api.list_repo_tree("lab/proto", path_in_repo="missing")))
    path = hf_hub_download("lab/proto", "weights.safetensors")
    assert Path(path).read_bytes() == big
    with HfFileSystem().open("lab/proto/weights.safetensors", "rb", block_size=4096) as handle:
        handle.seek(123_456)
        assert handle.read(1000) == big[123_456:124_456]  # a Range request
    fails(RevisionNotFoundError, lambda: hf_hub_download("lab/proto", "config.json", revision="nope"))
    fails(EntryNotFoundError, lambda: hf_hub_download("lab/proto", "nope.json"))
    fails(RepositoryNotFoundError, lambda: hf_hub_download("lab/none", "config.json"))
    fails(RevisionNotFoundError, lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="lab/proto",
                                                         revision="nope"))

    # branches and tags
    api.create_branch("lab/proto", branch="dev")
    fails(HfHubHTTPError, lambda: api.create_branch("lab/proto", branch="dev"), "409")
    api.create_branch("lab/proto", branch="dev", exist_ok=True)
    api.upload_file(path_or_fileobj=b'{"a": 2}', path_in_repo="config.json", repo_id="lab/proto", revision="dev")
    api.create_tag("lab/proto", tag="v1", revision="dev")
    fails(HfHubHTTPError, lambda: api.create_tag("lab/proto", tag="v1"), "409")
    refs = api.list_repo_refs("lab/proto")
    assert {b.name for b in refs.branches} == {"main", "dev"} and [t.name for t in refs.tags] == ["v1"]
    for revision, content in (("main", b'{"a": 1}'), ("dev", b'{"a": 2}'), ("v1", b'{"a": 2}')):
        assert Path(hf_hub_download("lab/proto", "config.json", revision=revision)).read_bytes() == content
    assert api.repo_info("lab/proto", revision="v1").sha == refs.tags[0].target_commit
    assert [c.title for c in api.list_repo_commits("lab/proto", revision="dev")] == \
        ["Upload config.json with huggingface_hub", "first", "initial commit"]
    unchanged = api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="lab/proto")
    assert unchanged.oid == first.oid  # the client saw from preupload's oid that nothing changed

    # a pull request, then deletions
    pr = api.upload_file(path_or_fileobj=b"proposal", path_in_repo="pr.txt", repo_id="lab/proto", create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    assert api.file_exists("lab/proto", "pr.txt", revision="refs/pr/1") and not api.file_exists("lab/proto", "pr.txt")
    api.delete_folder("sub", repo_id="lab/proto")
    api.delete_file("config.json", repo_id="lab/proto")
    assert api.list_repo_files("lab/proto") == [".gitattributes", "weights.safetensors"]
    fails(EntryNotFoundError, lambda: api.delete_file("config.json", repo_id="lab/proto"), "doesn't exist")
    fails(HfHubHTTPError, lambda: api.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id="lab/proto",
                                                  parent_commit=first.oid), "412")

    # LFS content is checked against its sha256: a lying client is refused and nothing is committed
    head = api.repo_info("lab/proto").sha
    operation = CommitOperationAdd("forged.safetensors", os.urandom(5000))
    operation.upload_info.sha256 = bytes.fromhex("ab" * 32)
    fails(RuntimeError, lambda: api.create_commit("lab/proto", operations=[operation], commit_message="forged"),
          "forged.safetensors", "sha256")
    assert api.repo_info("lab/proto").sha == head and not api.file_exists("lab/proto", "forged.safetensors")

    # README metadata goes through validate-yaml before anything is uploaded
    for card, needle in (("---\nlicense: apache\n---\n# x", "not a known license"),
                         ("---\nlicense: [mit\n---\n# x", "Invalid YAML"),
                         ("---\ntags: {a: 1}\n---\n# x", "tags"),
                         ("---\npipeline_tag: dance\n---\n# x", "pipeline_tag")):
        fails(ValueError, lambda: api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md",
                                                  repo_id="lab/proto"), "Invalid metadata", needle)
    assert api.repo_info("lab/proto").sha == head
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\nlibrary_name: transformers\ntags: [a]\n---\n# ok\n",
                    path_in_repo="README.md", repo_id="lab/proto")
    info = api.model_info("lab/proto")
    assert info.card_data["license"] == "mit" and info.tags == ["a"]

    # with hf_xet active, large files would go through Xet, which this server does not speak: the client
    # stops at the Xet token (501 Not Implemented) and nothing is committed
    constants.HF_HUB_DISABLE_XET = False
    fails(Exception, lambda: api.upload_file(path_or_fileobj=os.urandom(2000), path_in_repo="x.safetensors",
                                             repo_id="lab/proto"), "xet-write-token", "501")
    assert not api.file_exists("lab/proto", "x.safetensors")
    constants.HF_HUB_DISABLE_XET = True
    api.delete_repo("lab/proto")
    fails(RepositoryNotFoundError, lambda: api.repo_info("lab/proto"))
    return {"ok": True}


INTERRUPTED = {"config.json": b'{"version": 2}', "vocab.txt": b"token\n" * 200_000}  # 1.2 MB inlined in the commit


def interrupted_push(work: str) -> dict:
    """Push v1, then v2 through a proxy that cuts the LFS upload once and kills the server during the commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api, weights = HfApi(), Path(work) / "weights-v2.safetensors"
    api.create_repo("lab/crash")
    v1 = api.upload_file(path_or_fileobj=b'{"version": 1}', path_in_repo="config.json", repo_id="lab/crash")
    weights.write_bytes(os.urandom(2_000_000))
    operations = [CommitOperationAdd("model.safetensors", str(weights))]
    operations += [CommitOperationAdd(path, content) for path, content in INTERRUPTED.items()]
    try:
        api.create_commit("lab/crash", operations=operations, commit_message="v2")
    except Exception as err:  # the server died mid-commit
        return {"v1": v1.oid, "error": f"{type(err).__name__}: {err}"}
    return {"v1": v1.oid, "error": None}


def retry_push(work: str) -> dict:
    """After the restart: main still shows v1 only; pushing v2 again succeeds."""
    from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

    api, weights = HfApi(), Path(work) / "weights-v2.safetensors"
    before = {"files": api.list_repo_files("lab/crash"), "sha": api.repo_info("lab/crash").sha,
              "config": Path(hf_hub_download("lab/crash", "config.json")).read_bytes().decode(),
              "commits": [c.title for c in api.list_repo_commits("lab/crash")]}
    operations = [CommitOperationAdd("model.safetensors", str(weights))]
    operations += [CommitOperationAdd(path, content) for path, content in INTERRUPTED.items()]
    api.create_commit("lab/crash", operations=operations, commit_message="v2")
    for path, content in [("model.safetensors", weights.read_bytes()), *INTERRUPTED.items()]:
        assert Path(hf_hub_download("lab/crash", path)).read_bytes() == content, path
    return {"before": before, "after": api.list_repo_files("lab/crash"),
            "commits": [c.title for c in api.list_repo_commits("lab/crash")]}


def xet_push(work: str) -> dict:
    """With hf_xet installed and Xet enabled (no HF_HUB_DISABLE_XET): push a model (safetensors) to the server
    at HF_ENDPOINT (``--inline-uploads``) and pull it back; then the same push to the default-mode server at
    work/default_endpoint.txt, which fails: the error it shows is returned."""
    import hashlib

    import torch
    from huggingface_hub import HfApi, constants, hf_hub_download
    from huggingface_hub.utils._runtime import is_xet_available

    import hf_mae  # noqa: F401
    from hf_mae import ChemoMAE
    from transformers import AutoModel

    assert is_xet_available() and not constants.HF_HUB_DISABLE_XET, "this scenario needs Xet enabled"
    torch.manual_seed(0)
    model = ChemoMAE(seq_len=32, d_model=16, nhead=2, num_layers=1, n_blocks=4, n_mask=2)
    local = Path(work) / "xet-model"
    model.save_pretrained(local)
    model.push_to_hub("lab/xet-inline")
    api = HfApi()
    assert "model.safetensors" in api.list_repo_files("lab/xet-inline")
    pulled = Path(hf_hub_download("lab/xet-inline", "model.safetensors")).read_bytes()
    assert pulled == (local / "model.safetensors").read_bytes(), "the pulled weights differ from those pushed"
    loaded, state = AutoModel.from_pretrained("lab/xet-inline").state_dict(), model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[key], state[key]) for key in state)

    default = HfApi(endpoint=(Path(work) / "default_endpoint.txt").read_text().strip())
    default.create_repo("lab/xet-default")
    try:
        default.upload_folder(repo_id="lab/xet-default", folder_path=str(local))
        error = None
    except Exception as err:  # what a user sees when neither setting is made
        error = f"{type(err).__name__}: {err}"
    return {"sha256": hashlib.sha256(pulled).hexdigest(), "default_mode_error": error,
            "default_mode_files": default.list_repo_files("lab/xet-default")}


def dataset_push(work: str) -> dict:
    """``Dataset.push_to_hub`` to the server at HF_ENDPOINT, then ``load_dataset`` of what was pushed."""
    from datasets import Dataset, load_dataset

    rows = {"smiles": ["CCO", "c1ccccc1", "CC(=O)O"], "value": [0.5, 1.5, 2.5]}
    Dataset.from_dict(rows).push_to_hub("lab/molecules")
    loaded = load_dataset("lab/molecules", split="train")
    return {"rows": loaded.to_dict()}


def big_upload(work: str) -> dict:
    """Upload one file of $HUB_UPLOAD_MB megabytes of random bytes; the seconds it took and its sha256 back."""
    import hashlib
    import time

    from huggingface_hub import HfApi, hf_hub_download

    size = int(os.environ.get("HUB_UPLOAD_MB", "300")) << 20
    path = Path(work) / "big.safetensors"
    with open(path, "wb") as handle:
        for _ in range(size >> 20):
            handle.write(os.urandom(1 << 20))
    api = HfApi()
    api.create_repo("lab/big", exist_ok=True)
    started = time.perf_counter()
    api.upload_file(path_or_fileobj=str(path), path_in_repo="big.safetensors", repo_id="lab/big")
    seconds = time.perf_counter() - started
    digest = hashlib.sha256(Path(hf_hub_download("lab/big", "big.safetensors")).read_bytes()).hexdigest()
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    path.unlink()
    return {"upload_s": round(seconds, 2), "same": digest == expected}


if __name__ == "__main__":
    scenario, work = sys.argv[1], sys.argv[2]
    if scenario in ("push", "pull", "remote_code"):
        import torch

        torch.set_num_threads(1)  # same arithmetic in every process: outputs must match bit for bit
    scenarios = {"push": push, "pull": pull, "remote_code": remote_code, "protocol": protocol,
                 "interrupted_push": interrupted_push, "retry_push": retry_push, "xet_push": xet_push,
                 "dataset_push": dataset_push, "big_upload": big_upload}
    result = scenarios[scenario](work)
    print("\nRESULT " + json.dumps(result))
