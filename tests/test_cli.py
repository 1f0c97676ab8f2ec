"""The `mostore` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import ROOT, natural_image
from mostore import cli

COMMANDS = ["ingest", "search", "reconstruct", "info", "delete", "reindex", "serve", "demo", "train",
            "fit-classifier", "classify", "check", "optimize"]


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mostore.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            cli.main([name, "--help"]) if name != "train" else cli.build_parser().parse_args([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "usage: mostore" in out and len(out) > 80, name
    assert set(COMMANDS) <= set(cli.build_parser()._subparsers._group_actions[0].choices)


def test_ingest_search_reconstruct_info(tmp_path, tiny_codec_path):
    src = tmp_path / "photos"
    (src / "cats").mkdir(parents=True)
    (src / "dogs").mkdir()
    for i in range(6):
        Image.fromarray(natural_image(i)).save(src / ("cats" if i < 3 else "dogs") / f"{i}.png")
    (src / "dogs" / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "dogs" / "empty.png").write_bytes(b"")
    db = tmp_path / "db"
    # a table made with the tiny codec, then filled by the CLI
    import mostore
    from mostore.codec.model import Codec

    mostore.connect(db, codec=Codec.from_checkpoint(tiny_codec_path)).create_table("t")
    r = run("ingest", str(src), "--db", str(db), "--table", "t", "--label-from-dir", "--json")
    assert r.returncode == 3, r.stderr
    report = json.loads(r.stdout)
    assert report["added"] == 6 and {os.path.basename(s["file"]) for s in report["skipped"]} == {"broken.jpg", "empty.png"}

    r = run("search", str(src / "cats" / "1.png"), "--db", str(db), "--table", "t", "-k", "2", "--json")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    hits = json.loads(r.stdout)
    assert len(hits) == 2 and hits[0]["metadata"]["path"] == "cats/1.png"
    r = run("search", "1", "--db", str(db), "--table", "t", "--where", "label = 'dogs'", "--json")
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert {h["metadata"]["label"] for h in json.loads(r.stdout)} == {"dogs"}

    out = tmp_path / "out.png"
    r = run("reconstruct", "2", "--db", str(db), "--table", "t", "-o", str(out))
    assert r.returncode == 0 and Image.open(out).size == (48, 40)

    r = run("info", "--db", str(db), "--json")
    assert json.loads(r.stdout)[0]["rows"] == 6

    r = run("search", "1", "--db", str(db), "--table", "nope")
    assert r.returncode == 1 and "NotFoundError" in r.stderr
    r = run("search", "1", "--db", str(db), "--table", "t", "--where", "x = ;")
    assert r.returncode == 1 and "FilterError" in r.stderr
    r = run("delete", "--db", str(db), "--table", "t", "--where", "label = 'cats'")
    assert r.returncode == 0 and "deleted 3" in r.stdout


def test_demo_builds_a_store(tmp_path):
    r = run("demo", "--db", str(tmp_path / "demo"), "--no-serve")
    assert r.returncode == 0, r.stderr
    assert "table 'samples' with 40 images" in r.stdout and "nearest to item 1" in r.stdout


def test_reindex_and_check_show_progress_unless_json(tmp_path, tiny_codec, capsys):
    import mostore

    db = tmp_path / "p.mostore"
    # the table records its checkpoint's path, so the CLI opens it with the tiny codec
    mostore.connect(db, codec=tiny_codec).create_table("t").add([natural_image(i) for i in range(3)])
    assert cli.main(["reindex", "--db", str(db), "-t", "t"]) == 0
    out = capsys.readouterr()
    assert "indexed 3 of 3 rows" in out.out and "reindex" in out.err
    assert cli.main(["check", "--db", str(db), "-t", "t", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["ok"] is True and "check" not in out.err
