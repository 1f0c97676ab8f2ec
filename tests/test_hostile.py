"""Hostile input over HTTP and the Python API (the cases of benchmarks/hostile.py)."""

from __future__ import annotations

import pytest

import mostore
from benchmarks import hostile


@pytest.mark.slow
def test_every_hostile_case_gets_a_typed_4xx_and_changes_nothing(tmp_path, tiny_codec_path):
    out = hostile.run(tmp_path, str(tiny_codec_path))
    bad = [c for c in out["cases"] if not c["ok"]]
    assert not bad, bad[:5]
    assert len(out["cases"]) > 250
    assert sum(r["http_5xx"] for r in out["summary"]) == 0
    assert sum(r["data_changed"] for r in out["summary"]) == 0
    assert out["server_alive_after"]


def test_the_digest_sees_every_kind_of_change(tmp_path, tiny_codec, images):
    """The 'data unchanged' column is only as good as the digest: each write must move it."""
    db = mostore.connect(tmp_path / "db", codec=tiny_codec)
    tbl = db.create_table("t")
    tbl.add(images[:2], metadata=[{"a": 1}, {"a": 2}])
    seen = [hostile.digest(tmp_path / "db", tiny_codec)]
    for change in (
        lambda: tbl.update(1, {"a": 5}),
        lambda: tbl.add(images[2]),
        lambda: tbl.delete(3),
        lambda: tbl.update(2, {"b": "new column"}),
        lambda: db.create_table("u"),
    ):
        change()
        seen.append(hostile.digest(tmp_path / "db", tiny_codec))
    assert all(a != b for a, b in zip(seen, seen[1:])), seen  # (a delete may return to an earlier state)
