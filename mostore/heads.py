"""Machine heads that read the dequantized latents ŷ directly (no synthesis, no pixels).

``PooledEmbedding`` is the fixed (untrained) embedding the FAISS index is built from::

    ŷ (1, M, h, w) ─► mean and std of the first S channels     (band energies, 2S values)
                   ─► G×G grid means of the first C channels    (colour / coarse layout, C·G² values)
                   ─► L2 normalise ─► vector (2S + C·G²,)

The latent channels start as a PCA of wavelet blocks, so the first channels carry colour and
coarse structure; those large-magnitude channels are what survives re-encoding and resizing.
Chosen with ``benchmarks/dedup.py`` (query = JPEG q75 + 0.75× resize): the original comes first
for 99.9% of the 3,925 Imagenette val images, where the first version (mean/std of all 192
channels, signed square root) found it first for 86% of a 500-image run.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

STAT_CHANNELS = 32
GRID_CHANNELS = 4
GRID = 8


class PooledEmbedding:
    """Fixed pooling of latents into an L2-normalised float32 vector."""

    version = "pooled-v2"

    def __init__(self, latent_channels: int, stat_channels: int = STAT_CHANNELS,
                 grid_channels: int = GRID_CHANNELS, grid: int = GRID):
        self.latent_channels = latent_channels
        self.stat_channels = min(stat_channels, latent_channels)
        self.grid_channels = min(grid_channels, latent_channels)
        self.grid = grid
        self.dim = 2 * self.stat_channels + self.grid_channels * grid * grid

    @property
    def id(self) -> str:
        return f"{self.version}-{self.latent_channels}-{self.stat_channels}-{self.grid_channels}x{self.grid}"

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        """latents: (1, M, h, w) or (M, h, w) -> (dim,) float32, unit norm."""
        y = latents.reshape(self.latent_channels, *latents.shape[-2:]).float()
        flat = y[: self.stat_channels].reshape(self.stat_channels, -1)
        grid = F.adaptive_avg_pool2d(y[None, : self.grid_channels], self.grid).reshape(-1)
        v = torch.cat([flat.mean(dim=1), flat.std(dim=1, unbiased=False), grid])
        v = v / v.norm().clamp(min=1e-12)
        return v.numpy().astype(np.float32)

    def batch(self, latents: list[torch.Tensor]) -> np.ndarray:
        if not latents:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self(y) for y in latents])


# ---- classification from latents ---------------------------------------------------------

#: latents are resampled to this grid before the classifier (224 px images give 14x14)
CLASSIFIER_GRID = 14


class LatentClassifier(torch.nn.Module):
    """A small CNN over ŷ: no synthesis transform, no pixels.

    ŷ (B, M, h, w) ─► resample to 14×14 ─► per-channel scale ─► 1×1 conv ─► 3×3 conv ─► 3×3/2 conv
      ─► global mean ‖ max pool ─► linear ─► class logits
    """

    def __init__(self, latent_channels: int, classes: int, width: int = 96):
        super().__init__()
        nn = torch.nn
        self.register_buffer("channel_scale", torch.ones(latent_channels))
        self.body = nn.Sequential(
            nn.Conv2d(latent_channels, width, 1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(2 * width, classes)

    @staticmethod
    def prepare(latents: torch.Tensor) -> torch.Tensor:
        """(1|B, M, h, w) of any size -> (B, M, 14, 14)."""
        y = latents if latents.dim() == 4 else latents[None]
        return F.interpolate(y.float(), size=(CLASSIFIER_GRID, CLASSIFIER_GRID), mode="bilinear", align_corners=False)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = self.body(y / self.channel_scale[None, :, None, None])
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def fit_latent_classifier(
    latents: torch.Tensor, targets: torch.Tensor, classes: int, *, epochs: int, seed: int = 0,
    val_latents: torch.Tensor | None = None, val_targets: torch.Tensor | None = None,
) -> tuple[LatentClassifier, float | None]:
    """Train on prepared latents (N, M, 14, 14); returns the model and validation accuracy."""
    torch.manual_seed(seed)
    model = LatentClassifier(latents.shape[1], classes)
    model.channel_scale.copy_(latents.std(dim=(0, 2, 3)).clamp(min=1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    steps_per_epoch = max(1, -(-len(latents) // 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(latents), generator=gen).split(64):
            loss = F.cross_entropy(model(latents[batch]), targets[batch], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    accuracy = None
    if val_latents is not None and len(val_latents):
        with torch.no_grad():
            pred = torch.cat([model(b).argmax(1) for b in val_latents.split(256)])
        accuracy = float((pred == val_targets).float().mean())
    return model, accuracy
