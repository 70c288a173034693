"""``hf-mae pretrain spectral-gpt``: multimodal guided SpectralGPT pretraining on hyperspectral cubes.

Data: ``--data_dir DIR`` reads a folder of cubes (``.npy``/``.mat``) with optional auxiliary images named
``<cube>.<modality>.npy|.mat`` (see ``hf_mae.data.hyperspectral``); without it the job generates
``--num_synthetic`` cubes whose auxiliary images depend on them, some left out. Cubes and images of any
size are registered to ``--image_size`` by the processor, which is fitted (per-band statistics) on the
training split and saved with the model. At the end the job prints the held-out masked reconstruction
error next to predicting the per-band training mean, the held-out contrastive loss per modality next to
chance (ln of the batch size), saves the HSI encoder alone under ``<output_dir>/hsi_encoder``, and reloads
the run with ``AutoModel`` to check the encoder's outputs are unchanged.

    hf-mae pretrain spectral-gpt --output_dir runs/sgpt --max_steps 200
    hf-mae pretrain spectral-gpt --data_dir my_cubes/ --num_bands 120 --band_patch_size 4 --bf16
    hf-mae pretrain spectral-gpt --data scene.hdr --band_patch_size 4          # one ENVI scene, cut into tiles
    hf-mae pretrain spectral-gpt --data scene.npy --band_axis -1 --tile_size 32

``--data FILE`` reads one scene (``.npy``/``.mat`` with ``--band_axis``, never guessed; ENVI ``.hdr`` states it)
and cuts it into non-overlapping ``--tile_size`` tiles (default ``--image_size``), each registered to
``--image_size``. ``--num_bands`` is the scene's; ``--band_patch_size`` must divide it (checked against the
data). Auxiliary-modality encoders are built only for modalities some cube has: a scene file has none.

The default model is the reference design's (145.6M parameters): made for an accelerator; 200 steps take
about 3 hours on 2 CPU cores. Without an accelerator the job says so before training and names the flags of
a 13M-parameter model (``SMALL_CPU_SIZES``) that runs in minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

from ..data.cube_files import read_cube
from ..data.hyperspectral import (
    DataCollatorForHyperspectral,
    HyperspectralDataset,
    load_cube_folder,
    synthetic_cubes,
)
from ..models import SpectralGPTConfig, SpectralGPTForPreTraining
from ..models.masking import masked_reconstruction_loss
from ..processing.hyperspectral import HyperspectralProcessor
from .common import (check_reload, config_arguments, has_accelerator, parse_args, print_held_out,
                     train_model)


SpectralGPTModelArguments = config_arguments(
    SpectralGPTConfig,
    ["image_size", "patch_size", "num_bands", "band_patch_size", "hidden_size", "num_hidden_layers",
     "num_attention_heads", "intermediate_size", "num_conditioning_layers", "dropout", "mask_ratio", "norm_pix_loss",
     "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads", "decoder_intermediate_size",
     "aux_modalities", "aux_num_channels", "aux_encoder_type", "aux_hidden_size", "aux_patch_size",
     "aux_num_hidden_layers", "aux_num_attention_heads", "aux_intermediate_size", "projection_dim",
     "contrastive_temperature", "contrastive_symmetric", "contrastive_loss_weight"],
    defaults={"num_bands": None, "aux_modalities": ["ir", "af", "thickness"]},
    help={"image_size": "analysis_dim: common height and width of all modalities",
          "num_bands": "bands per cube (default: 12 for generated data, read from the first cube for --data_dir)",
          "aux_num_channels": "channels per modality (default 1)", "aux_encoder_type": "vit or cnn"},
    doc="Architecture (SpectralGPTConfig fields; the reference design's defaults, 145.6M parameters: for a CPU "
        "run of minutes, not hours, pass the sizes printed by the job, e.g. --hidden_size 192 --num_hidden_layers 4 "
        "--num_attention_heads 3 --intermediate_size 768 --image_size 96).")


# A 13M-parameter SpectralGPT for a CPU: a quarter of the width, a quarter of the depth, 96-pixel images.
SMALL_CPU_SIZES = {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 3, "intermediate_size": 768,
                   "decoder_hidden_size": 128, "decoder_num_hidden_layers": 2, "decoder_num_attention_heads": 4,
                   "decoder_intermediate_size": 512, "image_size": 96}
LARGE_ON_CPU = 30e6   # parameters above which a CPU run is hours, not minutes


def size_note(n_parameters: int, has_accelerator: bool) -> str | None:
    """What to tell the user before a run whose model is too large for the machine, or None.

    Example:
        >>> print(size_note(145_555_200, has_accelerator=False).splitlines()[0])
        SpectralGPT with 145.6M parameters and no accelerator: 200 steps take hours on a CPU (about 3 h on 2 cores).
    """
    if has_accelerator or n_parameters <= LARGE_ON_CPU:
        return None
    flags = " ".join(f"--{name} {value}" for name, value in SMALL_CPU_SIZES.items())
    return (f"SpectralGPT with {n_parameters / 1e6:.1f}M parameters and no accelerator: 200 steps take hours on a "
            f"CPU (about 3 h on 2 cores).\nFor a 13M-parameter model that trains in minutes, add:\n  {flags}")


@dataclass
class SpectralGPTDataArguments:
    """Which cubes, and how they are read."""

    data_dir: str | None = field(default=None, metadata={"help": "folder of .npy/.mat cubes; default: generated"})
    data: str | None = field(default=None, metadata={
        "help": "one scene: .npy/.mat (with --band_axis) or ENVI .hdr, cut into --tile_size tiles"})
    band_axis: int | None = field(default=None, metadata={
        "help": "axis of the --data array holding the bands: 0, 1, 2 or -1 (never guessed; ENVI: from the header)"})
    tile_size: int | None = field(default=None, metadata={"help": "side of the --data tiles (default --image_size)"})
    mat_key: str | None = field(default=None, metadata={"help": "variable name in .mat files holding more than one array"})
    layout: str = field(default="auto", metadata={"help": "auto, bands_first (bands, H, W) or bands_last (H, W, bands)"})
    num_synthetic: int = field(default=256, metadata={"help": "generated cubes when no --data_dir"})
    synthetic_size: int | None = field(default=None, metadata={"help": "side of generated cubes (default 3/4 image_size)"})
    missing_fraction: float = field(default=0.25, metadata={"help": "chance a generated aux image is left out"})
    eval_fraction: float = field(default=0.1, metadata={"help": "share of cubes held out for evaluation"})


def infer_num_bands(cube: np.ndarray, layout: str) -> int:
    """Bands of a raw cube: the axis ``layout`` names, or for "auto" the shortest axis."""
    if layout == "bands_first":
        return int(cube.shape[0])
    if layout == "bands_last":
        return int(cube.shape[-1])
    return int(min(cube.shape[0], cube.shape[-1]))


def scene_tiles(cube: np.ndarray, tile_size: int, name: str = "scene") -> list[dict]:
    """Raw samples: the non-overlapping ``tile_size`` x ``tile_size`` tiles of a (bands, H, W) scene (a border
    narrower than a tile is left out), named ``<name>@row,col``, without auxiliary images.

    Example:
        >>> tiles = scene_tiles(np.zeros((4, 10, 21), np.float32), 10)
        >>> len(tiles), tiles[1]["name"], tiles[1]["cube"].shape
        (2, 'scene@0,10', (4, 10, 10))
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ValueError(f"`tile_size` must be a positive integer, got {tile_size!r}.")
    _, height, width = cube.shape
    if tile_size > min(height, width):
        raise ValueError(f"`tile_size`={tile_size} is larger than the {height}x{width} scene {name}; pass a "
                         f"smaller --tile_size.")
    return [{"name": f"{name}@{row},{col}", "cube": cube[:, row:row + tile_size, col:col + tile_size], "aux": {}}
            for row in range(0, height - tile_size + 1, tile_size) for col in range(0, width - tile_size + 1, tile_size)]


def check_bands(num_bands: int, band_patch_size: int, source: str) -> None:
    """Refuse a band grouping that does not divide the data's bands, naming the flag and the divisors.

    Example:
        >>> check_bands(12, 5, "scene.npy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: scene.npy has 12 bands: `--band_patch_size` 5 does not divide them; divisors of 12: [1, 2, 3, 4, 6, 12].
    """
    if num_bands % band_patch_size:
        divisors = [d for d in range(1, num_bands + 1) if num_bands % d == 0]
        raise ValueError(f"{source} has {num_bands} bands: `--band_patch_size` {band_patch_size} does not divide "
                         f"them; divisors of {num_bands}: {divisors}.")


def load_own_cubes(model_args, data_args) -> tuple[list[dict], str]:
    """Raw samples from ``--data`` (a scene cut into tiles) or ``--data_dir`` (a folder of cubes), with
    ``model_args.num_bands`` set from the data (or checked against it) and ``model_args.aux_modalities`` cut to
    the modalities some sample has; returns the samples and the processor's layout."""
    if data_args.data is not None:
        if data_args.data_dir is not None:
            raise ValueError("Pass either `--data` (one scene) or `--data_dir` (a folder of cubes), not both.")
        cube, meta = read_cube(data_args.data, data_args.band_axis, mat_key=data_args.mat_key)
        check_bands(cube.shape[0], model_args.band_patch_size, data_args.data)
        if model_args.num_bands not in (None, cube.shape[0]):
            raise ValueError(f"`--num_bands` {model_args.num_bands} does not match {data_args.data}, which has "
                             f"{cube.shape[0]} bands.")
        tile = data_args.tile_size or min(model_args.image_size, *cube.shape[1:])
        samples = scene_tiles(cube, tile, Path(data_args.data).name)
        print(f"{data_args.data}: {cube.shape[0]} bands x {cube.shape[1]} x {cube.shape[2]} pixels (bands on axis "
              f"{meta['band_axis']}) -> {len(samples)} tiles of {tile} x {tile}")
        if len(samples) < 2:
            raise ValueError(f"{data_args.data}: {cube.shape[1]}x{cube.shape[2]} pixels give {len(samples)} tile of "
                             f"{tile}x{tile}; pass a smaller --tile_size (at least 2 tiles: one to train, one to "
                             f"evaluate).")
        source, layout, bands = data_args.data, "bands_first", cube.shape[0]
    else:
        if data_args.band_axis is not None or data_args.tile_size is not None:
            raise ValueError("`--band_axis` and `--tile_size` are for a `--data` scene.")
        samples = load_cube_folder(data_args.data_dir, model_args.aux_modalities, data_args.mat_key)
        source, layout = data_args.data_dir, data_args.layout
        bands = infer_num_bands(samples[0]["cube"], layout)
    if model_args.num_bands is None:
        model_args.num_bands = bands
        print(f"num_bands={bands} (read from {source})")
    elif model_args.num_bands != bands:
        raise ValueError(f"`--num_bands` {model_args.num_bands} does not match {source}, which has {bands} bands.")
    check_bands(bands, model_args.band_patch_size, source)
    present = [m for m in model_args.aux_modalities if any(m in s["aux"] for s in samples)]
    if present != list(model_args.aux_modalities):
        print(f"auxiliary modalities without any image in {source}: "
              f"{[m for m in model_args.aux_modalities if m not in present]}; their encoders are not built")
        model_args.aux_modalities = present
        model_args.aux_num_channels = None
    return samples, layout


def held_out_report(model: SpectralGPTForPreTraining, dataset: HyperspectralDataset, batch_size: int, seed: int,
                    metrics: dict[str, float] | None = None) -> None:
    """Masked reconstruction MSE of the model and of the per-band training mean (0 after scaling), and the
    contrastive loss per modality next to chance, on fixed masks."""
    collate = DataCollatorForHyperspectral()
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    model_losses, mean_losses, sizes = [], [], []
    contrast: dict[str, list[float]] = {}
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            out = model(**batch, generator=generator)
            target = model.reconstruction_target(batch["pixel_values"])            # (B, N, patch_dim)
            masked = out.mask[..., None].expand_as(target)
            model_losses.append(float(masked_reconstruction_loss(out.reconstruction, target, masked)))
            mean_losses.append(float(masked_reconstruction_loss(torch.zeros_like(target), target, masked)))
            sizes.append(float(masked.sum()))
            for name, value in (out.contrastive_losses or {}).items():
                contrast.setdefault(name, []).append(float(value))
    model_mse, mean_mse = (float(np.average(losses, weights=sizes)) for losses in (model_losses, mean_losses))
    print_held_out(f"held-out ({len(dataset)} cubes, {model.config.num_masked}/{model.config.num_patches} tokens "
                   f"masked), masked reconstruction MSE:", ("model", model_mse), ("per-band training mean", mean_mse),
                   metrics or {})
    chance = math.log(min(batch_size, len(dataset)))
    for name, values in contrast.items():
        print(f"  contrastive loss {name:<10} {np.mean(values):.3f}   (chance about {chance:.3f})")


def pretrain_spectral_gpt(argv: Sequence[str] | None = None) -> int:
    """Run the SpectralGPT pretraining job; returns the exit code (see the module docstring)."""
    model_args, data_args, training_args = parse_args(
        [SpectralGPTModelArguments, SpectralGPTDataArguments], argv,
        {"output_dir": "runs/spectral-gpt", "per_device_train_batch_size": 16, "per_device_eval_batch_size": 16,
         "learning_rate": 1.5e-4, "prediction_loss_only": True, "remove_unused_columns": False},
        prog="hf-mae pretrain spectral-gpt")
    if not 0.0 < data_args.eval_fraction < 1.0:
        raise ValueError(f"`eval_fraction` must be in (0, 1), got {data_args.eval_fraction}.")

    # data: a scene, a folder of cubes, or generated cubes
    layout = data_args.layout
    if data_args.data is not None or data_args.data_dir is not None:
        samples, layout = load_own_cubes(model_args, data_args)
    else:
        if data_args.band_axis is not None or data_args.tile_size is not None:
            raise ValueError("`--band_axis` and `--tile_size` are for a `--data` scene.")
        model_args.num_bands = model_args.num_bands or 12
        size = data_args.synthetic_size or max(model_args.patch_size, model_args.image_size * 3 // 4)
        samples = synthetic_cubes(data_args.num_synthetic, num_bands=model_args.num_bands, size=size,
                                  aux_modalities=model_args.aux_modalities,
                                  missing_fraction=data_args.missing_fraction, seed=training_args.seed)
    if len(samples) < 2:
        raise ValueError(f"Need at least 2 cubes (one to train, one to evaluate), got {len(samples)}.")
    order = np.random.default_rng(training_args.seed).permutation(len(samples))
    n_eval = min(len(samples) - 1, max(1, round(data_args.eval_fraction * len(samples))))
    train_samples = [samples[i] for i in order[n_eval:]]
    eval_samples = [samples[i] for i in order[:n_eval]]

    # model and processor
    config = SpectralGPTConfig(**asdict(model_args))
    model = SpectralGPTForPreTraining(config)
    processor = HyperspectralProcessor.from_model_config(config, layout=layout)
    processor.fit([s["cube"] for s in train_samples])
    train_ds, eval_ds = HyperspectralDataset(train_samples, processor), HyperspectralDataset(eval_samples, processor)
    print(f"{len(train_ds)} training and {len(eval_ds)} held-out cubes; {config.num_patches} tokens per cube; "
          f"{model.num_parameters() / 1e6:.2f} M parameters")
    note = size_note(model.num_parameters(), has_accelerator())
    if note:
        print(note)

    trainer, metrics = train_model(model, training_args, train_ds, eval_ds, DataCollatorForHyperspectral(), processor)
    if not trainer.is_world_process_zero():
        return 0
    model = model.float().cpu()
    held_out_report(model, eval_ds, training_args.per_device_eval_batch_size, training_args.seed, metrics)

    # the HSI encoder alone, as downstream users take it; then reload the run as a user would
    out_dir = Path(training_args.output_dir)
    encoder = model.get_hsi_encoder().eval()
    encoder.save_pretrained(out_dir / "hsi_encoder")
    processor.save_pretrained(out_dir / "hsi_encoder")
    print(f"HSI encoder alone in {out_dir / 'hsi_encoder'}")
    cubes = AutoFeatureExtractor.from_pretrained(out_dir)([s["cube"] for s in eval_samples[:4]])["pixel_values"]
    with torch.no_grad():
        reference = encoder(cubes).last_hidden_state
    check_reload(out_dir, AutoModel, lambda reloaded: reloaded(cubes).last_hidden_state, reference, "hidden")
    return 0
