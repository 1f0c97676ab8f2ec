"""The container of one coded image: a fixed header, two entropy-coded payloads, a CRC32.

::

    offset size field
    0      4    magic  b"MOST"
    4      1    format version (1)
    5      1    mode of the original: 0 RGB, 1 L (grey), 2 RGBA (alpha dropped, see model.py)
    6      8    codec id: first 8 bytes of the SHA-256 of the weights file
    14     1    quality level (1-based)
    15     1    wavelet levels (log2 of the latent stride is levels)
    16     4    width  (uint32, little endian)
    20     4    height (uint32)
    24     2    latent channels M
    26     2    hyper-latent channels Z
    28     4    length of the z payload in bytes
    32     4    length of the y payload in bytes
    36     4    CRC32 of bytes 0..35 and of both payloads
    40     ...  z payload, then y payload

The parser checks every field before anything is allocated from it: magic, version, mode,
sizes against ``MAX_PIXELS``, payload lengths against the actual length, and the checksum.
Anything malformed raises :class:`~mostore.errors.CorruptBitstreamError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from mostore.errors import CorruptBitstreamError

MAGIC = b"MOST"
VERSION = 1
MODES = ("RGB", "L", "RGBA")
#: the largest image a bitstream may describe (also the ingest limit, see mostore.data)
MAX_PIXELS = 100_000_000
_HEAD = struct.Struct("<4sBB8sBBIIHHII")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _CRC.size  # 40


@dataclass(frozen=True)
class Header:
    mode: str
    codec_id: str  # 16 hex characters
    quality: int
    levels: int
    width: int
    height: int
    channels: int
    hyper_channels: int
    z_len: int
    y_len: int

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(M, h, w) of y: the padded image over the stride."""
        ph, pw = padded_size(self.height, self.width, self.levels)
        s = 2**self.levels
        return self.channels, ph // s, pw // s

    @property
    def hyper_shape(self) -> tuple[int, int, int]:
        ph, pw = padded_size(self.height, self.width, self.levels)
        s = 2 ** (self.levels + 2)
        return self.hyper_channels, ph // s, pw // s


def padded_size(height: int, width: int, levels: int) -> tuple[int, int]:
    """Images are padded to a multiple of the hyper-latent stride (2^(levels+2))."""
    m = 2 ** (levels + 2)
    return -(-height // m) * m, -(-width // m) * m


def pack(header: Header, z_payload: bytes, y_payload: bytes) -> bytes:
    head = _HEAD.pack(
        MAGIC,
        VERSION,
        MODES.index(header.mode),
        bytes.fromhex(header.codec_id),
        header.quality,
        header.levels,
        header.width,
        header.height,
        header.channels,
        header.hyper_channels,
        len(z_payload),
        len(y_payload),
    )
    crc = zlib.crc32(y_payload, zlib.crc32(z_payload, zlib.crc32(head)))
    return head + _CRC.pack(crc) + z_payload + y_payload


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """Parse and check a bitstream; returns (header, z payload, y payload)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptBitstreamError(f"a bitstream is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise CorruptBitstreamError(f"bitstream is {len(data)} bytes; the header alone is {HEADER_SIZE}")
    (magic, version, mode, codec_id, quality, levels, width, height, channels, hyper, z_len, y_len) = (
        _HEAD.unpack_from(data)
    )
    if magic != MAGIC:
        raise CorruptBitstreamError(f"not a mostore bitstream (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise CorruptBitstreamError(f"bitstream format version {version}; this mostore reads {VERSION}")
    if mode >= len(MODES):
        raise CorruptBitstreamError(f"unknown image mode {mode}")
    if not (1 <= levels <= 6):
        raise CorruptBitstreamError(f"wavelet levels {levels} out of range 1..6")
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise CorruptBitstreamError(f"image size {width}x{height} out of range (1 px .. {MAX_PIXELS} px)")
    if quality < 1 or channels < 1 or hyper < 1:
        raise CorruptBitstreamError("quality and channel counts must be positive")
    if HEADER_SIZE + z_len + y_len != len(data):
        raise CorruptBitstreamError(
            f"bitstream is {len(data)} bytes but its header announces {HEADER_SIZE + z_len + y_len}"
            " (truncated or padded)"
        )
    (crc,) = _CRC.unpack_from(data, _HEAD.size)
    z_payload = data[HEADER_SIZE : HEADER_SIZE + z_len]
    y_payload = data[HEADER_SIZE + z_len :]
    if zlib.crc32(y_payload, zlib.crc32(z_payload, zlib.crc32(data[: _HEAD.size]))) != crc:
        raise CorruptBitstreamError("bitstream checksum mismatch (corrupted data)")
    header = Header(
        mode=MODES[mode],
        codec_id=codec_id.hex(),
        quality=quality,
        levels=levels,
        width=width,
        height=height,
        channels=channels,
        hyper_channels=hyper,
        z_len=z_len,
        y_len=y_len,
    )
    return header, z_payload, y_payload


def verify(data: bytes) -> Header:
    """Check a bitstream's structure and checksum without decoding it."""
    return unpack(data)[0]
