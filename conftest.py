"""Shared fixtures: a tiny codec, small images, tables on tmp_path, a real server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from mostore.codec.model import Codec, CodecConfig, CodecModel, save_checkpoint

ROOT = Path(__file__).parent
SAMPLES = ROOT / "mostore" / "samples"
TINY = CodecConfig(
    latent=16, enc_hidden=8, dec_hidden=8, refine_hidden=8, hyper_hidden=8, hyper=4,
    lambdas=(0.002, 0.01, 0.05), default_quality=2,
)


def make_tiny_model(seed: int = 0) -> CodecModel:
    torch.manual_seed(seed)
    model = CodecModel(TINY)
    # an orthonormal linear path so reconstructions resemble the input
    basis = torch.linalg.qr(torch.randn(3 * 4**TINY.levels, TINY.latent))[0].t()
    basis[0] = 1.0 / np.sqrt(basis.shape[1])  # keep the DC component
    basis = torch.linalg.qr(basis.t())[0].t()
    model.init_pca(basis, torch.zeros(basis.shape[1]))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_codec_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("codec") / "tiny.pt"
    save_checkpoint(make_tiny_model(), path)
    return path


@pytest.fixture(scope="session")
def tiny_codec(tiny_codec_path) -> Codec:
    return Codec.from_checkpoint(tiny_codec_path)


def natural_image(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A smooth random colour image (H, W, 3) uint8: blobs, not white noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    arr = np.asarray(big).astype(np.int16) + rng.integers(-8, 9, size=(h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


@pytest.fixture
def images() -> list[np.ndarray]:
    return [natural_image(i) for i in range(12)]


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*.JPEG"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`mostore serve` in a child process on a loopback port."""

    def __init__(self, db: Path, codec_path: Path, env: dict | None = None):
        self.db, self.codec_path, self.extra_env = db, codec_path, env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        env = {**os.environ, "MOSTORE_CODEC": str(self.codec_path), **self.extra_env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mostore.cli", "serve", "--db", str(self.db), "--port", str(self.port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, tiny_codec_path):
    """A real uvicorn server in a thread of this process (shared by the remote API tests)."""
    import uvicorn

    from server.app import Settings, create_app

    db = tmp_path_factory.mktemp("served")
    app = create_app(Settings(db=db, codec=str(tiny_codec_path)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture(params=["local", "remote"])
def db(request, tmp_path, tiny_codec):
    """The same API, embedded and over HTTP."""
    import mostore

    if request.param == "local":
        return mostore.connect(tmp_path / "db.mostore", codec=tiny_codec)
    url = request.getfixturevalue("live_server")
    remote = mostore.connect(url)
    for name in remote.table_names():
        remote.drop_table(name)
    return remote
