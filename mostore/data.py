"""Loading and validating user input: images in any accepted form, metadata dicts.

Accepted images: a path (str or Path), raw encoded bytes (PNG, JPEG, WebP, ...), a PIL image,
or a uint8 numpy array (HxW, HxWx3, HxWx4). Everything else, and anything Pillow can't read
completely, raises :class:`InvalidImageError`; images over ``MAX_PIXELS`` raise
:class:`ImageTooLargeError` before they are decoded (no decompression bombs).
"""

from __future__ import annotations

import io
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mostore.codec.bitstream import MAX_PIXELS
from mostore.errors import ImageTooLargeError, InvalidImageError, MetadataError

#: largest accepted encoded file (bytes)
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_METADATA_KEYS = 64
MAX_STRING_BYTES = 64 * 1024
KEY_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
#: columns mostore owns; user metadata can't use these names
RESERVED = frozenset(
    {"id", "latent", "width", "height", "mode", "quality", "codec_id", "created_at", "nbytes", "score", "metadata"}
)
SQL_WORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false", "like", "between"})

ImageLike = Any  # str | Path | bytes | PIL.Image.Image | np.ndarray


def load_image(item: ImageLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return a fully loaded PIL image, or raise a typed error saying what was wrong."""
    if isinstance(item, Image.Image):
        _check_pixels(item.width, item.height, max_pixels)
        return item
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (3, 4)):
            raise InvalidImageError(
                f"image arrays must be uint8 HxW, HxWx3 or HxWx4; got {item.dtype} {item.shape}"
            )
        _check_pixels(item.shape[1], item.shape[0], max_pixels)
        if item.shape[0] == 0 or item.shape[1] == 0:
            raise InvalidImageError("image array has no pixels")
        return Image.fromarray(np.ascontiguousarray(item))
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise InvalidImageError(f"no such image file: {str(path)!r}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"{path.name} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        return _open_bytes(path.read_bytes(), path.name, max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if len(data) > MAX_FILE_BYTES:
            raise ImageTooLargeError(f"image is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
        return _open_bytes(data, "image bytes", max_pixels)
    raise InvalidImageError(
        f"can't read an image from {type(item).__name__}; give a path, bytes, a PIL image or a uint8 array"
    )


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is {width}x{height} ({width * height / 1e6:.1f} Mpx); the limit is"
            f" {max_pixels / 1e6:.1f} Mpx (MOSTORE_MAX_PIXELS)"
        )


def _open_bytes(data: bytes, name: str, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImageError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image.width, image.height, max_pixels)  # header only: nothing decoded yet
            image.load()
    except (ImageTooLargeError, InvalidImageError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{name}: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise InvalidImageError(f"{name} is not a readable image ({type(exc).__name__}: {exc})") from exc
    if image.width < 1 or image.height < 1:
        raise InvalidImageError(f"{name} has no pixels")
    return image


def check_metadata(meta: Any) -> dict[str, Any]:
    """Validate one item's metadata: a flat dict of scalar values under identifier keys."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise MetadataError(f"metadata must be a dict, not {type(meta).__name__}")
    if len(meta) > MAX_METADATA_KEYS:
        raise MetadataError(f"metadata has {len(meta)} keys; the limit is {MAX_METADATA_KEYS}")
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not KEY_PATTERN.match(key):
            raise MetadataError(
                f"metadata key {key!r} is not allowed: use lowercase letters, digits and _ (at most 64), not starting with a digit"
            )
        if key.lower() in RESERVED or key.lower() in SQL_WORDS:
            raise MetadataError(f"metadata key {key!r} is reserved; pick another name")
        if isinstance(value, str):
            try:
                encoded = value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MetadataError(f"metadata value of {key!r} is not valid unicode text") from exc
            if len(encoded) > MAX_STRING_BYTES:
                raise MetadataError(f"metadata value of {key!r} is longer than {MAX_STRING_BYTES} bytes")
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -(2**63) <= value < 2**63:
                raise MetadataError(f"metadata value of {key!r} does not fit in int64")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise MetadataError(f"metadata value of {key!r} must be finite, not {value}")
        else:
            raise MetadataError(
                f"metadata value of {key!r} is a {type(value).__name__}; values are str, int, float, bool or null"
            )
        out[key] = value
    return out
