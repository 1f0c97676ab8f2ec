"""The FAISS index: derived data that persists, catches up and can be lost without loss."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import mostore
from conftest import ROOT
from mostore.index import IndexConfig, VectorIndex


def results(tbl, ids):
    return [[(h["id"], round(h["score"], 5)) for h in tbl.search(i).limit(5).to_list()] for i in ids]


def test_persistence_across_processes_and_lost_index(tmp_path, tiny_codec, images, tiny_codec_path):
    path = tmp_path / "db"
    tbl = mostore.connect(path, codec=tiny_codec).create_table("t")
    ids = tbl.add(images, metadata=[{"n": i} for i in range(len(images))])
    tbl.delete(ids[3])
    expected = results(tbl, ids[:3])

    script = (
        "import json, mostore\n"
        f"from mostore.codec.model import Codec\n"
        f"db = mostore.connect({str(path)!r}, codec=Codec.from_checkpoint({str(tiny_codec_path)!r}))\n"
        "t = db.open_table('t')\n"
        f"print(json.dumps([[(h['id'], round(h['score'], 5)) for h in t.search(i).limit(5).to_list()] for i in {ids[:3]}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[list(p) for p in r] for r in expected]

    for f in (path / "_mostore" / "t").glob("index.*"):
        f.unlink()
    fresh = mostore.connect(path, codec=tiny_codec).open_table("t")
    assert results(fresh, ids[:3]) == expected
    assert fresh.stats()["index_count"] == len(images) - 1

    # a damaged index file is rebuilt, not trusted
    (path / "_mostore" / "t" / "index.faiss").write_bytes(b"garbage")
    again = mostore.connect(path, codec=tiny_codec).open_table("t")
    assert results(again, ids[:3]) == expected


def test_index_catches_up_with_other_writers(tmp_path, tiny_codec, images):
    a = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    a.add(images[:4])
    b = mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t")
    assert len(b.search(1).limit(10).to_list()) == 4
    new = a.add(images[4:8])
    a.delete(2)
    hits = b.search(new[0]).limit(10).to_list()
    assert hits[0]["id"] == new[0] and len(hits) == 7 and 2 not in {h["id"] for h in hits}
    assert b.stats()["index_count"] == 7


def test_reindex(tmp_path, tiny_codec, images):
    tbl = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    tbl.add(images[:5])
    before = results(tbl, [1, 2])
    assert tbl.reindex() == {"rows": 5, "indexed": 5, "kind": "flat"}
    assert results(tbl, [1, 2]) == before


@pytest.mark.parametrize("kind, built", [("auto", "ivfsq"), ("ivfpq", "ivfpq")])
def test_ivf_filtered_search_returns_exactly_k(kind, built, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    dim, n = 64, 3000
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex(dim, IndexConfig(kind=kind, flat_threshold=2000, nprobe=4, pq_bytes=16))
    ids = np.arange(1, n + 1)
    index.add(ids[:1500], vecs[:1500])
    assert index.kind == ("flat" if kind == "auto" else built)
    index.add(ids[1500:], vecs[1500:])
    assert index.kind == built and len(index) == n
    if built == "ivfsq":  # 8-bit codes keep the ranking nearly exact
        _, got = index.search(vecs[:50], 1)
        assert (got[:, 0] == ids[:50]).mean() > 0.95
    from mostore.index import IndexMeta

    index.save(tmp_path / "i", IndexMeta(1, "e", n, index.kind))
    assert VectorIndex.load(tmp_path / "i", dim, IndexConfig())[0].kind == built
    allowed = ids[::97]  # 31 scattered ids: an IVF probe alone would miss some
    from mostore import index as index_module

    exact_scores, exact = index.search(vecs[5], 10, allowed)  # a small allowed set is scored directly
    assert (exact[0] >= 0).sum() == 10 and set(exact[0]) <= set(allowed)
    assert np.all(np.diff(exact_scores[0]) <= 0)
    truth = allowed[np.argsort(-(vecs[allowed - 1] @ vecs[5]))[:10]]
    assert len(set(exact[0]) & set(truth)) >= (9 if built == "ivfsq" else 5)  # PQ codes are coarse
    monkeypatch.setattr(index_module, "EXACT_FILTER_MAX", 0)  # the IVF probe with a selector, and its fallback
    scores, got = index.search(vecs[5], 10, allowed)
    assert (got[0] >= 0).sum() == 10 and set(got[0]) <= set(allowed)
    index.remove(ids[:100])
    assert len(index) == n - 100
    _, got = index.search(vecs[:20], 10)
    assert not set(got.ravel()) & set(ids[:100])


def test_a_saved_index_loads_intact_every_time(tmp_path):
    """A load must hand back the saved index itself (once it was a proxy of freed memory, and the
    store rebuilt the whole index on every open)."""
    import gc

    from mostore.index import IndexMeta

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    saved = VectorIndex(16)
    saved.add(np.arange(1, 301), vecs)
    saved.save(tmp_path / "index", IndexMeta(7, "e", 300, saved.kind))
    for _ in range(30):
        loaded = VectorIndex.load(tmp_path / "index", 16, IndexConfig())
        gc.collect()
        _ = [np.ones(10_000) for _ in range(20)]  # reuse freed memory, as a busy process does
        assert loaded is not None and loaded[1].table_version == 7
        index = loaded[0]
        assert index.index.d == 16 and len(index) == 300
        scores, ids = index.search(vecs[:3], 1)
        assert ids[:, 0].tolist() == [1, 2, 3]


def test_a_commit_by_another_process_between_sync_and_add_is_not_hidden(tmp_path, tiny_codec, images):
    """The race the concurrency harness caught: B commits after A synced its index but before A
    commits; A's saved index must not claim A's version while lacking B's row."""
    a = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    b = mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t")
    a.add(images[0])
    synced = a._sync_index

    def sync_then_other_writer():
        index = synced()
        b.add(images[1])
        return index

    a._sync_index = sync_then_other_writer
    a.add(images[2])
    fresh = mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t")
    report = fresh.check()
    assert report["ok"] and report["index_count"] == 3, report


def test_a_quiet_table_still_sees_another_writer(tmp_path, tiny_codec, images, monkeypatch):
    """Version checks are answered from a stat of the _versions folder once the table is quiet;
    a commit by another connection must still be seen at once."""
    from mostore import store

    monkeypatch.setattr(store, "VERSION_STAMP_MARGIN_S", 0.0)  # trust the stat at once
    a = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    a.add(images[0])
    assert [h["id"] for h in a.search(images[0]).limit(5).to_list()] == [1]
    v = a.version
    assert a.version == v  # answered from the stamp
    mostore.connect(tmp_path / "db", codec=tiny_codec).open_table("t").add(images[1])
    assert a.version == v + 1
    assert sorted(h["id"] for h in a.search(images[0]).limit(5).to_list()) == [1, 2]
