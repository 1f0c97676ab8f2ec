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

import functools
import hashlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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

    def query(self, codec, image, quality: int) -> np.ndarray:
        """The embedding of a query image (PIL): its latents as the table would store them."""
        return self(codec.encode_with_latents(image, quality)[1])


# ---- the learned embedding ---------------------------------------------------------------

#: shipped embedding heads, one file per codec id: ``embed-<codec id>.pt``
EMBEDDERS_DIR = Path(__file__).parent / "embedders"
#: latents embedded per forward pass
EMBED_BATCH = 64
#: a query up to this log-ratio (about 12%) below the head's native size is embedded at one scale
QUERY_SCALE_TOLERANCE = 0.12


def embedder_path(codec_id: str) -> Path:
    return EMBEDDERS_DIR / f"embed-{codec_id}.pt"


class LearnedEmbedding:
    """The trained ``LatentEmbedder`` behind the same interface as ``PooledEmbedding``.

    Latents of any size are resampled to 14×14 (``prepare_latents``) and embedded in batches."""

    def __init__(self, model: "LatentEmbedder", weights_hash: str):
        self.model = model.eval()
        self.dim = model.dim
        self.latent_channels = model.trunk.in_channels
        self._hash = weights_hash

    @property
    def id(self) -> str:
        return f"learned-{self._hash}"

    @classmethod
    def load(cls, path: Path) -> "LearnedEmbedding":
        raw = Path(path).read_bytes()
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        state = blob["state"]
        model = LatentEmbedder(int(state["trunk.shift"].shape[0]), int(blob["info"]["dim"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        return cls(model, hashlib.sha256(raw).hexdigest()[:12])

    def __call__(self, latents: torch.Tensor) -> np.ndarray:
        return self.batch([latents])[0]

    def batch(self, latents: list[torch.Tensor]) -> np.ndarray:
        if not latents:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = torch.cat([prepare_latents(y.reshape(self.latent_channels, *y.shape[-2:])) for y in latents])
        with torch.inference_mode():
            return torch.cat([self.model(b) for b in x.split(EMBED_BATCH)]).numpy().astype(np.float32)

    def query(self, codec, image, quality: int) -> np.ndarray:
        """The embedding of a query image (PIL); a small query is taken at two scales, summed.

        Stored items are embedded from their latents alone, at whatever size they were stored.
        A query smaller than the head's native size (short side ``CLASSIFIER_GRID`` × the
        codec's stride: 224 px for the shipped codec) has a latent grid the head only sees
        upsampled, which is where near-duplicate search missed most (in an exploratory run, a
        half-size copy of a 224 px image found its original first 96% of the time, each other
        kind of variant 99.75-100%). Such a query is embedded from its own latents *plus* those
        of a copy upscaled to the native size: the first matches items stored as small as the
        query, the second items stored at the native size. In the same run, on 800 Imagenette
        val images queried by variants (crop, 0.5-1x resize, tone, flip, JPEG), the original
        came first for 97.9% (own latents only), 98.9% (upscaled copy only) and 99.4% (the sum)
        against 224 px items; against 112 px items 86.6% / 69.6% / 93.6%. Larger queries are
        encoded once, at their own size (for ~600 px photos queried by 0.5-1x variants that is
        best: 98.0%, against 96.9% summed with a 224 px copy). ``benchmarks/tasks.py`` measures
        the query path on all 3,925 val images."""
        from mostore.codec.model import to_rgb_array

        side = CLASSIFIER_GRID * codec.stride
        factor = side / min(image.size)
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        views = [image]
        # (a very long, thin query is not blown up: its upscaled copy would hold more than 4 squares)
        if np.log(factor) > QUERY_SCALE_TOLERANCE and size[0] * size[1] <= 4 * side * side:
            rgb = Image.fromarray(to_rgb_array(image)[0])  # as the encoder sees it (alpha on white)
            views.append(rgb.resize(size, Image.BICUBIC))
        v = self.batch([codec.encode_with_latents(im, quality)[1] for im in views]).sum(0)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def load_embedder(codec) -> "LearnedEmbedding | PooledEmbedding":
    """The shipped learned embedding for ``codec`` (by its id), else the fixed pooling.

    Shipped files are loaded once per process: every table of a codec shares one (read-only) model."""
    path = embedder_path(codec.id)
    if path.is_file():
        return _shipped_embedding(path)
    return PooledEmbedding(codec.config.latent)


@functools.lru_cache(maxsize=None)
def _shipped_embedding(path: Path) -> LearnedEmbedding:
    return LearnedEmbedding.load(path)


# ---- classification from latents ---------------------------------------------------------

#: latents are resampled to this grid before the classifier (224 px images give 14x14)
CLASSIFIER_GRID = 14


def prepare_latents(latents: torch.Tensor, grid: int = CLASSIFIER_GRID) -> torch.Tensor:
    """(M, h, w) or (B, M, h, w) of any size -> (B, M, grid, grid) float32.

    Larger grids are area-averaged (antialiased), smaller ones interpolated: a head sees every
    image at about the scale of a 224 px one."""
    y = (latents if latents.dim() == 4 else latents[None]).float()
    if tuple(y.shape[-2:]) == (grid, grid):
        return y
    shrink = y.shape[-2] > grid or y.shape[-1] > grid
    return F.interpolate(y, size=(grid, grid), mode="bilinear", align_corners=False, antialias=shrink)


class LatentNet(torch.nn.Module):
    """The trunk every learned head shares: a small residual CNN over a (B, C, 14, 14) tensor.

    x ─► (x − mean) / one scale ─► 1×1 conv C→2w ─► 1×1 conv 2w→w ─► residual block (w, 14×14)
      ─► 3×3/2 conv w→2w ─► residual block (2w, 7×7) ─► mean ‖ max pool ─► (B, 4w)

    With C = 192 and w = 64 it costs 39 M multiply-adds per image (``macs``), about 2% of a
    ResNet-18 at 224 px. The same trunk reads latents or pixels folded to the latents' shape.
    """

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        nn = torch.nn
        self.in_channels, self.width = in_channels, width
        self.register_buffer("shift", torch.zeros(in_channels))
        self.register_buffer("scale", torch.ones(in_channels))
        # a two-layer 1×1 stem: the latents are decorrelated (information spread over all C
        # channels), so a single linear squeeze to w channels would drop what the task needs
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width), nn.GELU(),
            nn.Conv2d(2 * width, width, 1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
        )
        self.block1 = _Residual(width)
        self.down = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.GELU()
        )
        self.block2 = _Residual(2 * width)
        self.features = 4 * width

    def normalise_from(self, x: torch.Tensor) -> None:
        """Set the input normalisation from a sample (N, C, H, W) of training inputs.

        Each channel's mean is removed, but all channels share one scale: the latent channels'
        energies carry the codec's ordering (colour and coarse structure large, fine detail small
        and at low rates mostly quantisation noise), and scaling each channel to unit variance
        would lift that noise to the level of the signal (in an exploratory 10-epoch Imagenette
        run, per-channel scales cost the latent head about 4 points of top-1)."""
        x = x.float()
        self.shift.copy_(x.mean(dim=(0, 2, 3)))
        self.scale.fill_(max(float((x - self.shift[None, :, None, None]).std()), 1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.shift[None, :, None, None]) / self.scale[None, :, None, None]
        h = self.block2(self.down(self.block1(self.stem(x))))  # (B, 2w, 7, 7)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def macs(self, grid: int = CLASSIFIER_GRID) -> int:
        """Multiply-adds of one forward pass at a grid×grid input (convolutions and linears)."""
        total, size = 0, grid
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                size = -(-size // m.stride[0]) if m.stride[0] > 1 else size
                total += m.weight.numel() * size * size
            elif isinstance(m, torch.nn.Linear):
                total += m.weight.numel()
        return total


class _Residual(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


class LatentClassifier(torch.nn.Module):
    """Class logits from ŷ (or from pixels folded to its shape): ``LatentNet`` ─► dropout ─► linear."""

    arch = "latentnet-v1"

    def __init__(self, in_channels: int, classes: int, width: int = 64):
        super().__init__()
        self.trunk = LatentNet(in_channels, width)
        self.dropout = torch.nn.Dropout(0.2)
        self.head = torch.nn.Linear(self.trunk.features, classes)

    @staticmethod
    def prepare(latents: torch.Tensor) -> torch.Tensor:
        return prepare_latents(latents)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.trunk(x)))


class LatentEmbedder(torch.nn.Module):
    """An L2-normalised embedding from ŷ: ``LatentNet`` ─► MLP projection ─► unit vector."""

    arch = "latentnet-embed-v1"

    def __init__(self, in_channels: int, dim: int = 128, width: int = 64):
        super().__init__()
        self.dim = dim
        self.trunk = LatentNet(in_channels, width)
        f = self.trunk.features
        self.project = torch.nn.Sequential(torch.nn.Linear(f, f), torch.nn.GELU(), torch.nn.Linear(f, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.project(self.trunk(x)), dim=1)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translate a batch by up to one latent cell each way (edge padding): a cheap augmentation."""
    dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return x[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def fit_latent_classifier(
    latents: torch.Tensor, targets: torch.Tensor, classes: int, *, epochs: int, seed: int = 0,
    val_latents: torch.Tensor | None = None, val_targets: torch.Tensor | None = None,
    groups: torch.Tensor | None = None, batch: int = 64, lr: float = 3e-3, log=None,
    trunk: LatentNet | None = None, width: int = 64,
) -> tuple[LatentClassifier, float | None]:
    """Train a ``LatentClassifier`` on inputs (N, C, 14, 14); returns it and the validation top-1.

    ``groups`` (N,) marks rows that are views of the same image: each epoch then visits every
    image once, through one of its views drawn at random. ``trunk``: start from these weights
    (e.g. the learned embedding's) instead of from scratch.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LatentClassifier(latents.shape[1], classes, width)
    if trunk is not None and (trunk.in_channels, trunk.width) == (model.trunk.in_channels, model.trunk.width):
        model.trunk.load_state_dict(trunk.state_dict())
    else:
        model.trunk.normalise_from(latents[torch.randperm(len(latents), generator=gen)[:2048]])
    views = _view_lists(groups if groups is not None else torch.arange(len(latents)))
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr)
    steps_per_epoch = max(1, -(-len(views) // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2)
    for epoch in range(epochs):
        model.train()
        rows = _pick_views(views, gen)
        total = 0.0
        for b in rows[torch.randperm(len(rows), generator=gen)].split(batch):
            if len(b) < 2:
                continue
            loss = F.cross_entropy(model(_shift(latents[b].float(), gen)), targets[b], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        if log is not None:
            acc = accuracy(model, val_latents, val_targets) if val_latents is not None and epoch % 5 == 4 else None
            log(f"epoch {epoch + 1}/{epochs} loss {total / len(rows):.3f}" + (f" val {acc:.4f}" if acc else ""))
    model.eval()
    acc = accuracy(model, val_latents, val_targets) if val_latents is not None and len(val_latents) else None
    return model, acc


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Outputs of ``model`` in eval mode over inputs (N, C, 14, 14), batched."""
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(b.float()) for b in x.split(batch)])
    model.train(was)
    return out


def accuracy(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor) -> float:
    return float((predict(model, x).argmax(1) == targets).float().mean())


def _view_lists(groups: torch.Tensor) -> list[torch.Tensor]:
    order = torch.argsort(groups, stable=True)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)
    return list(order.split(counts.tolist()))


def _pick_views(views: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    return torch.stack([v[torch.randint(len(v), (1,), generator=gen)[0]] for v in views])
