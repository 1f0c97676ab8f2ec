"""Machine heads that read the dequantized latents ŷ directly (no synthesis, no pixels).

``PooledEmbedding`` is the fixed (untrained) embedding the FAISS index is built from::

    ŷ (1, M, h, w) ─► per-channel mean, per-channel std, 2×2 grid means of the first G channels
                   ─► signed square root ─► L2 normalise ─► vector (2M + 4G,)

The latent channels start as a PCA of wavelet blocks, so the first channels carry colour and
coarse structure: their grid means say where things are, the stds say how textured each band is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

GRID_CHANNELS = 48


class PooledEmbedding:
    """Fixed pooling of latents into an L2-normalised float32 vector."""

    version = "pooled-v1"

    def __init__(self, latent_channels: int, grid_channels: int = GRID_CHANNELS):
        self.latent_channels = latent_channels
        self.grid_channels = min(grid_channels, latent_channels)
        self.dim = 2 * latent_channels + 4 * self.grid_channels

    @property
    def id(self) -> str:
        return f"{self.version}-{self.latent_channels}-{self.grid_channels}"

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """latents: (1, M, h, w) or (M, h, w) -> (dim,) float32, unit norm."""
        y = latents.reshape(self.latent_channels, *latents.shape[-2:]).float()
        flat = y.reshape(self.latent_channels, -1)
        mean = flat.mean(dim=1)
        std = flat.std(dim=1, unbiased=False)
        grid = F.adaptive_avg_pool2d(y[None, : self.grid_channels], 2).reshape(-1)
        v = torch.cat([mean, std, grid])
        v = torch.sign(v) * v.abs().sqrt()
        v = v / v.norm().clamp(min=1e-12)
        return v.numpy().astype(np.float32)

    def batch(self, latents: list[torch.Tensor]) -> np.ndarray:
        if not latents:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self(y) for y in latents])
