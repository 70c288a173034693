"""Speed and memory of hf_mae models next to their peers, written to BENCHMARKS.md (run from a checkout).

    python benchmarks/benchmark.py                            # every row, a few minutes per section on 2 CPU cores
    python benchmarks/benchmark.py --only chemomae,matmul     # some sections
    python benchmarks/benchmark.py --quick --output /tmp/B.md # tiny sizes and one repeat: a smoke run

Sections: the machine's matmul peak (fp32, bf16); ChemoMAE against the ``chemomae`` package (0.2.4) at its
published size, fp32 and bf16, hand-written loop and ``Trainer``; SpectralGPT and the V5 protein encoder
against transformers' ``ViTMAEForPreTraining`` at equal width, depth, token count and mask ratio; SMILES BERT
against stock ``BertForMaskedLM``; a scale table (batch size, tokens, activation checkpointing); and, when
CUDA is present, GPU rows with and without ``torch.compile`` and the host-device syncs of a training step.

How: every measurement runs in a fresh worker process (``benchmarks/benchmark.py --worker SPEC``) so
that its peak RSS belongs to one model and one precision; within each repeat our rows and the peer's
alternate; figures are medians over repeats, each shown with the 1-minute load average it ran under (other
work on the machine slows everything, and a ratio measured side by side is the robust figure). A train
step is forward, loss, backward and AdamW; an encode is an all-visible forward under ``inference_mode``.
FLOPs are counted by ``torch.utils.flop_counter`` (matrix multiplies and attention), so "% of peak" is the
share of the matmul peak the whole step achieves.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # this checkout's hf_mae, installed or not
    sys.path.insert(0, str(ROOT))

# ---------------------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------------------

# The shared ChemoMAE configuration (issue and ../notes/peers.md): both packages at this size.
CHEMO = dict(seq_len=256, n_blocks=32, n_mask=16, d_model=256, nhead=4, num_layers=4, dim_feedforward=1024,
             latent_dim=64, dropout=0.0)
CHEMO_BATCH = 64
# Small MAEs for the ViTMAE comparisons: width 192, 4 layers, 3 heads of 64, FFN 768; decoder 128 x 2.
SMALL = dict(hidden=192, layers=4, heads=3, ffn=768, dec_hidden=128, dec_layers=2, dec_heads=4, dec_ffn=512,
             mask_ratio=0.75)
SMILES = dict(vocab=600, hidden=256, layers=4, heads=4, ffn=1024, length=64)


def _quick(spec: dict) -> dict:
    """Shrink a spec for ``--quick`` (a smoke run, not a measurement)."""
    spec = dict(spec)
    spec["batch"] = max(1, spec.get("batch", 8) // 8)
    spec["steps"] = 2
    return spec


# ---------------------------------------------------------------------------------------------------------
# Worker side: build one case, time it, report
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One measured thing: ``step()`` processes ``samples`` samples; ``flops`` per step (None = not counted).

    A case that runs its own loop (a ``Trainer``) has no ``step`` but ``timed(warmup, steps)``, which runs
    ``warmup`` untimed steps and returns the wall and process CPU seconds of the next ``steps``."""

    step: Callable[[], None] | None
    samples: int
    flops: float | None = None
    sync: Callable[[], None] = lambda: None
    info: dict = field(default_factory=dict)
    timed: Callable[[int, int], tuple[list[float], list[float]]] | None = None


def _autocast(precision: str, device: str):
    import torch

    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _count_flops(fn: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def _train_case(model, loss_fn: Callable[[], "torch.Tensor"], spec: dict, optimizer=None) -> Case:  # noqa: F821
    """forward + loss + backward + optimizer step, under autocast for bf16; the model stays fp32 (AMP)."""
    import torch

    model.train()
    if optimizer is None:
        fused = spec["device"] in ("cpu", "cuda")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

    if spec.get("compile"):
        # "reduce-overhead" replays CUDA graphs: for small models, launch overhead is most of a GPU step
        loss_fn = torch.compile(loss_fn, mode=spec.get("compile_mode"))

    def forward_backward():
        with _autocast(spec["precision"], spec["device"]):
            loss = loss_fn()
        loss.backward()

    def step():
        forward_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = _count_flops(forward_backward) if not spec.get("compile") else None
    optimizer.zero_grad(set_to_none=True)
    return Case(step, spec["batch"], flops)


def _encode_case(encode: Callable[[], object], spec: dict) -> Case:
    import torch

    def step():
        with torch.inference_mode(), _autocast(spec["precision"], spec["device"]):
            encode()

    return Case(step, spec["batch"], None if spec.get("compile") else _count_flops(step))


def _chemo_ours(spec: dict) -> Case:
    import torch

    from hf_mae import ChemoMAEConfig, ChemoMAEForPreTraining

    torch.manual_seed(0)
    model = ChemoMAEForPreTraining(ChemoMAEConfig(**CHEMO, dec_dropout=0.0)).to(spec["device"])
    x = torch.randn(spec["batch"], CHEMO["seq_len"], device=spec["device"])
    if spec["mode"] == "encode":
        model.eval()
        if spec.get("bf16_weights"):   # inference in bf16 weights, no autocast: AutoModel(..., dtype=torch.bfloat16)
            model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
            spec = {**spec, "precision": "fp32"}   # no autocast around it
        return _encode_case(lambda: model.encode(x), spec)
    return _train_case(model, lambda: model(x).loss, spec)


def _peer_model(spec: dict):
    """chemomae's ChemoMAE at the shared size, seeded."""
    import torch
    from chemomae.models import ChemoMAE

    torch.manual_seed(0)
    return ChemoMAE(seq_len=CHEMO["seq_len"], n_patches=CHEMO["n_blocks"], n_mask=CHEMO["n_mask"],
                    d_model=CHEMO["d_model"], nhead=CHEMO["nhead"], num_layers=CHEMO["num_layers"],
                    dim_feedforward=CHEMO["dim_feedforward"], latent_dim=CHEMO["latent_dim"],
                    dropout=CHEMO["dropout"], decoder_num_layers=1).to(spec["device"])


def _chemo_peer(spec: dict) -> Case:
    import torch
    from chemomae.models.losses import masked_mse
    from chemomae.training.optim import build_optimizer

    peer = _peer_model(spec)
    x = torch.randn(spec["batch"], CHEMO["seq_len"], device=spec["device"])
    if spec["mode"] == "encode":
        # nn.TransformerEncoder's fused inference kernels hide their matmuls from the FLOP counter: count the
        # same computation on the unfused path (train mode, no grad; dropout is 0)
        with torch.no_grad():
            flops = _count_flops(lambda: peer.encode(x))
        peer.eval()
        case = _encode_case(lambda: peer.encode(x), spec)
        case.flops = flops
        return case

    def loss():
        x_recon, _, visible = peer(x)
        return masked_mse(x_recon, x, ~visible)

    return _train_case(peer, loss, spec, optimizer=build_optimizer(peer))


class _StopTiming(Exception):
    """Raised by ``_StepClock`` once every timed step has ended: the training loop stops there, before saving,
    evaluating or anything else that is not a training step."""


class _StepClock:
    """The wall and process CPU time at the end of each step of a training loop that runs itself (a ``Trainer``);
    ``tick()`` at every step end, and the loop is stopped (``_StopTiming``) after ``warmup`` + ``steps`` ends. A
    step's time is the gap between two ends: everything the loop does for it (fetching and collating the batch,
    forward, backward, clipping, optimizer, scheduler, callbacks)."""

    def __init__(self, warmup: int, steps: int):
        self.first = max(warmup, 1) - 1          # the first timed step needs the end of one before it
        self.ends = self.first + 1 + steps
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def tick(self) -> None:
        self.wall.append(time.perf_counter())
        self.cpu.append(time.process_time())
        if len(self.wall) >= self.ends:
            raise _StopTiming

    def run(self, loop: Callable[[], None]) -> tuple[list[float], list[float]]:
        """Run ``loop`` until the clock stops it; the wall and CPU seconds of the timed steps."""
        with contextlib.suppress(_StopTiming):
            loop()
        if len(self.wall) < self.ends:
            raise RuntimeError(f"the training loop stopped after {len(self.wall)} of {self.ends} steps")
        wall, cpu = self.wall[self.first:], self.cpu[self.first:]
        return [b - a for a, b in itertools.pairwise(wall)], [b - a for a, b in itertools.pairwise(cpu)]


def _trainer_callback(clock: _StepClock):
    """A transformers ``TrainerCallback`` that ticks ``clock`` at the end of every optimizer step."""
    from transformers import TrainerCallback

    class StepClockCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    return StepClockCallback()


def _chemo_trainer(spec: dict) -> Case:
    """ChemoMAE through ``Trainer`` (``spec["job"]``: through the ``hf-mae pretrain chemomae`` command), in this
    process's main thread as a user runs it; ``spec["training_args"]``: more ``TrainingArguments`` (with ``job``:
    ``spec["cli_args"]``, more flags of the command). The Trainer runs its own loop, so the case times its own
    steps (``Case.timed``): ``warmup`` steps, then ``steps`` timed ones, each from the end of the one before."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainingArguments

    out_dir = Path(spec.get("tmp", "/tmp")) / f"trainer-{spec['precision']}-{os.getpid()}"
    max_steps = 10**9   # never reached: the clock stops the Trainer

    if spec.get("job"):
        from hf_mae.training import common, pretrain_spectra

        def run(callback):
            class ClockedTrainer(Trainer):  # the jobs' own Trainer (hf_mae.training.common), with the clock added
                def __init__(self, *args, **kwargs):
                    super().__init__(*args, **kwargs)
                    self.add_callback(callback)

            argv = ["--output_dir", str(out_dir), "--per_device_train_batch_size", str(spec["batch"]),
                    "--max_steps", str(max_steps), "--eval_strategy", "no", "--save_strategy", "no",
                    "--logging_steps", str(max_steps), "--disable_tqdm", "true", "--dropout", "0",
                    "--dec_dropout", "0", "--report_to", "none",
                    "--dataloader_drop_last", "true"]   # every step a full batch (424 training spectra)
            if spec["precision"] == "bf16":
                argv.append("--bf16")
            argv += spec.get("cli_args", [])   # more flags of the command, e.g. ["--torch_compile", "true"]
            common.Trainer = ClockedTrainer
            try:
                pretrain_spectra.pretrain_chemomae(argv)
            finally:
                common.Trainer = Trainer
    else:
        import datasets

        from hf_mae import ChemoMAEConfig, ChemoMAEForPreTraining
        from hf_mae.data.spectra import DataCollatorForSpectra

        def run(callback):
            torch.manual_seed(0)
            model = ChemoMAEForPreTraining(ChemoMAEConfig(**CHEMO, dec_dropout=0.0))
            rows = np.random.default_rng(0).standard_normal((spec["batch"] * 8, CHEMO["seq_len"]), dtype=np.float32)
            data = datasets.Dataset.from_dict({"input_values": rows}).with_format("numpy")
            args = TrainingArguments(str(out_dir), per_device_train_batch_size=spec["batch"], max_steps=max_steps,
                                     bf16=spec["precision"] == "bf16", use_cpu=spec["device"] == "cpu",
                                     report_to="none", save_strategy="no", disable_tqdm=True,
                                     logging_steps=max_steps, dataloader_pin_memory=spec["device"] == "cuda",
                                     **spec.get("training_args", {}))
            Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorForSpectra(),
                    callbacks=[callback]).train()

    def timed(warmup: int, steps: int) -> tuple[list[float], list[float]]:
        clock = _StepClock(warmup, steps)
        return clock.run(lambda: run(_trainer_callback(clock)))

    return Case(None, spec["batch"], timed=timed)


def _chemo_peer_trainer(spec: dict) -> Case:
    """chemomae's own training loop (``chemomae.training.trainer.Trainer`` with its defaults: gradient clipping
    at 1.0, an EMA of the weights, its warmup-cosine schedule, a finiteness check of every loss), fp32: it refuses
    autocast on the CPU. Like the ``Trainer`` rows, it runs its own loop and times its own steps."""
    import torch
    from chemomae.training.optim import build_optimizer, build_scheduler
    from chemomae.training.trainer import Trainer, TrainerConfig

    peer = _peer_model(spec)
    rows = torch.randn(spec["batch"] * 8, CHEMO["seq_len"], generator=torch.Generator().manual_seed(0))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(rows), batch_size=spec["batch"],
                                         shuffle=True, drop_last=True)
    optimizer = build_optimizer(peer)
    epochs = 10**6   # never reached: the clock stops the loop
    scheduler = build_scheduler(optimizer, steps_per_epoch=len(loader), epochs=epochs)
    config = TrainerConfig(out_dir=Path(spec.get("tmp", "/tmp")) / f"peer-trainer-{os.getpid()}", device=spec["device"],
                           resume_from=None, history_file=None, checkpoint_dir=None, raw_weights_file=None,
                           ema_weights_file=None, model_artifacts=False, progress=False, verbose=False)

    def timed(warmup: int, steps: int) -> tuple[list[float], list[float]]:
        clock = _StepClock(warmup, steps)

        class ClockedTrainer(Trainer):
            def after_step(self, *args, **kwargs):
                super().after_step(*args, **kwargs)
                clock.tick()

        trainer = ClockedTrainer(peer, optimizer, loader, scheduler=scheduler, cfg=config)
        return clock.run(lambda: trainer.fit(epochs))

    return Case(None, spec["batch"], timed=timed)


def _vitmae(spec: dict, *, tokens_side: int, patch: int, channels: int):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

    config = ViTMAEConfig(hidden_size=SMALL["hidden"], num_hidden_layers=SMALL["layers"],
                          num_attention_heads=SMALL["heads"], intermediate_size=SMALL["ffn"],
                          decoder_hidden_size=SMALL["dec_hidden"], decoder_num_hidden_layers=SMALL["dec_layers"],
                          decoder_num_attention_heads=SMALL["dec_heads"], decoder_intermediate_size=SMALL["dec_ffn"],
                          image_size=tokens_side * patch, patch_size=patch, num_channels=channels,
                          mask_ratio=SMALL["mask_ratio"] if spec["mode"] == "train" else 0.0)
    return config, (ViTMAEForPreTraining if spec["mode"] == "train" else ViTMAEModel)(config)


def _vitmae_case(spec: dict, *, tokens_side: int, patch: int, channels: int) -> Case:
    import torch

    torch.manual_seed(0)
    config, model = _vitmae(spec, tokens_side=tokens_side, patch=patch, channels=channels)
    model = model.to(spec["device"])
    pixels = torch.randn(spec["batch"], channels, config.image_size, config.image_size, device=spec["device"])
    if spec["mode"] == "encode":
        model.eval()
        return _encode_case(lambda: model(pixels), spec)
    return _train_case(model, lambda: model(pixels).loss, spec)


def _spectral_gpt_config(spec: dict):
    from hf_mae import SpectralGPTConfig

    return SpectralGPTConfig(
        image_size=spec.get("image_size", 112), patch_size=16, num_bands=spec.get("bands", 12), band_patch_size=3,
        hidden_size=SMALL["hidden"], num_hidden_layers=SMALL["layers"], num_attention_heads=SMALL["heads"],
        intermediate_size=SMALL["ffn"], decoder_hidden_size=SMALL["dec_hidden"],
        decoder_num_hidden_layers=SMALL["dec_layers"], decoder_num_attention_heads=SMALL["dec_heads"],
        decoder_intermediate_size=SMALL["dec_ffn"], mask_ratio=SMALL["mask_ratio"], aux_modalities=[],
        num_conditioning_layers=0)


def _spectral_gpt_case(spec: dict) -> Case:
    """SpectralGPT, pure HSI MAE (no auxiliary images). Default: 112 x 112 x 12 cube, 16 x 16 x 3 patches =
    4 band groups x 7 x 7 = 196 tokens of 768 values, like ViTMAE's 14 x 14 patches of 16 x 16 x 3."""
    import torch

    from hf_mae import SpectralGPTForPreTraining, SpectralGPTModel

    torch.manual_seed(0)
    config = _spectral_gpt_config(spec)
    cube = torch.randn(spec["batch"], config.num_bands, config.image_size, config.image_size, device=spec["device"])
    if spec["mode"] == "encode":
        model = SpectralGPTModel(config).to(spec["device"]).eval()
        return _encode_case(lambda: model(cube), spec)
    model = SpectralGPTForPreTraining(config).to(spec["device"])
    if spec.get("checkpointing"):
        model.activation_checkpointing_enable()
    case = _train_case(model, lambda: model(cube).loss, spec)
    case.info["tokens"] = config.num_patches
    return case


def _protein_v5_case(spec: dict) -> Case:
    """V5 at the small size with 49 patches of 768-d embeddings (ViTMAE's 7 x 7 tokens of 16 x 16 x 3 values).
    By default 49 residues, one per patch: the same input volume as ViTMAE; ``residues``/``max_length`` 1568
    pools 32 residues into each patch, as a protein of that length would (32x the input to read)."""
    import torch

    from hf_mae import ProteinMAEV5Config, ProteinMAEV5ForPreTraining  # on main once the protein branch is merged

    torch.manual_seed(0)
    max_length = spec.get("max_length", 49)
    config = ProteinMAEV5Config(
        input_dim=spec.get("input_dim", 768), max_length=max_length, num_patches=spec.get("patches", 49),
        embed_dim=SMALL["hidden"], num_layers=SMALL["layers"], nhead=SMALL["heads"], dim_feedforward=SMALL["ffn"],
        decoder_embed_dim=SMALL["dec_hidden"], decoder_num_layers=SMALL["dec_layers"],
        decoder_nhead=SMALL["dec_heads"], decoder_dim_feedforward=SMALL["dec_ffn"], mask_ratio=SMALL["mask_ratio"],
        dropout=0.0)
    residues = spec.get("residues", max_length)
    x = torch.randn(spec["batch"], residues, config.input_dim, device=spec["device"])
    model = ProteinMAEV5ForPreTraining(config).to(spec["device"])
    if spec["mode"] == "encode":
        model.eval()
        return _encode_case(lambda: model.mae(residue_embeddings=x), spec)                # all patches visible
    if spec.get("checkpointing"):
        model.activation_checkpointing_enable()
    return _train_case(model, lambda: model(residue_embeddings=x).loss, spec)


def _smiles_case(spec: dict, *, ours: bool) -> Case:
    """SMILES BERT against stock BertForMaskedLM of the same size; 15% of positions carry labels."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=SMILES["vocab"], hidden_size=SMILES["hidden"], num_hidden_layers=SMILES["layers"],
                 num_attention_heads=SMILES["heads"], intermediate_size=SMILES["ffn"], hidden_dropout_prob=0.0,
                 attention_probs_dropout_prob=0.0, max_position_embeddings=128)
    if ours:
        from hf_mae import SMILESBERTForMaskedLM, SMILESBERTMLMConfig  # on main once the smiles branch is merged

        model = SMILESBERTForMaskedLM(SMILESBERTMLMConfig(**sizes))
    else:
        model = BertForMaskedLM(BertConfig(**sizes))
    model = model.to(spec["device"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, SMILES["vocab"], (spec["batch"], SMILES["length"]), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    ids, labels = ids.to(spec["device"]), labels.to(spec["device"])
    mask = torch.ones_like(ids)
    if spec["mode"] == "encode":
        model.eval()
        return _encode_case(lambda: model(input_ids=ids, attention_mask=mask), spec)
    return _train_case(model, lambda: model(input_ids=ids, attention_mask=mask, labels=labels).loss, spec)


def _matmul_case(spec: dict) -> Case:
    import torch

    m, k, n = spec["shape"]
    torch.backends.cuda.matmul.allow_tf32 = False
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    a = torch.randn(m, k, dtype=dtype, device=spec["device"])
    b = torch.randn(k, n, dtype=dtype, device=spec["device"])
    return Case(lambda: torch.mm(a, b), 1, 2.0 * m * k * n)


# Cases that run their own loop (a Trainer, in the worker's main thread as users run it) and time their own
# steps: each is timed in a process of its own by this script; interleaved.py, which steps cases in turns,
# refuses them.
OWN_LOOP_CASES = {"chemomae-trainer", "chemomae-peer-trainer"}

BUILDERS: dict[str, Callable[[dict], Case]] = {
    "chemomae": _chemo_ours,
    "chemomae-peer": _chemo_peer,
    "chemomae-trainer": _chemo_trainer,
    "chemomae-peer-trainer": _chemo_peer_trainer,
    "spectral-gpt": _spectral_gpt_case,
    "vitmae-196": lambda s: _vitmae_case(s, tokens_side=14, patch=16, channels=3),
    "protein-v5": _protein_v5_case,
    "vitmae-49": lambda s: _vitmae_case(s, tokens_side=7, patch=16, channels=3),
    "vitmae-784": lambda s: _vitmae_case(s, tokens_side=28, patch=16, channels=3),
    "smiles-bert": lambda s: _smiles_case(s, ours=True),
    "bert": lambda s: _smiles_case(s, ours=False),
    "matmul": _matmul_case,
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _count_syncs(step: Callable[[], None]) -> int | None:
    """Host-device synchronisations in one step, counted with CUDA's sync debug mode (one warning per sync).
    A known sync (``.item()``) is counted along with the step: if it is not seen, the count means nothing
    and None is returned."""
    import torch

    probe = torch.ones(1, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            probe.item()
            calibration = len(caught)
            step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message).lower() for w in caught[calibration:])
    return syncs if calibration == 1 else None


def _allocator(spec: dict) -> None:
    """``spec["keep_freed_memory"]``: True calls ``hf_mae.keep_freed_memory()`` before the case is built, False
    stops the training jobs from calling it; absent, the process runs as a user's would (the jobs call it on
    the CPU, a plain ``Trainer`` or hand loop does not)."""
    from hf_mae.training import cpu_memory

    if spec.get("keep_freed_memory") is True and not cpu_memory.keep_freed_memory():
        raise RuntimeError("keep_freed_memory() did not apply here (not glibc)")
    if spec.get("keep_freed_memory") is False:
        os.environ[cpu_memory.ENV_SWITCH] = "0"


def import_models() -> None:
    """Import everything a row might import, before a worker's RSS baseline: absolute RSS then compares like with
    like and the increment is the model's and its steps' alone. hf_mae's and transformers' top levels are lazy:
    their models (transformers.modeling_utils, which brings torch._dynamo and accelerate, about 100 MiB) must be
    resolved here, or they land in the increment of the rows that build one and not in the chemomae package's."""
    import torch.utils.flop_counter  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    import hf_mae.models  # noqa: F401
    with contextlib.suppress(ImportError):
        import chemomae.models  # noqa: F401


def _time_steps(case: Case, spec: dict, on_cuda: bool, result: dict) -> tuple[list[float], list[float]]:
    """``warmup`` untimed calls of ``case.step``, then the wall and process CPU seconds of ``steps`` more (and,
    on CUDA, the host-device syncs of one training step in ``result``)."""
    import torch

    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    for _ in range(spec["warmup"]):
        case.step()
    if on_cuda and spec["mode"] == "train":
        result["syncs_per_step"] = _count_syncs(case.step)
    times, cpu_times = [], []
    for _ in range(spec["steps"]):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        case.step()
        sync()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)   # all threads; with 1 thread, robust to load
    return times, cpu_times


def run_worker(spec: dict) -> dict:
    """Measure one spec in this process; returns the raw figures."""
    import torch

    torch.set_num_threads(spec["threads"])
    _allocator(spec)
    import_models()
    on_cuda = spec["device"] == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mib()
    result = {"load_before": os.getloadavg()[0]}
    case = BUILDERS[spec["case"]](spec)
    if case.timed is not None:
        times, cpu_times = case.timed(spec["warmup"], spec["steps"])
    else:
        times, cpu_times = _time_steps(case, spec, on_cuda, result)
    result.update(step_s=times, cpu_s=cpu_times, samples=case.samples, flops=case.flops, **case.info)
    result["load_after"] = os.getloadavg()[0]
    result["rss_before_mib"] = rss_before
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if on_cuda:
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


# ---------------------------------------------------------------------------------------------------------
# Orchestrator side: which specs, in which order, and the report
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of a table: a spec measured ``repeats`` times; ``peer`` names the row it is compared with."""

    key: str
    label: str
    spec: dict
    peer: str | None = None
    runs: list[dict] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> list[dict]:
        return [r for r in self.runs if "error" not in r]

    def rates(self) -> list[float]:
        """samples/s of each run (its median step)."""
        return [r["samples"] / statistics.median(r["step_s"]) for r in self.ok if r.get("step_s")]

    def samples_per_s(self) -> float | None:
        rates = self.rates()
        return statistics.median(rates) if rates else None

    def cpu_samples_per_s(self) -> float | None:
        """samples per second of process CPU time (median over runs of their median step), when recorded."""
        rates = [r["samples"] / statistics.median(r["cpu_s"]) for r in self.ok if r.get("cpu_s")]
        return statistics.median(rates) if rates else None

    def median(self, name: str) -> float | None:
        values = [r[name] for r in self.ok if r.get(name) is not None]
        return statistics.median(values) if values else None

    def loads(self) -> str:
        return ", ".join(f"{r['load_before']:.1f}" for r in self.ok)


def _spec(case: str, mode: str, precision: str, batch: int, **extra) -> dict:
    steps = {"warmup": 5, "steps": 30} if case.startswith("chemomae") else {}   # fast steps: time more of them
    return {"case": case, "mode": mode, "precision": precision, "batch": batch, "device": "cpu", **steps, **extra}


def build_rows(sections: set[str], cuda: bool) -> dict[str, list[Row]]:
    """Every table of the report with its rows (not yet measured)."""
    tables: dict[str, list[Row]] = {}

    def kept(*args, **extra) -> dict:
        """A spec with freed memory kept (``hf_mae.keep_freed_memory()``): the ChemoMAE section's "keep" rows,
        and both sides of the ViTMAE and BERT sections. Without it a fresh process of either model there settles
        in one of two allocator states far apart in speed, and a ratio of two processes measured those
        (BENCHMARKS.md)."""
        return _spec(*args, keep_freed_memory=True, **extra)

    if "matmul" in sections:
        tables["matmul"] = [
            Row(f"mm-{p}-{'x'.join(map(str, s))}", f"{p} {s[0]}x{s[1]} @ {s[1]}x{s[2]}",
                _spec("matmul", "train", p, 1, shape=s, steps=10))
            for p in ("fp32", "bf16") for s in ((2048, 2048, 2048), (1088, 256, 1024), (1088, 1024, 256))
        ]
    if "chemomae" in sections:
        b = CHEMO_BATCH
        tables["chemomae"] = [
            Row("peer-train-fp32", "chemomae 0.2.4, train, fp32", _spec("chemomae-peer", "train", "fp32", b)),
            Row("ours-train-fp32", "hf_mae ChemoMAE, train, fp32", _spec("chemomae", "train", "fp32", b),
                "peer-train-fp32"),
            Row("ours-train-bf16", "hf_mae ChemoMAE, train, bf16 autocast", _spec("chemomae", "train", "bf16", b),
                "peer-train-fp32"),
            Row("ours-trainer-fp32", "hf_mae ChemoMAE, Trainer, fp32",
                _spec("chemomae-trainer", "train", "fp32", b), "peer-train-fp32"),
            Row("ours-trainer-bf16", "hf_mae ChemoMAE, Trainer(bf16=True)",
                _spec("chemomae-trainer", "train", "bf16", b), "peer-train-fp32"),
            Row("ours-job-bf16", "hf_mae ChemoMAE, `hf-mae pretrain chemomae --bf16` (tablet NIR; the job keeps "
                "freed memory)", _spec("chemomae-trainer", "train", "bf16", b, job=True), "peer-train-fp32"),
            Row("ours-trainer-bf16-compile", "hf_mae ChemoMAE, Trainer(bf16=True, torch_compile=True), "
                "keep_freed_memory()", kept("chemomae-trainer", "train", "bf16", b,
                                            training_args={"torch_compile": True}),
                "peer-train-fp32"),
            Row("ours-job-bf16-compile", "hf_mae ChemoMAE, `hf-mae pretrain chemomae --bf16 --torch_compile true`",
                _spec("chemomae-trainer", "train", "bf16", b, job=True, cli_args=["--torch_compile", "true"]),
                "peer-train-fp32"),
            Row("ours-train-bf16-keep", "hf_mae ChemoMAE, train, bf16 autocast, keep_freed_memory()",
                kept("chemomae", "train", "bf16", b), "peer-train-fp32"),
            Row("ours-trainer-bf16-keep", "hf_mae ChemoMAE, Trainer(bf16=True), keep_freed_memory()",
                kept("chemomae-trainer", "train", "bf16", b), "peer-train-fp32"),
            Row("peer-train-fp32-keep", "chemomae 0.2.4, train, fp32, keep_freed_memory() (for fairness)",
                kept("chemomae-peer", "train", "fp32", b), "peer-train-fp32"),
            Row("peer-trainer-fp32", "chemomae 0.2.4, its own Trainer (clipping 1.0, EMA, warmup-cosine), fp32",
                _spec("chemomae-peer-trainer", "train", "fp32", b), "peer-train-fp32"),
            Row("peer-encode-fp32", "chemomae 0.2.4, encode, fp32", _spec("chemomae-peer", "encode", "fp32", b)),
            Row("ours-encode-fp32", "hf_mae ChemoMAE, encode, fp32", _spec("chemomae", "encode", "fp32", b),
                "peer-encode-fp32"),
            Row("ours-encode-bf16", "hf_mae ChemoMAE, encode, bf16 autocast", _spec("chemomae", "encode", "bf16", b),
                "peer-encode-fp32"),
            Row("ours-encode-bf16w", "hf_mae ChemoMAE, encode, bf16 weights (dtype=torch.bfloat16)",
                _spec("chemomae", "encode", "bf16", b, bf16_weights=True), "peer-encode-fp32"),
            Row("ours-encode-bf16-keep", "hf_mae ChemoMAE, encode, bf16 autocast, keep_freed_memory()",
                kept("chemomae", "encode", "bf16", b), "peer-encode-fp32"),
            Row("ours-encode-bf16w-keep", "hf_mae ChemoMAE, encode, bf16 weights, keep_freed_memory()",
                kept("chemomae", "encode", "bf16", b, bf16_weights=True), "peer-encode-fp32"),
            Row("peer-encode-fp32-keep", "chemomae 0.2.4, encode, fp32, keep_freed_memory() (for fairness)",
                kept("chemomae-peer", "encode", "fp32", b), "peer-encode-fp32"),
        ]
    if "vitmae" in sections:
        rows = []
        for ours, peer, label, peer_label, batch in (
                ("spectral-gpt", "vitmae-196", "SpectralGPT (HSI MAE, 196 tokens)", "ViTMAE (196 tokens)", 16),
                ("protein-v5", "vitmae-49", "V5 protein MAE (49 residues = 49 patches)", "ViTMAE (49 tokens)", 32)):
            for mode in ("train", "encode"):
                for p in ("fp32", "bf16"):
                    key = f"{peer}-{mode}-{p}"
                    rows.append(Row(key, f"{peer_label}, {mode}, {p}", kept(peer, mode, p, batch)))
                    rows.append(Row(f"{ours}-{mode}-{p}", f"{label}, {mode}, {p}", kept(ours, mode, p, batch), key))
                    if ours == "protein-v5":
                        rows.append(Row(f"{ours}-1568-{mode}-{p}", f"V5, 1568 residues pooled into 49 patches, {mode}, "
                                        f"{p}", kept(ours, mode, p, batch, residues=1568, max_length=1568), key))
        # 784 tokens: SpectralGPT's 224 x 224 x 12 cube against ViTMAE's 28 x 28 patches of 16 x 16 x 3 (448 px)
        for mode in ("train", "encode"):
            for p in ("fp32", "bf16"):
                key = f"vitmae-784-{mode}-{p}"
                rows.append(Row(key, f"ViTMAE (784 tokens), {mode}, {p}",
                                kept("vitmae-784", mode, p, 4, warmup=1, steps=4)))
                rows.append(Row(f"spectral-gpt-784-{mode}-{p}", f"SpectralGPT (HSI MAE, 784 tokens), {mode}, {p}",
                                kept("spectral-gpt", mode, p, 4, image_size=224, bands=12, warmup=1, steps=4), key))
        tables["vitmae"] = rows
    if "smiles" in sections:
        tables["smiles"] = [
            row for mode in ("train", "encode") for p in ("fp32", "bf16") for row in (
                Row(f"bert-{mode}-{p}", f"BertForMaskedLM, {mode}, {p}", kept("bert", mode, p, 64)),
                Row(f"smiles-{mode}-{p}", f"SMILES BERT, {mode}, {p}", kept("smiles-bert", mode, p, 64),
                    f"bert-{mode}-{p}"))]
    if "scale" in sections:
        rows = []
        for residues in (256, 1502):
            for batch in (8, 32):
                for ckpt in (False, True):
                    rows.append(Row(f"v5-{residues}-{batch}-{ckpt}", f"V5, {residues} residues, batch {batch}"
                                    f"{', checkpointing' if ckpt else ''}",
                                    _spec("protein-v5", "train", "bf16", batch, residues=residues, max_length=1502,
                                          patches=47, input_dim=960, checkpointing=ckpt, warmup=1, steps=3)))
        for bands in (12, 24):
            for batch in (2, 8):
                for ckpt in (False, True):
                    rows.append(Row(f"sgpt-{bands}-{batch}-{ckpt}", f"SpectralGPT, 224x224x{bands} "
                                    f"({bands // 3 * 196} tokens), batch {batch}{', checkpointing' if ckpt else ''}",
                                    _spec("spectral-gpt", "train", "bf16", batch, image_size=224, bands=bands,
                                          checkpointing=ckpt, warmup=1, steps=3)))
        tables["scale"] = rows
    if "gpu" in sections and cuda:
        tables["gpu"] = _gpu_rows()
    return tables


def _gpu_rows() -> list[Row]:
    """GPU rows: the matmul peak, then each model next to its peer in fp32 and bf16, eager and compiled.
    One H100-class step at the CPU batch sizes is launch-bound, so the GPU rows use larger batches too."""
    def gpu(case, mode, p, batch, **extra):
        return {**_spec(case, mode, p, batch, **extra), "device": "cuda", "warmup": 5, "steps": 30}

    rows = [Row(f"gpu-mm-{p}", f"{p} 8192x8192 @ 8192x8192{' (TF32 off)' if p == 'fp32' else ''}",
                gpu("matmul", "train", p, 1, shape=(8192, 8192, 8192), steps=10))
            for p in ("fp32", "bf16")]
    pairs = (("chemomae", "chemomae-peer", "ChemoMAE", "chemomae 0.2.4", (CHEMO_BATCH, 1024)),
             ("spectral-gpt", "vitmae-196", "SpectralGPT (196 tokens)", "ViTMAE (196 tokens)", (256,)),
             ("protein-v5", "vitmae-49", "V5 protein MAE (49 patches)", "ViTMAE (49 tokens)", (256,)))
    for case, peer_case, name, peer_name, batches in pairs:
        for batch in batches:
            for p, comp in (("fp32", False), ("bf16", False), ("bf16", True), ("fp32", True)):
                if comp and p == "fp32" and case != "chemomae":
                    continue   # compiled fp32 only for the reference model: device time is short
                tag = f"batch {batch}, {p}{', torch.compile' if comp else ''}"
                peer_key = f"gpu-{peer_case}-{batch}-{p}-{comp}"
                rows.append(Row(peer_key, f"{peer_name}, train, {tag}",
                                gpu(peer_case, "train", p, batch, compile=comp)))
                rows.append(Row(f"gpu-{case}-{batch}-{p}-{comp}", f"{name}, train, {tag}",
                                gpu(case, "train", p, batch, compile=comp), peer_key))
    # CUDA graphs for the launch-bound small batch
    tag = f"batch {CHEMO_BATCH}, bf16, torch.compile(mode='reduce-overhead')"
    peer_key = f"gpu-chemomae-peer-{CHEMO_BATCH}-bf16-cudagraphs"
    rows.append(Row(peer_key, f"chemomae 0.2.4, train, {tag}",
                    gpu("chemomae-peer", "train", "bf16", CHEMO_BATCH, compile=True, compile_mode="reduce-overhead")))
    rows.append(Row(f"gpu-chemomae-{CHEMO_BATCH}-bf16-cudagraphs", f"ChemoMAE, train, {tag}",
                    gpu("chemomae", "train", "bf16", CHEMO_BATCH, compile=True, compile_mode="reduce-overhead"), peer_key))
    return rows


def _availability() -> dict[str, str]:
    """Cases that cannot run here, with the reason."""
    import importlib.util

    import hf_mae

    missing = {}
    if importlib.util.find_spec("chemomae") is None:
        missing["chemomae-peer"] = "the chemomae package is not installed (pip install chemomae==0.2.4)"
        missing["chemomae-peer-trainer"] = missing["chemomae-peer"]
    if not hasattr(hf_mae, "ProteinMAEV5ForPreTraining"):
        missing["protein-v5"] = "hf_mae has no ProteinMAEV5ForPreTraining yet (protein branch not merged)"
    if not hasattr(hf_mae, "SMILESBERTForMaskedLM"):
        missing["smiles-bert"] = "hf_mae has no SMILESBERTForMaskedLM yet (smiles branch not merged)"
    return missing


def _run_spec(spec: dict, timeout: int) -> dict:
    package_root = str(ROOT)  # workers import the same hf_mae as this process
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1][len("RESULT "):])


def _raw(tables: dict[str, list[Row]], load_start, load_end, machine: list[str]) -> dict:
    raw = {row.key: {"label": row.label, "spec": row.spec, "runs": row.runs, "skipped": row.skipped}
           for rows in tables.values() for row in rows}
    raw["_load"], raw["_machine"] = {"start": load_start, "end": load_end}, machine
    return raw


def _restore(tables: dict[str, list[Row]], saved: dict, keep_failed: bool) -> None:
    """Put the runs of a ``--json`` file back into the rows (``keep_failed``: failed runs too, for a report)."""
    for rows in tables.values():
        for row in rows:
            entry = saved.get(row.key, {})
            row.runs = [r for r in entry.get("runs", []) if keep_failed or "error" not in r]
            row.skipped = entry.get("skipped") if keep_failed else None


def measure(tables: dict[str, list[Row]], repeats: int, threads: int, quick: bool, tmp: str, timeout: int,
            checkpoint: Callable[[], None] = lambda: None) -> None:
    """Run every row ``repeats`` times; within a repeat, rows run in table order (peer, ours, peer, ours ...).
    Rows that already hold ``repeats`` runs (``--resume``) are not measured again; ``checkpoint`` is called
    after every measurement, so an interrupted run keeps what it measured."""
    missing = _availability()
    for rows in tables.values():
        for row in rows:
            row.skipped = missing.get(row.spec["case"])
    for repeat in range(repeats):
        for table, rows in tables.items():
            for row in rows:
                if row.skipped or len(row.runs) > repeat or (table == "scale" and repeat > 0):
                    continue
                spec = {"warmup": 3, "steps": 10, **row.spec, "threads": threads, "tmp": tmp}
                if quick:
                    spec = _quick(spec)
                    spec["warmup"] = 1
                result = _run_spec(spec, timeout)
                row.runs.append(result)
                checkpoint()
                rate = (f"{result['samples'] / statistics.median(result['step_s']):.1f}/s"
                        if result.get("step_s") else result.get("error", "?"))
                print(f"[{repeat + 1}/{repeats}] {row.label}: {rate} (load {result.get('load_before', 0):.1f})",
                      flush=True)


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

def _machine() -> list[str]:
    import torch
    import transformers

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        flags = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in text)
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}",
                f"transformers {transformers.__version__}"]
    for name in ("accelerate", "chemomae"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"- CPU: {cpu}, {os.cpu_count()} logical cores{mem}; ISA: {flags or 'n/a'}",
            f"- GPU: {gpu}",
            f"- versions: {', '.join(versions)}; hf_mae {commit or 'unknown commit'}",
            f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}"]


# The host kinds a report keeps apart: the matrix ISA sets how much faster bf16 is than fp32 (AMX tiles
# about 7x on a 2-core Sapphire Rapids, AVX-512 BF16 dot products about 2x on Zen 4), so a ratio holds
# only on its kind. Best first.
HOST_KINDS = (("amx_bf16", "amx"), ("avx512_bf16", "avx512_bf16"), ("avx512f", "avx512"), ("avx2", "avx2"))


def host_kind(machine: list[str]) -> str:
    """The host kind of a run from its machine lines (the ``ISA:`` list): amx, avx512_bf16, avx512, avx2, other."""
    isa = next((line.split("ISA:", 1)[1] for line in machine if "ISA:" in line), "")
    flags = {flag.strip() for flag in isa.split(",")}
    return next((kind for flag, kind in HOST_KINDS if flag in flags), "other")


def merge_host_section(existing: str, kind: str, section: list[str], header: list[str]) -> str:
    """The report with this host kind's section replaced (or added): each kind keeps its own tables, so a
    run on one kind of host never overwrites the figures measured on another."""
    begin, end = f"<!-- host: {kind} -->", f"<!-- end host: {kind} -->"
    block = "\n".join([begin, *section, end])
    if begin in existing and end in existing:
        before, rest = existing.split(begin, 1)
        return before + block + rest.split(end, 1)[1]
    if not existing.strip():
        return "\n".join(header) + "\n" + block + "\n"
    return existing.rstrip("\n") + "\n\n" + block + "\n"


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _peak(tables: dict[str, list[Row]], precision: str, device: str = "cpu") -> float | None:
    """The best matmul FLOP/s seen in any run on ``device`` (a peak; medians under load would understate it)."""
    rows = tables.get("matmul", []) if device == "cpu" else [r for r in tables.get("gpu", []) if r.spec["case"] == "matmul"]
    rates = [rate * r.ok[0]["flops"] for r in rows if r.spec["precision"] == precision and r.ok for rate in r.rates()]
    return max(rates) if rates else None


def _table(rows: list[Row], by_key: dict[str, Row], peaks: dict[str, float | None], cuda: bool = False,
           threads: int = 0) -> list[str]:
    """One markdown table; with ``threads`` 1 the ratio also by process CPU time (robust to other load)."""
    header = ["row", "samples/s (median; range)", "ratio to peer", "peak RSS MiB (increment)", "GFLOP/s",
              "% of matmul peak", "load avg (1 min) per run"]
    if cuda:
        header[3] = "peak CUDA MiB"
        header.insert(4, "syncs/step")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if row.skipped:
            lines.append(f"| {row.label} | skipped: {row.skipped} |" + " |" * (len(header) - 2))
            continue
        if not row.ok:
            error = row.runs[0].get("error", "not run") if row.runs else "not run"
            lines.append(f"| {row.label} | failed: {error} |" + " |" * (len(header) - 2))
            continue
        rate, rates = row.samples_per_s(), row.rates()
        peer = by_key.get(row.peer) if row.peer else None
        ratio = f"{rate / peer.samples_per_s():.2f}x vs {peer.label}" if peer and peer.samples_per_s() else ""
        if ratio and threads == 1 and row.cpu_samples_per_s() and peer.cpu_samples_per_s():
            ratio += f" (CPU time: {row.cpu_samples_per_s() / peer.cpu_samples_per_s():.2f}x)"
        flops = row.median("flops")
        if not flops and row.spec["case"] == "chemomae-trainer":   # same model and step as the hand loop
            twin = by_key.get(f"ours-train-{row.spec['precision']}")
            flops = twin.median("flops") if twin else None
        gflops = rate / row.ok[0]["samples"] * flops / 1e9 if flops else None   # steps/s x FLOPs per step
        peak = peaks.get(row.spec["precision"])
        share = 100 * gflops * 1e9 / peak if gflops and peak else None
        frac = "-" if share is None else f"{share:.0f}%" if share >= 10 else f"{share:.1f}%"
        if cuda:
            memory = _fmt(row.median("peak_cuda_mib"))
            extra = [_fmt(row.median("syncs_per_step"))]
        else:
            increment = statistics.median([r["peak_rss_mib"] - r["rss_before_mib"] for r in row.ok])
            memory = f"{_fmt(row.median('peak_rss_mib'))} (+{increment:,.0f})"
            extra = []
        cells = [row.label, f"{rate:,.1f} ({min(rates):,.0f}-{max(rates):,.0f})", ratio, memory, *extra,
                 _fmt(gflops, 1), frac, row.loads()]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets(by_key: dict[str, Row], threads: int = 0) -> list[str]:
    """Each target's ratio and verdict; with one thread also by CPU time, which other load barely moves."""
    def rate(key, cpu=False):
        row = by_key.get(key)
        if not row or not row.ok:
            return None
        return row.cpu_samples_per_s() if cpu else row.samples_per_s()

    def check(name, ours, peer, factor):
        a, b = rate(ours), rate(peer)
        if a is None or b is None:
            return f"- {name}: not measured"
        verdict = "met" if a >= factor * b else "NOT met"
        line = f"- {name}: {a / b:.2f}x (target >= {factor}x): {verdict}"
        a, b = rate(ours, cpu=True), rate(peer, cpu=True)
        if threads == 1 and a and b:
            line += f"; by CPU time {a / b:.2f}x: {'met' if a >= factor * b else 'NOT met'}"
        return line

    lines = [check("fp32 training vs chemomae fp32", "ours-train-fp32", "peer-train-fp32", 1.1),
             check("bf16 training (hand loop) vs chemomae fp32", "ours-train-bf16", "peer-train-fp32", 3.0),
             check("bf16 training through Trainer(bf16=True) vs chemomae fp32", "ours-trainer-bf16",
                   "peer-train-fp32", 3.0),
             check("bf16 training through `hf-mae pretrain chemomae --bf16` vs chemomae fp32", "ours-job-bf16",
                   "peer-train-fp32", 3.0),
             check("bf16 training (hand loop) + keep_freed_memory() vs chemomae fp32", "ours-train-bf16-keep",
                   "peer-train-fp32", 3.0),
             check("bf16 training through Trainer(bf16=True) + keep_freed_memory() vs chemomae fp32",
                   "ours-trainer-bf16-keep", "peer-train-fp32", 3.0),
             check("the same, against chemomae fp32 + keep_freed_memory()", "ours-trainer-bf16-keep",
                   "peer-train-fp32-keep", 3.0),
             check("bf16 training through Trainer(bf16=True, torch_compile=True) + keep_freed_memory() vs chemomae "
                   "fp32", "ours-trainer-bf16-compile", "peer-train-fp32", 3.0),
             check("bf16 training through `hf-mae pretrain chemomae --bf16 --torch_compile true` vs chemomae fp32",
                   "ours-job-bf16-compile", "peer-train-fp32", 3.0),
             check("training loop against training loop: `hf-mae pretrain chemomae --bf16` vs chemomae's own Trainer "
                   "fp32", "ours-job-bf16", "peer-trainer-fp32", 3.0),
             check("the same, Trainer(bf16=True) + keep_freed_memory() vs chemomae's own Trainer fp32",
                   "ours-trainer-bf16-keep", "peer-trainer-fp32", 3.0),
             check("bf16 all-visible encode (autocast) vs chemomae fp32 encode", "ours-encode-bf16", "peer-encode-fp32",
                   3.0),
             check("bf16 all-visible encode (bf16 weights) vs chemomae fp32 encode", "ours-encode-bf16w",
                   "peer-encode-fp32", 3.0),
             check("bf16 all-visible encode (autocast) + keep_freed_memory() vs chemomae fp32 encode",
                   "ours-encode-bf16-keep", "peer-encode-fp32", 3.0),
             check("bf16 all-visible encode (bf16 weights) + keep_freed_memory() vs chemomae fp32 encode",
                   "ours-encode-bf16w-keep", "peer-encode-fp32", 3.0),
             check("the same, against chemomae fp32 encode + keep_freed_memory()", "ours-encode-bf16w-keep",
                   "peer-encode-fp32-keep", 3.0)]
    peer, ours = by_key.get("peer-train-fp32"), [by_key.get(k) for k in ("ours-train-fp32", "ours-train-bf16")]
    if peer and peer.ok and all(r and r.ok for r in ours):
        def increment(row):
            return statistics.median([r["peak_rss_mib"] - r["rss_before_mib"] for r in row.ok])

        for row in ours:
            verdict = "met" if increment(row) <= increment(peer) else "NOT met"
            lines.append(f"- training memory ({row.label}): +{increment(row):,.0f} MiB vs chemomae "
                         f"+{increment(peer):,.0f} MiB (peak RSS {row.median('peak_rss_mib'):,.0f} vs "
                         f"{peer.median('peak_rss_mib'):,.0f} MiB): {verdict}")
    return lines


TITLES = {
    "matmul": "Matrix-multiply peak of this machine (one `torch.mm`, FLOP/s = 2mkn / time)",
    "chemomae": f"ChemoMAE vs the chemomae package 0.2.4 (batch {CHEMO_BATCH}; seq_len 256, 32 blocks, 16 masked, "
                "d_model 256, 4 heads, 4 layers, FFN 1024, latent 64, dropout 0)",
    "vitmae": "SpectralGPT and the V5 protein MAE vs transformers' ViTMAEForPreTraining at equal size (width 192, 4 "
              "layers, 3 heads, FFN 768; decoder 128 x 2 layers; mask ratio 0.75; fused AdamW for both; freed memory "
              "kept for both, `keep_freed_memory()`)",
    "smiles": f"SMILES BERT vs stock BertForMaskedLM of the same size ({SMILES['layers']} layers x {SMILES['hidden']}, "
              f"{SMILES['length']} tokens, batch 64, 15% labelled; freed memory kept for both)",
    "scale": "Scale: bf16 training step vs batch size, tokens and activation checkpointing (small width, 1 run each)",
    "gpu": "GPU (CUDA): training step with and without torch.compile; host-device syncs per step",
}


def write_report(tables: dict[str, list[Row]], path: Path, args, load_start, load_end, machine: list[str],
                 gpu_machine: list[str] | None = None) -> None:
    """``machine``: where the CPU rows ran; ``gpu_machine``: where the GPU rows ran, when another run (the
    report can merge a CPU run and a GPU run with ``--from-json cpu.json,gpu.json``)."""
    by_key = {row.key: row for rows in tables.values() for row in rows}
    peaks = {p: _peak(tables, p) for p in ("fp32", "bf16")}
    gpu_peaks = {p: _peak(tables, p, "cuda") for p in ("fp32", "bf16")}
    kind = host_kind(machine)
    header = ["# Benchmarks", "",
              "Written by `python benchmarks/benchmark.py`; see that script for how each "
              "figure is measured. One section per host kind (the CPU's matrix ISA: amx, avx512_bf16, ...): "
              "bf16 ratios hold only on the kind they were measured on, and a run replaces only its own kind's "
              "section. Every row is a fresh process; rows alternate with their peer within each "
              "repeat; figures are medians. The load average next to each figure is the machine's 1-minute load "
              "when that run started: on a shared 2-core machine anything above ~2 means other work competed "
              "for the cores, and absolute figures are then lower bounds; ratios measured side by side hold up "
              "better.", ""]
    lines = [f"## Host kind: {kind}", "", "### Machine", "", *machine, f"- host kind: {kind}",
             f"- torch threads: {args.threads}; repeats: {args.repeats}{' (quick run: tiny sizes)' if args.quick else ''}",
             f"- load average (1, 5, 15 min) at start: {', '.join(f'{x:.1f}' for x in load_start)}; at end: "
             f"{', '.join(f'{x:.1f}' for x in load_end)}", ""]
    if "chemomae" in tables:
        lines += ["### Targets", "", *_targets(by_key, args.threads)]
        if peaks["fp32"] and peaks["bf16"]:
            lines.append(f"- for scale: this machine's bf16 matmul peak is {peaks['bf16'] / peaks['fp32']:.2f}x its fp32 "
                         f"peak ({peaks['bf16'] / 1e9:,.0f} vs {peaks['fp32'] / 1e9:,.0f} GFLOP/s, table below)")
        lines.append("")
    for name, rows in tables.items():
        lines += [f"### {TITLES[name]}", ""]
        if name == "matmul":
            lines += ["| shape | GFLOP/s (median) | load avg per run |", "|---|---|---|"]
            for row in rows:
                rate = row.samples_per_s()
                flops = row.ok[0]["flops"] if row.ok else None
                lines.append(f"| {row.label} | {_fmt(rate * flops / 1e9 if rate and flops else None)} | {row.loads()} |")
            lines += ["", f"Peak used for the '% of matmul peak' columns (best single run): fp32 "
                          f"{_fmt((peaks['fp32'] or 0) / 1e9)} GFLOP/s, bf16 {_fmt((peaks['bf16'] or 0) / 1e9)} GFLOP/s.",
                      ""]
            continue
        if name == "gpu":
            if gpu_machine:
                lines += ["Measured on another machine, in another run:", "", *gpu_machine, ""]
            lines += ["Host-device syncs are counted in one training step after warm-up with CUDA's sync debug "
                      "mode (calibrated against one known `.item()`). Matmul rows give the GPU's peak for the "
                      "'% of matmul peak' column; fp32 rows run true fp32 (TF32 off, PyTorch's default).", ""]
            mm = [r for r in rows if r.spec["case"] == "matmul"]
            lines += ["| shape | TFLOP/s (median) |", "|---|---|"]
            lines += [f"| {r.label} | {_fmt(r.samples_per_s() * r.ok[0]['flops'] / 1e12 if r.ok else None, 1)} |"
                      for r in mm]
            lines += ["", *_table([r for r in rows if r not in mm], by_key, gpu_peaks, cuda=True), ""]
            continue
        lines += [*_table(rows, by_key, peaks, threads=args.threads), ""]
    if "gpu" not in tables:
        lines += ["### GPU", "", "Not run: no CUDA device on this machine. On a machine with one, the same command "
                  "adds the GPU rows (with and without torch.compile) and counts host-device syncs per training "
                  "step.", ""]
    existing = path.read_text() if path.exists() else ""
    path.write_text(merge_host_section(existing, kind, lines, header))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/benchmark.py", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="BENCHMARKS.md", help="the markdown report (default BENCHMARKS.md)")
    parser.add_argument("--json", default=None, help="also write every raw measurement here")
    parser.add_argument("--only", default="matmul,chemomae,vitmae,smiles,scale,gpu",
                        help="comma-separated sections: matmul, chemomae, vitmae, smiles, scale, gpu (gpu runs only "
                             "where CUDA is available)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny batches, 2 steps, 1 repeat: a smoke run")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per measurement")
    parser.add_argument("--from-json", default=None,
                        help="rewrite the report from --json files (comma-separated: e.g. a CPU run and a GPU run "
                             "from another machine; a row in several files is taken from the last), measuring nothing")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the --json file and measure only what is missing")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.worker:
        print("RESULT " + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    import tempfile

    import torch

    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - set(TITLES)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {sorted(TITLES)}")
    if args.quick:
        args.repeats = 1
    gpu_machine = None
    if args.from_json:
        runs = [json.loads(Path(f).read_text()) for f in args.from_json.split(",")]
        saved = {key: value for run in runs for key, value in run.items() if not key.startswith("_")}
        tables = build_rows(sections, cuda=any(key.startswith("gpu-") for key in saved))
        _restore(tables, saved, keep_failed=True)
        tables = {name: rows for name, rows in tables.items() if any(row.runs for row in rows)}   # measured ones
        # a row measured in several files is taken from the last one, and the machine lines name that run
        cpu_runs = [run for run in runs if any(not k.startswith(("_", "gpu-")) for k in run)] or runs
        last = cpu_runs[-1]
        load_start, load_end = last.get("_load", {}).get("start", (0, 0, 0)), last.get("_load", {}).get("end", (0, 0, 0))
        machine = last.get("_machine") or _machine()
        gpu_runs = [run for run in runs if any(k.startswith("gpu-") for k in run)]
        if gpu_runs and gpu_runs[0] is not last:
            gpu_machine = gpu_runs[0].get("_machine")
    else:
        tables = build_rows(sections, torch.cuda.is_available())
        if args.resume:
            if not args.json or not Path(args.json).exists():
                parser.error("--resume needs --json naming the file of an earlier run")
            _restore(tables, json.loads(Path(args.json).read_text()), keep_failed=False)   # failed rows run again
        load_start = os.getloadavg()
        print(f"load average at start: {load_start}", flush=True)
        machine = _machine()

        def checkpoint():
            if args.json:
                Path(args.json).write_text(json.dumps(_raw(tables, load_start, os.getloadavg(), machine), indent=1))

        with tempfile.TemporaryDirectory() as tmp:
            measure(tables, args.repeats, args.threads, args.quick, tmp, args.timeout, checkpoint)
        load_end = os.getloadavg()
    for rows in tables.values():
        for row in rows:
            if row.skipped:
                print(f"skipped {row.label}: {row.skipped}")
    write_report(tables, Path(args.output), args, load_start, load_end, machine, gpu_machine)
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(_raw(tables, load_start, load_end, machine), indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
