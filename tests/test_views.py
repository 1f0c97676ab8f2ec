"""Image variants and the three same-size inputs the heads are compared on."""

import numpy as np
import torch
from PIL import Image

from conftest import natural_image
from mostore.heads import prepare_latents
from mostore.views import DUPLICATE, TRAINING, VariantSpec, ViewTensors, fold_pixels, pixel_tensor, variant


def test_variants_stay_in_their_ranges():
    image = Image.fromarray(natural_image(0, (200, 160)))
    for seed in range(20):
        v = variant(image, np.random.default_rng(seed), DUPLICATE)
        # crop keeps >= 80% of the area, then the side is scaled by 0.5..1 of the original's
        ratio = (v.size[0] * v.size[1]) / (200 * 160)
        assert 0.2 <= ratio <= 1.01, (seed, v.size)
        assert v.mode == "RGB"
    a = variant(image, np.random.default_rng(7), TRAINING)
    b = variant(image, np.random.default_rng(7), TRAINING)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # seeded: reproducible views


def test_identity_spec_is_the_image():
    image = Image.fromarray(natural_image(1, (64, 48)))
    same = VariantSpec(crop=1.0, scale=(1.0, 1.0), tone=0.0, flip=0.0, jpeg_p=0.0)
    out = variant(image, np.random.default_rng(0), same)
    assert out.size == image.size
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(image, dtype=int)).max() <= 1


def test_pixel_inputs_have_the_latent_shape():
    image = Image.fromarray(natural_image(2, (90, 70)))
    px = pixel_tensor(image)
    assert px.shape == (3, 112, 112) and px.dtype == np.uint8
    assert fold_pixels(torch.from_numpy(px)[None]).shape == (1, 192, 14, 14)


def test_view_tensors_match_the_stored_latents(tiny_codec):
    image = Image.fromarray(natural_image(3, (72, 56)))
    out = ViewTensors(tiny_codec)(image, 2)
    stored = tiny_codec.latents(tiny_codec.encode(image, 2))
    assert np.allclose(out["latent"], prepare_latents(stored)[0].half().numpy())
    assert out["bytes"] == len(tiny_codec.encode(image, 2)) and out["pixels"] == 72 * 56
    assert out["decoded"].shape == out["original"].shape == (3, 112, 112)
