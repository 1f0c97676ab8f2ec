from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mostore import data
from mostore.errors import ImageTooLargeError, InvalidImageError, MetadataError


def png_bytes(w=20, h=10) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), "blue").save(buf, "PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_accepted_forms(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(png_bytes())
    for item in (str(p), p, png_bytes(), Image.new("RGB", (3, 3)), np.zeros((3, 4, 3), np.uint8)):
        assert data.load_image(item).width in (20, 3, 4)


@pytest.mark.parametrize(
    "item",
    [b"", b"not an image at all", png_bytes()[:40], b"GIF89a" + b"\0" * 10, 12, None, [1, 2],
     np.zeros((3, 3), np.float64), np.zeros((0, 5, 3), np.uint8)],
)
def test_bad_images(item):
    with pytest.raises(InvalidImageError):
        data.load_image(item)


def test_missing_file_and_fake_extension(tmp_path):
    with pytest.raises(InvalidImageError):
        data.load_image(tmp_path / "nope.png")
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    with pytest.raises(InvalidImageError):
        data.load_image(fake)


def test_decompression_bomb_is_refused_from_the_header():
    with pytest.raises(ImageTooLargeError, match="limit"):
        data.load_image(bomb_png(50_000, 50_000))
    with pytest.raises(ImageTooLargeError):
        data.load_image(png_bytes(20, 10), max_pixels=100)


@pytest.mark.parametrize(
    "meta",
    [
        "label", [1], {"a": {"nested": 1}}, {"a": [1, 2]}, {"Bad Key": 1}, {"id": 3}, {"and": 1},
        {"x": float("nan")}, {"x": 2**70}, {"x": "s" * 70_000}, {f"k{i}": i for i in range(100)},
        {"x": "\ud800"}, {1: "a"},
    ],
)
def test_bad_metadata(meta):
    with pytest.raises(MetadataError):
        data.check_metadata(meta)


def test_good_metadata():
    meta = {"label": "cat", "n": 3, "score_x": 1.5, "ok": True, "missing": None}
    assert data.check_metadata(meta) == meta
