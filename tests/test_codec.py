"""The codec on its own: round trips, determinism, sizes and modes, errors, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, make_tiny_model, natural_image
from mostore.codec import bitstream, entropy, wavelet
from mostore.codec.model import Codec, rd_loss
from mostore.codec.train import CropSampler, train_steps
from mostore.errors import CodecMismatchError, ImageTooLargeError, InvalidImageError, InvalidInputError


def test_wavelet_is_orthonormal_and_invertible():
    x = torch.randn(2, 3, 32, 48)
    c = wavelet.packet(x, 3)
    assert c.shape == (2, 192, 4, 6)
    assert torch.allclose(wavelet.inverse_packet(c, 3), x, atol=1e-5)
    assert torch.allclose(c.norm(), x.norm(), rtol=1e-5)


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (33, 17), (4000, 3), (64, 64), (65, 130)])
def test_any_size_round_trips(tiny_codec, size):
    w, h = size
    img = natural_image(w * 7 + h, (w, h))
    data = tiny_codec.encode(img)
    out = tiny_codec.decode(data)
    assert out.size == (w, h) and out.mode == "RGB"
    header = Codec.header(data)
    assert (header.width, header.height, header.codec_id) == (w, h, tiny_codec.id)


def test_modes(tiny_codec):
    rgb = natural_image(1)
    grey = Image.fromarray(rgb[..., 0], "L")
    assert tiny_codec.decode(tiny_codec.encode(grey)).mode == "L"
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
    data = tiny_codec.encode(rgba)
    assert Codec.header(data).mode == "RGBA" and tiny_codec.decode(data).mode == "RGB"
    # fully opaque alpha: composited on white changes nothing, same bytes as the RGB image
    assert tiny_codec.encode(Image.fromarray(rgb)) == tiny_codec.encode_with_latents(rgb)[0]
    transparent = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # composited on white
    assert np.asarray(tiny_codec.decode(tiny_codec.encode(transparent))).mean() > 100
    assert tiny_codec.decode(tiny_codec.encode(rgba.convert("P"))).size == rgba.size
    deep = Image.fromarray((rgb[..., 0].astype(np.int32) * 256).astype(np.uint16))
    assert tiny_codec.decode(tiny_codec.encode(deep)).mode == "L"


def test_deterministic_and_latents_match(tiny_codec):
    img = natural_image(3, (70, 50))
    a, y_a = tiny_codec.encode_with_latents(img)
    b = tiny_codec.encode(img)
    assert a == b
    assert torch.equal(tiny_codec.latents(a), y_a)
    assert tiny_codec.latents(a).shape == (1, TINY.latent, 4, 5)  # ceil(50/16), ceil(70/16)


def test_reencoding_decoded_symbols_gives_the_same_bytes(tiny_codec):
    data = tiny_codec.encode(natural_image(4, (96, 80)))
    header, zb, yb = bitstream.unpack(data)
    z = tiny_codec._z_coder.decode(zb, header.hyper_shape)
    _, idx = tiny_codec._hyper(torch.from_numpy(z)[None], header.quality)
    y = entropy.decode_y(yb, idx[0])
    again = bitstream.pack(header, tiny_codec._z_coder.encode(z), entropy.encode_y(y, idx[0]))
    assert again == data


def test_quality_levels_change_rate(tiny_codec):
    img = natural_image(5, (128, 128))
    sizes = [len(tiny_codec.encode(img, quality=q)) for q in (1, 2, 3)]
    assert sizes[0] < sizes[2]
    with pytest.raises(InvalidInputError):
        tiny_codec.encode(img, quality=9)


def test_rate_is_counted_from_bytes_and_matches_the_model(tiny_codec):
    """The coded size is close to the entropy model's own estimate (coder overhead is small)."""
    img = natural_image(6, (256, 256))
    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float()
    model = tiny_codec.model
    with torch.no_grad():
        y = model.analysis(x)
        z = torch.round(model.hyper_analysis(y))
        mean, log_scale = model.hyper_synthesis(z)
        g = model.log_gain[1].exp()[None, :, None, None]
        r = torch.round((y - mean) * g)
        bits = -torch.log2(entropy.likelihood_floor(entropy.gaussian_likelihood(r, log_scale.exp() * g))).sum()
        bits += -torch.log2(model.density.likelihood(z)).sum()
    coded = 8 * (len(tiny_codec.encode(img, quality=2)) - bitstream.HEADER_SIZE)
    assert coded < 1.15 * float(bits) + 256


def test_decoding_with_another_codec_is_refused(tiny_codec, tmp_path):
    other = Codec.from_model(make_tiny_model(seed=1))
    data = tiny_codec.encode(natural_image(7))
    with pytest.raises(CodecMismatchError):
        other.decode(data)


def test_bad_images(tiny_codec):
    with pytest.raises(InvalidImageError):
        tiny_codec.encode(np.zeros((4, 4), np.float32))
    with pytest.raises(InvalidImageError):
        tiny_codec.encode("not an image")
    with pytest.raises(InvalidImageError):
        tiny_codec.encode(np.zeros((4, 4, 2), np.uint8))


def test_huge_image_is_refused_before_work(tiny_codec, monkeypatch):
    monkeypatch.setattr(bitstream, "MAX_PIXELS", 100)
    with pytest.raises(ImageTooLargeError):
        tiny_codec.encode(np.zeros((20, 20, 3), np.uint8))


def test_shipped_weights_load_without_network():
    codec = Codec.load()
    assert len(codec.id) == 16 and codec.config.qualities >= 3
    img = natural_image(8, (64, 48))
    sizes = [len(codec.encode(img, quality=q)) for q in range(1, codec.config.qualities + 1)]
    assert sizes == sorted(sizes)
    out = np.asarray(codec.decode(codec.encode(img)), dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((out - img) ** 2))
    assert psnr > 25


def test_unknown_weights_name():
    from mostore.errors import NotFoundError

    with pytest.raises(NotFoundError):
        Codec.load("no-such-weights")


def test_a_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = make_tiny_model()
    imgs = [natural_image(i, (96, 96)) for i in range(4)]
    sampler = CropSampler(imgs, [1.0] * 4, 64, seed=0)
    x = sampler.batch(8)
    lambdas = torch.tensor(model.config.lambdas)
    q = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def loss_now():
        torch.manual_seed(1)
        with torch.no_grad():
            return float(rd_loss(x, *model(x, q), lambdas[q])[0])

    before = loss_now()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler.batch = lambda n: x  # the same batch every step
    list(train_steps(model, opt, sampler, 30, 8, np.random.default_rng(0)))
    assert loss_now() < 0.9 * before
