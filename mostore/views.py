"""Everyday variants of an image, and the tensors the machine heads are trained and measured on.

The variants are the ones a near-duplicate search must see through (issue 4): a crop of up to
20%, a resize to 0.5–1.0×, brightness and contrast ±15%, a horizontal flip and a JPEG re-encode
at quality 30–90. Training views for classification crop harder (``crop=0.35``: down to 35% of
the area), the usual random-resized-crop augmentation.

``ViewTensors`` turns one view into the three inputs that ``benchmarks/tasks.py`` compares,
all of the same tensor size (192×14×14 for the shipped codec):

    view ─► Codec analysis + quantization ─► ŷ ─► resample to 14×14          "latent"
                                             └─► Synthesis ─► 112×112 RGB    "decoded"
    view ─────────────────────────────────────────► 112×112 RGB              "original"
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

#: pixel inputs of the same tensor size as 192×14×14 latents: 112×112×3 = 192·14·14
PIXEL_SIDE = 112


@dataclass(frozen=True)
class VariantSpec:
    """Ranges of one random variant (each drawn uniformly)."""

    crop: float = 0.8  # smallest kept area fraction
    scale: tuple[float, float] = (0.5, 1.0)  # resize factor of the side
    tone: float = 0.15  # brightness and contrast factors in 1 ± tone
    flip: float = 0.5  # probability of a horizontal flip
    jpeg: tuple[int, int] = (30, 90)  # JPEG re-encode quality range
    jpeg_p: float = 1.0  # probability of the JPEG re-encode


#: the variants a near-duplicate query may be (issue 4's list)
DUPLICATE = VariantSpec()
#: classification training views (random-resized-crop style)
TRAINING = VariantSpec(crop=0.35, jpeg_p=0.5)


def variant(image: Image.Image, rng: np.random.Generator, spec: VariantSpec = DUPLICATE) -> Image.Image:
    """One random variant of ``image`` (RGB) drawn from ``spec``."""
    w, h = image.size
    area = rng.uniform(spec.crop, 1.0)
    # aspect jitter within 3:4..4:3, and never so much that the crop would leave the image
    spread = min(math.log(4 / 3), -math.log(area))
    aspect = math.exp(rng.uniform(-spread, spread)) if spread > 0 else 1.0
    cw = max(1, min(w, round(w * math.sqrt(area * aspect))))
    ch = max(1, min(h, round(h * math.sqrt(area / aspect))))
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    out = image.crop((left, top, left + cw, top + ch))
    # the crop is resized so its area is scale² of the original's: what a thumbnailer would make
    s = rng.uniform(*spec.scale) * math.sqrt(w * h / (cw * ch))
    out = out.resize((max(16, round(cw * s)), max(16, round(ch * s))), Image.BILINEAR, reducing_gap=3.0)
    if rng.random() < spec.flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(1 - spec.tone, 1 + spec.tone))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(1 - spec.tone, 1 + spec.tone))
    if rng.random() < spec.jpeg_p:
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=int(rng.integers(spec.jpeg[0], spec.jpeg[1] + 1)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return out


def pixel_tensor(image: Image.Image) -> np.ndarray:
    """RGB at 112×112 as uint8 (3, 112, 112): the pixel input of the same size as the latents."""
    arr = np.asarray(image.convert("RGB").resize((PIXEL_SIDE, PIXEL_SIDE), Image.BILINEAR, reducing_gap=3.0))
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def fold_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, 112, 112) uint8 -> (B, 192, 14, 14) float, centred: pixels in the latents' shape."""
    return F.pixel_unshuffle(pixels.float() / 255.0 - 0.5, PIXEL_SIDE // 14)


class ViewTensors:
    """Latent, decoded-pixel and original-pixel tensors of images, computed in batches.

    ŷ is computed as the encoder computes it (same rounding, float64 means) without running the
    entropy coder: ``Codec.latents(Codec.encode(view))`` gives the same tensor.
    """

    def __init__(self, codec, decoded: bool = True):
        self.codec = codec
        self.decoded = decoded

    def __call__(self, image: Image.Image, quality: int) -> dict[str, np.ndarray]:
        from mostore.heads import prepare_latents

        data, y_hat = self.codec.encode_with_latents(image, quality)
        out = {
            "latent": prepare_latents(y_hat)[0].half().numpy(),
            "original": pixel_tensor(image),
            "bytes": len(data),
            "pixels": image.size[0] * image.size[1],
        }
        if self.decoded:
            out["decoded"] = pixel_tensor(self.codec.decode(data))
        return out
