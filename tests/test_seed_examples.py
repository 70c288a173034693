"""The seeds' "Usage Examples", "Minimal Tests" and training dictionaries, verbatim but for the package name."""

import pytest
import torch


def test_chemomae_usage_example():
    import torch
    from hf_mae.models import ChemoMAE

    mae = ChemoMAE(seq_len=256, latent_dim=64, n_blocks=16, n_mask=4)
    x = torch.randn(8, 256)

    # Forward pass with automatic masking
    x_recon, z, visible = mae(x)

    # Loss: reconstruction error only on masked positions
    loss = ((x_recon - x) ** 2)[~visible].sum() / x.size(0)
    loss.backward()

    assert torch.is_tensor(x_recon) and torch.is_tensor(z) and torch.is_tensor(visible)
    assert mae.encoder.patch_embed.weight.grad is not None


def test_chemomae_minimal_tests():
    from hf_mae.models import ChemoMAE

    mae = ChemoMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6)
    x = torch.randn(4, 128)

    x_rec, z, visible = mae(x)
    assert x_rec.shape == x.shape
    assert z.shape == (4, 32)
    assert visible.shape == (4, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_wavemae_usage_example():
    import torch
    from hf_mae.models import WaveMAE

    mae = WaveMAE(seq_len=256, latent_dim=64, n_blocks=16, n_mask=4)
    x = torch.randn(8, 256)

    # Forward pass with automatic masking
    x_recon, z, visible = mae(x)

    # Loss: reconstruction error only on masked positions
    loss = ((x_recon - x) ** 2)[~visible].sum() / x.size(0)
    loss.backward()

    visible = torch.ones(8, 256, dtype=torch.bool)
    z = mae.encode(x, visible)
    # z is L2‑normalized and ready for cosine clustering
    assert z.shape == (8, 64)
    assert torch.allclose(z.norm(dim=1), torch.ones(8), atol=1e-5)


def test_wavemae_minimal_tests():
    from hf_mae.models import WaveMAE

    mae = WaveMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6)
    x = torch.randn(4, 128)

    x_rec, z, visible = mae(x)
    assert x_rec.shape == x.shape
    assert z.shape == (4, 32)
    assert visible.shape == (4, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)


def test_seed_module_paths():
    # "> Module: `chemomae.models.chemo_mae`" and "`wavemae.models.wave_mae`" in the seeds' headers
    from hf_mae.models import ChemoMAE, WaveMAE
    from hf_mae.models.chemo_mae import ChemoDecoderMLP, ChemoEncoder, make_block_mask
    from hf_mae.models.chemo_mae import ChemoMAE as ChemoMAEFromSeedPath
    from hf_mae.models.wave_mae import WaveDecoderMLP, WaveEncoder
    from hf_mae.models.wave_mae import WaveMAE as WaveMAEFromSeedPath

    assert ChemoMAEFromSeedPath is ChemoMAE and WaveMAEFromSeedPath is WaveMAE
    assert isinstance(ChemoMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6).encoder, ChemoEncoder)
    assert isinstance(WaveMAE(seq_len=128, latent_dim=32, n_blocks=8, n_mask=6).decoder, WaveDecoderMLP)
    assert ChemoDecoderMLP is not WaveDecoderMLP and WaveEncoder is not ChemoEncoder
    assert make_block_mask(2, 128, 8, 6).sum(dim=1).tolist() == [96, 96]


# -- The protein seed's adapter: V2ToV5Adapter()(v2_output) -------------------------------------------------
def test_protein_adapter_usage_example():
    from hf_mae.models import V2ToV5Adapter

    adapter = V2ToV5Adapter()
    v2_output = torch.randn(2, 300, 512)
    # Convert v2 (B, L, 512) → v5 format (B, 48, 768)
    tokens = adapter(v2_output)
    assert tokens.shape == (2, 48, 768)
    # all positions are residues by default: the same tokens as with an explicit all-True mask
    assert torch.equal(tokens, adapter(v2_output, torch.ones(2, 300, dtype=torch.bool)))
    assert torch.equal(tokens[:, 0], adapter.cls_token.expand(2, -1, -1)[:, 0])
    with pytest.raises(ValueError, match=r"expects `v2_output` of shape \(batch, length, 512\)"):
        adapter(torch.randn(2, 300, 768))


# -- The protein seed's training dictionaries: every key used or refused ------------------------------------
# Verbatim from the seed ("Hyperparameter Differences"), comments included.
config_v2 = {
    'mask_ratio': 0.5,          # 50% masking
    'batch_size': 32,
    'learning_rate': 2e-4,
    'epochs': 60,
    'loss': 'huber',
    'delta': 0.5,
    'scale_factor': 5
}

config_v5 = {
    'mask_ratio': 0.75,         # 75% masking (higher)
    'batch_size': 16,           # Smaller due to larger model
    'learning_rate': 1e-4,      # Lower LR for stability
    'epochs': 100,              # More epochs needed
    'loss': 'mse',
    'warmup_epochs': 10,
    'weight_decay': 0.05
}


def test_seed_protein_configs_map_every_key(tmp_path):
    from transformers import TrainingArguments

    from hf_mae.models import ProteinMAEV2Config, ProteinMAEV5Config
    from hf_mae.training.seed_config import protein_mae_settings

    v2 = protein_mae_settings(config_v2, "v2")
    assert isinstance(v2.config, ProteinMAEV2Config)
    assert (v2.config.mask_ratio, v2.config.huber_delta, v2.config.scale_factor) == (0.5, 0.5, 5)
    assert v2.training_arguments == {"per_device_train_batch_size": 32, "learning_rate": 2e-4, "num_train_epochs": 60}

    v5 = protein_mae_settings(config_v5, "v5")
    assert isinstance(v5.config, ProteinMAEV5Config) and v5.config.mask_ratio == 0.75
    assert v5.training_arguments == {"per_device_train_batch_size": 16, "learning_rate": 1e-4, "num_train_epochs": 100,
                                     "warmup_steps": 0.1, "weight_decay": 0.05}
    # what TrainingArguments makes of them: 10 of 100 epochs of warmup is a ratio of 0.1
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", **v5.training_arguments)
    assert (args.per_device_train_batch_size, args.learning_rate, args.num_train_epochs, args.weight_decay) == \
        (16, 1e-4, 100, 0.05)
    assert args.get_warmup_steps(1000) == 100



@pytest.mark.parametrize("version, key, value, message", [
    ("v2", "loss", "mse", "'loss'='mse': the V2 model computes the 'huber' loss"),
    ("v5", "loss", "huber", "'loss'='huber': the V5 model computes the 'mse' loss"),
    ("v5", "delta", 0.5, "'delta' is the Huber loss's delta"),
    ("v5", "scale_factor", 5, "seed key 'scale_factor' is not understood for the V5"),
    ("v5", "momentum", 0.9, "seed key 'momentum' is not understood"),
    ("v2", "mask_ratio", 1.5, "mask_ratio"),
])
def test_seed_protein_config_keys_it_cannot_honour_are_refused_by_name(version, key, value, message):
    from hf_mae.training.seed_config import protein_mae_settings

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        protein_mae_settings({key: value}, version)


def test_seed_warmup_epochs_needs_epochs():
    from hf_mae.training.seed_config import protein_mae_settings

    with pytest.raises(ValueError, match="'warmup_epochs' needs 'epochs'"):
        protein_mae_settings({"warmup_epochs": 10}, "v5")
    with pytest.raises(ValueError, match=r"'warmup_epochs'=100 must be a number in \[0, epochs=100\)"):
        protein_mae_settings({"warmup_epochs": 100, "epochs": 100}, "v5")


def test_seed_config_fields_pass_through_by_either_name():
    from hf_mae.training.seed_config import protein_mae_settings

    config = protein_mae_settings({"embed_dim": 64, "num_attention_heads": 4}, "v2").config
    assert (config.embed_dim, config.nhead) == (64, 4)
