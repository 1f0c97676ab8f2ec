"""The container parser under hostile input: only typed errors, never a crash or a hang."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import natural_image
from mostore.codec import bitstream
from mostore.errors import CodecMismatchError, CorruptBitstreamError


@pytest.fixture(scope="module")
def coded(tiny_codec_path):
    from mostore.codec.model import Codec

    codec = Codec.from_checkpoint(tiny_codec_path)
    return codec, codec.encode(natural_image(11, (80, 60)))


def test_round_trip_header(coded):
    codec, data = coded
    header, z, y = bitstream.unpack(data)
    assert (header.width, header.height, header.mode) == (80, 60, "RGB")
    assert bitstream.pack(header, z, y) == data


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"", "header alone"),
        (lambda d: d[:10], "header alone"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\0", "truncated"),
        (lambda d: b"JUNK" + d[4:], "magic"),
        (lambda d: d[:4] + b"\x09" + d[5:], "version"),
        (lambda d: d[:5] + b"\x07" + d[6:], "mode"),
        (lambda d: d[:-3] + bytes([d[-3] ^ 0x10]) + d[-2:], "checksum"),
        (lambda d: d[:16] + struct.pack("<II", 100_000, 100_000) + d[24:], "out of range"),
        (lambda d: d[:16] + struct.pack("<I", 0) + d[20:], "out of range"),
    ],
)
def test_malformed_streams_raise_typed_errors(coded, mutate, message):
    codec, data = coded
    with pytest.raises(CorruptBitstreamError, match=message):
        codec.decode(mutate(data))


def test_not_bytes(coded):
    with pytest.raises(CorruptBitstreamError):
        coded[0].decode("a string")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_corruptions_only_raise_typed_errors(coded, data):
    codec, good = coded
    blob = bytearray(good)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        if not blob:
            break
        pos = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            blob[pos] = 0
    if bytes(blob) == good:
        return
    with pytest.raises((CorruptBitstreamError, CodecMismatchError)):
        codec.decode(bytes(blob))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes(coded, blob):
    with pytest.raises(CorruptBitstreamError):
        coded[0].decode(blob)


def test_valid_crc_but_garbage_payload_is_typed(coded):
    """A stream whose checksum was recomputed over garbage still fails cleanly (or decodes)."""
    codec, good = coded
    header, z, y = bitstream.unpack(good)
    for junk in (b"\xff" * len(y), b"\x00" * len(y), b"\x00\x00\x00\x00", b""):
        forged = bitstream.pack(header, z, junk)
        try:
            image = codec.decode(forged)
        except CorruptBitstreamError:
            continue
        assert image.size == (80, 60)
