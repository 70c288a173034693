"""Parameter count and forward FLOPs of SpectralGPT at its default configuration (vs the seed's ~100M, ~12 GFLOPs).

Models are built on the meta device (no memory, no weights); FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on meta tensors for one sample: it counts matrix multiplies,
convolutions and attention (2 FLOPs per multiply-add); norms, activations and softmax are left out.

    PYTHONPATH=. python scripts/spectral_gpt_size.py [--out scripts/results/spectral_gpt_size.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_mae import SpectralGPTConfig, SpectralGPTForPreTraining


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def forward_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="scripts/results/spectral_gpt_size.json")
    args = parser.parse_args()

    config = SpectralGPTConfig()
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = SpectralGPTForPreTraining(config).eval()
        cube = torch.randn(1, config.num_bands, config.image_size, config.image_size)
        aux = {name: torch.randn(1, channels, config.image_size, config.image_size)
               for name, channels in config.aux_channels.items()}
        noise = torch.rand(1, config.num_patches)
    encoder = model.get_hsi_encoder()
    parts = {
        "hsi_encoder (patch + position embeddings, 16 main blocks)": count(encoder),
        "aux_encoders (3 ViT-style)": count(model.aux_encoders),
        "conditioning (cross-attention) + aux_to_hidden": count(model.conditioning) + count(model.aux_to_hidden),
        "contrastive projections": count(model.hsi_projection) + count(model.aux_projections),
        "decoder": count(model.decoder) + count(model.decoder_embed) + count(model.decoder_pred)
        + count(model.decoder_position_embeddings) + model.mask_token.numel(),
    }
    # The meta device has no data, so skip the finiteness checks (they read values) while counting.
    encoder._check_pixel_values = model._check_pixel_values = lambda pixel_values: None
    model._check_aux = lambda batch, values, present: (dict(values or {}), dict(present or {}))
    flops = {
        "pretraining forward, 3 aux modalities, 196 of 784 tokens visible": forward_flops(
            lambda: model(cube, aux_pixel_values=aux, noise=noise)),
        "pretraining forward, HSI only": forward_flops(lambda: model(cube, noise=noise)),
        "HSI encoder alone, all 784 tokens (downstream)": forward_flops(lambda: encoder(cube)),
    }
    result = {
        "config": {"image_size": config.image_size, "num_bands": config.num_bands, "patch": [config.band_patch_size,
                   config.patch_size, config.patch_size], "tokens": config.num_patches, "hidden_size": config.hidden_size,
                   "main_blocks": config.num_hidden_layers, "decoder": [config.decoder_num_hidden_layers,
                   config.decoder_hidden_size], "aux": [config.aux_num_hidden_layers, config.aux_hidden_size]},
        "parameters_total": count(model),
        "parameters": parts,
        "forward_gflops_per_sample": {k: round(v / 1e9, 2) for k, v in flops.items()},
        # many papers quote multiply-adds as "FLOPs": half the numbers above
        "forward_gmacs_per_sample": {k: round(v / 2e9, 2) for k, v in flops.items()},
        "seed_claim": {"parameters": "~100M", "forward_gflops": "~12"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
