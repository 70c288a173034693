"""The seeds' "Usage Examples" and "Minimal Tests", verbatim but for the package name."""

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
