"""Fuzzing in CI at bounded counts (benchmarks/fuzz.py runs the same at larger ones):
the HTTP API under schemathesis, untrusted bytes under atheris."""

from __future__ import annotations

import os
import signal

import pytest

from benchmarks import fuzz
from benchmarks import reliability as rel

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_5xx(tmp_path, tiny_codec_path):
    fuzz.fuzz_table(tmp_path / "db", str(tiny_codec_path))
    proc, url = rel.start_server(tmp_path / "db", str(tiny_codec_path))
    try:
        out = fuzz.run_schemathesis(url, examples=20, existing_table="fuzz")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    assert out["failures"] == [] and out["server_errors"] == 0
    assert out["operations"] > 20 and out["requests"] > 2 * out["operations"]
    assert out["statuses"].get("200", 0) > 0 and out["statuses"].get("404", 0) > 0  # it reached real and absent things


def test_atheris_on_the_bitstream_decoder_and_image_loader(tiny_codec_path):
    out = fuzz.run_atheris(str(tiny_codec_path), runs=5000)
    assert out["ok"], out["log_tail"]
    assert out["runs"] == 5000


def test_a_crash_fails_the_fuzzer(tiny_codec_path, monkeypatch):
    """The fuzzer's verdict can fail: an untyped error raised on any input is reported as a crash."""
    monkeypatch.setenv("MOSTORE_FUZZ_SELFTEST", "1")
    out = fuzz.run_atheris(str(tiny_codec_path), runs=200)
    assert not out["ok"] and out["returncode"] != 0
