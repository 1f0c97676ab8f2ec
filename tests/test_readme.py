"""The README's examples run as written (Python, HTTP with curl, CLI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, ServerProcess

pytestmark = pytest.mark.slow
README = (ROOT / "README.md").read_text()


def block(kind: str) -> str:
    m = re.search(rf"<!-- tested: {kind} .*?-->\s*```\w+\n(.*?)```", README, re.S)
    assert m, f"README has no tested {kind} block"
    return m.group(1)


def test_python_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block("python"), "README.md", "exec"), {})
    assert (tmp_path / "first.png").exists() and (tmp_path / "photos.mostore").is_dir()


def _bash(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_example(tmp_path):
    shutil.copytree(ROOT / "mostore" / "samples", tmp_path / "mostore" / "samples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = _bash(block("cli"), tmp_path, env)
    assert r.returncode == 0, r.stderr
    assert "photos: 40 items" in r.stdout and (tmp_path / "one.png").exists()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_http_example(tmp_path):
    server = ServerProcess(tmp_path / "db", "default").start()
    try:
        script = block("http").replace("localhost:8000", f"127.0.0.1:{server.port}")
        r = _bash(script, ROOT, dict(os.environ))
        assert r.returncode == 0, r.stderr
        assert '"ids":[1,2]' in r.stdout and '"hits":[{"id":1' in r.stdout
        assert "NotFoundError" not in r.stdout and "error" not in r.stdout
    finally:
        server.stop()
        (ROOT / "reconstructed.png").unlink(missing_ok=True)
